"""Paired comparison: bootstrap CI, randomisation test and t-test against scipy.stats."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from mlsys.common.errors import InvalidInputError, UnknownNameError
from mlsys.common.metrics import Comparison, EvalResult, compare


def _result(values: np.ndarray, qids: list[str] | None = None, metric: str = "ndcg@10") -> EvalResult:
    qids = qids or [f"q{i}" for i in range(len(values))]
    v = np.asarray(values, dtype=np.float64)
    return EvalResult(qids, {metric: v}, {metric: float(v.mean())})


def _systems(n: int = 60, effect: float = 0.05, seed: int = 0) -> tuple[EvalResult, EvalResult]:
    rng = np.random.default_rng(seed)
    a = rng.uniform(0, 1, n)
    b = np.clip(a - effect + rng.normal(0, 0.1, n), 0, 1)
    return _result(a), _result(b)


def test_ttest_matches_scipy_ttest_rel() -> None:
    a, b = _systems()
    c = compare(a, b, "ndcg@10", n_resamples=500)
    ref = stats.ttest_rel(a.per_query["ndcg@10"], b.per_query["ndcg@10"])
    assert c.t_statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert c.p_ttest == pytest.approx(ref.pvalue, rel=1e-12)
    assert c.diff == pytest.approx(a["ndcg@10"] - b["ndcg@10"], abs=1e-15)
    assert c.n_queries == 60 and isinstance(c, Comparison)


def test_randomization_p_agrees_with_scipy_permutation_test() -> None:
    a, b = _systems(n=40, effect=0.02, seed=3)
    c = compare(a, b, "ndcg@10", n_resamples=20_000, seed=1)
    ref = stats.permutation_test(
        (a.per_query["ndcg@10"], b.per_query["ndcg@10"]),
        lambda x, y, axis: np.mean(x - y, axis=axis),
        permutation_type="samples",
        n_resamples=20_000,
        alternative="two-sided",
        random_state=2,
    )
    # two Monte Carlo estimates of the same p-value: within a few standard errors
    se = np.sqrt(ref.pvalue * (1 - ref.pvalue) / 20_000) + 1e-4
    assert abs(c.p_randomization - ref.pvalue) < 6 * se


def test_bootstrap_ci_agrees_with_scipy_bootstrap_percentile() -> None:
    a, b = _systems(n=80, seed=5)
    c = compare(a, b, "ndcg@10", n_resamples=20_000, confidence=0.9, seed=4)
    d = a.per_query["ndcg@10"] - b.per_query["ndcg@10"]
    ref = stats.bootstrap(
        (d,), np.mean, n_resamples=20_000, confidence_level=0.9, method="percentile", random_state=7
    )
    assert c.ci_low == pytest.approx(ref.confidence_interval.low, abs=0.004)
    assert c.ci_high == pytest.approx(ref.confidence_interval.high, abs=0.004)
    assert c.ci_low < c.diff < c.ci_high


def test_identical_systems() -> None:
    a, _ = _systems()
    c = compare(a, a, "ndcg@10")
    assert (c.diff, c.ci_low, c.ci_high, c.p_randomization, c.p_ttest) == (0.0, 0.0, 0.0, 1.0, 1.0)
    assert not c.significant()


def test_constant_nonzero_difference() -> None:
    a = _result(np.linspace(0.2, 0.8, 30))
    b = _result(np.linspace(0.2, 0.8, 30) - 0.1)
    c = compare(a, b, "ndcg@10", n_resamples=2000)
    assert c.diff == pytest.approx(0.1)
    assert c.ci_low == pytest.approx(0.1) and c.ci_high == pytest.approx(0.1)
    assert c.p_ttest == 0.0 and c.t_statistic == np.inf
    assert c.p_randomization == pytest.approx(1 / 2001, abs=1e-3)  # only the all-keep sign pattern ties


def test_same_seed_same_result_and_query_order_is_aligned() -> None:
    a, b = _systems()
    c1 = compare(a, b, "ndcg@10", n_resamples=1000, seed=9)
    c2 = compare(a, b, "ndcg@10", n_resamples=1000, seed=9)
    assert c1 == c2
    perm = np.random.default_rng(0).permutation(60)
    b_shuffled = _result(b.per_query["ndcg@10"][perm], [b.query_ids[i] for i in perm])
    c3 = compare(a, b_shuffled, "ndcg@10", n_resamples=1000, seed=9)
    assert c3.diff == pytest.approx(c1.diff, abs=1e-15) and c3.p_ttest == pytest.approx(c1.p_ttest)
    assert c3.ci_low == pytest.approx(c1.ci_low) and c3.p_randomization == c1.p_randomization


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=2, max_size=30), st.integers(0, 2**31))
def test_antisymmetry(values: list[float], seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = _result(np.array(values))
    b = _result(rng.uniform(0, 1, len(values)))
    ab = compare(a, b, "ndcg@10", n_resamples=300, seed=seed)
    ba = compare(b, a, "ndcg@10", n_resamples=300, seed=seed)
    assert ab.diff == pytest.approx(-ba.diff, abs=1e-12)
    assert ab.p_randomization == pytest.approx(ba.p_randomization)
    assert 0 < ab.p_randomization <= 1
    assert ab.ci_low <= ab.diff + 1e-12 or ab.ci_high >= ab.diff - 1e-12


def test_bad_input() -> None:
    a, b = _systems()
    with pytest.raises(InvalidInputError, match="different queries"):
        compare(a, _result(b.per_query["ndcg@10"], [f"x{i}" for i in range(60)]), "ndcg@10")
    with pytest.raises(UnknownNameError, match="not in result_b"):
        compare(a, _result(b.per_query["ndcg@10"], metric="mrr@10"), "ndcg@10")
    with pytest.raises(UnknownNameError):
        compare(a, b, "bogus")
    with pytest.raises(InvalidInputError, match="n_resamples"):
        compare(a, b, "ndcg@10", n_resamples=0)
    with pytest.raises(InvalidInputError, match="confidence"):
        compare(a, b, "ndcg@10", confidence=1.5)
    with pytest.raises(InvalidInputError, match="at least 2"):
        compare(_result(np.array([0.5])), _result(np.array([0.4])), "ndcg@10")
    with pytest.raises(InvalidInputError, match="EvalResult"):
        compare({"ndcg@10": 1.0}, b, "ndcg@10")  # type: ignore[arg-type]
