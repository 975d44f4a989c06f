"""Shared file helpers for the readers: open plain or gzip files, name files in errors."""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterator
from pathlib import Path

from mlsys.common.errors import CorruptFileError, DatasetNotFoundError, ParseError
from mlsys.common.limits import check_inflated_size, get_limits

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

    A truncated or damaged gzip stream raises :class:`CorruptFileError` naming the file; one that
    inflates to more than ``Limits.max_inflated_bytes`` raises
    :class:`~mlsys.common.errors.LimitExceededError` after inflating at most that much.
    """
    p = existing_file(path, what=what)
    raw = p.read_bytes()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    limit = get_limits().max_inflated_bytes
    parts: list[bytes] = []
    total = 0
    data = raw
    try:
        while data:
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out = d.decompress(data, limit + 1 - total)
            total += len(out)
            check_inflated_size(total, source=str(p))
            parts.append(out)
            if not d.eof:
                raise EOFError("compressed stream ended before the end-of-stream marker")
            data = d.unused_data
            if data[:2] != _GZIP_MAGIC and not data.strip(b"\x00"):
                break  # trailing zero padding, as gzip.decompress allows
    except (OSError, EOFError, zlib.error) as exc:
        raise CorruptFileError(
            f"{p}: damaged or truncated gzip stream ({exc}); expected a valid .gz file"
        ) from exc
    return b"".join(parts)


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
        # a gzip stream inflates at most max_inflated_bytes (+1 to see that it is over)
        limit = get_limits().max_inflated_bytes if compressed else -1
        inflated = 0
        try:
            while data := stream.readline(limit - inflated + 1 if compressed else -1):
                lineno += 1
                if compressed:
                    inflated += len(data)
                    check_inflated_size(inflated, source=str(p))
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
