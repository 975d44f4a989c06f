"""What every backend shares: validation at the boundary, locking, id bookkeeping, filtering, persistence.

A backend subclasses :class:`BaseIndex` and implements a handful of ``_``-methods that receive
already-validated data (``(n, dim)`` C-contiguous float32, normalised for cosine spaces; unique
non-negative int64 ids whose presence has been checked). The public methods validate *everything*
before they take the write lock and touch the index, so a rejected call leaves it unchanged.

Filtered search (``allow``/``deny``) is planned here once for all backends:

1. the filter is reduced to the live ids it concerns;
2. a selective filter is answered by exact search over the allowed ids' stored vectors: always
   when at most ``filter_exact_threshold`` ids pass, and also when the backend's cost model says
   exact is cheaper than a widened approximate search (graphs: ``n_allowed**2 <= ef * M * n``;
   IVF: ``n_allowed <= n * sqrt(nprobe / nlist)``). A selective filter is exactly where graph and
   IVF indexes fail, and where exact search is cheapest;
3. a small ``deny`` set is handled by over-fetching ``k + len(deny)`` unfiltered results and
   dropping the denied ones;
4. otherwise the backend's native filtered search runs (faiss ``IDSelector``, hnswlib ``filter``)
   with ef / nprobe multiplied by ``n / n_allowed`` (a filter that passes 1 item in 50 needs about
   50 times the candidates to find as many neighbours); rows that still come back with fewer than
   ``min(k, n_allowed)`` results are searched again with the knob doubled, up to ``max_widen``
   times the configured value, and any row still short is answered exactly. Padding with ``-1``
   therefore only appears when fewer than ``k`` items are allowed.
"""

from __future__ import annotations

import math
import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import numpy.typing as npt

from mlsys.common._display import format_params, non_default_params
from mlsys.common.ann._filter import as_id_filter, drop_denied, padding
from mlsys.common.ann._lock import RWLock
from mlsys.common.ann._persist import atomic_directory, read_manifest, write_manifest
from mlsys.common.ann._protocol import SearchResult
from mlsys.common.ann._topk import exact_topk
from mlsys.common.errors import (
    CorruptFileError,
    DuplicateIdError,
    EmptyIndexError,
    InvalidInputError,
    UnknownIdError,
    UnknownNameError,
)
from mlsys.common.limits import SMALL_K, check_result_size
from mlsys.common.spaces import EmbeddingSpace
from mlsys.common.validation import as_ids, as_vectors, check_k, check_unique

__all__ = ["BaseIndex", "CommonConfig", "make_config"]

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
_F32 = np.dtype(np.float32)
_INF = math.inf
_isfinite = math.isfinite

C = TypeVar("C", bound="CommonConfig")
T = TypeVar("T", bound="BaseIndex")


@dataclass(frozen=True)
class CommonConfig:
    """Settings shared by every backend.

    Args:
        filter_exact_threshold: a filter that leaves at most this many live ids is answered by
            exact search over those ids (exact, and cheaper than a graph walk that rejects most
            of what it visits); larger allowed sets too when the backend's cost model favours
            exact search. ``0`` turns the exact shortcut off (always filter natively).
        deny_overfetch_limit: a ``deny`` set of at most this many live ids is applied by fetching
            ``k + len(deny)`` unfiltered results and dropping the denied ones.
        max_widen: how far ef / nprobe may be multiplied for a selective filter (by
            ``n / n_allowed``, then doubling for rows that came back short), before short rows are
            answered exactly.
        rebuild_threshold: fraction of tombstoned slots at which the index is compacted/rebuilt.
        progress: show a tqdm bar while adding large batches; ``None`` = only on a terminal.
    """

    filter_exact_threshold: int = 2048
    deny_overfetch_limit: int = 256
    max_widen: int = 64
    rebuild_threshold: float = 0.25
    progress: bool | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("int", int) and (isinstance(value, bool) or not isinstance(value, int)):
                raise InvalidInputError(f"{type(self).__name__}.{f.name} must be an int, got {value!r}")
        if self.filter_exact_threshold < 0:
            raise InvalidInputError(f"filter_exact_threshold must be >= 0, got {self.filter_exact_threshold}")
        if self.deny_overfetch_limit < 0:
            raise InvalidInputError(f"deny_overfetch_limit must be >= 0, got {self.deny_overfetch_limit}")
        if self.max_widen < 1:
            raise InvalidInputError(f"max_widen must be >= 1, got {self.max_widen}")
        if not (isinstance(self.rebuild_threshold, (int, float)) and 0.0 < self.rebuild_threshold <= 1.0):
            raise InvalidInputError(f"rebuild_threshold must be in (0, 1], got {self.rebuild_threshold!r}")


