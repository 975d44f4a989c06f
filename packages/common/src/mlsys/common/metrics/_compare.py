"""Paired comparison of two systems evaluated on the same queries.

Three views of the per-query differences ``d_q = a_q - b_q`` of one metric:

* a paired bootstrap: resample the queries with replacement and take the percentile interval of
  the mean difference (Efron & Tibshirani 1993; Sakai 2006 for IR);
* a paired randomisation (permutation) test: under H0 the labels "a"/"b" of each query are
  exchangeable, so each ``d_q`` keeps or flips its sign with probability 1/2; the two-sided
  p-value is ``(1 + #{|mean of flipped d| >= |mean d|}) / (1 + n_resamples)`` (Fisher's
  randomisation test, Smucker, Allan & Carterette 2007; the +1 keeps it a valid p-value);
* a paired t-test (``scipy.stats.ttest_rel``).

When every difference is 0 the systems are identical on these queries: the difference is 0, the
interval is [0, 0] and both p-values are 1 (``ttest_rel`` itself would return NaN).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

from mlsys.common._display import DisplayTable, TabularDisplay
from mlsys.common.errors import InvalidInputError, UnknownNameError
from mlsys.common.metrics._ranking import MetricSpec
from mlsys.common.metrics._result import EvalResult

__all__ = ["Comparison", "compare"]

_CHUNK = 2_000_000  # resample matrices are built in blocks of about this many entries


@dataclass(frozen=True)
class Comparison(TabularDisplay):
    """Result of :func:`compare`: ``diff = mean(a) - mean(b)`` over the shared queries.

    Displays in a notebook as a one-row HTML table (resampling settings folded away);
    :meth:`to_pandas` gives that row as a data frame indexed by the metric.

    Example:
        >>> c = Comparison("ndcg@10", 0.5, 0.4, 0.1, 0.05, 0.15, 0.95, 0.01, 0.012, 2.7, 30, 1000, 0)
        >>> c.significant(0.05)
        True
        >>> c
        Comparison(ndcg@10: diff=+0.1000 [+0.0500, +0.1500], p=0.01, n=30)
    """

    metric: str
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    confidence: float
    p_randomization: float
    p_ttest: float
    t_statistic: float
    n_queries: int
    n_resamples: int
    seed: int | None

    def significant(self, alpha: float = 0.05) -> bool:
        """True when the randomisation test rejects equality at level ``alpha``."""
        return self.p_randomization < alpha

    def _display_table(self) -> DisplayTable:
        cols = (
            "metric",
            "mean_a",
            "mean_b",
            "diff",
            "ci_low",
            "ci_high",
            "p_randomization",
            "p_ttest",
            "t_statistic",
            "n_queries",
        )
        return DisplayTable(
            f"Comparison: {self.metric}, a - b over {self.n_queries} queries",
            cols,
            (tuple(getattr(self, c) for c in cols),),
            index="metric",
            details=(("confidence", self.confidence), ("n_resamples", self.n_resamples), ("seed", self.seed)),
        )

    def __repr__(self) -> str:
        return (
            f"Comparison({self.metric}: diff={self.diff:+.4f} [{self.ci_low:+.4f}, {self.ci_high:+.4f}], "
            f"p={self.p_randomization:.4g}, n={self.n_queries})"
        )

    def __str__(self) -> str:
        return (
            f"{self.metric}: a={self.mean_a:.4f} b={self.mean_b:.4f} diff={self.diff:+.4f} "
            f"[{self.confidence:.0%} CI {self.ci_low:+.4f}, {self.ci_high:+.4f}] "
            f"p(rand)={self.p_randomization:.4g} p(t)={self.p_ttest:.4g} n={self.n_queries}"
        )


def _aligned(
    a: EvalResult, b: EvalResult, metric: str
) -> tuple[str, npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The metric's per-query values of ``a`` and of ``b``, aligned on ``a``'s query order."""
    for name, r in (("result_a", a), ("result_b", b)):
        if not isinstance(r, EvalResult):
            raise InvalidInputError(f"{name} must be an EvalResult, got {type(r).__name__}")
    key = MetricSpec.parse(metric).name
    for name, r in (("result_a", a), ("result_b", b)):
        if key not in r.per_query:
            raise UnknownNameError(f"metric {metric!r} is not in {name}; it holds {sorted(r.per_query)}")
    if a.query_ids == b.query_ids:
        return key, a.per_query[key], b.per_query[key]
    sa, sb = set(a.query_ids), set(b.query_ids)
    if sa != sb:
        only_a, only_b = sorted(sa - sb)[:3], sorted(sb - sa)[:3]
        raise InvalidInputError(
            f"result_a and result_b cover different queries ({len(sa)} vs {len(sb)}; only in a: {only_a}, "
            f"only in b: {only_b}); a paired comparison needs the same queries — evaluate both with the "
            "same query policies (e.g. missing_queries='zero')"
        )
    pos_b = {q: i for i, q in enumerate(b.query_ids)}
    idx = np.fromiter((pos_b[q] for q in a.query_ids), np.int64, len(a.query_ids))
    return key, a.per_query[key], b.per_query[key][idx]


