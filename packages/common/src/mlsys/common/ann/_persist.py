"""On-disk format of an index: a directory with ``manifest.json`` and binary payloads.

``manifest.json`` records the format name and version, the backend (registry kind and class), its
configuration, the embedding space, the number of items, library versions, and for every payload
file its size and sha256. :func:`read_manifest` verifies all of it before any payload is parsed,
so a truncated or tampered file is refused with :class:`~mlsys.common.errors.CorruptFileError`
instead of being handed to a native reader. Payloads are ``.npy`` files (read with
``allow_pickle=False``) and the libraries' own index formats; nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mlsys.common.errors import CorruptFileError, FormatVersionError, InvalidInputError
from mlsys.common.persist import atomic_directory
from mlsys.common.persist import file_sha256 as sha256_file
from mlsys.common.spaces import EmbeddingSpace

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "atomic_directory",
    "load_npy",
    "read_manifest",
    "save_npy",
    "sha256_file",
    "write_manifest",
]

FORMAT_NAME = "mlsys.common.ann"
FORMAT_VERSION = 1
"""Version of the on-disk index format written in ``manifest.json``; ``load_index`` refuses others."""
MANIFEST = "manifest.json"


def save_npy(directory: Path, name: str, array: npt.NDArray[Any]) -> None:
    """Write ``array`` as ``directory/name`` in ``.npy`` format (never pickled)."""
    np.save(directory / name, np.ascontiguousarray(array), allow_pickle=False)


def load_npy(directory: Path, name: str) -> npt.NDArray[Any]:
    """Read a ``.npy`` payload without ever unpickling."""
    try:
        return np.load(directory / name, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise CorruptFileError(f"{directory / name} is not a readable .npy array: {exc}") from exc


def write_manifest(
    directory: Path,
    *,
    kind: str,
    cls: str,
    config: dict[str, Any],
    space: EmbeddingSpace,
    count: int,
    state: dict[str, Any],
    libraries: dict[str, str],
) -> dict[str, Any]:
    """Checksum every file in ``directory`` and write ``manifest.json`` next to them."""
    files = {
        p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(directory.iterdir())
        if p.is_file() and p.name != MANIFEST
    }
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "class": cls,
        "config": config,
        "space": space.to_dict(),
        "count": count,
        "state": state,
        "libraries": libraries,
        "files": files,
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def read_manifest(
    path: str | os.PathLike[str], *, expected_space: EmbeddingSpace | None = None
) -> dict[str, Any]:
    """Read and verify ``path/manifest.json``: format, version, checksums, sizes and the space.

    Raises:
        CorruptFileError: missing or unreadable manifest, missing/truncated/altered payload.
        FormatVersionError: written by another format version.
        EmbeddingSpaceMismatchError: ``expected_space`` is given and differs from the file's.
    """
    directory = Path(path)
    mpath = directory / MANIFEST
    if not mpath.is_file():
        raise CorruptFileError(f"{directory} is not an mlsys index directory: {MANIFEST} not found")
    try:
        manifest = json.loads(mpath.read_text())
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
        raise CorruptFileError(f"{mpath} is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise CorruptFileError(f"{mpath} has format {got!r}, expected {FORMAT_NAME!r}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise FormatVersionError(
            f"{mpath} has format_version {manifest.get('format_version')!r}, "
            f"this mlsys reads format_version {FORMAT_VERSION}"
        )
    for key in ("kind", "class", "config", "space", "count", "state", "files"):
        if key not in manifest:
            raise CorruptFileError(f"{mpath} lacks the field {key!r}")
    try:
        space = EmbeddingSpace.from_dict(manifest["space"])
    except (TypeError, InvalidInputError) as exc:
        raise CorruptFileError(f"{mpath} holds an invalid embedding space: {exc}") from exc
    for name, meta in manifest["files"].items():
        fpath = directory / name
        if Path(name).name != name:
            raise CorruptFileError(f"{mpath} names a payload outside its directory: {name!r}")
        if not fpath.is_file():
            raise CorruptFileError(f"payload {fpath} listed in the manifest is missing")
        size = fpath.stat().st_size
        if size != meta["bytes"]:
            raise CorruptFileError(
                f"payload {fpath} is {size} bytes, the manifest says {meta['bytes']} (truncated or altered)"
            )
        digest = sha256_file(fpath)
        if digest != meta["sha256"]:
            raise CorruptFileError(
                f"payload {fpath} has sha256 {digest[:16]}…, the manifest says {meta['sha256'][:16]}… "
                "(corrupted or altered)"
            )
    if expected_space is not None:
        expected_space.check_same(space, what=f"the index at {directory}")
    manifest["space"] = space
    return manifest
