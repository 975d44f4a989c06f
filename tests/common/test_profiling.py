from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys.common.errors import InvalidInputError, MissingDependencyError, UnknownNameError
from mlsys.common.profiling import END_TO_END, BudgetViolation, LatencyProfiler, StageStats, measure


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_stage_context_and_decorator_record_under_their_names() -> None:
    prof = LatencyProfiler()

    @prof.timed("work")
    def work(x: int) -> int:
        """Doc."""
        return x + 1

    @prof.timed
    def bare() -> None:
        pass

    for _ in range(5):
        with prof.stage("outer"):
            assert work(1) == 2
    bare()
    stats = prof.stats()
    assert stats["outer"].count == 5 and stats["work"].count == 5
    assert stats[bare.__qualname__].count == 1
    assert work.__doc__ == "Doc." and work.__name__ == "work"  # functools.wraps
    assert prof.stage_names == ["work", bare.__qualname__, "outer"]  # order first named


def test_nested_stages_keep_plain_names_and_nest_in_time() -> None:
    prof = LatencyProfiler()
    for _ in range(3):
        with prof.stage("outer"):
            _busy(1e-4)
            with prof.stage("inner"):
                _busy(1e-4)
    stats = prof.stats()
    assert set(stats) == {"outer", "inner", END_TO_END}
    assert not any("/" in name for name in stats)
    outer, inner = prof.samples("outer"), prof.samples("inner")
    assert np.all(inner < outer) and np.all(inner >= 1e-4)
    # outermost stage = one end-to-end sample each
    np.testing.assert_array_equal(prof.samples(END_TO_END), outer)


def test_request_groups_sibling_stages_into_one_end_to_end_sample() -> None:
    prof = LatencyProfiler()
    for _ in range(4):
        with prof.request():
            with prof.stage("decode"):
                _busy(5e-5)
            with prof.stage("model"):
                _busy(5e-5)
            with prof.request():  # nested request: only the outermost records
                pass
    stats = prof.stats()
    assert stats[END_TO_END].count == 4
    assert stats["decode"].count == stats["model"].count == 4
    e2e = prof.samples(END_TO_END)
    assert np.all(e2e >= prof.samples("decode") + prof.samples("model"))
    assert list(stats)[-1] == END_TO_END
    assert prof.trace() is prof.request()


def test_stage_that_raises_is_recorded_and_stack_unwinds() -> None:
    prof = LatencyProfiler()
    with pytest.raises(ZeroDivisionError), prof.stage("boom"):
        _ = 1 / 0
    with prof.stage("after"):
        pass
    stats = prof.stats()
    assert stats["boom"].count == 1 and stats["after"].count == 1
    assert stats[END_TO_END].count == 2  # "after" is outermost again: stack was unwound


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.floats(0, 10, allow_nan=False), min_size=1, max_size=300))
def test_percentiles_equal_numpy_under_capacity(values: list[float]) -> None:
    prof = LatencyProfiler(capacity=300)
    for v in values:
        prof.record("s", v)
    s = prof.stats()["s"]
    arr = np.asarray(values)
    assert s.count == len(values) and not s.sampled
    assert (s.p50, s.p95, s.p99) == tuple(np.percentile(arr, [50, 95, 99]))
    assert s.max == arr.max() and s.min == arr.min()
    assert s.mean == pytest.approx(arr.mean(), rel=1e-12, abs=1e-300)
    assert s.total == pytest.approx(arr.sum(), rel=1e-12, abs=1e-300)


def _rank_fraction(sorted_all: np.ndarray, value: float) -> float:
    return float(np.searchsorted(sorted_all, value)) / sorted_all.shape[0]


@pytest.mark.parametrize("order", ["sorted", "reversed", "shuffled"])
def test_reservoir_beyond_capacity(order: str) -> None:
    cap, n = 2_000, 200_000
    rng = np.random.default_rng(1)
    values = rng.lognormal(-7, 0.5, n)
    if order == "sorted":
        values.sort()
    elif order == "reversed":
        values = np.sort(values)[::-1].copy()
    prof = LatencyProfiler(capacity=cap, seed=3)
    for v in values.tolist():
        prof.record("s", v)
    s = prof.stats()["s"]
    # exact aggregates
    assert s.count == n and s.sampled and s.n_stored == cap
    assert s.max == values.max() and s.min == values.min()
    assert s.mean == pytest.approx(values.mean(), rel=1e-9)
    # percentiles within reservoir error: the estimate's rank in the full data is within
    # 5 standard errors sqrt(q(1-q)/cap) of q
    sorted_all = np.sort(values)
    for q, est in ((0.50, s.p50), (0.95, s.p95), (0.99, s.p99)):
        tol = 5 * math.sqrt(q * (1 - q) / cap) + 1 / cap
        assert abs(_rank_fraction(sorted_all, est) - q) < tol, (q, est)
    # the stored samples are a uniform sample of the stream positions
    stored = prof.samples("s")
    positions = np.searchsorted(sorted_all, stored) if order == "sorted" else None
    if positions is not None:
        counts = np.histogram(positions, bins=10, range=(0, n))[0]
        expected = cap / 10
        chi2 = float(((counts - expected) ** 2 / expected).sum())
        assert chi2 < 30, counts  # 9 dof: p < 0.001


