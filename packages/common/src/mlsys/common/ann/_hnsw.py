"""``HNSWIndex``: hnswlib behind the VectorIndex API.

hnswlib labels are the external ids themselves (hnswlib returns them as uint64; a zero-copy
``view(np.int64)`` turns them back), so the hot path translates nothing. Deletes use
``mark_deleted``; new items reuse deleted slots (``allow_replace_deleted`` / ``replace_deleted``),
and an id that comes back after removal is un-marked and updated in place when its old slot was
not reused yet. Upserts of live ids update the vector and its graph links in place. In-place
updates degrade the graph as deletes do (hnswlib re-links the neighbourhood locally, and can leave
a node unreachable), so they count toward ``rebuild_threshold`` with the deleted slots: past it the
graph is rebuilt from the live vectors. An index of at most ``ef`` live items, whose every search
walks the whole graph and should therefore be exact, is rebuilt after any in-place update (cheap
at that size).

Threads: adds and unfiltered batch searches use every core by default (``num_threads=-1``, as
hnswlib itself). A query's result does not depend on the thread count (each query is one
independent graph walk; tested), but a multi-threaded build inserts items in a racy order, so the
graph, and hence approximate results, can differ from build to build. ``num_threads=1`` makes a
build reproducible for a given ``seed``, at the price of a build and a batch search about
``n_cores`` times slower (1.8-1.9x and 1.9-2.0x on the 2-core benchmark machine, see
``benchmarks/common/README.md``).

hnswlib is an optional extra (it builds from source on some platforms):
``pip install 'mlsys-common[hnsw]'``.
"""

from __future__ import annotations

import math
import os
import sysconfig
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mlsys.common._optional import import_optional
from mlsys.common.ann._base import BaseIndex, CommonConfig, make_config
from mlsys.common.ann._filter import padding
from mlsys.common.ann._persist import load_npy, save_npy
from mlsys.common.ann._protocol import SearchResult
from mlsys.common.ann._registry import register_index
from mlsys.common.errors import CorruptFileError, InvalidInputError
from mlsys.common.spaces import EmbeddingSpace
from mlsys.common.validation import as_vectors


def _load_native() -> Callable[..., SearchResult | None] | None:
    """The compiled fast path, built with mlsys-common where a C compiler exists.

    Never on free-threaded CPython: the reader registration it shares with :class:`RWLock` relies
    on the GIL (setup.py does not build it there either).
    """
    if sysconfig.get_config_var("Py_GIL_DISABLED"):  # pragma: no cover - free-threaded builds
        return None
    try:
        from mlsys.common.ann._hnswfast import search
    except ImportError:  # pragma: no cover - the tests force the fallback with native=False
        return None
    return search


_native_search = _load_native()

__all__ = ["HNSW_NATIVE", "HNSWConfig", "HNSWIndex"]

#: True when ``HNSWIndex.search`` runs its unfiltered fast path as one compiled call
#: (``mlsys.common.ann._hnswfast``); False when the extension was not built and the pure-Python
#: fast path (same results, ~2-5 us more per single query) is in use.
HNSW_NATIVE: bool = _native_search is not None
"""True when ``HNSWIndex.search`` runs its unfiltered fast path as one compiled call; False when
the C extension was not built and the pure-Python path (same results, a few microseconds slower)
is in use.
"""

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
_NEG_INF = np.float32(-np.inf)
_ONE = np.float32(1.0)
_I64 = np.dtype(np.int64)
_F32 = np.dtype(np.float32)
_isfinite = math.isfinite
_negative = np.negative
_subtract = np.subtract
_ONES: dict[int, npt.NDArray[np.float32]] = {}


def _ones_row(k: int) -> npt.NDArray[np.float32]:
    """A read-only ``(1, k)`` float32 row of ones (broadcasts over a batch), cached for ``k <= 4096``."""
    row = np.ones((1, k), dtype=np.float32)
    row.flags.writeable = False
    if k <= 4096:
        _ONES[k] = row
    return row


def _threads(num_threads: int) -> int:
    """``num_threads`` for hnswlib: -1 becomes the cores this process may run on.

    hnswlib's own default is every core, but ``set_num_threads(-1)`` makes it run on ONE thread
    (its ``ParallelFor`` takes a non-positive count as 1), so the count is resolved here.
    """
    if num_threads > 0:
        return num_threads
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - platforms without sched_getaffinity
        return max(1, os.cpu_count() or 1)


