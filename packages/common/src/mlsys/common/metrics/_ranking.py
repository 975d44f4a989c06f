"""Metric names and the vectorised kernels shared by the dict and the array paths.

Both paths reduce a run to the same three things before any metric is computed:

* ``rel``: an ``(n_queries, depth)`` integer matrix, the judged relevance of the document at each
  rank (0 for unjudged documents and for padding), rows already in rank order;
* ``n_ret``: how many documents each query retrieved (padding excluded);
* the judged relevance values of every query, from the qrels (for the ideal DCG and the number of
  relevant documents).

Every metric is then a handful of numpy operations over the whole matrix, with trec_eval's
definitions (checked against pytrec-eval-terrier 0.5.11 in the tests):

=============  ==================================================================================
ndcg@k         sum of gain(rel_i) / log2(i + 1) over ranks i <= k, divided by the same sum over the
               ideal ordering of *all judged documents of the query* (IDCG from the qrels, not from
               the retrieved list); 0 when the ideal DCG is 0. Gain is ``rel`` (linear, trec_eval)
               or ``2**rel - 1`` (exponential); only documents with ``rel > 0`` contribute.
mrr@k          1 / rank of the first relevant document within the top k, else 0.
recall@k       relevant documents in the top k / all relevant documents of the query; 0 if none.
precision@k    relevant documents in the top k / k (always k, as trec_eval's ``P_k``).
map@k          sum of precision@i over the ranks i <= k holding a relevant document, divided by
               the number of relevant documents of the query (trec_eval ``map_cut_k``).
hit_rate@k     1 if a relevant document is in the top k, else 0 (trec_eval ``success_k``).
r_precision    relevant documents in the top R / R, with R the number of relevant documents.
=============  ==================================================================================

A bare name (``"ndcg"``, ``"mrr"``, ``"map"``, ``"recall"``, ``"precision"``, ``"hit_rate"``)
means "no cutoff": the whole retrieved list (trec_eval ``ndcg``, ``recip_rank``, ``map``,
``set_recall``, ``set_P`` = relevant retrieved / retrieved). A document is *relevant* when its
judged relevance is at least ``relevance_level`` (default 1, as trec_eval).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from mlsys.common.errors import InvalidInputError, UnknownNameError

__all__ = ["METRIC_FAMILIES", "Gain", "MetricSpec", "parse_metrics"]

Gain = Literal["linear", "exponential"]

#: Metric families and whether they accept a cutoff (``name@k``) and a bare name (no cutoff).
METRIC_FAMILIES: dict[str, tuple[bool, bool]] = {
    "ndcg": (True, True),
    "mrr": (True, True),
    "recall": (True, True),
    "precision": (True, True),
    "map": (True, True),
    "hit_rate": (True, True),
    "r_precision": (False, True),
}
"""Metric families and whether each accepts a cutoff (``name@k``) and a bare name (no cutoff)."""

_NAME = re.compile(r"^([a-z_]+)(?:@(.*))?$")


def _valid_names() -> str:
    parts = []
    for fam, (cut, bare) in METRIC_FAMILIES.items():
        if cut:
            parts.append(f"{fam}@k")
        if bare:
            parts.append(fam)
    return ", ".join(parts)


@dataclass(frozen=True)
class MetricSpec:
    """A parsed metric name: its family and its cutoff (``None`` = the whole retrieved list).

    Example:
        >>> MetricSpec.parse("ndcg@10")
        MetricSpec(name='ndcg@10', family='ndcg', k=10)
    """

    name: str
    family: str
    k: int | None

    @classmethod
    def parse(cls, name: object) -> MetricSpec:
        """Parse ``"family@k"`` or ``"family"``; raise for unknown names and bad cutoffs."""
        if not isinstance(name, str):
            raise UnknownNameError(
                f"metric names must be strings, got {name!r} ({type(name).__name__}); "
                f"valid names: {_valid_names()}"
            )
        m = _NAME.match(name.strip().lower())
        if m is None or m.group(1) not in METRIC_FAMILIES:
            raise UnknownNameError(f"unknown metric {name!r}; valid names: {_valid_names()}")
        family, cut = m.group(1), m.group(2)
        takes_cut, takes_bare = METRIC_FAMILIES[family]
        if cut is None:
            if not takes_bare:  # pragma: no cover - every family accepts a bare name today
                raise UnknownNameError(f"metric {name!r} needs a cutoff; valid names: {_valid_names()}")
            return cls(family, family, None)
        if not takes_cut:
            raise UnknownNameError(
                f"metric {family!r} takes no cutoff, got {name!r}; valid names: {_valid_names()}"
            )
        if not re.fullmatch(r"[+-]?\d+", cut.strip()):
            raise InvalidInputError(f"cutoff of {name!r} must be a positive integer, got {cut!r}")
        k = int(cut)
        if k <= 0:
            raise InvalidInputError(f"cutoff of {name!r} must be a positive integer (k >= 1), got {k}")
        return cls(f"{family}@{k}", family, k)


def parse_metrics(metrics: object) -> list[MetricSpec]:
    """Parse a sequence of metric names (a single string is accepted too); reject an empty list.

    Example:
        >>> [s.name for s in parse_metrics(["NDCG@10", "map"])]
        ['ndcg@10', 'map']
    """
    if isinstance(metrics, str):
        metrics = [metrics]
    try:
        names = list(metrics)  # type: ignore[call-overload]
    except TypeError:
        raise InvalidInputError(
            f"metrics must be a sequence of names, got {type(metrics).__name__}; valid names: {_valid_names()}"
        ) from None
    if not names:
        raise InvalidInputError(f"metrics is empty; expected at least one of: {_valid_names()}")
    specs: list[MetricSpec] = []
    seen: set[str] = set()
    for n in names:
        s = MetricSpec.parse(n)
        if s.name not in seen:
            seen.add(s.name)
            specs.append(s)
    return specs


def check_gain(gain: object) -> Gain:
    """Return ``gain`` if it is ``"linear"`` or ``"exponential"``, else raise UnknownNameError."""
    if gain not in ("linear", "exponential"):
        raise UnknownNameError(f"unknown gain {gain!r}; valid: 'linear' (trec_eval), 'exponential' (2^rel-1)")
    return gain  # type: ignore[return-value]


def check_level(level: object) -> int:
    """Return ``relevance_level`` as an int >= 1, else raise."""
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or level < 1:
        raise InvalidInputError(f"relevance_level must be an integer >= 1, got {level!r}")
    return int(level)


def needed_depth(specs: list[MetricSpec], max_num_rel: int, n_cols: int) -> int:
    """How many ranks must be read to compute ``specs`` (never more than ``n_cols``)."""
    depth = 0
    for s in specs:
        if s.family == "r_precision":
            depth = max(depth, max_num_rel)
        elif s.k is None:
            return n_cols
        else:
            depth = max(depth, s.k)
    return min(depth, n_cols)


_DISC: npt.NDArray[np.float64] = np.empty(0)


def discount(n: int) -> npt.NDArray[np.float64]:
    """``1 / log2(rank + 1)`` for ranks 1..n (cached, grows on demand)."""
    global _DISC
    if _DISC.shape[0] < n:
        _DISC = 1.0 / np.log2(np.arange(2, max(n, 1024) + 2, dtype=np.float64))
        _DISC.setflags(write=False)
    return _DISC[:n]


def gains(rel: npt.NDArray[np.integer], gain: Gain) -> npt.NDArray[np.float64]:
    """Gain of each relevance value; non-positive relevance gives 0."""
    r = rel.astype(np.float64)
    if gain == "exponential":
        g = np.exp2(r) - 1.0
    else:
        g = r
    return np.where(r > 0, g, 0.0)


@dataclass(frozen=True)
class JudgedStats:
    """Judged relevance of each evaluated query, sorted descending within each query (CSR)."""

    row: npt.NDArray[np.int64]  # query index of each judgement, non-decreasing
    pos: npt.NDArray[np.int64]  # position of the judgement in the ideal ordering of its query
    rel: npt.NDArray[np.int64]  # judged relevance, descending within a query
    n_queries: int

    @classmethod
    def from_csr(cls, indptr: npt.NDArray[np.int64], relevance: npt.NDArray[np.integer]) -> JudgedStats:
        """Build from CSR (``indptr`` of length n + 1, any order within a row)."""
        n = int(indptr.shape[0] - 1)
        counts = np.diff(indptr)
        row = np.repeat(np.arange(n, dtype=np.int64), counts)
        rel = np.asarray(relevance, dtype=np.int64)
        order = np.lexsort((-rel, row))
        rel = rel[order]
        pos = np.arange(rel.shape[0], dtype=np.int64) - np.repeat(indptr[:-1].astype(np.int64), counts)
        return cls(row, pos, rel, n)

    def num_relevant(self, level: int) -> npt.NDArray[np.int64]:
        """Number of judged documents with relevance >= ``level`` per query."""
        return np.bincount(self.row[self.rel >= level], minlength=self.n_queries).astype(np.int64)

    def ideal_dcg(self, k: int | None, gain: Gain) -> npt.NDArray[np.float64]:
        """DCG of the ideal ranking of each query's judged documents, truncated at ``k``."""
        mask = self.rel > 0
        if k is not None:
            mask &= self.pos < k
        pos = self.pos[mask]
        disc = discount(int(pos.max()) + 1 if pos.size else 0)
        w = gains(self.rel[mask], gain) * disc[pos]
        return np.bincount(self.row[mask], weights=w, minlength=self.n_queries).astype(np.float64, copy=False)