def test_reservoir_is_deterministic_per_seed() -> None:
    def run(seed: int) -> np.ndarray:
        prof = LatencyProfiler(capacity=50, seed=seed)
        for i in range(5_000):
            prof.record("s", float(i))
        return prof.samples("s")

    np.testing.assert_array_equal(run(7), run(7))
    assert not np.array_equal(run(7), run(8))


def test_check_budgets() -> None:
    prof = LatencyProfiler()
    for i in range(100):
        prof.record("retrieval", 0.001 * (i + 1))  # 1..100 ms
        prof.record("rerank", 0.0005)
    with prof.stage("idle"):
        pass
    assert prof.check_budgets({"retrieval": 0.2, "rerank": 0.001}) == []
    (v,) = prof.check_budgets({"retrieval": 5e-3, "rerank": 1e-3}, percentile="p95")
    assert isinstance(v, BudgetViolation)
    assert v.stage == "retrieval" and v.statistic == "p95" and v.count == 100
    assert v.observed == pytest.approx(np.percentile(np.arange(1, 101) * 1e-3, 95))
    assert v.ratio > 1 and "retrieval: p95" in str(v)
    assert [x.statistic for x in prof.check_budgets({"retrieval": 0.099}, percentile="max")] == ["max"]
    assert prof.check_budgets({"retrieval": 0.099}, percentile="p50") == []
    assert prof.check_budgets({"retrieval": 0.0506}, percentile="mean") == []
    # an empty stage (after reset) cannot violate
    prof.reset()
    assert prof.check_budgets({"retrieval": 1e-9}) == []


def test_check_budgets_rejects_bad_input() -> None:
    prof = LatencyProfiler()
    prof.record("retrieval", 0.01)
    with pytest.raises(
        UnknownNameError, match=r"unknown stage 'retreival'; known stages: \['retrieval', 'end_to_end'\]"
    ):
        prof.check_budgets({"retreival": 1.0})
    with pytest.raises(UnknownNameError, match=r"p90.*valid"):
        prof.check_budgets({"retrieval": 1.0}, percentile="p90")
    for bad in (0, -1.0, float("nan"), float("inf"), True, "1"):
        with pytest.raises(InvalidInputError, match="budget of 'retrieval'"):
            prof.check_budgets({"retrieval": bad})  # type: ignore[dict-item]


def test_record_and_stage_validation_leave_state_unchanged() -> None:
    prof = LatencyProfiler()
    for bad in (float("nan"), -1e-3, float("inf"), True, "0.1"):
        with pytest.raises(InvalidInputError, match="duration of 'x'"):
            prof.record("x", bad)  # type: ignore[arg-type]
    for name in ("", 3, ["a"], None):
        with pytest.raises(InvalidInputError, match="stage name"):
            prof.stage(name)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError):
            prof.record(name, 1.0)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="reserved"):
        prof.stage(END_TO_END)
    with pytest.raises(InvalidInputError, match="stage name or a function"):
        prof.timed(3)  # type: ignore[call-overload]
    assert prof.stats() == {} and prof.stage_names == []
    with pytest.raises(UnknownNameError):
        prof.samples("x")
    with pytest.raises(UnknownNameError):
        prof.check_budgets({3: 1.0})  # type: ignore[dict-item]
    for capacity in (0, -5, 1.5, True):
        with pytest.raises(InvalidInputError, match="capacity"):
            LatencyProfiler(capacity=capacity)  # type: ignore[arg-type]


def test_record_end_to_end_directly() -> None:
    prof = LatencyProfiler()
    prof.record(END_TO_END, 0.25)
    prof.record("a", 0.1)  # record() never adds an end-to-end sample
    assert prof.stats()[END_TO_END].count == 1 and prof.stats()[END_TO_END].max == 0.25


def test_reset_forgets_samples_and_restarts_reservoir() -> None:
    prof = LatencyProfiler(capacity=10, seed=1)
    for i in range(1000):
        prof.record("s", float(i))
    first = prof.samples("s")
    prof.reset()
    assert prof.stats() == {} and prof.stage_names == ["s"]
    for i in range(1000):
        prof.record("s", float(i))
    np.testing.assert_array_equal(prof.samples("s"), first)


