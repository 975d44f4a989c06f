"""``ExactIndex``: brute-force search with numpy/BLAS, the reference every other backend is tested against."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mlsys.common.ann._base import BaseIndex, CommonConfig, make_config
from mlsys.common.ann._persist import load_npy, save_npy
from mlsys.common.ann._protocol import SearchResult
from mlsys.common.ann._registry import register_index
from mlsys.common.ann._topk import exact_topk
from mlsys.common.errors import CorruptFileError, InvalidInputError
from mlsys.common.spaces import EmbeddingSpace

__all__ = ["ExactConfig", "ExactIndex"]

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ExactConfig(CommonConfig):
    """Configuration of :class:`ExactIndex`.

    The :class:`~mlsys.common.ann.CommonConfig` fields apply too; ``rebuild_threshold`` is the
    fraction of free slots at which storage is compacted.

    Args:
        chunk_rows: database rows scored per block; with ``query_block`` it bounds the score
            matrix held in memory (default 16384 x 1024 float32 = 64 MiB).
        query_block: queries scored per block.
        initial_capacity: rows allocated up front (storage doubles when full).

    Example:
        >>> ExactConfig(chunk_rows=4096).query_block
        1024
    """

    chunk_rows: int = 16384
    query_block: int = 1024
    initial_capacity: int = 1024

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("chunk_rows", "query_block", "initial_capacity"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"ExactConfig.{name} must be >= 1, got {getattr(self, name)}")


@register_index("exact")
class ExactIndex(BaseIndex):
    """Exact top-k search: blocked matrix products plus ``argpartition``, memory bounded.

    Vectors live in a growable slot array; removal frees a slot for reuse and the storage is
    compacted once free slots pass ``rebuild_threshold``. Scores are the inner product, the cosine
    (vectors normalised on the way in) or the negative squared L2 distance.

    Args:
        space: the embedding space (dimension and metric).
        **params: :class:`ExactConfig` fields.

    Example:
        >>> from mlsys.common.spaces import EmbeddingSpace
        >>> idx = ExactIndex(EmbeddingSpace("demo", "1", 2, metric="l2"))
        >>> idx.add([1, 2], [[0.0, 0.0], [3.0, 4.0]])
        >>> idx.search([[3.0, 4.0]], k=2)[1].tolist()
        [[0.0, -25.0]]
    """

    kind = "exact"
    config_class = ExactConfig
    search_params = (*BaseIndex.search_params, "chunk_rows", "query_block")
    _config: ExactConfig

    def __init__(self, space: EmbeddingSpace, **params: Any) -> None:
        super().__init__(space, make_config(ExactConfig, params))
        cap = self._config.initial_capacity
        self._vecs: F32 = np.zeros((cap, self._dim), dtype=np.float32)
        self._sq: F32 = np.zeros(cap, dtype=np.float32)
        self._ext: I64 = np.full(cap + 1, -1, dtype=np.int64)  # last entry: sentinel for row -1
        self._hi = 0
        self._free: list[int] = []

    # ------------------------------------------------------------------ storage
    def _grow(self, need: int) -> None:
        cap = self._vecs.shape[0]
        if need <= cap:
            return
        new_cap = max(need, 2 * cap)
        vecs = np.zeros((new_cap, self._dim), dtype=np.float32)
        vecs[: self._hi] = self._vecs[: self._hi]
        sq = np.zeros(new_cap, dtype=np.float32)
        sq[: self._hi] = self._sq[: self._hi]
        ext = np.full(new_cap + 1, -1, dtype=np.int64)
        ext[: self._hi] = self._ext[: self._hi]
        self._vecs, self._sq, self._ext = vecs, sq, ext

    def _add_new(self, ids: I64, vecs: F32) -> None:
        n = ids.shape[0]
        reuse = min(n, len(self._free))
        slots = np.empty(n, dtype=np.int64)
        if reuse:
            slots[:reuse] = self._free[-reuse:]
            del self._free[-reuse:]
        fresh = n - reuse
        if fresh:
            self._grow(self._hi + fresh)
            slots[reuse:] = np.arange(self._hi, self._hi + fresh)
            self._hi += fresh
        self._write_rows(slots, vecs)
        self._ext[slots] = ids
        self._live.update(zip(ids.tolist(), slots.tolist()))

    def _write_rows(self, slots: I64, vecs: F32) -> None:
        self._vecs[slots] = vecs
        if self._metric == "l2":
            self._sq[slots] = np.einsum("ij,ij->i", vecs, vecs)

    def _slots(self, ids: I64) -> I64:
        live = self._live
        return np.fromiter((live[i] for i in ids.tolist()), dtype=np.int64, count=ids.shape[0])

    def _replace(self, ids: I64, vecs: F32) -> None:
        self._write_rows(self._slots(ids), vecs)

    def _remove_existing(self, ids: I64) -> None:
        slots = self._slots(ids)
        self._ext[slots] = -1
        self._free.extend(slots.tolist())
        for i in ids.tolist():
            del self._live[i]

    def _after_write(self) -> None:
        if self._free and len(self._free) > self._config.rebuild_threshold * self._hi:
            self.compact()

    def compact(self) -> None:
        """Move live rows to the front and drop free slots (called automatically; safe to call).

        Callers outside a write already holding the lock should not call this concurrently with
        searches; :meth:`add`/:meth:`remove` call it under the write lock.
        """
        keep = np.flatnonzero(self._ext[: self._hi] >= 0)
        n = keep.shape[0]
        self._vecs[:n] = self._vecs[keep]
        self._sq[:n] = self._sq[keep]
        ids = self._ext[keep]
        self._ext[:n] = ids
        self._ext[n : self._hi] = -1
        self._hi = n
        self._free = []
        self._live = dict(zip(ids.tolist(), range(n)))

    # ------------------------------------------------------------------ search
    def _topk(self, q: F32, k: int, valid: npt.NDArray[np.bool_] | None) -> SearchResult:
        hi = self._hi
        rows, scores = exact_topk(
            q,
            self._vecs[:hi],
            k,
            self._metric,
            db_sqnorms=self._sq[:hi] if self._metric == "l2" else None,
            valid=valid,
            chunk_rows=self._config.chunk_rows,
            query_block=self._config.query_block,
        )
        return self._ext[rows], scores

    def _search_all(self, q: F32, k: int) -> SearchResult:
        valid = (self._ext[: self._hi] >= 0) if self._free else None
        return self._topk(q, k, valid)

    def _search_native(
        self, q: F32, k: int, allowed: I64 | None, denied: I64 | None, widen: int
    ) -> SearchResult:
        ext = self._ext[: self._hi]
        valid = ext >= 0
        if allowed is not None:
            valid &= np.isin(ext, allowed)
        if denied is not None:
            valid &= ~np.isin(ext, denied)
        return self._topk(q, k, valid)

    def _vectors(self, ids: I64) -> F32:
        return self._vecs[self._slots(ids)]

    # ------------------------------------------------------------------ persistence
    def _state(self, directory: Path) -> dict[str, Any]:
        keep = np.flatnonzero(self._ext[: self._hi] >= 0)
        save_npy(directory, "ids.npy", self._ext[keep])
        save_npy(directory, "vectors.npy", self._vecs[keep])
        return {}

    @classmethod
    def _restore(
        cls, directory: Path, space: EmbeddingSpace, config: Any, manifest: dict[str, Any]
    ) -> ExactIndex:
        ids = load_npy(directory, "ids.npy")
        vecs = load_npy(directory, "vectors.npy")
        if ids.dtype != np.int64 or vecs.dtype != np.float32 or vecs.shape != (ids.shape[0], space.dim):
            raise CorruptFileError(
                f"{directory}: ids {ids.dtype}{ids.shape} / vectors {vecs.dtype}{vecs.shape} do not match "
                f"the manifest (expected int64 (n,) and float32 (n, {space.dim}))"
            )
        from dataclasses import asdict

        index = cls(space, **asdict(config))
        if ids.size:
            index._add_new(ids, vecs)
        return index
