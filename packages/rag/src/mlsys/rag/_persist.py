"""Directory persistence helpers: ``manifest.json`` with class, format version, config and checksums.

Loading verifies the manifest's class, every listed file's sha256, and never executes code (the
payloads are ``.npy`` read with ``allow_pickle=False`` and JSON).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from mlsys.common.errors import CorruptFileError

__all__ = ["file_sha256", "read_manifest", "write_manifest"]

MANIFEST = "manifest.json"


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
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
    """Write ``manifest.json`` listing ``files`` (relative to ``directory``) with their sha256."""
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


def read_manifest(directory: Path, *, cls: str) -> dict[str, Any]:
    """Read and verify ``manifest.json``: class name and the checksum of every listed file."""
    path = directory / MANIFEST
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
    for name, expected in manifest["checksums"].items():
        f = directory / name
        if not f.is_file():
            raise CorruptFileError(f"{directory}: payload {name} listed in the manifest is missing")
        got = file_sha256(f)
        if got != expected:
            raise CorruptFileError(
                f"{f}: sha256 {got[:16]}... does not match the manifest's {expected[:16]}...; "
                "the file was modified or truncated"
            )
    return manifest