def _hnswlib() -> Any:
    return import_optional("hnswlib", package="hnswlib", extra="mlsys-common[hnsw]")


@dataclass(frozen=True)
class HNSWConfig(CommonConfig):
    """Configuration of :class:`HNSWIndex`, with mlsys's defaults where hnswlib's differ.

    Args:
        M: graph degree (hnswlib default 16).
        ef_construction: build beam (hnswlib default 200).
        ef: search beam (hnswlib default 10, far too low for recall@10; 64 here).
        initial_capacity: elements allocated up front; the index doubles when full.
        num_threads: threads for adds and unfiltered batch searches; -1 (default, as hnswlib) = all
            cores. Search results are the same on any number of threads; 1 also makes builds
            reproducible for a given ``seed`` (a multi-threaded build inserts in a racy order), at
            the cost of builds and batch searches about ``n_cores`` times slower. A search-time
            parameter (``set_params(num_threads=1)``) for searches; builds use the value at
            ``add`` time.
        seed: hnswlib's random seed (level assignment).
        native: run the unfiltered search fast path as one compiled call where mlsys-common's
            extension was built (:data:`HNSW_NATIVE`); False always takes the pure-Python fast
            path. Both give identical results; the compiled one costs ~1-4% over the raw
            ``knn_query`` per single query, the Python one ~6-11% (``benchmarks/common/README.md``).
            A search-time parameter: ``set_params(native=False)`` switches a built index.
        (and the :class:`~mlsys.common.ann.CommonConfig` fields.)

    Example:
        >>> HNSWConfig(M=32, ef=128).ef_construction
        200
    """

    M: int = 16
    ef_construction: int = 200
    ef: int = 64
    initial_capacity: int = 1024
    num_threads: int = -1
    seed: int = 100
    native: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("M", "ef_construction", "ef", "initial_capacity"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"HNSWConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.M < 2:
            raise InvalidInputError(f"HNSWConfig.M must be >= 2, got {self.M}")
        if self.num_threads == 0 or self.num_threads < -1:
            raise InvalidInputError(
                f"HNSWConfig.num_threads must be -1 (all) or >= 1, got {self.num_threads}"
            )
        if self.seed < 0:
            raise InvalidInputError(f"HNSWConfig.seed must be >= 0, got {self.seed}")
        if not isinstance(self.native, bool):
            raise InvalidInputError(f"HNSWConfig.native must be a bool, got {self.native!r}")


@register_index("hnsw")
class HNSWIndex(BaseIndex):
    """An hnswlib HNSW graph with external ids, deletes, upserts and filters.

    Args:
        space: the embedding space; ``"ip"`` and ``"cosine"`` (vectors normalised on the way in)
            use hnswlib's ``ip`` space and report the inner product, ``"l2"`` reports the negative
            squared distance.
        **params: :class:`HNSWConfig` fields.

    Thread-safety: as :class:`~mlsys.common.ann.BaseIndex`, with one hnswlib-specific caveat:
    hnswlib has no per-query ef, so a filtered search that must widen its beam raises the shared
    ef for its duration (widenings are serialised and undone). Unfiltered searches running at
    that moment may search with the wider beam: the same or better recall, more time.

    Example:
        >>> import numpy as np
        >>> from mlsys.common.spaces import EmbeddingSpace
        >>> idx = HNSWIndex(EmbeddingSpace("demo", "1", 4, metric="l2"), M=8)
        >>> idx.add([10, 11, 12], np.eye(3, 4, dtype=np.float32))
        >>> idx.remove([10])
        >>> idx.search(np.eye(1, 4, dtype=np.float32), k=3)[0].tolist()
        [[11, 12, -1]]
    """

    kind = "hnsw"
    config_class = HNSWConfig
    search_params = (*BaseIndex.search_params, "ef", "num_threads", "native")
    _config: HNSWConfig

    def __init__(self, space: EmbeddingSpace, **params: Any) -> None:
        super().__init__(space, make_config(HNSWConfig, params))
        self._hl = _hnswlib()
        self._l2 = self._metric == "l2"
        self._index = self._new_index(self._config.initial_capacity)
        # ids whose hnswlib slot is marked deleted (the slot may since have been reused)
        self._deleted: set[int] = set()
        # in-place updates of live graph nodes since the last (re)build (they count as tombstones)
        self._updated = 0
        self._ef_lock = threading.Lock()
        self._native = self._pick_native()

    def _pick_native(self) -> Callable[..., SearchResult | None] | None:
        return _native_search if self._config.native and not self._normalize_queries else None

    def _new_index(self, capacity: int) -> Any:
        cfg = self._config
        index = self._hl.Index(space="l2" if self._l2 else "ip", dim=self._dim)
        index.init_index(
            max_elements=capacity,
            M=cfg.M,
            ef_construction=cfg.ef_construction,
            random_seed=cfg.seed,
            allow_replace_deleted=True,
        )
        self._configure(index)
        return index

    def _configure(self, index: Any) -> None:
        index.set_ef(self._config.ef)
        index.set_num_threads(_threads(self._config.num_threads))

    def _apply_search_params(self) -> None:
        self._configure(self._index)
        self._native = self._pick_native()

    @property
    def hnswlib_index(self) -> Any:
        """The underlying ``hnswlib.Index`` (read-only use; mutate only through this wrapper)."""
        return self._index

    @property
    def n_deleted_slots(self) -> int:
        """Slots holding deleted items (reused by later adds, dropped by a rebuild)."""
        return int(self._index.element_count) - len(self._live)

    # ------------------------------------------------------------------ mutation
    def _reserve(self, extra: int) -> None:
        need = int(self._index.element_count) + extra
        cap = int(self._index.max_elements)
        if need > cap:
            self._index.resize_index(max(need, 2 * cap))

    def _add_new(self, ids: I64, vecs: F32) -> None:
        fresh = np.ones(ids.shape[0], dtype=bool)
        if self._deleted:
            for pos, i in enumerate(ids.tolist()):
                if i in self._deleted:
                    self._deleted.discard(i)
                    try:
                        self._index.unmark_deleted(i)
                    except RuntimeError:  # its slot was reused by another id: add it afresh
                        continue
                    self._index.add_items(vecs[pos : pos + 1], np.array([i], dtype=np.uint64))
                    self._updated += 1
                    fresh[pos] = False
        if fresh.any():
            new_ids = ids[fresh].astype(np.uint64)
            new_vecs = vecs if fresh.all() else np.ascontiguousarray(vecs[fresh])
            self._reserve(new_ids.shape[0])
            for a, b in self._batches(new_ids.shape[0], "hnswlib add", step=4096):
                self._index.add_items(new_vecs[a:b], new_ids[a:b], replace_deleted=True)
        self._live.update(dict.fromkeys(ids.tolist(), 0))

    def _replace(self, ids: I64, vecs: F32) -> None:
        # live labels: hnswlib updates the vector and re-links its neighbourhood in place
        self._index.add_items(vecs, ids.astype(np.uint64))
        self._updated += int(ids.shape[0])

    def _remove_existing(self, ids: I64) -> None:
        for i in ids.tolist():
            self._index.mark_deleted(i)
            self._deleted.add(i)
            del self._live[i]

    @property
    def n_updated(self) -> int:
        """In-place updates of live items since the graph was last (re)built; they count toward
        ``rebuild_threshold`` as deleted slots do."""
        return self._updated

    def _after_write(self) -> None:
        count = int(self._index.element_count)
        if not count:
            return
        worn = self.n_deleted_slots + self._updated
        if worn > self._config.rebuild_threshold * count or (
            self._updated and len(self._live) <= self._config.ef
        ):
            self.rebuild()

    def rebuild(self) -> None:
        """Rebuild the graph from the live vectors, dropping deleted slots (automatic past the threshold)."""
        ids = np.sort(np.fromiter(self._live, dtype=np.int64, count=len(self._live)))
        vecs = self._vectors(ids) if ids.size else np.empty((0, self._dim), np.float32)
        self._index = self._new_index(max(self._config.initial_capacity, ids.shape[0]))
        self._deleted = set()
        self._updated = 0
        self._live = {}
        if ids.size:
            self._add_new(ids, vecs)

    # ------------------------------------------------------------------ search
    def _search_all(self, q: F32, k: int) -> SearchResult:
        n = len(self._live)
        kk = k if k <= n else n
        try:
            labels, d = self._index.knn_query(q, kk)
        except RuntimeError:  # a row found fewer than kk live items (deleted slots, tiny ef)
            ids, scores = self._search_native(q, k, None, None, 1)
            return self._complete_rows(q, k, ids, scores, None, None, n, tried=1)
        # hnswlib reports 1 - ip and squared L2; scores are "higher is better", computed in place
        if self._l2:
            np.negative(d, out=d)
        else:
            np.subtract(_ONE, d, out=d)
        labels.dtype = _I64  # hnswlib's uint64 labels are our non-negative int64 ids: reinterpret
        ids = labels
        if kk < k:
            pi, ps = padding(q.shape[0], k - kk)
            return np.concatenate([ids, pi], axis=1), np.concatenate([d, ps], axis=1)
        return ids, d

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

        An unfiltered search of ready queries (a float32 ``(nq, dim)`` array, ``k`` no larger than
        the index) takes a fast path around ``knn_query``: one compiled call
        (``mlsys.common.ann._hnswfast``, see :data:`HNSW_NATIVE`) or, where the extension was not
        built, this one Python frame. Everything after the library call runs on caches the graph
        walk just evicted, so every instruction counts. Anything else takes the general path.

        Example:
            >>> from mlsys.common.spaces import EmbeddingSpace
            >>> idx = HNSWIndex(EmbeddingSpace("demo", "1", 2, metric="ip"))
            >>> idx.add([4, 5], np.eye(2, dtype=np.float32))
            >>> idx.search(np.array([[1.0, 0.0]], dtype=np.float32), k=1)[0].tolist()
            [[4]]
        """
        if allow is None and deny is None and space is None and (native := self._native) is not None:
            result = native(self._index, queries, k, self._dim, len(self._live), self._l2, self._lock)
            if result is not None:
                return result
            return BaseIndex.search(self, queries, k)
        if (
            allow is None
            and deny is None
            and space is None
            and type(queries) is np.ndarray
            and queries.dtype is _F32
            and len(shape := queries.shape) == 2
            and shape[1] == self._dim
            and shape[0]
            and type(k) is int
            and 0 < k <= len(self._live)
            and not self._normalize_queries
        ):
            # no contiguity check: knn_query copies a strided float32 array itself
            lock = self._lock
            active = lock._active
            try:
                # RWLock's reader fast path, inlined (see RWLock); registering as the first
                # statement of the try means a Ctrl-C delivered right after it still unregisters
                active.append(None)
                if not lock._writer:
                    labels, d = self._index.knn_query(queries, k)
                    if self._l2:
                        _negative(d, d)
                    else:
                        # 1 - d against a cached (1, k) row of ones: an array operand skips the
                        # scalar promotion a Python or numpy scalar costs (~40% of this ufunc call)
                        ones = _ONES.get(k)
                        if ones is None:
                            ones = _ones_row(k)
                        _subtract(ones, d, d)
                    labels.dtype = _I64
                    if shape[0] == 1:
                        if _isfinite(d.item(0)):
                            return labels, d
                    elif np.isfinite(d[:, 0]).all():
                        return labels, d
                    as_vectors(queries, dim=self._dim, name="queries")  # raises for NaN/inf
                    return labels, d
            except RuntimeError:
                pass  # fewer than k live items reachable: the general path widens
            finally:
                active.pop()  # RWLock.release_read, inlined
                if lock._writer:
                    lock.wake_writer()
        return BaseIndex.search(self, queries, k, allow=allow, deny=deny, space=space)

    def _search_native(
        self, q: F32, k: int, allowed: I64 | None, denied: I64 | None, widen: int
    ) -> SearchResult:
        cfg = self._config
        if allowed is not None:
            n_ok = int(allowed.shape[0])
            flt: Any = set(allowed.tolist()).__contains__
        elif denied is not None:
            n_ok = len(self._live) - int(denied.shape[0])
            deny_set = set(denied.tolist())

            def flt(label: int) -> bool:
                return label not in deny_set
        else:
            n_ok = len(self._live)
            flt = None
        kk = min(k, n_ok)
        ids, scores = padding(q.shape[0], k)
        if kk == 0:
            return ids, scores
        with self._ef_lock:  # a widened ef must not leak: widenings are serialised and undone
            if widen > 1:
                self._index.set_ef(cfg.ef * widen)
            try:
                try:
                    labels, d = self._index.knn_query(q, kk, num_threads=1, filter=flt)
                    ids[:, :kk] = labels.view(_I64)
                    scores[:, :kk] = self._to_scores(d)
                except RuntimeError:  # some row found fewer than kk: answer rows one by one
                    for r in range(q.shape[0]):
                        try:
                            labels, d = self._index.knn_query(q[r : r + 1], kk, num_threads=1, filter=flt)
                        except RuntimeError:
                            continue  # stays padded; widened or answered exactly by the caller
                        ids[r, :kk] = labels[0].view(_I64)
                        scores[r, :kk] = self._to_scores(d)[0]
            finally:
                if widen > 1:
                    self._index.set_ef(cfg.ef)
        return ids, scores

    def _to_scores(self, d: F32) -> F32:
        # on hnswlib's own contiguous output: numpy 2.4 miscomputes some in-place ufuncs on
        # strided views of a larger array
        if self._l2:
            return np.negative(d, out=d)
        return np.subtract(_ONE, d, out=d)

    def _widen_limit(self) -> int:
        return math.ceil(max(int(self._index.element_count), 1) / self._config.ef)

    def _exact_cost_limit(self) -> float:
        # hnswlib's filter is a Python callback per visited node: count it as 4x the graph work
        return math.sqrt(4 * self._config.ef * self._config.M * len(self._live))

    def _vectors(self, ids: I64) -> F32:
        out = self._index.get_items(ids.astype(np.uint64), return_type="numpy")
        return np.ascontiguousarray(out, dtype=np.float32)

    # ------------------------------------------------------------------ persistence
    def _libraries(self) -> dict[str, str]:
        import importlib.metadata

        try:
            version = importlib.metadata.version("hnswlib")
        except importlib.metadata.PackageNotFoundError:  # pragma: no cover - source builds
            version = "unknown"
        return {**super()._libraries(), "hnswlib": version}

    def _state(self, directory: Path) -> dict[str, Any]:
        self._index.save_index(str(directory / "index.hnsw"))
        save_npy(
            directory, "ids.npy", np.sort(np.fromiter(self._live, dtype=np.int64, count=len(self._live)))
        )
        save_npy(directory, "deleted.npy", np.sort(np.fromiter(self._deleted, dtype=np.int64)))
        return {
            "element_count": int(self._index.element_count),
            "max_elements": int(self._index.max_elements),
            "updated": self._updated,
        }

    @classmethod
    def _restore(
        cls, directory: Path, space: EmbeddingSpace, config: Any, manifest: dict[str, Any]
    ) -> HNSWIndex:
        index = cls(space, **asdict(config))
        ids = load_npy(directory, "ids.npy")
        deleted = load_npy(directory, "deleted.npy")
        if ids.dtype != np.int64 or ids.ndim != 1 or deleted.dtype != np.int64 or deleted.ndim != 1:
            raise CorruptFileError(f"{directory}: ids.npy / deleted.npy must be 1-D int64")
        state = manifest["state"]
        native = index._hl.Index(space="l2" if index._l2 else "ip", dim=space.dim)
        try:
            native.load_index(
                str(directory / "index.hnsw"),
                max_elements=int(state.get("max_elements", 0)),
                allow_replace_deleted=True,
            )
        except (RuntimeError, ValueError) as exc:
            raise CorruptFileError(
                f"{directory / 'index.hnsw'} is not a readable hnswlib index: {exc}"
            ) from None
        if int(native.element_count) != int(state.get("element_count", -1)) or native.dim != space.dim:
            raise CorruptFileError(
                f"{directory}: hnswlib index holds {native.element_count} elements of dim {native.dim}, "
                f"manifest says {state.get('element_count')} of dim {space.dim}"
            )
        index._configure(native)
        index._index = native
        index._live = dict.fromkeys(ids.tolist(), 0)
        index._deleted = set(deleted.tolist())
        updated = state.get("updated", 0)
        if type(updated) is not int or updated < 0:
            raise CorruptFileError(
                f"{directory}: manifest state 'updated' must be an int >= 0, got {updated!r}"
            )
        index._updated = updated
        return index
