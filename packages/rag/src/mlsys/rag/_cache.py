"""On-disk embedding cache keyed by ``(space_id, sha256(text))``.

A corpus that did not change is never encoded twice: the cache remembers every vector an embedder
produced, under the id of the :class:`~mlsys.common.spaces.EmbeddingSpace` that produced it and the
sha256 of the exact string that was encoded (prefix included). The payload is a SQLite file of raw
little-endian float32 blobs: no pickle, safe to share between processes (SQLite locks), and a
crashed run keeps every batch it committed.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from mlsys.common.data import cache_root
from mlsys.common.errors import CorruptFileError, InvalidInputError
from mlsys.common.spaces import EmbeddingSpace
from mlsys.common.validation import as_vectors

__all__ = ["EmbeddingCache", "default_cache_dir", "text_sha256"]

_SCHEMA_VERSION = 1


def default_cache_dir() -> Path:
    """``$MLSYS_CACHE_DIR`` if set, else ``~/.cache/mlsys`` (:func:`mlsys.common.data.cache_root`).

    Example:
        >>> default_cache_dir().name in ("mlsys",) or "MLSYS_CACHE_DIR" in __import__("os").environ
        True
    """
    return cache_root()


def text_sha256(text: str) -> str:
    """Hex sha256 of the UTF-8 bytes of ``text`` (the cache and content-hash key).

    Example:
        >>> text_sha256("abc")[:12]
        'ba7816bf8f01'
    """
    if not isinstance(text, str):
        raise InvalidInputError(f"text must be a str, got {type(text).__name__}")
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class EmbeddingCache:
    """A persistent map ``(space, text) -> float32 vector`` in one SQLite file.

    Args:
        path: the SQLite file; default ``<default_cache_dir()>/embeddings.sqlite``. Parent folders
            are created.

    Vectors are stored as raw float32 bytes; reading checks each blob has exactly ``space.dim``
    floats and raises :class:`CorruptFileError` otherwise. Spaces are recorded with their full
    description so a cache file can be inspected (:meth:`spaces`).

    Example:
        >>> import tempfile, numpy as np
        >>> from mlsys.common.spaces import EmbeddingSpace
        >>> space = EmbeddingSpace("toy", "v1", 2)
        >>> cache = EmbeddingCache(tempfile.mkdtemp() + "/e.sqlite")
        >>> cache.put(space, ["a"], np.ones((1, 2), np.float32))
        >>> vecs, found = cache.get(space, ["a", "b"])
        >>> found.tolist(), vecs[0].tolist()
        ([True, False], [1.0, 1.0])
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_dir() / "embeddings.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), timeout=60.0, check_same_thread=False)
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            with self._conn:
                self._conn.execute(
                    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
                )
                self._conn.execute(
                    "CREATE TABLE IF NOT EXISTS spaces (space_id TEXT PRIMARY KEY, description TEXT NOT NULL)"
                )
                self._conn.execute(
                    "CREATE TABLE IF NOT EXISTS embeddings (space_id TEXT NOT NULL, text_sha256 TEXT NOT NULL, "
                    "vector BLOB NOT NULL, PRIMARY KEY (space_id, text_sha256)) WITHOUT ROWID"
                )
                self._conn.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                    (str(_SCHEMA_VERSION),),
                )
            row = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise CorruptFileError(f"{self.path}: not a readable embedding cache ({exc})") from exc
        if row is None or row[0] != str(_SCHEMA_VERSION):
            self._conn.close()
            raise CorruptFileError(
                f"{self.path}: embedding cache schema version {row[0] if row else None!r}, "
                f"expected {_SCHEMA_VERSION}"
            )

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.path)!r})"

    def get(
        self, space: EmbeddingSpace, texts: Sequence[str]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
        """Look up ``texts``; return ``(vectors (n, dim), found (n,))`` (rows not found are zero)."""
        out = np.zeros((len(texts), space.dim), dtype=np.float32)
        found = np.zeros(len(texts), dtype=bool)
        if not texts:
            return out, found
        keys = [text_sha256(t) for t in texts]
        rows: dict[str, bytes] = {}
        sid = space.space_id
        with self._lock:
            for start in range(0, len(keys), 500):
                part = keys[start : start + 500]
                marks = ",".join("?" * len(part))
                cur = self._conn.execute(
                    f"SELECT text_sha256, vector FROM embeddings WHERE space_id=? AND text_sha256 IN ({marks})",
                    (sid, *part),
                )
                rows.update(cur.fetchall())
        width = space.dim * 4
        for i, key in enumerate(keys):
            blob = rows.get(key)
            if blob is None:
                continue
            if len(blob) != width:
                raise CorruptFileError(
                    f"{self.path}: cached vector for space {sid} has {len(blob)} bytes, expected {width} "
                    f"({space.dim} float32)"
                )
            out[i] = np.frombuffer(blob, dtype="<f4")
            found[i] = True
        return out, found

    def put(self, space: EmbeddingSpace, texts: Sequence[str], vectors: npt.ArrayLike) -> None:
        """Store one vector per text (an existing entry is overwritten)."""
        vecs = as_vectors(vectors, dim=space.dim, allow_empty=True)
        if vecs.shape[0] != len(texts):
            raise InvalidInputError(f"got {vecs.shape[0]} vectors for {len(texts)} texts; expected one each")
        sid = space.space_id
        little = vecs.astype("<f4", copy=False)
        rows = [(sid, text_sha256(t), little[i].tobytes()) for i, t in enumerate(texts)]
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT OR IGNORE INTO spaces (space_id, description) VALUES (?, ?)",
                (sid, json.dumps(space.to_dict(), sort_keys=True)),
            )
            self._conn.executemany(
                "INSERT OR REPLACE INTO embeddings (space_id, text_sha256, vector) VALUES (?, ?, ?)", rows
            )

    def count(self, space: EmbeddingSpace | None = None) -> int:
        """Number of cached vectors, for one space or in total."""
        with self._lock:
            if space is None:
                row = self._conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()
            else:
                row = self._conn.execute(
                    "SELECT COUNT(*) FROM embeddings WHERE space_id=?", (space.space_id,)
                ).fetchone()
        return int(row[0])

    def spaces(self) -> list[EmbeddingSpace]:
        """The spaces that have vectors in this cache."""
        with self._lock:
            rows = self._conn.execute("SELECT description FROM spaces ORDER BY space_id").fetchall()
        return [EmbeddingSpace.from_dict(json.loads(r[0])) for r in rows]

    def clear(self, space: EmbeddingSpace | None = None) -> None:
        """Drop the vectors of one space, or everything."""
        with self._lock, self._conn:
            if space is None:
                self._conn.execute("DELETE FROM embeddings")
                self._conn.execute("DELETE FROM spaces")
            else:
                self._conn.execute("DELETE FROM embeddings WHERE space_id=?", (space.space_id,))
                self._conn.execute("DELETE FROM spaces WHERE space_id=?", (space.space_id,))

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()

    def __getstate__(self) -> dict[str, str]:
        # Picklable for process pools / Ray: reconnect on the other side.
        return {"path": str(self.path)}

    def __setstate__(self, state: dict[str, str]) -> None:
        self.__init__(state["path"])  # type: ignore[misc]