def compute(
    rel: npt.NDArray[np.integer],
    n_ret: npt.NDArray[np.int64],
    judged: JudgedStats,
    specs: list[MetricSpec],
    *,
    gain: Gain,
    level: int,
) -> dict[str, npt.NDArray[np.float64]]:
    """Compute every metric in ``specs`` for every row of ``rel`` (see the module docstring).

    ``rel`` holds the judged relevance at each rank up to the depth the metrics need; rows of
    padding are zeros. Returns ``{name: per-query float64 array}``. The work is done by
    :func:`compute_hits` on the positive entries of ``rel``.
    """
    rows, cols = np.nonzero(rel > 0)
    return compute_hits(
        rows.astype(np.int64),
        cols.astype(np.int64) + 1,
        np.asarray(rel[rows, cols], dtype=np.int64),
        n_ret,
        judged,
        specs,
        gain=gain,
        level=level,
    )


def compute_hits(
    row: npt.NDArray[np.int64],
    rank: npt.NDArray[np.int64],
    rel: npt.NDArray[np.int64],
    n_ret: npt.NDArray[np.int64],
    judged: JudgedStats,
    specs: list[MetricSpec],
    *,
    gain: Gain,
    level: int,
) -> dict[str, npt.NDArray[np.float64]]:
    """Every metric in ``specs`` from the ranks of the retrieved documents judged relevant (> 0).

    ``row``, ``rank`` (1-based) and ``rel`` list, sorted by ``(row, rank)``, each retrieved
    document with a positive judgement; ``n_ret`` is the number retrieved per query. No metric
    reads anything else, so a metric without cutoff costs what a cutoff one does: the cutoff is a
    mask over these few entries (``rank <= k``), never a sort of the whole ranking.
    """
    n = judged.n_queries
    num_rel = judged.num_relevant(level)
    has_rel = num_rel > 0
    safe_rel = np.where(has_rel, num_rel, 1).astype(np.float64)
    hit = rel >= level
    h_row, h_rank = row[hit], rank[hit]
    # position of each relevant hit among its query's relevant hits (1-based): MAP's numerator
    h_first = np.searchsorted(h_row, np.arange(n, dtype=np.int64))
    h_nth = np.arange(1, h_row.shape[0] + 1, dtype=np.int64) - h_first[h_row]
    out: dict[str, npt.NDArray[np.float64]] = {}
    g: npt.NDArray[np.float64] | None = None

    def count(mask: npt.NDArray[np.bool_] | None) -> npt.NDArray[np.int64]:
        r = h_row if mask is None else h_row[mask]
        return np.bincount(r, minlength=n).astype(np.int64)

    for s in specs:
        k = s.k
        within = None if k is None else h_rank <= k
        if s.family == "ndcg":
            if g is None:
                g = gains(rel, gain) * discount(int(rank.max()) if rank.size else 0)[rank - 1]
            m = slice(None) if k is None else rank <= k
            dcg = np.bincount(row[m], weights=g[m], minlength=n)
            idcg = judged.ideal_dcg(k, gain)
            ok = idcg > 0
            out[s.name] = np.where(ok, dcg / np.where(ok, idcg, 1.0), 0.0)
        elif s.family == "mrr":
            best = np.full(n, np.inf)
            sel = h_nth == 1  # hits are sorted by rank: the first relevant one of each query
            if within is not None:
                sel &= within
            best[h_row[sel]] = h_rank[sel]
            out[s.name] = 1.0 / best
        elif s.family == "hit_rate":
            out[s.name] = (count(within) > 0).astype(np.float64)
        elif s.family == "recall":
            out[s.name] = np.where(has_rel, count(within) / safe_rel, 0.0)
        elif s.family == "precision":
            found = count(within)
            if k is not None:
                out[s.name] = np.asarray(found / float(k), dtype=np.float64)
            else:
                out[s.name] = np.where(n_ret > 0, found / np.maximum(n_ret, 1), 0.0)
        elif s.family == "map":
            prec = h_nth / h_rank.astype(np.float64)
            r = h_row
            if within is not None:
                prec, r = prec[within], r[within]
            out[s.name] = np.where(has_rel, np.bincount(r, weights=prec, minlength=n) / safe_rel, 0.0)
        elif s.family == "r_precision":
            out[s.name] = np.where(has_rel, count(h_rank <= num_rel[h_row]) / safe_rel, 0.0)
        else:  # pragma: no cover - parse() only yields known families
            raise UnknownNameError(f"unknown metric family {s.family!r}")
    return out