def make_config(config_cls: type[C], params: dict[str, Any]) -> C:
    """Build ``config_cls(**params)``, naming the valid parameters when one is unknown."""
    valid = sorted(f.name for f in fields(config_cls))  # type: ignore[arg-type]
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise UnknownNameError(f"unknown parameters {unknown} for {config_cls.__name__}; valid: {valid}")
    return config_cls(**params)


class BaseIndex(ABC):
    """Shared implementation of the :class:`~mlsys.common.ann.VectorIndex` contract.

    Thread-safety: any number of ``search``/``get_vectors``/``save`` calls run concurrently; ``add``,
    ``upsert``, ``remove`` and parameter changes take an exclusive lock (writers are preferred, so
    a stream of searches cannot starve them). A search sees the index either entirely before or
    entirely after a concurrent write.
    """

    kind: ClassVar[str] = ""
    config_class: ClassVar[type[CommonConfig]] = CommonConfig

    def __init__(self, space: EmbeddingSpace, config: CommonConfig) -> None:
        if not isinstance(space, EmbeddingSpace):
            raise InvalidInputError(f"space must be an EmbeddingSpace, got {type(space).__name__}")
        self._space = space
        self._config = config
        self._dim = space.dim
        self._metric = space.metric
        self._cosine = space.metric == "cosine"
        self._normalize_queries = self._cosine and not space.normalized
        self._lock = RWLock()
        # external id -> internal label (the backend decides what a label is)
        self._live: dict[int, int] = {}

    # ------------------------------------------------------------------ properties
    @property
    def space(self) -> EmbeddingSpace:
        """The embedding space this index is bound to."""
        return self._space

    @property
    def config(self) -> CommonConfig:
        """The (frozen) configuration this index was built with."""
        return self._config

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, item: object) -> bool:
        try:
            return int(item) in self._live  # type: ignore[call-overload]
        except (TypeError, ValueError):
            return False

    #: config fields the repr always shows (the rest only when they differ from their default)
    _repr_always: ClassVar[tuple[str, ...]] = ()

    def __repr__(self) -> str:
        """Backend, space, count and the parameters that differ from the defaults, e.g.
        ``HNSWIndex(space=minilm@1[dim=384,cosine], n=1000, M=32)``."""
        params = {f: getattr(self._config, f) for f in self._repr_always}
        params.update(non_default_params(self._config, skip=self._repr_always))
        extra = f", {format_params(params)}" if params else ""
        return f"{type(self).__name__}(space={self._space}, n={len(self)}{extra})"

    def ids(self) -> I64:
        """All live ids, ascending.

        Example:
            >>> from mlsys.common.ann import ExactIndex
            >>> idx = ExactIndex(EmbeddingSpace("demo", "1", 2, metric="ip"))
            >>> idx.add([7, 3], np.eye(2))
            >>> idx.ids().tolist()
            [3, 7]
        """
        self._lock.acquire_read()
        try:
            return self._live_ids()
        finally:
            self._lock.release_read()

    def _live_ids(self) -> I64:
        return np.sort(np.fromiter(self._live.keys(), dtype=np.int64, count=len(self._live)))

    # ------------------------------------------------------------------ validation
    def _check_space(self, space: EmbeddingSpace | None, what: str) -> None:
        if space is not None:
            self._space.check_same(space, what=what)

    def _prepare_items(self, ids: Any, vectors: Any, space: EmbeddingSpace | None) -> tuple[I64, F32]:
        self._check_space(space, "vectors")
        vecs = as_vectors(vectors, dim=self._dim, name="vectors", allow_empty=True)
        id_arr = as_ids(ids, n=vecs.shape[0])
        if id_arr.size and id_arr.min() < 0:
            raise InvalidInputError(
                f"ids must be non-negative (-1 is the padding id), got {id_arr[id_arr < 0][:5].tolist()}"
            )
        check_unique(id_arr)
        if self._cosine:
            vecs = _normalized(vecs, "vectors")
        return id_arr, vecs

    def _prepare_queries(self, queries: Any) -> F32:
        """Queries as C-contiguous float32 ``(nq, dim)``: as given when they already are (no copy).

        NaN/inf are not scanned for here on the fast path: a non-finite query yields a non-finite
        best score, which :meth:`search` checks afterwards (one scalar per row), re-validating the
        queries to raise the proper error.
        """
        q = queries
        if not (
            type(q) is np.ndarray
            and q.dtype is _F32
            and q.ndim == 2
            and q.shape[1] == self._dim
            and q.shape[0]
            and q.flags.c_contiguous
        ):
            q = as_vectors(q, dim=self._dim, name="queries")
        if self._normalize_queries:
            q = _normalized(q, "queries")
        return q

    def _present(self, ids: I64) -> npt.NDArray[np.bool_]:
        live = self._live
        return np.fromiter((i in live for i in ids.tolist()), dtype=bool, count=ids.shape[0])

    # ------------------------------------------------------------------ parameters
    #: configuration fields that can change on a built index (search-time knobs)
    search_params: ClassVar[tuple[str, ...]] = (
        "filter_exact_threshold",
        "deny_overfetch_limit",
        "max_widen",
        "rebuild_threshold",
        "progress",
    )

    def set_params(self, **params: Any) -> None:
        """Change search-time parameters (e.g. ``ef_search``, ``nprobe``, ``ef``) of a built index.

        Only the fields in :attr:`search_params` can change; the others shape the built index and
        need a new one.

        Example:
            >>> from mlsys.common.ann import ExactIndex
            >>> idx = ExactIndex(EmbeddingSpace("demo", "1", 2))
            >>> idx.set_params(filter_exact_threshold=10)
            >>> idx.config.filter_exact_threshold
            10
        """
        fixed = sorted(set(params) - set(self.search_params))
        if fixed:
            make_config(type(self._config), params)  # names unknown parameters first
            raise InvalidInputError(
                f"parameters {fixed} of {type(self).__name__} cannot change on a built index; "
                f"changeable: {sorted(self.search_params)}"
            )
        new = replace(self._config, **params)
        self._lock.acquire_write()
        try:
            self._config = new
            self._apply_search_params()
        finally:
            self._lock.release_write()

    def _apply_search_params(self) -> None:  # noqa: B027 - optional hook
        """Push changed search-time parameters into the library object (backends override)."""

    def _batches(self, n: int, desc: str, step: int = 16384) -> Iterator[tuple[int, int]]:
        """``(start, stop)`` slices of ``n`` rows, with a tqdm bar for long jobs."""
        show = self._config.progress
        if show is None:
            show = n > 4 * step and sys.stderr.isatty()
        starts = range(0, n, step)
        if show:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=desc, unit_scale=step, total=len(starts))
        for start in starts:
            yield start, min(n, start + step)

    # ------------------------------------------------------------------ mutation
    def add(self, ids: Any, vectors: Any, *, space: EmbeddingSpace | None = None) -> None:
        """Insert new items.

        Args:
            ids: ``(n,)`` non-negative integer ids, unique and not yet in the index.
            vectors: ``(n, dim)`` finite vectors (any float/int dtype is converted to float32;
                a single ``(dim,)`` vector counts as one row).
            space: when given, must equal :attr:`space`.

        Raises:
            DuplicateIdError: an id repeats within ``ids`` or is already present (use ``upsert``).
            DimensionMismatchError, InvalidInputError, EmbeddingSpaceMismatchError: bad input.

        Example:
            >>> from mlsys.common.ann import ExactIndex
            >>> idx = ExactIndex(EmbeddingSpace("demo", "1", 2, metric="ip"))
            >>> idx.add([1, 2], [[1.0, 0.0], [0.0, 1.0]])
            >>> len(idx)
            2
        """
        id_arr, vecs = self._prepare_items(ids, vectors, space)
        if id_arr.size == 0:
            return
        self._lock.acquire_write()
        try:
            present = self._present(id_arr)
            if present.any():
                raise DuplicateIdError(
                    f"ids {id_arr[present][:5].tolist()} are already in the index; "
                    "expected new ids (use upsert to replace vectors)"
                )
            self._add_new(id_arr, vecs)
            self._after_write()
        finally:
            self._lock.release_write()

    def upsert(self, ids: Any, vectors: Any, *, space: EmbeddingSpace | None = None) -> None:
        """Insert new items and replace the vectors of ids already present.

        Example:
            >>> from mlsys.common.ann import ExactIndex
            >>> idx = ExactIndex(EmbeddingSpace("demo", "1", 2, metric="ip"))
            >>> idx.add([1], [[1.0, 0.0]])
            >>> idx.upsert([1, 2], [[0.0, 1.0], [1.0, 1.0]])
            >>> idx.get_vectors([1]).tolist()
            [[0.0, 1.0]]
        """
        id_arr, vecs = self._prepare_items(ids, vectors, space)
        if id_arr.size == 0:
            return
        self._lock.acquire_write()
        try:
            present = self._present(id_arr)
            if present.any():
                self._replace(id_arr[present], vecs[present])
            if not present.all():
                new = ~present
                self._add_new(id_arr[new], np.ascontiguousarray(vecs[new]))
            self._after_write()
        finally:
            self._lock.release_write()

    def remove(self, ids: Any) -> None:
        """Delete items.

        Raises:
            UnknownIdError: an id is not in the index (nothing is removed then).
            DuplicateIdError: an id repeats within ``ids``.

        Example:
            >>> from mlsys.common.ann import ExactIndex
            >>> idx = ExactIndex(EmbeddingSpace("demo", "1", 2, metric="ip"))
            >>> idx.add([1, 2], np.eye(2))
            >>> idx.remove([1])
            >>> 1 in idx, len(idx)
            (False, 1)
        """
        id_arr = as_ids(ids)
        check_unique(id_arr)
        if id_arr.size == 0:
            return
        self._lock.acquire_write()
        try:
            present = self._present(id_arr)
            if not present.all():
                raise UnknownIdError(
                    f"ids {id_arr[~present][:5].tolist()} are not in the index; expected ids of live items"
                )
            self._remove_existing(id_arr)
            self._after_write()
        finally:
            self._lock.release_write()

    # ------------------------------------------------------------------ reading
    def get_vectors(self, ids: Any) -> F32:
        """The stored vectors of ``ids``, in the order given.

        Cosine spaces store unit-normalised vectors; quantising backends (PQ, SQ) return their
        reconstruction.

        Raises:
            UnknownIdError: an id is not in the index.
        """
        id_arr = as_ids(ids)
        self._lock.acquire_read()
        try:
            present = self._present(id_arr)
            if not present.all():
                raise UnknownIdError(f"ids {id_arr[~present][:5].tolist()} are not in the index")
            if id_arr.size == 0:
                return np.empty((0, self._dim), dtype=np.float32)
            return self._vectors(id_arr)
        finally:
            self._lock.release_read()

    def search(
        self,
        queries: Any,
        k: int,
        *,
        allow: Any = None,
        deny: Any = None,
        space: EmbeddingSpace | None = None,
    ) -> SearchResult:
        """Top-``k`` ids and scores for each query, best first.

        Args:
            queries: ``(nq, dim)`` finite vectors; float32 C-contiguous input is used without a
                copy, anything else numeric is converted; a ``(dim,)`` vector is one query.
            k: results per query (positive int, at most ``Limits.max_k``; ``n_queries * k`` at most
                ``Limits.max_result_size``). More than the live items is allowed: padded.
            allow: ids that may be returned (array, list, set, range). Unknown ids are ignored.
            deny: ids that must not be returned.
            space: when given, must equal :attr:`space`.

        Returns:
            ``(ids, scores)``: ``(nq, k)`` int64 and float32, padded with ``-1`` / ``-inf`` only
            when fewer than ``k`` live items pass the filter.

        Raises:
            EmptyIndexError: the index holds no items.
            InvalidInputError, DimensionMismatchError: bad queries or ``k``.
            LimitExceededError: ``k`` or the result size above :mod:`mlsys.common.limits`.

        Example:
            >>> from mlsys.common.ann import ExactIndex
            >>> idx = ExactIndex(EmbeddingSpace("demo", "1", 2, metric="ip"))
            >>> idx.add([10, 20, 30], [[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
            >>> ids, scores = idx.search([[1.0, 0.0]], k=2, deny=[10])
            >>> ids.tolist()
            [[30, 20]]
        """
        if space is not None:
            self._space.check_same(space, what="queries")
        q = queries
        # the fast path of _prepare_queries, inlined: this is the per-query overhead budget
        if not (
            type(q) is np.ndarray
            and q.dtype is _F32
            and q.ndim == 2
            and q.shape[1] == self._dim
            and q.shape[0]
            and q.flags.c_contiguous
            and not self._normalize_queries
        ):
            q = self._prepare_queries(q)
        if type(k) is not int or k <= 0 or k > SMALL_K:
            # k above SMALL_K: the limits, before anything is allocated (result memory ~ n * k)
            k = check_k(k)
            check_result_size(q.shape[0], k)
        lock = self._lock
        lock.acquire_read()
        try:
            if not self._live:
                raise EmptyIndexError(
                    f"cannot search an empty {type(self).__name__}; expected at least one added item"
                )
            if allow is None and deny is None:
                ids, scores = self._search_all(q, k)
            else:
                ids, scores = self._search_filtered(q, k, allow, deny)
        finally:
            lock.release_read()
        # a NaN/inf query gives a non-finite best score; only then are the queries scanned
        if q.shape[0] == 1:
            if not _isfinite(scores.item(0)):
                as_vectors(queries, dim=self._dim, name="queries")
        elif not np.isfinite(scores[:, 0]).all():
            as_vectors(queries, dim=self._dim, name="queries")
        return ids, scores

    # ------------------------------------------------------------------ filtered search plan
    def _search_filtered(self, q: F32, k: int, allow: Any, deny: Any) -> SearchResult:
        cfg = self._config
        deny_ids = None if deny is None else as_id_filter(deny, name="deny")
        if allow is not None:
            allow_ids = as_id_filter(allow, name="allow")
            allowed = allow_ids[self._present(allow_ids)]
            if deny_ids is not None and deny_ids.size:
                allowed = allowed[~np.isin(allowed, deny_ids, assume_unique=True)]
            n_allowed = int(allowed.size)
            if n_allowed == 0:
                return padding(q.shape[0], k)
            if self._plan_exact(n_allowed):
                return self._exact_over(q, k, allowed)
            return self._native_with_widening(q, k, allowed, None, n_allowed)
        assert deny_ids is not None
        denied = deny_ids[self._present(deny_ids)]
        if denied.size == 0:
            return self._search_all(q, k)
        n_allowed = len(self._live) - int(denied.size)
        if n_allowed == 0:
            return padding(q.shape[0], k)
        if self._plan_exact(n_allowed):
            live = self._live_ids()
            return self._exact_over(q, k, live[~np.isin(live, denied, assume_unique=True)])
        if denied.size <= cfg.deny_overfetch_limit:
            ids, scores = self._search_all(q, min(k + int(denied.size), len(self._live)))
            ids, scores = drop_denied(ids, scores, denied, k)
            return self._complete_rows(q, k, ids, scores, None, denied, n_allowed, tried=1)
        return self._native_with_widening(q, k, None, denied, n_allowed)

    def _plan_exact(self, n_allowed: int) -> bool:
        threshold = self._config.filter_exact_threshold
        return threshold > 0 and (n_allowed <= threshold or n_allowed <= self._exact_cost_limit())

    def _exact_cost_limit(self) -> float:
        """Allowed-set size below which exact search beats the backend's filtered search."""
        return 0.0

    def _widen_limit(self) -> int:
        """The largest useful multiplier of the backend's search knob (1: nothing to widen)."""
        return 1

    def _native_with_widening(
        self, q: F32, k: int, allowed: I64 | None, denied: I64 | None, n_allowed: int
    ) -> SearchResult:
        limit = max(1, min(self._config.max_widen, self._widen_limit()))
        widen = max(1, min(limit, math.ceil(len(self._live) / n_allowed)))
        ids, scores = self._search_native(q, k, allowed, denied, widen)
        return self._complete_rows(q, k, ids, scores, allowed, denied, n_allowed, tried=widen)

    def _complete_rows(
        self,
        q: F32,
        k: int,
        ids: I64,
        scores: F32,
        allowed: I64 | None,
        denied: I64 | None,
        n_allowed: int,
        *,
        tried: int,
    ) -> SearchResult:
        """Re-search rows with fewer than ``min(k, n_allowed)`` results, widening, then exactly."""
        need = min(k, n_allowed)
        short = np.flatnonzero(ids[:, need - 1] < 0)
        limit = max(1, min(self._config.max_widen, self._widen_limit()))
        widen = tried
        while short.size and widen < limit:
            widen = min(limit, widen * 2)
            res_i, res_s = self._search_native(q[short], k, allowed, denied, widen)
            ids[short], scores[short] = res_i, res_s
            short = short[res_i[:, need - 1] < 0]
        if short.size:
            if allowed is None:
                live = self._live_ids()
                allowed = live if denied is None else live[~np.isin(live, denied, assume_unique=True)]
            ids[short], scores[short] = self._exact_over(q[short], k, allowed)
        return ids, scores

    def _exact_over(self, q: F32, k: int, allowed: I64) -> SearchResult:
        """Exact search restricted to ``allowed`` (live, unique) ids, from the stored vectors."""
        vecs = self._vectors(allowed)
        rows, scores = exact_topk(q, vecs, k, self._metric)
        ext = np.append(allowed, -1)
        return ext[rows], scores

    # ------------------------------------------------------------------ backend hooks
    @abstractmethod
    def _add_new(self, ids: I64, vecs: F32) -> None:
        """Insert ids known to be absent; update ``self._live``."""

    def _replace(self, ids: I64, vecs: F32) -> None:
        """Default: remove then add (backends that update in place override)."""
        self._remove_existing(ids)
        self._add_new(ids, vecs)

    @abstractmethod
    def _remove_existing(self, ids: I64) -> None:
        """Delete ids known to be present; update ``self._live``."""

    def _after_write(self) -> None:  # noqa: B027 - optional hook, a no-op unless overridden
        """Compact or rebuild when tombstones pass ``rebuild_threshold`` (backends override)."""

    @abstractmethod
    def _search_all(self, q: F32, k: int) -> SearchResult:
        """Unfiltered search over the live items (the hot path); pads when ``k > len(self)``."""

    @abstractmethod
    def _search_native(
        self, q: F32, k: int, allowed: I64 | None, denied: I64 | None, widen: int
    ) -> SearchResult:
        """Backend-native filtered search with ef / nprobe multiplied by ``widen`` (padded rows allowed)."""

    @abstractmethod
    def _vectors(self, ids: I64) -> F32:
        """Stored vectors of live ids, in the given order."""

    @abstractmethod
    def _state(self, directory: Path) -> dict[str, Any]:
        """Write payload files into ``directory``; return extra JSON state for the manifest."""

    @classmethod
    @abstractmethod
    def _restore(
        cls: type[T], directory: Path, space: EmbeddingSpace, config: Any, manifest: dict[str, Any]
    ) -> T:
        """Rebuild an index from verified payloads."""

    def _libraries(self) -> dict[str, str]:
        return {"numpy": np.__version__}

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to directory ``path`` (replaced atomically if it holds an index).

        The directory holds ``manifest.json`` (format version, backend, configuration, embedding
        space, item count, sha256 of every payload) and the payloads (``.npy`` arrays and the
        library's native index file).

        Example:
            >>> import tempfile
            >>> from mlsys.common.ann import ExactIndex
            >>> idx = ExactIndex(EmbeddingSpace("demo", "1", 2, metric="ip"))
            >>> idx.add([5], [[1.0, 2.0]])
            >>> with tempfile.TemporaryDirectory() as d:
            ...     idx.save(d + "/idx")
            ...     ExactIndex.load(d + "/idx").ids().tolist()
            [5]
        """
        self._lock.acquire_read()
        try:
            with atomic_directory(path) as tmp:
                state = self._state(tmp)
                write_manifest(
                    tmp,
                    kind=self.kind,
                    cls=type(self).__name__,
                    config=asdict(self._config),
                    space=self._space,
                    count=len(self._live),
                    state=state,
                    libraries=self._libraries(),
                )
        finally:
            self._lock.release_read()

    @classmethod
    def load(
        cls: type[T], path: str | os.PathLike[str], *, expected_space: EmbeddingSpace | None = None
    ) -> T:
        """Read an index written by :meth:`save`.

        Verifies the manifest's format version, backend, every payload's size and sha256, and,
        when ``expected_space`` is given, that the index belongs to that space.

        Raises:
            CorruptFileError: missing/truncated/altered files, or an index of another backend.
            FormatVersionError: another format version.
            EmbeddingSpaceMismatchError: the file's space is not ``expected_space``.
        """
        manifest = read_manifest(path, expected_space=expected_space)
        if manifest["kind"] != cls.kind or manifest["class"] != cls.__name__:
            raise CorruptFileError(
                f"{path} holds a {manifest['class']} (kind {manifest['kind']!r}), expected a {cls.__name__} "
                "(use mlsys.common.ann.load_index to load any backend)"
            )
        try:
            config = cls.config_class(**manifest["config"])
        except (TypeError, InvalidInputError) as exc:
            raise CorruptFileError(f"{path} holds an invalid {cls.config_class.__name__}: {exc}") from exc
        index = cls._restore(Path(path), manifest["space"], config, manifest)
        if len(index) != manifest["count"]:
            raise CorruptFileError(
                f"{path} restored {len(index)} items but its manifest says {manifest['count']}"
            )
        return index


def _normalized(x: F32, name: str) -> F32:
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    if not norms.all():
        bad = int(np.flatnonzero(norms == 0)[0])
        raise InvalidInputError(
            f"{name} row {bad} is the zero vector; cosine similarity needs non-zero vectors"
        )
    with np.errstate(invalid="ignore"):  # NaN rows stay NaN and are refused by the caller
        return x / norms[:, None]
