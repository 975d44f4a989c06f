"""calibrate chooses by a lower confidence bound and a held-out check, so the target holds on new queries."""

from __future__ import annotations

import numpy as np
import pytest
from ann_testlib import space  # type: ignore[import-not-found]
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys.common.ann import (
    ExactIndex,
    FaissIndex,
    HNSWIndex,
    calibrate,
    mean_interval,
    per_query_recall,
    recall_at_k,
)
from mlsys.common.errors import InvalidInputError


@given(
    st.integers(1, 6).flatmap(
        lambda k: st.tuples(
            st.lists(st.lists(st.integers(-1, 12), min_size=k, max_size=k), min_size=1, max_size=8),
            st.lists(st.lists(st.integers(-1, 12), min_size=k, max_size=k), min_size=1, max_size=8),
        )
    )
)
@settings(max_examples=100, deadline=None)
def test_per_query_recall_matches_sets(rows: tuple[list[list[int]], list[list[int]]]) -> None:
    found, truth = rows
    n = min(len(found), len(truth))
    f, t = np.array(found[:n]), np.array(truth[:n])
    got = per_query_recall(f, t)
    for i in range(n):
        tset = {x for x in t[i] if x >= 0}
        want = len(tset & set(f[i].tolist())) / len(tset) if tset else 1.0
        assert got[i] == pytest.approx(want)
    has = [bool({x for x in t[i] if x >= 0}) for i in range(n)]
    assert recall_at_k(f, t) == pytest.approx(got[has].mean() if any(has) else 1.0)


@given(st.lists(st.floats(0, 1), min_size=2, max_size=60), st.sampled_from([0.8, 0.95, 0.99]))
@settings(max_examples=60, deadline=None)
def test_mean_interval_is_students_t(values: list[float], conf: float) -> None:
    stats = pytest.importorskip("scipy.stats")
    v = np.array(values)
    lo, hi = mean_interval(v, conf)
    se = v.std(ddof=1) / np.sqrt(v.size)
    half = stats.t.ppf(0.5 + conf / 2, v.size - 1) * se
    assert lo == pytest.approx(max(0.0, v.mean() - half), abs=1e-9)
    assert hi == pytest.approx(min(1.0, v.mean() + half), abs=1e-9)
    low, one = mean_interval(v, conf, sided="lower")
    assert one == 1.0 and low == pytest.approx(
        max(0.0, v.mean() - stats.t.ppf(conf, v.size - 1) * se), abs=1e-9
    )
    assert mean_interval([0.7], conf) == (0.7, 0.7)
    with pytest.raises(InvalidInputError):
        mean_interval([], conf)
    with pytest.raises(InvalidInputError):
        mean_interval(v, 1.0)


def _clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, dim)).astype(np.float32) * 3
    return (centres[rng.integers(0, 40, n)] + rng.standard_normal((n, dim))).astype(np.float32)


@pytest.fixture(scope="module")
def world() -> tuple[np.ndarray, np.ndarray]:
    x = _clustered(6000, 32, 0)
    return x[:4000], x[4000:]  # index, query pool (same distribution, never indexed)


@pytest.mark.parametrize(
    "make",
    [
        lambda: HNSWIndex(space(32, "l2"), M=6, ef_construction=40),
        lambda: FaissIndex(space(32, "l2"), "HNSW6"),
    ],
    ids=["hnswlib", "faiss"],
)
def test_target_holds_on_disjoint_queries(make: object, world: tuple[np.ndarray, np.ndarray]) -> None:
    x, pool = world
    index = make()  # type: ignore[operator]
    index.add(np.arange(x.shape[0]), x)
    exact = ExactIndex(space(32, "l2"))
    exact.add(np.arange(x.shape[0]), x)
    sample, disjoint = pool[:300], pool[300:]
    truth = exact.search(disjoint, 10)[0]
    res = calibrate(index, sample, target_recall=0.95, k=10)
    assert res.met and res.lower_bound >= 0.95 and res.holdout_recall >= 0.95
    assert res.n_queries == 300 and res.n_holdout == 75 and res.confidence == 0.99
    lo, hi = res.recall_interval
    assert lo <= res.recall <= hi
    assert recall_at_k(index.search(disjoint, 10)[0], truth) >= 0.95
    # every step below the chosen value failed the rule; the chosen one passed it
    knob = next(iter(res.params))
    assert all(
        s.lower_bound < 0.95 or s.holdout_recall < 0.95 for s in res.steps if s.value < res.params[knob]
    )


def test_bound_is_stricter_than_the_sample_mean(world: tuple[np.ndarray, np.ndarray]) -> None:
    x, pool = world
    index = HNSWIndex(space(32, "l2"), M=6, ef_construction=40)
    index.add(np.arange(x.shape[0]), x)
    res = calibrate(index, pool[:300], target_recall=0.95, k=10)
    chosen = res.params["ef"]
    naive = min(s.value for s in res.steps if s.recall >= 0.95)
    assert naive <= chosen  # the mean alone would have stopped no later
    loose = calibrate(index, pool[:300], target_recall=0.95, k=10, confidence=0.6, holdout=0.0)
    assert loose.params["ef"] <= chosen and loose.n_holdout == 0


def test_small_samples_are_not_split_and_seed_is_reproducible(world: tuple[np.ndarray, np.ndarray]) -> None:
    x, pool = world
    index = HNSWIndex(space(32, "l2"), M=6, ef_construction=40)
    index.add(np.arange(x.shape[0]), x)
    small = calibrate(index, pool[:50], target_recall=0.9, k=10)
    assert small.n_holdout == 0 and np.isnan(small.holdout_recall)
    a = calibrate(index, pool[:200], target_recall=0.9, k=10, seed=3, apply=False)
    b = calibrate(index, pool[:200], target_recall=0.9, k=10, seed=3, apply=False)
    assert a.params == b.params and a.lower_bound == b.lower_bound and a.holdout_recall == b.holdout_recall


@pytest.mark.parametrize(
    "bad", [{"confidence": 1.0}, {"confidence": 0}, {"holdout": 0.95}, {"holdout": -0.1}]
)
def test_bad_confidence_and_holdout(bad: dict[str, float], world: tuple[np.ndarray, np.ndarray]) -> None:
    x, pool = world
    index = HNSWIndex(space(32, "l2"))
    index.add(np.arange(100), x[:100])
    with pytest.raises(InvalidInputError):
        calibrate(index, pool[:30], **bad)  # type: ignore[arg-type]
