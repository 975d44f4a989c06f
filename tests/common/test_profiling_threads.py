from __future__ import annotations

import math
import pickle
import threading

import numpy as np
import pytest

from mlsys.common.errors import InvalidInputError
from mlsys.common.profiling import END_TO_END, LatencyProfiler


def _run_threads(n_threads: int, target) -> None:  # type: ignore[no-untyped-def]
    barrier = threading.Barrier(n_threads)
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            barrier.wait()
            target(i)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_concurrent_nested_stages_count_exactly() -> None:
    prof = LatencyProfiler(capacity=1_000)
    n_threads, n_iter = 8, 1_500

    def work(i: int) -> None:
        for _ in range(n_iter):
            with prof.request():
                with prof.stage("outer"):
                    with prof.stage(f"inner{i % 2}"):
                        pass
            with prof.stage("solo"):
                pass

    _run_threads(n_threads, work)
    stats = prof.stats()
    total = n_threads * n_iter
    assert stats["outer"].count == total and stats["solo"].count == total
    assert stats["inner0"].count == stats["inner1"].count == total // 2
    # per-thread stacks: each request and each outermost "solo" is one end-to-end sample
    assert stats[END_TO_END].count == 2 * total
    assert stats["outer"].sampled  # 1,500 per thread > capacity 1,000: reservoir merged across threads


def test_concurrent_records_merge_to_numpy_percentiles() -> None:
    # capacity >= all samples: a thread that starts after another finished adopts its buffers
    prof = LatencyProfiler(capacity=12_000)
    rng = np.random.default_rng(0)
    per_thread = [rng.exponential(1e-3, 2_000) for _ in range(6)]

    def work(i: int) -> None:
        for v in per_thread[i].tolist():
            prof.record("s", v)

    _run_threads(6, work)
    s = prof.stats()["s"]
    all_values = np.concatenate(per_thread)
    assert s.count == all_values.size and not s.sampled
    assert (s.p50, s.p95, s.p99) == tuple(np.percentile(all_values, [50, 95, 99]))
    assert s.max == all_values.max() and s.mean == pytest.approx(all_values.mean(), rel=1e-12)


def test_concurrent_reservoirs_weighted_merge() -> None:
    # Threads with very different volumes: the merge must weight each stored sample by the
    # number of samples it stands for, or the small fast thread would dominate.
    prof = LatencyProfiler(capacity=1_000, seed=2)
    rng = np.random.default_rng(4)
    slow = rng.uniform(9e-3, 11e-3, 40_000)  # 40k samples around 10 ms
    fast = rng.uniform(0.9e-3, 1.1e-3, 2_000)  # 2k samples around 1 ms

    def work(i: int) -> None:
        for v in (slow if i == 0 else fast).tolist():
            prof.record("s", v)

    _run_threads(2, work)
    s = prof.stats()["s"]
    all_values = np.sort(np.concatenate([slow, fast]))
    assert s.count == all_values.size and s.sampled
    for q, est in ((0.5, s.p50), (0.95, s.p95), (0.99, s.p99)):
        frac = np.searchsorted(all_values, est) / all_values.size
        assert abs(frac - q) < 5 * math.sqrt(q * (1 - q) / 1_000) + 2e-3, (q, est, frac)
    # ~4.8% of samples are fast: p50 is a slow one
    assert s.p50 > 9e-3


def test_stats_while_recording_is_safe() -> None:
    prof = LatencyProfiler(capacity=500)
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            with prof.stage("w"):
                pass

    threads = [threading.Thread(target=writer) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        seen = 0
        for _ in range(40):
            s = prof.stats().get("w")
            if s is not None:
                assert s.count >= seen  # monotone
                assert s.min <= s.p50 <= s.max
                seen = s.count
            prof.report()
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert prof.stats()["w"].count >= seen


def test_finished_threads_buffers_are_adopted() -> None:
    prof = LatencyProfiler(capacity=100)
    for _ in range(30):  # 30 short-lived threads, one at a time
        t = threading.Thread(target=lambda: [prof.record("s", 1e-3) for _ in range(10)])
        t.start()
        t.join()
    prof.record("s", 1e-3)  # main thread
    assert prof.stats()["s"].count == 301
    assert len(prof._states) <= 2  # main thread + one adopted state


def test_reset_while_a_stage_is_open() -> None:
    prof = LatencyProfiler()
    prof.record("a", 1.0)
    with prof.stage("open"):
        prof.reset()
    stats = prof.stats()
    assert "a" not in stats and stats["open"].count == 1 and stats[END_TO_END].count == 1


def test_pickle_round_trip_keeps_samples_and_keeps_recording() -> None:
    prof = LatencyProfiler(capacity=100, seed=3)
    values = np.random.default_rng(0).exponential(1e-3, 1_000)
    for v in values[:50].tolist():
        prof.record("small", v)
    for v in values.tolist():
        prof.record("big", v)  # beyond capacity: a reservoir
    with prof.request():
        pass
    back = pickle.loads(pickle.dumps(prof))
    assert back.capacity == 100 and back.seed == 3 and back.stage_names == ["small", "big"]
    assert back.stats() == prof.stats()
    np.testing.assert_array_equal(back.samples("big"), prof.samples("big"))
    for v in values.tolist():  # keeps recording: the restored reservoir continues
        back.record("big", v)
    s = back.stats()["big"]
    assert s.count == 2_000 and s.n_stored == 100 and s.max == values.max()


def test_merge_workers_equals_one_profiler() -> None:
    rng = np.random.default_rng(5)
    chunks = [rng.exponential(1e-3, n) for n in (300, 700, 50)]
    workers = []
    for chunk in chunks:
        w = LatencyProfiler(capacity=5_000)
        for v in chunk.tolist():
            w.record("s", v)
        workers.append(pickle.loads(pickle.dumps(w)))  # as if returned by a worker process
    total = LatencyProfiler(capacity=5_000)
    for w in workers:
        total.merge(w)
    s = total.stats()["s"]
    everything = np.concatenate(chunks)
    assert s.count == everything.size and not s.sampled
    assert (s.p50, s.p95, s.p99) == tuple(np.percentile(everything, [50, 95, 99]))
    assert workers[0].stats()["s"].count == 300  # sources untouched
    with pytest.raises(InvalidInputError, match="capacity"):
        total.merge(LatencyProfiler(capacity=10))
    with pytest.raises(InvalidInputError, match="itself"):
        total.merge(total)


def test_merge_reservoirs_weighted() -> None:
    rng = np.random.default_rng(6)
    a_vals, b_vals = rng.uniform(0, 1, 50_000), rng.uniform(1, 2, 5_000)
    a, b = LatencyProfiler(capacity=1_000, seed=1), LatencyProfiler(capacity=1_000, seed=2)
    for v in a_vals.tolist():
        a.record("s", v)
    for v in b_vals.tolist():
        b.record("s", v)
    a.merge(b)
    s = a.stats()["s"]
    everything = np.sort(np.concatenate([a_vals, b_vals]))
    assert s.count == everything.size and s.max == everything.max()
    for q, est in ((0.5, s.p50), (0.95, s.p95)):
        frac = np.searchsorted(everything, est) / everything.size
        assert abs(frac - q) < 5 * math.sqrt(q * (1 - q) / 1_000) + 2e-3, (q, est, frac)