def test_report_table() -> None:
    prof = LatencyProfiler(capacity=10)
    for _ in range(3):
        prof.record("retrieval", 0.004)
    for _ in range(20):
        prof.record("rerank", 0.012)
    lines = prof.report().splitlines()
    assert lines[0].split() == [
        "stage",
        "count",
        "mean",
        "ms",
        "p50",
        "ms",
        "p95",
        "ms",
        "p99",
        "ms",
        "max",
        "ms",
    ]
    assert lines[1].split() == ["retrieval", "3", "4.000", "4.000", "4.000", "4.000", "4.000"]
    assert lines[2].split()[:3] == ["rerank", "20", "12.000"] and lines[2].split()[3] == "12.000*"
    assert lines[-1].startswith("* percentile estimated from a reservoir")
    assert "4000.000" in prof.report(unit="us")
    with pytest.raises(UnknownNameError, match="unknown unit"):
        prof.report(unit="min")
    assert "(no samples)" in LatencyProfiler().report()


def test_to_dict_and_json_round_trip() -> None:
    prof = LatencyProfiler(capacity=100, seed=5)
    with prof.request():
        with prof.stage("a"):
            pass
    prof.record("b", 0.5)
    d = prof.to_dict()
    assert d["unit"] == "seconds" and d["capacity"] == 100 and d["seed"] == 5
    assert list(d["stages"]) == ["a", "b", END_TO_END]
    assert d["stages"]["b"] == {
        "count": 1, "total": 0.5, "mean": 0.5, "min": 0.5, "p50": 0.5, "p95": 0.5, "p99": 0.5, "max": 0.5,
        "n_stored": 1, "sampled": False,
    }  # fmt: skip
    assert json.loads(prof.to_json()) == d
    assert json.loads(prof.to_json(indent=None)) == d


def test_plot_with_agg(tmp_path: Path) -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    prof = LatencyProfiler()
    rng = np.random.default_rng(0)
    for v in rng.lognormal(-6, 0.4, 500):
        prof.record("retrieval", float(v))
    for v in rng.lognormal(-5, 0.3, 500):
        prof.record("rerank", float(v))
    fig = prof.plot()
    from matplotlib.figure import Figure

    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["retrieval", "rerank"]
    assert ax.get_xscale() == "log"
    out = tmp_path / "latency.png"
    fig.savefig(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InvalidInputError, match="no samples"):
        LatencyProfiler().plot()


def test_plot_without_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    prof = LatencyProfiler()
    prof.record("a", 0.1)
    with pytest.raises(MissingDependencyError, match=r"mlsys-common\[plot\]") as info:
        prof.plot()
    assert isinstance(info.value, ImportError)


def test_measure() -> None:
    calls = []
    s = measure(lambda: calls.append(1), n=25, warmup=5)
    assert isinstance(s, StageStats)
    assert len(calls) == 30 and s.count == 25 and s.n_stored == 25
    assert 0 <= s.min <= s.p50 <= s.p95 <= s.p99 <= s.max
    assert s.mean == pytest.approx(s.total / 25)
    slow = measure(lambda: _busy(2e-4), n=5, warmup=0)
    assert slow.min >= 2e-4
    for kwargs in ({"n": 0}, {"n": 1.5}, {"warmup": -1}, {"n": True}):
        with pytest.raises(InvalidInputError):
            measure(lambda: None, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="callable"):
        measure(3)  # type: ignore[arg-type]


def test_stage_stats_get_and_from_samples() -> None:
    s = StageStats.from_samples(np.array([1.0, 2.0, 3.0, 4.0]))
    assert s.get("p50") == 2.5 and s.get("max") == 4.0
    with pytest.raises(UnknownNameError, match="valid"):
        s.get("p42")
    empty = StageStats.from_samples(np.empty(0))
    assert empty.count == 0 and math.isnan(empty.p50)


def test_importing_profiling_does_not_import_matplotlib() -> None:
    import subprocess

    code = "import sys, mlsys.common.profiling; assert 'matplotlib' not in sys.modules, 'eager import'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_recursive_stage_records_every_level_and_one_end_to_end() -> None:
    prof = LatencyProfiler()

    @prof.timed("fib")
    def fib(n: int) -> int:
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    assert fib(10) == 55
    stats = prof.stats()
    assert stats["fib"].count == 177  # calls of a naive fib(10)
    assert stats[END_TO_END].count == 1
    assert stats[END_TO_END].max == stats["fib"].max  # the outermost call is the longest
