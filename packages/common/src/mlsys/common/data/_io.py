"""Shared file helpers for the readers: open plain or gzip files, name files in errors."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

from mlsys.common.errors import CorruptFileError, DatasetNotFoundError, ParseError

__all__ = ["PathLike", "existing_file", "read_bytes", "read_text"]

PathLike = str | os.PathLike[str]

_GZIP_MAGIC = b"\x1f\x8b"


def existing_file(path: PathLike, *, what: str = "file") -> Path:
    """Return ``path`` as a :class:`Path` or raise :class:`DatasetNotFoundError` naming it."""
    p = Path(path)
    if not p.is_file():
        raise DatasetNotFoundError(f"{what} not found: {p} (expected an existing file)")
    return p


def read_bytes(path: PathLike, *, what: str = "file") -> bytes:
    """Read a whole file, transparently decompressing gzip (detected by its magic bytes, not its name).

    A truncated or damaged gzip stream raises :class:`CorruptFileError` naming the file.
    """
    p = existing_file(path, what=what)
    raw = p.read_bytes()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise CorruptFileError(
            f"{p}: damaged or truncated gzip stream ({exc}); expected a valid .gz file"
        ) from exc


def read_text(path: PathLike, *, encoding: str = "utf-8", what: str = "file") -> str:
    """Read a (possibly gzipped) text file; undecodable bytes raise :class:`ParseError` with the line."""
    data = read_bytes(path, what=what)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ParseError(
            f"bytes {data[exc.start : exc.end]!r} are not valid {encoding}; expected {encoding} text",
            path=path,
            line=line,
        ) from exc
