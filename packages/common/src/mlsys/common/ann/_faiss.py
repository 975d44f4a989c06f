"""``FaissIndex``: any faiss factory string behind the VectorIndex API.

How ids, deletes and filters map onto faiss:

- **Flat-code indexes** (``Flat``, ``PQ16``, ``SQ8``, ``LSH``) sit in an ``IndexIDMap2``: faiss
  stores the external ids, ``remove_ids`` works, ``reconstruct`` finds vectors by id.
- **IVF indexes** (``IVF1024,Flat``, ``IVF256,PQ16``) store external ids natively, with a hash-table
  direct map so that removal and reconstruction by id work.
- **Graph indexes** (``HNSW32``, ``HNSW32,PQ16``, ``NSG``) and anything else cannot ``remove_ids``:
  they get internal sequential labels, an id map (``labels -> ids``, one numpy fancy-index per
  search) and tombstones that a bitmap ``IDSelector`` hides from searches. Past
  ``rebuild_threshold`` tombstones the index is rebuilt from its live vectors.
- **Training**: an index that needs training (IVF, PQ, SQ) buffers added items in an exact index
  (searches are exact meanwhile) until ``train_size`` items exist, or until :meth:`FaissIndex.train`
  is called; it then trains on what it holds and moves the items in.
- **Filters** use faiss ``SearchParameters(sel=...)`` (``IDSelectorBatch``/``IDSelectorBitmap``),
  with efSearch / nprobe widened for rows that come back short (see ``BaseIndex``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mlsys.common._optional import import_optional
from mlsys.common.ann._base import BaseIndex, CommonConfig, make_config
from mlsys.common.ann._exact import ExactIndex
from mlsys.common.ann._persist import load_npy, save_npy
from mlsys.common.ann._protocol import SearchResult
from mlsys.common.ann._registry import register_index
from mlsys.common.errors import CorruptFileError, InvalidInputError
from mlsys.common.limits import SMALL_K as _SMALL_K
from mlsys.common.spaces import EmbeddingSpace
from mlsys.common.validation import as_vectors

__all__ = ["FaissConfig", "FaissIndex"]

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
_NEG_INF = np.float32(-np.inf)
_F32 = np.dtype(np.float32)
_I64 = np.dtype(np.int64)
_empty = np.empty
_isfinite = math.isfinite


def _faiss() -> Any:
    return import_optional("faiss", package="faiss-cpu", extra="mlsys-common[faiss]")


@dataclass(frozen=True)
class FaissConfig(CommonConfig):
    """Configuration of :class:`FaissIndex`, with mlsys's defaults where faiss's differ.

    Args:
        factory: a faiss ``index_factory`` string: ``"Flat"``, ``"HNSW32"``, ``"IVF1024,Flat"``,
            ``"IVF256,PQ16"``, ``"HNSW32,PQ16"``, ... (ids are managed by mlsys: no ``IDMap``).
        ef_search: HNSW search beam (faiss default 16, which misses recall on most data; 64 here).
        ef_construction: HNSW build beam (faiss default 40; 200 here builds a better graph).
        nprobe: IVF lists probed per query (faiss default 1; 16 here).
        train_size: items buffered before an untrained index trains itself; ``0`` = automatic,
            ``max(1000, 39 x centroids)`` where centroids is the IVF ``nlist`` or the PQ ``ksub``.
        (and the :class:`~mlsys.common.ann.CommonConfig` fields.)

    Example:
        >>> FaissConfig(factory="IVF64,Flat", nprobe=8).nprobe
        8
    """

    factory: str = "HNSW32"
    ef_search: int = 64
    ef_construction: int = 200
    nprobe: int = 16
    train_size: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.factory, str) or not self.factory.strip():
            raise InvalidInputError(f"FaissConfig.factory must be a non-empty string, got {self.factory!r}")
        if self.factory.strip().upper().startswith("IDMAP"):
            raise InvalidInputError(
                f"factory {self.factory!r}: ids are managed by FaissIndex; pass the factory without 'IDMap'"
            )
        for name in ("ef_search", "ef_construction", "nprobe"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"FaissConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.train_size < 0:
            raise InvalidInputError(f"FaissConfig.train_size must be >= 0, got {self.train_size}")


@register_index("faiss")
class FaissIndex(BaseIndex):
    """A faiss index (any factory string) with external ids, deletes, upserts and filters.

    Args:
        space: the embedding space; ``"ip"``/``"cosine"`` use faiss inner product (cosine vectors
            normalised), ``"l2"`` uses squared L2 and scores are its negation.
        factory: faiss ``index_factory`` string (default ``"HNSW32"``).
        **params: other :class:`FaissConfig` fields.

    Example:
        >>> import numpy as np
        >>> from mlsys.common.spaces import EmbeddingSpace
        >>> idx = FaissIndex(EmbeddingSpace("demo", "1", 4, metric="l2"), "HNSW16")
        >>> idx.add(np.arange(3), np.eye(3, 4, dtype=np.float32))
        >>> idx.remove([0])
        >>> idx.search(np.eye(1, 4, dtype=np.float32), k=3)[0].tolist()
        [[1, 2, -1]]
    """

    kind = "faiss"
    config_class = FaissConfig
    _repr_always = ("factory",)
    search_params = (*BaseIndex.search_params, "ef_search", "nprobe")
    _config: FaissConfig

    def __init__(self, space: EmbeddingSpace, factory: str = "HNSW32", **params: Any) -> None:
        super().__init__(space, make_config(FaissConfig, {"factory": factory, **params}))
        self._fx = _faiss()
        self._swig_ptr = self._fx.swig_ptr
        self._metric_type = self._fx.METRIC_L2 if self._metric == "l2" else self._fx.METRIC_INNER_PRODUCT
        base = self._new_base()  # index_factory returns the concrete, owning proxy
        down = base
        self._hnsw = down.hnsw if isinstance(down, self._fx.IndexHNSW) else None
        self._ivf = down if isinstance(down, self._fx.IndexIVF) else None
        if self._ivf is not None:
            self._mode = "ivf"
        elif isinstance(down, self._fx.IndexFlatCodes):
            self._mode = "idmap"
        else:
            self._mode = "tombstone"
        self._inner = down
        self._set_index(self._wrap(down))
        self._needs_training = not base.is_trained
        self._pending: ExactIndex | None = None
        if self._needs_training:
            self._pending = ExactIndex(space, chunk_rows=4096)
        # tombstone mode: label -> external id, -1 for tombstones; one spare slot at the end so
        # that label -1 (faiss padding) maps to id -1 without a branch
        self._ext: I64 = np.full(1025, -1, dtype=np.int64)
        self._n_tomb = 0
        self._live_sel: tuple[Any, Any] | None = None

    # ------------------------------------------------------------------ construction helpers
    def _new_base(self) -> Any:
        try:
            base = self._fx.index_factory(self._dim, self._config.factory, self._metric_type)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
            raise InvalidInputError(
                f"faiss cannot build factory {self._config.factory!r} for dim {self._dim}: {first}"
            ) from None
        return base

    def _wrap(self, down: Any) -> Any:
        if self._mode != "idmap":
            return down
        idmap = self._fx.IndexIDMap2(down)
        # the id map takes ownership of the sub-index, so no Python proxy must keep it alive
        down.this.disown()
        idmap.own_fields = True
        return idmap

    def _set_index(self, index: Any) -> None:
        # ``index`` must be an owning proxy: downcast views below borrow from it
        self._index = index
        down = self._fx.downcast_index(index.index if self._mode == "idmap" else index)
        if self._mode == "idmap":
            self._inner = down
        self._hnsw = down.hnsw if isinstance(down, self._fx.IndexHNSW) else None
        if self._mode == "ivf":
            self._ivf = down
            self._ivf.set_direct_map_type(self._fx.DirectMap.Hashtable)
        if self._hnsw is not None and index.ntotal == 0:
            self._hnsw.efConstruction = self._config.ef_construction
        self._apply_search_params()

    def _apply_search_params(self) -> None:
        if self._hnsw is not None:
            self._hnsw.efSearch = self._config.ef_search
        if self._ivf is not None:
            self._ivf.nprobe = min(self._config.nprobe, self._ivf.nlist)

    @property
    def mode(self) -> str:
        """How ids and deletes are handled: ``"idmap"``, ``"ivf"`` or ``"tombstone"``."""
        return self._mode

    @property
    def is_trained(self) -> bool:
        """Whether the faiss index is trained (untrained indexes buffer items and search exactly)."""
        return self._pending is None

    @property
    def faiss_index(self) -> Any:
        """The underlying faiss index (read-only use; mutate only through this wrapper)."""
        return self._index

    @property
    def n_tombstones(self) -> int:
        """Deleted items still in a graph index, hidden from searches until the next rebuild."""
        return self._n_tomb

    def _centroids(self) -> int:
        c = 1
        objs = [self._inner, self._ivf]
        if self._hnsw is not None:
            objs.append(self._fx.downcast_index(self._inner.storage))
        for obj in objs:
            if obj is None:
                continue
            if isinstance(obj, self._fx.IndexIVF):
                c = max(c, int(obj.nlist))
            pq = getattr(obj, "pq", None)
            if pq is not None:
                c = max(c, int(pq.ksub))
        return c

    @property
    def train_size(self) -> int:
        """Items buffered before automatic training (``config.train_size`` or the automatic value)."""
        return self._config.train_size or max(1000, 39 * self._centroids())

    # ------------------------------------------------------------------ training
    def train(self, vectors: Any = None) -> None:
        """Train the faiss index now, on ``vectors`` or on the buffered items, and move them in.

        Raises:
            InvalidInputError: already trained, or fewer training vectors than centroids.

        Example:
            >>> import numpy as np
            >>> from mlsys.common.spaces import EmbeddingSpace
            >>> idx = FaissIndex(EmbeddingSpace("demo", "1", 8), "IVF4,Flat")
            >>> idx.add(np.arange(100), np.random.default_rng(0).random((100, 8)))
            >>> idx.is_trained
            False
            >>> idx.train()
            >>> idx.is_trained, len(idx)
            (True, 100)
        """
        sample = None
        if vectors is not None:
            sample = as_vectors(vectors, dim=self._dim, name="training vectors")
            if self._cosine:
                from mlsys.common.ann._base import _normalized

                sample = _normalized(sample, "training vectors")
        self._lock.acquire_write()
        try:
            if self._pending is None:
                raise InvalidInputError(f"{self._config.factory!r} index is already trained")
            self._train_and_transfer(sample)
        finally:
            self._lock.release_write()

    def _train_and_transfer(self, sample: F32 | None) -> None:
        assert self._pending is not None
        pending = self._pending
        ids = pending._live_ids()
        vecs = pending._vectors(ids) if ids.size else np.empty((0, self._dim), np.float32)
        if sample is None:
            sample = vecs
        need = self._centroids()
        if sample.shape[0] < need:
            raise InvalidInputError(
                f"training {self._config.factory!r} needs at least {need} vectors, got {sample.shape[0]}"
            )
        try:
            self._index.train(sample)
        except RuntimeError as exc:
            raise InvalidInputError(f"faiss failed to train {self._config.factory!r}: {exc}") from None
        self._pending = None
        self._live.clear()
        if ids.size:
            self._add_new(ids, vecs)

    # ------------------------------------------------------------------ mutation
    def _add_new(self, ids: I64, vecs: F32) -> None:
        if self._pending is not None:
            self._pending._add_new(ids, vecs)
            self._live.update(dict.fromkeys(ids.tolist(), -1))
            return
        n = ids.shape[0]
        if self._mode == "tombstone":
            n0 = self._index.ntotal
            if n0 + n + 1 > self._ext.shape[0]:
                ext = np.full(max(n0 + n + 1, 2 * self._ext.shape[0]), -1, dtype=np.int64)
                ext[:n0] = self._ext[:n0]
                self._ext = ext
            for a, b in self._batches(n, f"faiss {self._config.factory} add"):
                self._index.add(vecs[a:b])
            labels = np.arange(n0, n0 + n, dtype=np.int64)
            self._ext[labels] = ids
            self._live.update(zip(ids.tolist(), labels.tolist()))
            self._live_sel = None
        else:
            for a, b in self._batches(n, f"faiss {self._config.factory} add"):
                self._index.add_with_ids(vecs[a:b], ids[a:b])
            self._live.update(dict.fromkeys(ids.tolist(), 0))

    def _remove_existing(self, ids: I64) -> None:
        if self._pending is not None:
            self._pending._remove_existing(ids)
        elif self._mode == "tombstone":
            labels = np.fromiter((self._live[i] for i in ids.tolist()), dtype=np.int64, count=ids.shape[0])
            self._ext[labels] = -1
            self._n_tomb += int(labels.shape[0])
            self._live_sel = None
        else:
            self._index.remove_ids(ids)
        for i in ids.tolist():
            del self._live[i]

    def _after_write(self) -> None:
        if self._pending is not None:
            if len(self._pending) >= self.train_size:
                self._train_and_transfer(None)
        elif self._n_tomb and self._n_tomb > self._config.rebuild_threshold * self._index.ntotal:
            self.rebuild()

    def rebuild(self) -> None:
        """Rebuild a graph index from its live vectors, dropping tombstones.

        Called automatically (under the write lock) once tombstones pass ``rebuild_threshold``;
        quantised storage (``HNSW32,PQ16``) keeps its trained codebooks.
        """
        if self._mode != "tombstone" or self._pending is not None:
            return
        ntotal = self._index.ntotal
        labels = np.flatnonzero(self._ext[:ntotal] >= 0)
        ids = self._ext[labels]
        vecs = self._index.reconstruct_batch(labels) if labels.size else np.empty((0, self._dim), np.float32)
        if self._needs_training:
            fresh = self._fx.clone_index(self._index)
            fresh.reset()
        else:
            fresh = self._wrap(self._new_base())
        self._ext = np.full(max(1025, 2 * ids.shape[0] + 1), -1, dtype=np.int64)
        self._n_tomb = 0
        self._live_sel = None
        self._live.clear()
        self._set_index(fresh)
        if ids.size:
            self._add_new(ids, np.ascontiguousarray(vecs, dtype=np.float32))

    # ------------------------------------------------------------------ search
    def _finish(self, d: F32, labels: I64) -> SearchResult:
        ids = self._ext[labels] if self._mode == "tombstone" else labels
        if self._metric == "l2":
            np.negative(d, out=d)
        return ids, d

    def _search_all(self, q: F32, k: int) -> SearchResult:
        if self._pending is not None:
            return self._pending._search_all(q, k)
        if self._n_tomb:
            ids, scores = self._search_native(q, k, None, None, 1)
        else:
            d, labels = self._index.search(q, k)
            ids = self._ext[labels] if self._mode == "tombstone" else labels
            if self._metric == "l2":
                np.negative(d, out=d)
            scores = d
            # padding appears at the end of a row; most searches skip the fix-up below
            if labels[0, -1] >= 0 if labels.shape[0] == 1 else labels[:, -1].min() >= 0:
                return ids, scores
            scores[ids < 0] = _NEG_INF
        n = len(self._live)
        return self._complete_rows(q, k, ids, scores, None, None, n, tried=1)

    def search(
        self,
        queries: Any,
        k: int,
        *,
        allow: Any = None,
        deny: Any = None,
        space: EmbeddingSpace | None = None,
    ) -> SearchResult:
        """Top-``k`` ids and scores per query; see :meth:`BaseIndex.search <mlsys.common.ann.BaseIndex.search>`.

        An unfiltered search of ready queries (C-contiguous float32 of the right width) on a
        trained index without tombstones runs in this one Python frame around faiss's
        ``search``: the raw call, one fancy-index from labels to ids (graph indexes), and a
        negation for L2. Anything else takes the general path.

        Example:
            >>> from mlsys.common.spaces import EmbeddingSpace
            >>> idx = FaissIndex(EmbeddingSpace("demo", "1", 2, metric="ip"), "Flat")
            >>> idx.add([4, 5], np.eye(2, dtype=np.float32))
            >>> idx.search(np.array([[1.0, 0.0]], dtype=np.float32), k=1)[0].tolist()
            [[4]]
        """
        if (
            allow is None
            and deny is None
            and space is None
            and type(queries) is np.ndarray
            and queries.dtype is _F32
            and len(shape := queries.shape) == 2
            and shape[1] == self._dim
            and shape[0]
            and queries.flags.c_contiguous
            and type(k) is int
            and 0 < k <= _SMALL_K
            and not self._normalize_queries
        ):
            lock = self._lock
            active = lock._active
            try:
                # RWLock's reader fast path, inlined (see RWLock); registering as the first
                # statement of the try means a Ctrl-C delivered right after it still unregisters
                active.append(None)
                if not lock._writer and self._pending is None and not self._n_tomb and self._live:
                    # faiss's Python ``search`` re-checks and re-converts what was checked above,
                    # then calls the SWIG ``search_c``: call that directly (same C++ call).
                    n = shape[0]
                    d = _empty((n, k), _F32)
                    labels = _empty((n, k), _I64)
                    sp = self._swig_ptr
                    self._index.search_c(n, sp(queries), k, sp(d), sp(labels), None)
                    if (labels.item(-1) >= 0) if n == 1 else (labels[:, -1].min() >= 0):
                        ids = self._ext[labels] if self._mode == "tombstone" else labels
                        if self._metric == "l2":
                            np.negative(d, d)
                        if n == 1 and _isfinite(d.item(0)):
                            return ids, d
                        if n > 1 and np.isfinite(d[:, 0]).all():
                            return ids, d
                        as_vectors(queries, dim=self._dim, name="queries")  # raises for NaN/inf
                        return ids, d
            finally:
                active.pop()  # RWLock.release_read, inlined
                if lock._writer:
                    lock.wake_writer()
        return BaseIndex.search(self, queries, k, allow=allow, deny=deny, space=space)

    def _selector(self, allowed: I64 | None, denied: I64 | None) -> tuple[Any, list[Any]]:
        """A faiss IDSelector over this index's labels, plus the objects it keeps pointers to."""
        fx = self._fx
        if self._mode == "tombstone":
            if allowed is None and denied is None and self._live_sel is not None:
                return self._live_sel[0], [self._live_sel[1]]
            ntotal = self._index.ntotal
            if allowed is not None:
                mask = np.zeros(ntotal, dtype=bool)
                mask[self._labels(allowed)] = True
            else:
                mask = self._ext[:ntotal] >= 0
                if denied is not None:
                    mask[self._labels(denied)] = False
            bits = np.packbits(mask, bitorder="little")
            sel = fx.IDSelectorBitmap(ntotal, fx.swig_ptr(bits))
            if allowed is None and denied is None:
                self._live_sel = (sel, bits)
            return sel, [bits]
        if allowed is not None:
            return fx.IDSelectorBatch(allowed), []
        if denied is None:
            return None, []
        inner = fx.IDSelectorBatch(denied)
        return fx.IDSelectorNot(inner), [inner]

    def _labels(self, ids: I64) -> I64:
        live = self._live
        return np.fromiter((live[i] for i in ids.tolist()), dtype=np.int64, count=ids.shape[0])

    def _search_native(
        self, q: F32, k: int, allowed: I64 | None, denied: I64 | None, widen: int
    ) -> SearchResult:
        if self._pending is not None:
            return self._pending._search_native(q, k, allowed, denied, widen)
        fx = self._fx
        cfg = self._config
        sel, keep = self._selector(allowed, denied)
        ntotal = self._index.ntotal
        if self._hnsw is not None:
            params = fx.SearchParametersHNSW(sel=sel, efSearch=min(max(ntotal, k), cfg.ef_search * widen))
        elif self._ivf is not None:
            params = fx.SearchParametersIVF(sel=sel, nprobe=min(self._ivf.nlist, cfg.nprobe * widen))
        else:
            params = fx.SearchParameters(sel=sel)
        d, labels = self._index.search(q, k, params=params)
        del keep  # the selector's buffers must outlive the search call
        ids, scores = self._finish(d, labels)
        scores[ids < 0] = _NEG_INF
        return ids, scores

    def _widen_limit(self) -> int:
        if self._pending is not None:
            return 1
        if self._hnsw is not None:
            return math.ceil(max(self._index.ntotal, 1) / self._config.ef_search)
        if self._ivf is not None:
            return math.ceil(self._ivf.nlist / self._config.nprobe)
        return 1

    def _exact_cost_limit(self) -> float:
        if self._pending is not None:
            return math.inf
        n = len(self._live)
        if self._hnsw is not None:
            return math.sqrt(self._config.ef_search * self._hnsw.nb_neighbors(0) * n)
        if self._ivf is not None:
            return n * math.sqrt(min(1.0, self._config.nprobe / self._ivf.nlist))
        return 0.0

    def _vectors(self, ids: I64) -> F32:
        if self._pending is not None:
            return self._pending._vectors(ids)
        keys = self._labels(ids) if self._mode == "tombstone" else ids
        return np.ascontiguousarray(self._index.reconstruct_batch(keys), dtype=np.float32)

    # ------------------------------------------------------------------ persistence
    def _libraries(self) -> dict[str, str]:
        return {**super()._libraries(), "faiss": str(self._fx.__version__)}

    def _state(self, directory: Path) -> dict[str, Any]:
        if self._pending is not None:
            ids = self._pending._live_ids()
            save_npy(directory, "ids.npy", ids)
            save_npy(directory, "vectors.npy", self._pending._vectors(ids))
            return {"mode": self._mode, "trained": False}
        self._fx.write_index(self._index, str(directory / "index.faiss"))
        if self._mode == "tombstone":
            save_npy(directory, "labels.npy", self._ext[: self._index.ntotal])
        else:
            save_npy(directory, "ids.npy", np.fromiter(self._live, dtype=np.int64, count=len(self._live)))
        return {"mode": self._mode, "trained": True, "n_tombstones": self._n_tomb}

    @classmethod
    def _restore(
        cls, directory: Path, space: EmbeddingSpace, config: Any, manifest: dict[str, Any]
    ) -> FaissIndex:
        cfg = asdict(config)
        index = cls(space, **cfg)
        state = manifest["state"]
        if state.get("mode") != index._mode:
            raise CorruptFileError(f"{directory}: mode {state.get('mode')!r} does not match {index._mode!r}")
        if not state.get("trained"):
            ids, vecs = load_npy(directory, "ids.npy"), load_npy(directory, "vectors.npy")
            if ids.dtype != np.int64 or vecs.dtype != np.float32 or vecs.shape != (ids.shape[0], space.dim):
                raise CorruptFileError(f"{directory}: buffered ids/vectors have unexpected shape or dtype")
            if index._pending is None:
                raise CorruptFileError(f"{directory}: buffered items for an index that needs no training")
            if ids.size:
                index._add_new(ids, vecs)
            return index
        fx = index._fx
        try:
            native = fx.read_index(str(directory / "index.faiss"))
        except RuntimeError as exc:
            raise CorruptFileError(
                f"{directory / 'index.faiss'} is not a readable faiss index: {exc}"
            ) from None
        if native.d != space.dim or native.metric_type != index._metric_type:
            raise CorruptFileError(
                f"{directory}: faiss index has dim {native.d} / metric {native.metric_type}, "
                f"expected {space.dim} / {index._metric_type}"
            )
        index._pending = None
        index._set_index(native)  # keep the owning proxy; downcast views would dangle
        if index._mode == "tombstone":
            labels = load_npy(directory, "labels.npy")
            if labels.dtype != np.int64 or labels.shape != (native.ntotal,):
                raise CorruptFileError(
                    f"{directory}: labels.npy is {labels.dtype}{labels.shape}, expected int64 ({native.ntotal},)"
                )
            index._ext = np.full(max(1025, 2 * labels.shape[0] + 1), -1, dtype=np.int64)
            index._ext[: labels.shape[0]] = labels
            live = np.flatnonzero(labels >= 0)
            index._live = dict(zip(labels[live].tolist(), live.tolist()))
            index._n_tomb = int(labels.shape[0] - live.shape[0])
        else:
            ids = load_npy(directory, "ids.npy")
            if ids.dtype != np.int64 or ids.shape != (native.ntotal,):
                raise CorruptFileError(
                    f"{directory}: ids.npy is {ids.dtype}{ids.shape}, expected int64 ({native.ntotal},)"
                )
            index._live = dict.fromkeys(ids.tolist(), 0)
        return index
