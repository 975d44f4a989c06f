"""Directory persistence shared by the domain packages: ``manifest.json`` with class, format
version, config and a sha256 of every payload file.

:func:`read_manifest` verifies the class and every listed file's checksum before any payload is
parsed, so a truncated or altered file is refused with
:class:`~mlsys.common.errors.CorruptFileError` instead of reaching a native reader. Nothing here
executes code from a file: payloads are JSON, ``.npy``/``.npz`` read with ``allow_pickle=False``,
safetensors, or a library's own text format. (ANN indexes have their own, richer manifest in
:mod:`mlsys.common.ann`.)

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "w.txt").write_text("42")
    >>> write_manifest(d, cls="Demo", format_version=1, config={"k": 3}, files=["w.txt"])
    >>> read_manifest(d, cls="Demo")["config"]
    {'k': 3}
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mlsys.common.errors import CorruptFileError, InvalidInputError

__all__ = ["MANIFEST", "atomic_directory", "file_sha256", "read_manifest", "write_manifest"]

MANIFEST = "manifest.json"
"""File name of the manifest inside a saved directory."""


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(
    directory: Path,
    *,
    cls: str,
    format_version: int,
    config: dict[str, Any],
    files: list[str],
    extra: dict[str, Any] | None = None,
) -> None:
    """Write ``manifest.json`` listing ``files`` (names inside ``directory``) with their sha256.

    The manifest is written to a temporary name and moved into place, so a reader never sees a
    half-written one.
    """
    manifest = {
        "format_version": format_version,
        "class": cls,
        "config": config,
        "checksums": {name: file_sha256(directory / name) for name in files},
        **(extra or {}),
    }
    tmp = directory / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False), encoding="utf-8")
    tmp.replace(directory / MANIFEST)


def _inside(name: str) -> bool:
    p = Path(name)
    return bool(name) and not p.is_absolute() and ".." not in p.parts


def read_manifest(directory: Path, *, cls: str) -> dict[str, Any]:
    """Read and verify ``manifest.json``: the class name and the checksum of every listed file.

    Raises:
        CorruptFileError: no manifest, unreadable or non-object JSON, another class's directory,
            a missing key (``format_version``, ``config``, ``checksums``), a payload name outside
            the directory (absolute or with ``..``), a missing payload or one whose sha256 differs.
    """
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise CorruptFileError(f"{directory}: no {MANIFEST}; expected a directory written by {cls}.save")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise CorruptFileError(f"{path}: unreadable manifest ({str(exc)[:200]})") from None
    if not isinstance(manifest, dict) or manifest.get("class") != cls:
        got = manifest.get("class") if isinstance(manifest, dict) else type(manifest).__name__
        raise CorruptFileError(f"{path}: manifest is for {got!r}, expected {cls!r}")
    for key in ("format_version", "config", "checksums"):
        if key not in manifest:
            raise CorruptFileError(f"{path}: manifest lacks {key!r}")
    checksums = manifest["checksums"]
    if not isinstance(checksums, dict) or not all(
        isinstance(n, str) and isinstance(h, str) and _inside(n) for n, h in checksums.items()
    ):
        raise CorruptFileError(
            f"{path}: 'checksums' must map relative paths inside the directory (no '..') to sha256 hex"
        )
    for name, expected in checksums.items():
        f = Path(directory) / name
        if not f.is_file():
            raise CorruptFileError(f"{directory}: payload {name} listed in the manifest is missing")
        got = file_sha256(f)
        if got != expected:
            raise CorruptFileError(
                f"{f}: sha256 {got[:16]}... does not match the manifest's {expected[:16]}...; "
                "the file was modified or truncated"
            )
    return manifest


class atomic_directory:
    """Build a directory under a temporary name and move it into place on success.

    An existing saved directory at ``path`` is replaced only after the new one is complete (a
    failed save leaves it as it was); a non-empty directory without a manifest is refused rather
    than overwritten.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.exists():
            if not self.path.is_dir():
                raise InvalidInputError(f"cannot save to {self.path}: it exists and is not a directory")
            if any(self.path.iterdir()) and not (self.path / MANIFEST).exists():
                raise InvalidInputError(
                    f"cannot save to {self.path}: non-empty directory without {MANIFEST}; "
                    "expected a new path or a saved directory to replace"
                )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=self.path.parent))

    def __enter__(self) -> Path:
        return self.tmp

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        old = None
        if self.path.exists():
            old = self.path.with_name(self.tmp.name + ".old")
            os.replace(self.path, old)
        os.replace(self.tmp, self.path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
