"""Overhead of one LatencyProfiler stage enter/exit, side by side with its baselines.

Every variant runs the same loop of ``N`` iterations; the variants are interleaved round by round
(so a load spike hits all of them) and the per-iteration median over rounds is reported.

- ``empty loop``: ``for _ in range(N): pass`` (loop cost, subtracted from every other row).
- ``perf_counter_ns pair``: two bare ``time.perf_counter_ns()`` calls, the floor of any timer.
- ``minimal with-timer``: a ``__slots__`` class whose ``__enter__``/``__exit__`` only push/pop a
  ``perf_counter_ns`` start time: the floor of any ``with``-based timer in Python.
- ``contextlib timer``: the common ``@contextlib.contextmanager`` timer appending to a list.
- ``stage (in request)``: ``with prof.stage("x")`` inside an open ``prof.request()``.
- ``stage (outermost)``: ``with prof.stage("x")`` that also records an end-to-end sample.
- ``stage beyond capacity``: as in request, with the reservoir full (Algorithm L path).
- ``timed() call`` vs ``plain call``: the decorator on a no-op function.

Run: ``pytest benchmarks/common/test_profiling_bench.py -s`` (add ``MLSYS_BENCH_SMOKE=1`` for CI).
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from time import perf_counter_ns
from types import TracebackType
from typing import Any

import numpy as np

from conftest import SMOKE, size
from mlsys.common.profiling import LatencyProfiler

N = size(200_000, 2_000)
ROUNDS = size(15, 2)


class _MinimalTimer:
    __slots__ = ("samples", "stack")

    def __init__(self) -> None:
        self.stack: list[int] = []
        self.samples: list[int] = []

    def __enter__(self) -> _MinimalTimer:
        self.stack.append(perf_counter_ns())
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stack.pop()
        perf_counter_ns()


def _variants() -> dict[str, Callable[[], None]]:
    prof_req = LatencyProfiler(capacity=N * ROUNDS + 1)
    prof_top = LatencyProfiler(capacity=N * ROUNDS + 1)
    prof_full = LatencyProfiler(capacity=1_000)
    for _ in range(2_000):  # fill the reservoir
        prof_full.record("x", 1e-6)
    minimal = _MinimalTimer()
    sink: list[int] = []

    @contextlib.contextmanager
    def ctx_timer() -> Iterator[None]:
        t0 = perf_counter_ns()
        try:
            yield
        finally:
            sink.append(perf_counter_ns() - t0)

    def plain() -> None:
        pass

    timed = prof_req.timed("timed")(plain)

    def empty() -> None:
        for _ in range(N):
            pass

    def bare() -> None:
        for _ in range(N):
            perf_counter_ns()
            perf_counter_ns()

    def minimal_with() -> None:
        for _ in range(N):
            with minimal:
                pass

    def contextlib_timer() -> None:
        for _ in range(N):
            with ctx_timer():
                pass
        sink.clear()

    def stage_in_request() -> None:
        stage = prof_req.stage("x")
        with prof_req.request():
            for _ in range(N):
                with stage:
                    pass

    def stage_outermost() -> None:
        stage = prof_top.stage("x")
        for _ in range(N):
            with stage:
                pass

    def stage_lookup() -> None:
        with prof_req.request():
            for _ in range(N):
                with prof_req.stage("y"):
                    pass

    def stage_beyond_capacity() -> None:
        stage = prof_full.stage("x")
        with prof_full.request():
            for _ in range(N):
                with stage:
                    pass

    def plain_call() -> None:
        with prof_req.request():
            for _ in range(N):
                plain()

    def timed_call() -> None:
        with prof_req.request():
            for _ in range(N):
                timed()

    return {
        "empty loop": empty,
        "perf_counter_ns pair": bare,
        "minimal with-timer": minimal_with,
        "contextlib timer": contextlib_timer,
        "stage (in request)": stage_in_request,
        "stage + name lookup": stage_lookup,
        "stage (outermost, +e2e)": stage_outermost,
        "stage beyond capacity": stage_beyond_capacity,
        "plain call": plain_call,
        "timed() call": timed_call,
    }


def _measure_interleaved() -> dict[str, float]:
    variants = _variants()
    per_round: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(ROUNDS):
        for name, fn in variants.items():
            t0 = perf_counter_ns()
            fn()
            per_round[name].append((perf_counter_ns() - t0) / N)
    return {name: statistics.median(v) for name, v in per_round.items()}


def _machine() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return (
        f"python {sys.version.split()[0]}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load avg {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}, numpy {np.__version__}, "
        f"N={N}, rounds={ROUNDS}, smoke={SMOKE}"
    )


def test_stage_overhead(benchmark: Any) -> None:
    ns = benchmark.pedantic(_measure_interleaved, rounds=1, iterations=1)
    loop = ns["empty loop"]
    over = {name: v - loop for name, v in ns.items()}
    pair = over["perf_counter_ns pair"]
    floor = over["minimal with-timer"]
    print(f"\nLatencyProfiler stage overhead ({_machine()})")
    print(f"{'variant':26s} {'ns/iter':>9s} {'minus loop':>11s} {'x pc pair':>10s} {'x minimal':>10s}")
    for name, v in ns.items():
        print(f"{name:26s} {v:9.1f} {over[name]:11.1f} {over[name] / pair:10.2f} {over[name] / floor:10.2f}")
    decorator = over["timed() call"] - over["plain call"]
    print(
        f"{'timed() minus plain call':26s} {'':9s} {decorator:11.1f} {decorator / pair:10.2f} {decorator / floor:10.2f}"
    )
    stage = over["stage (in request)"]
    benchmark.extra_info["ratios"] = {  # overhead (loop subtracted) / the minimal with-timer's overhead
        f"{name}_vs_minimal_timer": over[name] / floor for name in over if name != "minimal with-timer"
    }
    assert stage > 0
    if not SMOKE:
        # Ratios only (the machine is shared): a stage costs a small multiple of the floor of any
        # with-based timer, and less than the usual contextlib timer.
        assert stage < 4.0 * floor, (stage, floor)
        assert stage < over["contextlib timer"], (stage, over["contextlib timer"])
        assert over["stage beyond capacity"] < 1.5 * stage + 0.1 * floor


def test_stats_cost(benchmark: Any) -> None:
    """Cost of reading the statistics of one full 100k-sample stage (percentiles of the buffer)."""
    n = size(100_000, 1_000)
    prof = LatencyProfiler(capacity=n)
    for v in np.random.default_rng(0).exponential(1e-3, n).tolist():
        prof.record("s", v)
    stats = benchmark(prof.stats)
    assert stats["s"].count == n
    ours: list[float] = []
    ref: list[float] = []
    samples = prof.samples("s")
    for _ in range(size(9, 2)):  # interleaved
        t0 = time.perf_counter()
        prof.stats()
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        np.percentile(samples, [50, 95, 99])
        ref.append(time.perf_counter() - t0)
    o, r = statistics.median(ours), statistics.median(ref)
    print(
        f"\nstats() of one {n}-sample stage: {o * 1e3:.2f} ms vs numpy.percentile alone {r * 1e3:.2f} ms ({o / r:.2f}x)"
    )


def test_reservoir_accuracy(benchmark: Any) -> None:
    """Percentiles from a full reservoir vs numpy.percentile over every sample (rank error in SEs)."""
    n, cap = size(1_000_000, 20_000), size(10_000, 1_000)
    values = np.random.default_rng(0).lognormal(-7, 0.6, n)
    prof = LatencyProfiler(capacity=cap, seed=0)

    def record_all() -> None:
        prof.reset()
        rec = prof.record
        for v in values.tolist():
            rec("s", v)

    benchmark.pedantic(record_all, rounds=1, iterations=1)
    s = prof.stats()["s"]
    assert s.count == n and s.max == values.max()
    exact = np.percentile(values, [50, 95, 99])
    sorted_all = np.sort(values)
    print(f"\nreservoir capacity {cap} over {n} samples (lognormal):")
    for q, est, ref in zip((0.50, 0.95, 0.99), (s.p50, s.p95, s.p99), exact):
        rank = np.searchsorted(sorted_all, est) / n
        se = np.sqrt(q * (1 - q) / cap)
        print(
            f"  p{round(q * 100)}: {est * 1e6:8.2f} us vs exact {ref * 1e6:8.2f} us ({(est / ref - 1) * 100:+.2f}%), rank {rank:.4f} ({(rank - q) / se:+.2f} SE)"
        )
        assert abs(rank - q) < 5 * se + 1 / cap