def paired_bootstrap_ci(
    diffs: npt.NDArray[np.float64], *, n_resamples: int, confidence: float, rng: np.random.Generator
) -> tuple[float, float]:
    """Percentile interval of the mean of ``diffs`` under resampling with replacement."""
    n = diffs.shape[0]
    means = np.empty(n_resamples)
    step = max(1, _CHUNK // n)
    for s in range(0, n_resamples, step):
        m = min(step, n_resamples - s)
        means[s : s + m] = diffs[rng.integers(0, n, size=(m, n))].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def paired_randomization_p(
    diffs: npt.NDArray[np.float64], *, n_resamples: int, rng: np.random.Generator
) -> float:
    """Two-sided sign-flip randomisation p-value of the mean of ``diffs`` (with the +1 correction)."""
    n = diffs.shape[0]
    observed = abs(float(diffs.mean()))
    # equal-within-rounding permuted means must count as "as extreme"
    tol = 1e-12 * max(1.0, float(np.abs(diffs).max()))
    hits = 0
    step = max(1, _CHUNK // n)
    for s in range(0, n_resamples, step):
        m = min(step, n_resamples - s)
        signs = rng.integers(0, 2, size=(m, n), dtype=np.int8) * 2 - 1
        perm = np.abs((signs * diffs).mean(axis=1))
        hits += int((perm >= observed - tol).sum())
    return (hits + 1) / (n_resamples + 1)


def compare(
    result_a: EvalResult,
    result_b: EvalResult,
    metric: str,
    *,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int | np.random.Generator | None = 0,
) -> Comparison:
    """Paired bootstrap CI, randomisation test and t-test of ``mean(a) - mean(b)`` for one metric.

    Both results must cover the same queries (in any order); evaluate them with the same query
    policies. Same seed, same numbers.

    Args:
        result_a, result_b: :class:`EvalResult` of the two systems.
        metric: a metric evaluated in both (``"ndcg@10"``).
        n_resamples: bootstrap resamples and random sign flips (each).
        confidence: level of the bootstrap interval, in (0, 1).
        seed: an int, a ``numpy.random.Generator`` or None (fresh entropy).

    Example:
        >>> from mlsys.common.metrics import evaluate
        >>> qrels = {f"q{i}": {"d1": 1} for i in range(20)}
        >>> a = evaluate({q: {"d1": 1.0, "d2": 0.5} for q in qrels}, qrels, ["mrr@10"])
        >>> b = evaluate({q: {"d1": 0.1, "d2": 0.5} for q in qrels}, qrels, ["mrr@10"])
        >>> c = compare(a, b, "mrr@10", n_resamples=2000, seed=1)
        >>> c.diff, c.ci_low, c.ci_high, c.p_randomization < 0.001
        (0.5, 0.5, 0.5, True)
    """
    key, a_vals, b_vals = _aligned(result_a, result_b, metric)
    diffs = a_vals - b_vals
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise InvalidInputError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    if not (isinstance(confidence, (float, int)) and 0.0 < float(confidence) < 1.0):
        raise InvalidInputError(f"confidence must be in (0, 1), got {confidence!r}")
    n = diffs.shape[0]
    if n < 2:
        raise InvalidInputError(f"a paired comparison needs at least 2 queries, got {n}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    mean_a, mean_b = float(a_vals.mean()), float(b_vals.mean())
    diff = float(diffs.mean())
    if not np.any(diffs):
        return Comparison(key, mean_a, mean_b, 0.0, 0.0, 0.0, float(confidence), 1.0, 1.0, 0.0, n,
                          int(n_resamples), _seed_repr(seed))  # fmt: skip
    lo, hi = paired_bootstrap_ci(diffs, n_resamples=int(n_resamples), confidence=float(confidence), rng=rng)
    p_rand = paired_randomization_p(diffs, n_resamples=int(n_resamples), rng=rng)
    if np.ptp(diffs) <= 1e-12 * max(1.0, abs(diff)):  # constant non-zero difference: t is infinite
        t_stat, p_t = float(np.sign(diffs[0]) * np.inf), 0.0
    else:
        res: Any = stats.ttest_rel(a_vals, b_vals)
        t_stat, p_t = float(res.statistic), float(res.pvalue)
    return Comparison(
        key,
        mean_a,
        mean_b,
        diff,
        lo,
        hi,
        float(confidence),
        p_rand,
        p_t,
        t_stat,
        n,
        int(n_resamples),
        _seed_repr(seed),
    )


def _seed_repr(seed: int | np.random.Generator | None) -> int | None:
    return int(seed) if isinstance(seed, (int, np.integer)) else None
