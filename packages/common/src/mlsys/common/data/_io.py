"""Shared file helpers for the readers: open plain or gzip files, name files in errors."""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterator
from pathlib import Path

from mlsys.common.errors import CorruptFileError, DatasetNotFoundError, ParseError

__all__ = ["PathLike", "existing_file", "iter_lines", "read_bytes"]

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


def iter_lines(path: PathLike, *, encoding: str = "utf-8", what: str = "file") -> Iterator[tuple[int, str]]:
    """Stream ``(line_number, line)`` pairs (1-based, without the line ending) from a plain or gzip file.

    Lines are split on ``\\n`` only (unlike :meth:`str.splitlines`, which also splits on characters
    such as U+2028 or U+0085 that may legally occur inside a JSON string or a latin-1 title), and
    decoded one by one, so a decoding error names its line. Memory stays at one line.
    """
    p = existing_file(path, what=what)
    with open(p, "rb") as raw:
        compressed = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw) if compressed else raw
        lineno = 0
        try:
            for lineno, data in enumerate(stream, start=1):  # lineno used after the loop
                try:
                    line = data.decode(encoding)
                except UnicodeDecodeError as exc:
                    raise ParseError(
                        f"bytes {data[exc.start : exc.end]!r} are not valid {encoding}; expected {encoding} text",
                        path=p,
                        line=lineno,
                    ) from exc
                yield lineno, line.rstrip("\r\n")
        except (OSError, EOFError, zlib.error) as exc:
            raise CorruptFileError(
                f"{p}: could not read past line {lineno} ({exc}); expected a complete "
                + ("gzip stream" if compressed else "file")
            ) from exc
