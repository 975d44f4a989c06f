"""A cascade of ranking stages with per-stage cutoffs, latency budgets and accounting.

``Cascade(retrieval, [stage, ...])`` answers ``recommend(users, k)``: the retrieval stage turns
users into a :class:`CandidateBatch` (item ids, scores and named feature columns per user, padded
with ``-1`` / ``-inf``); each later stage re-scores or re-orders its input and keeps its
``cutoff`` best. Every stage runs inside an :class:`~mlsys.common.profiling.LatencyProfiler`
stage, and the cascade counts, per stage, requests, candidates in and out, budget overruns and
degradations.

Degradation is explicit, never a silently wrong slate: a stage that raises, returns a batch of
the wrong shape, returns items it was not given, or runs past its ``budget_s`` is replaced, for
that call, by the previous stage's order cut to its cutoff; the event is counted in
:attr:`Cascade.stats` (and the exception kept in ``last_error``). A budget is checked after the
stage returns (the request has paid for it; the overrun is counted and its output discarded so that
a stage that is often late shows up in the counters): size a stage's cutoff to its budget, or run
it behind its own timeout, to bound the latency itself.

The :class:`InventoryMask` is applied before any scoring: out-of-stock items are removed from the
retrieved candidates, rows left short are retrieved again restricted to in-stock items, and the
final slate is checked once more against the inventory as it is then (an item marked out of stock
during the request is removed and counted in ``out_of_stock_caught_late``); ``out_of_stock_served``
counts out-of-stock items in returned slates, and stays 0.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from mlsys.common._display import DisplayTable, TabularDisplay
from mlsys.common.errors import InvalidInputError
from mlsys.common.limits import check_result_size
from mlsys.common.profiling import LatencyProfiler
from mlsys.common.validation import as_ids, check_k
from mlsys.recsys._base import top_k
from mlsys.recsys.cascade._diversity import dpp_greedy, mmr

__all__ = [
    "Cascade",
    "CandidateBatch",
    "CascadeResult",
    "DiversityStage",
    "IndexSource",
    "InventoryMask",
    "RetrievalSource",
    "RetrievalStage",
    "ScoringStage",
    "Stage",
    "StageStats",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]


class RetrievalSource(Protocol):
    """Anything with the recommender contract: a :class:`~mlsys.recsys.Recommender`, a
    :class:`~mlsys.recsys.TwoTowerRetriever`, a :class:`~mlsys.recsys.FallbackChain`."""

    def recommend(
        self, users: Any, k: int, *, exclude_seen: bool = True, allow: npt.ArrayLike | None = None
    ) -> tuple[IntArray, FloatArray]:
        """Top-``k`` items per user: ``(ids, scores)`` ``(n_users, k)``, ``-1``/``-inf`` padded."""


@dataclass(frozen=True, eq=False)
class CandidateBatch:
    """Candidates of a batch of requests: row ``i`` belongs to ``users[i]``.

    Attributes:
        users: ``(n,)`` user ids.
        items: ``(n, C)`` candidate item ids, ``-1`` padded at the end of a row.
        scores: ``(n, C)`` the current order's scores (descending in each row), ``-inf`` padded.
        features: named ``(n, C)`` float32 columns aligned with ``items`` (e.g. each retrieval
            source's score and rank), carried through every stage for later ones to use.
    """

    users: IntArray
    items: IntArray
    scores: FloatArray
    features: Mapping[str, FloatArray] = field(default_factory=dict)

    @property
    def width(self) -> int:
        """Candidates per row ``C`` (including padding)."""
        return int(self.items.shape[1])

    def take(self, order: IntArray, scores: FloatArray | None = None) -> CandidateBatch:
        """Rows re-ordered by ``order`` ``(n, C')`` (positions into the current width, ``-1`` = padding)."""
        rows = np.arange(self.items.shape[0])[:, None]
        safe = np.maximum(order, 0)
        pad = order < 0
        items = np.where(pad, -1, self.items[rows, safe])
        sc = self.scores[rows, safe] if scores is None else scores
        sc = np.where(pad | (items < 0), -np.inf, sc).astype(np.float32)
        feats = {k: np.where(pad, np.nan, v[rows, safe]).astype(np.float32) for k, v in self.features.items()}
        return CandidateBatch(self.users, items.astype(np.int64), sc, feats)

    def without(self, drop: npt.NDArray[np.bool_]) -> CandidateBatch:
        """The batch without the candidates where ``drop`` is true, the others kept in order."""
        keep = np.where(drop, -1, np.arange(self.width)[None, :])
        order = np.argsort(keep < 0, axis=1, kind="stable")  # kept positions first, in order
        return self.take(np.where(np.take_along_axis(keep, order, axis=1) < 0, -1, order))

    def cut(self, width: int) -> CandidateBatch:
        """The first ``width`` candidates of each row (padded if the batch is narrower)."""
        n, c = self.items.shape
        order = np.full((n, width), -1, np.int64)
        order[:, : min(c, width)] = np.arange(min(c, width))
        return self.take(order)


class Stage(ABC):
    """One cascade stage: re-order a :class:`CandidateBatch` and keep ``cutoff`` candidates.

    Subclasses implement :meth:`run`; the cascade times it, checks it and degrades on failure.
    """

    def __init__(self, name: str, cutoff: int, *, budget_s: float | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise InvalidInputError(f"stage name must be a non-empty str, got {name!r}")
        self.name = name
        self.cutoff = check_k(cutoff, name=f"{name} cutoff")
        if budget_s is not None and not budget_s > 0:
            raise InvalidInputError(f"{name} budget_s must be > 0 or None, got {budget_s!r}")
        self.budget_s = budget_s

    @abstractmethod
    def run(self, batch: CandidateBatch) -> CandidateBatch:
        """The batch re-ordered (and usually re-scored), at most ``cutoff`` wide."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, cutoff={self.cutoff}, budget_s={self.budget_s})"


class ScoringStage(Stage):
    """Re-score candidates with ``score_fn(users, items) -> (n, C) scores`` and keep the best ``cutoff``.

    ``score_fn`` sees ``-1`` padding in ``items`` and may return anything there (it is ignored).
    A learned ranker's ``score_candidates`` fits directly.

    ``scope(users, items) -> (n, C) bool`` limits the stage to the candidates it can judge (e.g. a
    collaborative ranker skips young users and never-trained items, which a fallback retrieved):
    out-of-scope candidates keep their slots, the in-scope ones are re-sorted among the slots they
    held, and a row with nothing in scope keeps the previous order and scores. In a row that mixes
    both, the scores become the slot order's ``1 - slot / width`` (one scale for the next stage).
    ``scoped_out_`` counts the rows left untouched, ``partly_scoped_`` the mixed ones.

    Example:
        >>> import numpy as np
        >>> stage = ScoringStage("light", lambda users, items: -items.astype(np.float32), cutoff=2)
        >>> b = CandidateBatch(np.array([1]), np.array([[5, 3, 9]]), np.array([[3.0, 2.0, 1.0]], np.float32))
        >>> stage.run(b).items.tolist()
        [[3, 5]]
    """

    def __init__(
        self,
        name: str,
        score_fn: Callable[[IntArray, IntArray], npt.ArrayLike],
        cutoff: int,
        *,
        budget_s: float | None = None,
        feature: bool = True,
        scope: Callable[[IntArray, IntArray], npt.ArrayLike] | None = None,
    ) -> None:
        super().__init__(name, cutoff, budget_s=budget_s)
        if scope is not None and not callable(scope):
            raise InvalidInputError(
                f"stage {name!r}: scope must be a callable or None, got {type(scope).__name__}"
            )
        self.score_fn = score_fn
        self.feature = feature
        self.scope = scope
        self.scoped_out_ = 0
        self.partly_scoped_ = 0

    def _in_scope(self, batch: CandidateBatch) -> npt.NDArray[np.bool_] | None:
        if self.scope is None:
            return None
        m = np.asarray(self.scope(batch.users, batch.items))
        if m.shape != batch.items.shape or m.dtype != np.bool_:
            raise InvalidInputError(
                f"stage {self.name!r}: scope returned {m.dtype} {m.shape}, expected bool {batch.items.shape}"
            )
        return m & (batch.items >= 0)

    def run(self, batch: CandidateBatch) -> CandidateBatch:
        scope = self._in_scope(batch)
        if scope is not None and not scope.any():  # nothing to judge: the previous order, cut
            self.scoped_out_ += batch.items.shape[0]
            return batch.cut(self.cutoff)
        rows_in = None if scope is None else np.asarray(scope.any(axis=1), dtype=bool)
        s = np.asarray(self.score_fn(batch.users, batch.items), dtype=np.float32)
        if s.shape != batch.items.shape:
            raise InvalidInputError(
                f"stage {self.name!r}: score_fn returned shape {s.shape}, expected {batch.items.shape}"
            )
        s = np.where(batch.items < 0, -np.inf, s)
        if np.isnan(s[batch.items >= 0] if scope is None else s[scope]).any():
            raise InvalidInputError(f"stage {self.name!r}: score_fn returned NaN scores")
        if scope is None:
            # partial sort; ties keep the earlier (better previous-stage) position; -inf pads with -1
            order, new_scores = top_k(s.astype(np.float32), self.cutoff)
            out = batch.take(order, new_scores)
            col = new_scores
        else:
            out, col = self._scoped(batch, s, scope, rows_in)
        if self.feature:
            feats = dict(out.features)
            feats[f"{self.name}_score"] = col
            out = CandidateBatch(out.users, out.items, out.scores, feats)
        return out

    def _scoped(
        self,
        batch: CandidateBatch,
        s: npt.NDArray[np.float32],
        scope: npt.NDArray[np.bool_],
        rows_in: npt.NDArray[np.bool_] | None,
    ) -> tuple[CandidateBatch, npt.NDArray[np.float32]]:
        """In-scope candidates re-sorted among their own slots; the rest stay where they are."""
        n, width = batch.items.shape
        full = scope | (batch.items < 0)
        whole = full.all(axis=1)  # every real candidate in scope: an ordinary re-sort
        assert rows_in is not None
        mixed = rows_in & ~whole
        self.scoped_out_ += int((~rows_in).sum())
        self.partly_scoped_ += int(mixed.sum())
        order = np.tile(np.arange(width), (n, 1))
        new_scores = batch.scores.copy()
        if whole.any():
            o, sc = top_k(s[whole].astype(np.float32), width)
            order[whole], new_scores[whole] = o, sc
        for r in np.flatnonzero(mixed):
            slots = np.flatnonzero(scope[r])
            ranked = slots[np.argsort(-s[r, slots], kind="stable")]  # ties keep the earlier slot
            order[r, slots] = ranked
            new_scores[r] = np.where(batch.items[r] >= 0, 1.0 - np.arange(width) / max(width, 1), -np.inf)
        order = np.where(np.take_along_axis(batch.items, np.maximum(order, 0), axis=1) < 0, -1, order)
        out = batch.take(order, new_scores.astype(np.float32)).cut(self.cutoff)
        # the stage's own score where it judged the candidate, NaN where it did not
        judged = np.where(scope, s, np.nan).astype(np.float32)
        col = np.where(order < 0, np.nan, np.take_along_axis(judged, np.maximum(order, 0), axis=1))
        col = np.pad(col, ((0, 0), (0, max(0, self.cutoff - width))), constant_values=np.nan)[
            :, : self.cutoff
        ]
        return out, col.astype(np.float32)


class DiversityStage(Stage):
    """Diversify each row with greedy DPP (default) or MMR over item embeddings.

    Args:
        vectors: ``item_ids -> (n, d) embeddings`` (e.g. ``TwoTowerModel.encode_items`` behind a
            lookup, or an index's ``get_vectors``).
        method: ``"dpp"`` or ``"mmr"``.
        strength: ``theta`` of :func:`dpp_greedy` or ``lambda_`` of :func:`mmr` (towards 1: relevance).
    """

    def __init__(
        self,
        name: str,
        vectors: Callable[[IntArray], npt.ArrayLike],
        cutoff: int,
        *,
        method: Literal["dpp", "mmr"] = "dpp",
        strength: float = 0.7,
        budget_s: float | None = None,
    ) -> None:
        super().__init__(name, cutoff, budget_s=budget_s)
        if method not in ("dpp", "mmr"):
            raise InvalidInputError(f"method must be 'dpp' or 'mmr', got {method!r}")
        self.vectors = vectors
        self.method = method
        self.strength = strength

    def run(self, batch: CandidateBatch) -> CandidateBatch:
        n = batch.items.shape[0]
        order = np.full((n, self.cutoff), -1, np.int64)
        for i in range(n):
            valid = np.flatnonzero(batch.items[i] >= 0)
            if valid.size == 0:
                continue
            emb = np.asarray(self.vectors(batch.items[i, valid]))
            rel = batch.scores[i, valid]
            if self.method == "dpp":
                picks = dpp_greedy(rel, emb, self.cutoff, theta=self.strength)
            else:
                picks = mmr(rel, emb, self.cutoff, lambda_=self.strength)
            order[i, : picks.shape[0]] = valid[picks]
        # keep the relevance scores; the order is the diversified one (scores need not be descending)
        return batch.take(order)


class RetrievalStage:
    """The first stage: merge several sources' top-``k`` lists into one candidate list per user.

    Each source contributes ``<name>_score`` and ``<name>_rank`` feature columns (NaN where it did
    not retrieve the item); candidates are ordered by reciprocal-rank fusion (``sum 1 / (60 + rank)``),
    or, with a single source, keep its order and scores.

    Args:
        sources: ``(name, source, k)`` triples; a source follows the recommender contract.
        cutoff: candidates kept after the merge.
        budget_s: latency budget (counted; retrieval has no previous order to fall back to).
    """

    name = "retrieval"

    def __init__(
        self,
        sources: Sequence[tuple[str, RetrievalSource, int]],
        cutoff: int,
        *,
        budget_s: float | None = None,
    ) -> None:
        if not isinstance(sources, list | tuple) or len(sources) == 0:
            raise InvalidInputError("sources must be a non-empty list of (name, source, k) triples")
        for entry in sources:
            if (
                not isinstance(entry, tuple | list)
                or len(entry) != 3
                or not isinstance(entry[0], str)
                or not entry[0]
            ):
                raise InvalidInputError(
                    f"each source must be a (name: str, source, k: int) triple, got {entry!r}"
                )
        names = [s[0] for s in sources]
        if len(set(names)) != len(names):
            raise InvalidInputError(f"retrieval source names must be unique, got {names}")
        for name, src, k in sources:
            if not hasattr(src, "recommend"):
                raise InvalidInputError(f"source {name!r} has no recommend(users, k, ...) method")
            check_k(k, name=f"source {name!r} k")
        self.sources = list(sources)
        self.cutoff = check_k(cutoff, name="retrieval cutoff")
        self.budget_s = budget_s

    def run(self, users: IntArray, *, allow: npt.ArrayLike | None = None) -> CandidateBatch:
        """Retrieve from every source and merge into one :class:`CandidateBatch` (class docs)."""
        n = users.shape[0]
        results = []
        for name, src, k in self.sources:
            ids, sc = src.recommend(users, k, allow=allow)
            results.append((name, np.asarray(ids, np.int64), np.asarray(sc, np.float32)))
        if len(results) == 1:
            # one source: its lists are already unique and ranked; no union or fusion to compute
            name, ids, sc = results[0]
            ids = ids[:, : self.cutoff]
            sc = np.where(ids >= 0, sc[:, : self.cutoff], -np.inf).astype(np.float32)
            ranks = np.where(ids >= 0, np.arange(1, ids.shape[1] + 1, dtype=np.float32)[None, :], np.nan)
            score_feat = np.where(ids >= 0, sc, np.nan).astype(np.float32)
            feats1 = {f"{name}_score": score_feat, f"{name}_rank": ranks.astype(np.float32)}
            return CandidateBatch(users, ids, sc, feats1)
        # Union per row in first-seen order, vectorised over rows: every (row, item) entry of every
        # source, grouped by (row, item); a group's column is its first entry's rank within the row.
        all_ids = np.concatenate([ids for _, ids, _ in results], axis=1)  # (n, K)
        width_total = all_ids.shape[1]
        flat = all_ids.ravel()
        rows = np.repeat(np.arange(n), width_total)
        pos = np.tile(np.arange(width_total), n)
        valid = flat >= 0
        f_ids, f_rows, f_pos = flat[valid], rows[valid], pos[valid]
        order = np.lexsort((f_pos, f_ids, f_rows))  # by row, then item, then first position
        s_ids, s_rows, s_pos = f_ids[order], f_rows[order], f_pos[order]
        starts = np.ones(s_ids.shape[0], dtype=bool)
        starts[1:] = (s_ids[1:] != s_ids[:-1]) | (s_rows[1:] != s_rows[:-1])
        group = np.cumsum(starts) - 1  # group of each sorted entry
        g_row, g_item, g_first = s_rows[starts], s_ids[starts], s_pos[starts]
        g_order = np.lexsort((g_first, g_row))  # groups in row order, first-seen order within a row
        col = np.empty(g_order.shape[0], np.int64)
        counts = np.bincount(g_row, minlength=n)
        row_start = np.concatenate([[0], np.cumsum(counts)[:-1]])
        col[g_order] = np.arange(g_order.shape[0]) - row_start[g_row[g_order]]
        width = max(int(counts.max()) if counts.size else 0, 1)
        items = np.full((n, width), -1, np.int64)
        items[g_row, col] = g_item
        entry_col = np.empty(f_ids.shape[0], np.int64)
        entry_col[order] = col[group]  # the column of every valid entry, in (row, position) order
        cols_flat = np.full(flat.shape[0], -1, np.int64)
        cols_flat[valid] = entry_col
        cols_full = cols_flat.reshape(n, width_total)
        fused = np.zeros((n, width), np.float64)
        feats: dict[str, FloatArray] = {}
        offset = 0
        rr = np.arange(n)[:, None]
        for name, ids, sc in results:
            k = ids.shape[1]
            c = cols_full[:, offset : offset + k]
            offset += k
            ok = c >= 0
            score_col = np.full((n, width), np.nan, np.float32)
            rank_col = np.full((n, width), np.nan, np.float32)
            ranks = np.broadcast_to(np.arange(1, k + 1, dtype=np.float32), (n, k))
            score_col[np.broadcast_to(rr, c.shape)[ok], c[ok]] = sc[ok]
            rank_col[np.broadcast_to(rr, c.shape)[ok], c[ok]] = ranks[ok]
            feats[f"{name}_score"] = score_col
            feats[f"{name}_rank"] = rank_col
            fused += np.where(np.isnan(rank_col), 0.0, 1.0 / (60.0 + np.nan_to_num(rank_col)))
        fused = np.where(items < 0, -np.inf, fused)
        order_out = np.argsort(-fused, axis=1, kind="stable")[:, : self.cutoff]
        batch = CandidateBatch(users, items, fused.astype(np.float32), feats)
        return batch.take(order_out)


class IndexSource:
    """An ANN index as a retrieval source: ``recommend(users, k)`` searches the index with the
    users' vectors (``encode_users(user_ids) -> (n, dim)``, e.g. ``TwoTowerModel.encode_users``).

    ``allow`` is passed to the index's filtered search; ``exclude_seen`` is not applied (an index
    knows no history: put a seen-items filter in a later stage if needed).

    Example:
        >>> import numpy as np
        >>> from mlsys.common import EmbeddingSpace
        >>> from mlsys.common.ann import make_index
        >>> index = make_index("exact", EmbeddingSpace("demo", "1", 2))
        >>> index.add([10, 11, 12], np.array([[1, 0], [0, 1], [1, 1]], np.float32))
        >>> src = IndexSource(index, lambda users: np.tile([[1.0, 0.2]], (len(users), 1)))
        >>> src.recommend([7], 2)[0].tolist()
        [[10, 12]]
    """

    def __init__(self, index: Any, encode_users: Callable[[IntArray], npt.ArrayLike]) -> None:
        if not hasattr(index, "search"):
            raise InvalidInputError(
                f"index must have a search(queries, k, allow=...) method, got {type(index).__name__}"
            )
        self.index = index
        self.encode_users = encode_users

    def recommend(
        self, users: Any, k: int, *, exclude_seen: bool = True, allow: npt.ArrayLike | None = None
    ) -> tuple[IntArray, FloatArray]:
        """Top-``k`` items per user: ``(ids, scores)`` ``(n_users, k)``, from the index searched with the
        users' vectors (``exclude_seen`` is not applied).
        """
        u = as_ids(users, name="users")
        ids, scores = self.index.search(np.asarray(self.encode_users(u), dtype=np.float32), k, allow=allow)
        return np.asarray(ids, np.int64), np.asarray(scores, np.float32)


class InventoryMask:
    """Which items are out of stock right now; thread-safe, updated between (or during) requests.

    Example:
        >>> inv = InventoryMask()
        >>> inv.set_out_of_stock([3, 7]); inv.set_in_stock([7])
        >>> inv.out_of_stock().tolist(), inv.is_out_of_stock([3, 7, 9]).tolist()
        ([3], [True, False, False])
    """

    def __init__(self, out_of_stock: npt.ArrayLike | None = None) -> None:
        self._lock = threading.Lock()
        self._oos: IntArray = np.unique(
            as_ids(out_of_stock if out_of_stock is not None else [], name="out_of_stock")
        )
        self.version = 0

    def set_out_of_stock(self, items: npt.ArrayLike) -> None:
        """Mark ``items`` out of stock (never served from now on)."""
        ids = as_ids(items, name="items")
        with self._lock:
            self._oos = np.union1d(self._oos, ids)
            self.version += 1

    def set_in_stock(self, items: npt.ArrayLike) -> None:
        """Mark ``items`` in stock again."""
        ids = as_ids(items, name="items")
        with self._lock:
            self._oos = np.setdiff1d(self._oos, ids)
            self.version += 1

    def out_of_stock(self) -> IntArray:
        """A snapshot of the out-of-stock ids (sorted)."""
        with self._lock:
            return self._oos

    def is_out_of_stock(
        self, items: npt.ArrayLike, snapshot: IntArray | None = None
    ) -> npt.NDArray[np.bool_]:
        """A boolean array, true where ``items`` are out of stock (same shape as ``items``)."""
        oos = self.out_of_stock() if snapshot is None else snapshot
        arr = np.asarray(items, dtype=np.int64)
        return np.isin(arr, oos) & (arr >= 0)


@dataclass
class StageStats:
    """Counters of one stage: calls, requests (rows), candidates in/out, overruns, degradations."""

    calls: int = 0
    requests: int = 0
    candidates_in: int = 0
    candidates_out: int = 0
    budget_overruns: int = 0
    degraded: int = 0
    failures: int = 0
    last_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The counters as a plain dict."""
        return dict(self.__dict__)


@dataclass(frozen=True, eq=False)
class CascadeResult:
    """``ids``/``scores`` ``(n, k)`` (``-1``/``-inf`` padded) and the stages that degraded for this call."""

    ids: IntArray
    scores: FloatArray
    degraded_stages: tuple[str, ...]


class Cascade(TabularDisplay):
    """Retrieval, then stages, each cutting candidates; profiled, budgeted, degrading explicitly.

    In a notebook a cascade displays as its report: one row per stage with the counters of
    :attr:`stats` and the stage's p50/p95/p99 latency (seconds) from :attr:`profiler`;
    :meth:`to_pandas` gives that table (NaN latency for a stage not yet run).

    Args:
        retrieval: the :class:`RetrievalStage`.
        stages: later stages in order (light scorer, heavy ranker, diversity, ...).
        inventory: out-of-stock items are never served (applied before scoring).
        profiler: where stage latencies go (a new :class:`LatencyProfiler` by default).

    Example:
        >>> import numpy as np
        >>> from mlsys.recsys import Interactions, Popularity
        >>> pop = Popularity().fit(Interactions(users=[1, 2, 2, 3], items=[10, 10, 11, 12]))
        >>> cas = Cascade(RetrievalStage([("pop", pop, 3)], cutoff=3), inventory=InventoryMask([10]))
        >>> cas.recommend([1], 2).ids.tolist()
        [[11, 12]]
    """

    def __init__(
        self,
        retrieval: RetrievalStage,
        stages: Sequence[Stage] = (),
        *,
        inventory: InventoryMask | None = None,
        profiler: LatencyProfiler | None = None,
    ) -> None:
        if not isinstance(retrieval, RetrievalStage):
            raise InvalidInputError(f"retrieval must be a RetrievalStage, got {type(retrieval).__name__}")
        names = ["retrieval"] + [s.name for s in stages]
        if len(set(names)) != len(names):
            raise InvalidInputError(f"stage names must be unique, got {names}")
        for s in stages:
            if not isinstance(s, Stage):
                raise InvalidInputError(f"stages must be Stage instances, got {type(s).__name__}")
        self.retrieval = retrieval
        self.stages = list(stages)
        self.inventory = inventory
        self.profiler = profiler or LatencyProfiler()
        self._stats_lock = threading.Lock()
        self.stats: dict[str, StageStats] = {name: StageStats() for name in names}
        self.out_of_stock_filtered = 0
        self.out_of_stock_caught_late = 0
        self.out_of_stock_served = 0

    _pandas_extra = "mlsys-recsys[pandas]"

    def __repr__(self) -> str:
        names = " -> ".join(self.stats)
        inv = ", inventory" if self.inventory is not None else ""
        return f"Cascade({names}{inv})"

    def _display_table(self) -> DisplayTable:
        counters = (
            "calls",
            "requests",
            "candidates_in",
            "candidates_out",
            "budget_overruns",
            "degraded",
            "failures",
        )
        latency = self.profiler.stats()
        nan = float("nan")
        with self._stats_lock:
            rows = tuple(
                (
                    name,
                    *(getattr(st, c) for c in counters),
                    *(latency[name].get(p) if name in latency else nan for p in ("p50", "p95", "p99")),
                )
                for name, st in self.stats.items()
            )
            errors = tuple(f"{n}: {st.last_error}" for n, st in self.stats.items() if st.last_error)
            details = (
                ("out_of_stock_filtered", self.out_of_stock_filtered),
                ("out_of_stock_caught_late", self.out_of_stock_caught_late),
                ("out_of_stock_served", self.out_of_stock_served),
            )
        return DisplayTable(
            f"cascade: {len(rows)} stages",
            ("stage", *counters, "p50_s", "p95_s", "p99_s"),
            rows,
            index="stage",
            details=details,
            notes=tuple(f"last error of {e}" for e in errors),
        )

    def _count(
        self,
        name: str,
        rows: int,
        cin: int,
        cout: int,
        *,
        overrun: bool = False,
        degraded: bool = False,
        error: str | None = None,
    ) -> None:
        with self._stats_lock:
            st = self.stats[name]
            st.calls += 1
            st.requests += rows
            st.candidates_in += cin
            st.candidates_out += cout
            st.budget_overruns += int(overrun)
            st.degraded += int(degraded)
            if error is not None:
                st.failures += 1
                st.last_error = error

    def _universe(self) -> IntArray | None:
        parts = []
        for _, src, _ in self.retrieval.sources:
            if hasattr(src, "item_ids_"):
                parts.append(np.asarray(src.item_ids_, np.int64))
            elif isinstance(src, IndexSource) and hasattr(src.index, "ids"):
                parts.append(np.asarray(src.index.ids(), np.int64))
            else:
                return None  # a source whose catalogue is unknown: no universe to restrict
        return np.unique(np.concatenate(parts)) if parts else None

    def _filtered(self, batch: CandidateBatch, blocked: IntArray, allow: IntArray | None) -> CandidateBatch:
        """``batch`` without blocked (out-of-stock, denied) items nor items outside ``allow``
        (a source may ignore ``allow``); the same object when nothing was removed."""
        bad = np.isin(batch.items, blocked) & (batch.items >= 0)
        if allow is not None:
            bad |= ~np.isin(batch.items, allow) & (batch.items >= 0)
        if not bad.any():
            return batch
        with self._stats_lock:
            self.out_of_stock_filtered += int(bad.sum())
        return batch.without(bad)

    def _retrieve(
        self, users: IntArray, blocked: IntArray, allow: IntArray | None, need: int
    ) -> CandidateBatch:
        raw = self.retrieval.run(users, allow=allow)
        batch = self._filtered(raw, blocked, allow)
        filtered_any = batch is not raw
        short = (batch.items >= 0).sum(axis=1) < min(need, self.retrieval.cutoff)
        if short.any() and filtered_any:
            # rows the filters left short: retrieve again among the allowed, in-stock items only
            universe = allow if allow is not None else self._universe()
            if universe is not None:
                again = self._filtered(
                    self.retrieval.run(users[short], allow=np.setdiff1d(universe, blocked)), blocked, allow
                )
                merged = batch.cut(max(batch.width, again.width))
                again = again.cut(merged.width)
                items, scores = merged.items.copy(), merged.scores.copy()
                items[short], scores[short] = again.items, again.scores
                feats = {}
                for name in merged.features:
                    col = merged.features[name].copy()
                    col[short] = again.features.get(name, np.full_like(again.scores, np.nan))
                    feats[name] = col
                batch = CandidateBatch(users, items, scores, feats)
        return batch

    def recommend(
        self,
        users: npt.ArrayLike,
        k: int,
        *,
        allow: npt.ArrayLike | None = None,
        deny: npt.ArrayLike | None = None,
    ) -> CascadeResult:
        """The cascade's top-``k`` per user, ``-1``/``-inf`` padded when fewer candidates exist.

        ``allow`` restricts every source to these items; ``deny`` items (like out-of-stock ones) are
        never returned. Both apply before any scoring.
        """
        k = check_k(k)
        u = as_ids(users, name="users")
        if u.shape[0] == 0:
            raise InvalidInputError("users is empty; expected at least one user")
        # every stage allocates (n_users, its cutoff) arrays: refuse oversized requests up front
        check_result_size(u.shape[0], k)
        check_result_size(u.shape[0], max([self.retrieval.cutoff, *(s.cutoff for s in self.stages)]))
        allow_ids = None if allow is None else np.unique(as_ids(allow, name="allow"))
        deny_ids = np.zeros(0, np.int64) if deny is None else np.unique(as_ids(deny, name="deny"))
        oos = self.inventory.out_of_stock() if self.inventory is not None else np.zeros(0, np.int64)
        blocked = np.union1d(oos, deny_ids) if deny_ids.size else oos
        degraded: list[str] = []
        prof = self.profiler
        with prof.request():
            t0 = time.perf_counter()
            with prof.stage("retrieval"):
                batch = self._retrieve(u, blocked, allow_ids, k)
            dt = time.perf_counter() - t0
            cout = int((batch.items >= 0).sum())
            rb = self.retrieval.budget_s
            self._count("retrieval", u.shape[0], cout, cout, overrun=rb is not None and dt > rb)
            for stage in self.stages:
                cin = int((batch.items >= 0).sum())
                t0 = time.perf_counter()
                error: str | None = None
                with prof.stage(stage.name):
                    try:
                        out = stage.run(batch)
                        error = self._check(stage, batch, out)
                    except Exception as exc:  # a failing stage degrades to the previous order, counted
                        error = f"{type(exc).__name__}: {exc}"
                dt = time.perf_counter() - t0
                overrun = stage.budget_s is not None and dt > stage.budget_s
                if error is not None or overrun:
                    degraded.append(stage.name)
                    out = batch.cut(stage.cutoff)
                self._count(
                    stage.name,
                    u.shape[0],
                    cin,
                    int((out.items >= 0).sum()),
                    overrun=overrun,
                    degraded=error is not None or overrun,
                    error=error,
                )
                batch = out
            final = batch.cut(k)
            if self.inventory is not None or deny_ids.size:
                # the inventory may have changed during the request: check the slate once more
                now = (
                    np.union1d(self.inventory.out_of_stock(), deny_ids)
                    if self.inventory is not None
                    else deny_ids
                )
                late = np.isin(final.items, now) & (final.items >= 0)
                if late.any():
                    final = final.without(late)
                served = int((np.isin(final.items, now) & (final.items >= 0)).sum())
                with self._stats_lock:
                    self.out_of_stock_caught_late += int(late.sum())
                    self.out_of_stock_served += served
        return CascadeResult(final.items, final.scores, tuple(degraded))

    @staticmethod
    def _check(stage: Stage, before: CandidateBatch, out: Any) -> str | None:
        if not isinstance(out, CandidateBatch):
            return f"returned {type(out).__name__}, expected CandidateBatch"
        if out.items.shape[0] != before.items.shape[0] or out.items.ndim != 2:
            return f"returned {out.items.shape[0]} rows, expected {before.items.shape[0]}"
        if out.items.shape[1] > stage.cutoff:
            return f"returned {out.items.shape[1]} candidates, more than its cutoff {stage.cutoff}"
        for i in range(out.items.shape[0]):
            got = out.items[i][out.items[i] >= 0]
            if not np.isin(got, before.items[i]).all():
                return "returned items that were not among its candidates"
            if np.unique(got).shape[0] != got.shape[0]:
                return "returned a duplicated item"
        return None

    def stats_dict(self) -> dict[str, Any]:
        """Counters as plain data (for a metrics endpoint)."""
        with self._stats_lock:
            return {
                "stages": {name: st.to_dict() for name, st in self.stats.items()},
                "out_of_stock_filtered": self.out_of_stock_filtered,
                "out_of_stock_caught_late": self.out_of_stock_caught_late,
                "out_of_stock_served": self.out_of_stock_served,
            }
