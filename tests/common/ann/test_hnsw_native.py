"""The compiled fast path of ``HNSWIndex.search`` (``mlsys.common.ann._hnswfast``).

It must give exactly what the pure-Python fast path gives, hand every input it does not serve to
the general path untouched (returning None), always unregister from the lock, and propagate
errors it does not own. The whole VectorIndex contract also runs on both paths (``native=False``
is a backend of its own in ``ann_testlib.BACKENDS``).
"""

from __future__ import annotations

import gc
import shutil
import sys
import threading
from typing import Any

import numpy as np
import pytest
from ann_testlib import space, vectors  # type: ignore[import-not-found]
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys.common.ann import HNSW_NATIVE, HNSWIndex, RWLock
from mlsys.common.errors import InvalidInputError

pytest.importorskip("hnswlib")
fast = pytest.importorskip("mlsys.common.ann._hnswfast", reason="compiled extension not built")


def test_extension_is_built_where_a_compiler_exists() -> None:
    # setup.py marks the extension optional; a silent build failure must not go unnoticed here
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler on PATH")
    assert HNSW_NATIVE
    assert HNSWIndex(space(8))._native is fast.search
    assert HNSWIndex(space(8), native=False)._native is None
    assert HNSWIndex(space(8, "cosine"))._native is None  # queries need normalising: Python path


def pair(metric: str, n: int = 300, dim: int = 16, seed: int = 0) -> tuple[HNSWIndex, HNSWIndex]:
    x = vectors(n, dim, seed=seed)
    ids = np.arange(n, dtype=np.int64) * 5 + 11
    out = []
    for native in (True, False):
        index = HNSWIndex(space(dim, metric), native=native, seed=3)
        index.add(ids, x)
        out.append(index)
    return out[0], out[1]


@pytest.mark.parametrize("metric", ["ip", "l2", "cosine"])
def test_identical_to_python_path(metric: str) -> None:
    nat, py = pair(metric)
    q = vectors(40, 16, seed=1)
    cases = [q[:1], q, q[::3], np.concatenate([q, q], axis=1)[:, :16]]
    for queries in cases:
        for k in (1, 10, 300):
            a, b = nat.search(queries, k), py.search(queries, k)
            assert a[0].dtype == np.int64 and a[1].dtype == np.float32
            assert a[0].flags.writeable and a[1].flags.writeable
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])


@settings(max_examples=40, deadline=None)
@given(
    metric=st.sampled_from(["ip", "l2"]),
    nq=st.integers(1, 6),
    k=st.integers(1, 60),
    removed=st.integers(0, 30),
    seed=st.integers(0, 2**16),
)
def test_identical_to_python_path_after_removals(
    metric: str, nq: int, k: int, removed: int, seed: int
) -> None:
    nat, py = pair(metric, n=50, dim=8, seed=seed % 7)
    gone = np.arange(removed, dtype=np.int64) * 5 + 11
    nat.remove(gone)
    py.remove(gone)
    q = vectors(nq, 8, seed=seed)
    a, b = nat.search(q, k), py.search(q, k)  # k beyond the live count pads with -1 on both
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.isin(a[0], gone).any()


def test_bad_queries_get_the_same_errors() -> None:
    nat, py = pair("ip")
    bad: list[Any] = [
        np.full((1, 16), np.nan, np.float32),
        np.full((1, 16), np.inf, np.float32),
        np.ones((1, 15), np.float32),
        np.ones((0, 16), np.float32),
        "query",
    ]
    for queries in bad:
        with pytest.raises(Exception) as want:
            py.search(queries, 3)
        with pytest.raises(type(want.value)):
            nat.search(queries, 3)
    for k in (0, -1, True, 2.0):
        with pytest.raises(Exception) as want:
            py.search(vectors(1, 16), k)
        with pytest.raises(type(want.value)):
            nat.search(vectors(1, 16), k)
    assert nat._lock.readers == 0


def test_unserved_inputs_return_none_and_touch_nothing() -> None:
    nat, _ = pair("ip", n=20, dim=8)
    native, lock = nat.hnswlib_index, nat._lock
    q = vectors(2, 8)
    unserved: list[tuple[Any, Any]] = [
        (q.astype(np.float64), 3),
        (q.astype(">f4"), 3),
        (q[0], 3),  # 1-D: the general path reshapes
        (q[:, :7], 3),  # narrower than the index: knn_query would read past the buffer
        (np.empty((0, 8), np.float32), 3),
        (q.tolist(), 3),
        (np.ma.masked_array(q), 3),  # ndarray subclasses go the general way
        (q, 0),
        (q, 21),  # more than the live items
        (q, True),
        (q, 2**70),
        (q, np.int64(3)),
    ]
    for queries, k in unserved:
        assert fast.search(native, queries, k, 8, 20, False, lock) is None
        assert lock.readers == 0
    ids, scores = fast.search(native, q, 3, 8, 20, False, lock)
    assert ids.shape == scores.shape == (2, 3) and lock.readers == 0
    with pytest.raises(TypeError, match="7 positional"):
        fast.search(native, q, 3)


def test_a_waiting_writer_sends_the_search_to_the_general_path() -> None:
    nat, _ = pair("ip", n=20, dim=8)
    lock = nat._lock
    lock._writer = True  # as acquire_write sets it before waiting for readers to drain
    try:
        assert fast.search(nat.hnswlib_index, vectors(1, 8), 3, 8, 20, False, lock) is None
        assert lock.readers == 0
    finally:
        lock._writer = False


FRESH = object()


class FakeNative:
    """Stands in for hnswlib.Index: returns fresh outputs like hnswlib's, canned ones, or raises.

    ``keep=True`` keeps a reference to the fresh outputs it returned (hnswlib never does).
    """

    def __init__(self, result: Any = FRESH, error: BaseException | None = None, keep: bool = False) -> None:
        self.result, self.error, self.keep = result, error, keep
        self.kept: Any = None
        self.seen_readers = -1
        self.lock: RWLock | None = None

    def knn_query(self, queries: Any, k: int) -> Any:
        if self.lock is not None:
            self.seen_readers = self.lock.readers
        if self.error is not None:
            raise self.error
        if self.result is not FRESH:
            return self.result
        labels = np.arange(queries.shape[0] * k, dtype=np.uint64).reshape(-1, k)
        dist = np.linspace(0, 1, labels.size, dtype=np.float32).reshape(labels.shape)
        if self.keep:
            self.kept = (labels, dist)
        return labels, dist


def test_lock_is_held_during_the_call_and_released_on_every_exit() -> None:
    lock = RWLock()
    q = vectors(2, 4)
    ok = FakeNative()
    ok.lock = lock
    ids, scores = fast.search(ok, q, 3, 4, 10, False, lock)
    assert ok.seen_readers == 1 and lock.readers == 0
    np.testing.assert_array_equal(ids, np.arange(6).reshape(2, 3))
    np.testing.assert_allclose(scores, 1 - np.linspace(0, 1, 6, dtype=np.float32).reshape(2, 3))
    assert ids.dtype == np.int64
    # a RuntimeError (hnswlib: fewer than k reachable) means "general path"; others propagate
    assert fast.search(FakeNative(error=RuntimeError("contiguous")), q, 3, 4, 10, False, lock) is None
    with pytest.raises(ValueError, match="boom"):
        fast.search(FakeNative(error=ValueError("boom")), q, 3, 4, 10, False, lock)
    with pytest.raises(KeyboardInterrupt):
        fast.search(FakeNative(error=KeyboardInterrupt()), q, 3, 4, 10, False, lock)
    assert lock.readers == 0


def test_malformed_library_outputs_are_refused() -> None:
    lock = RWLock()
    q = vectors(1, 4)
    labels = np.arange(3, dtype=np.uint64).reshape(1, 3)
    dist = np.zeros((1, 3), np.float32)
    for result in [
        None,
        (labels, dist, dist),
        (labels,),
        (labels.tolist(), dist),
        (labels.astype(np.int32), dist),
        (labels, dist.astype(np.float64)),
        (labels, np.zeros((1, 4), np.float32)),
        (labels, np.zeros((1, 6), np.float32)[:, ::2]),  # right shape, not contiguous
    ]:
        with pytest.raises(TypeError, match="knn_query returned"):
            fast.search(FakeNative(result=result), q, 3, 4, 10, False, lock)
        assert lock.readers == 0


def test_shared_outputs_are_viewed_not_retyped() -> None:
    # labels someone else still references never change dtype under them (fresh ones are
    # retyped in place); scores are converted in place either way, as the Python path does
    lock = RWLock()
    native = FakeNative(keep=True)
    ids, scores = fast.search(native, vectors(1, 4), 3, 4, 10, True, lock)
    labels, dist = native.kept
    assert labels.dtype == np.uint64 and ids.dtype == np.int64
    assert np.shares_memory(ids, labels) and ids is not labels and scores is dist
    np.testing.assert_array_equal(dist, -np.linspace(0, 1, 3, dtype=np.float32).reshape(1, 3))


def test_non_finite_best_scores_fall_back_like_the_python_path() -> None:
    # a NaN/inf query makes the best (first) score of its row non-finite: the general path then
    # validates and raises; later scores that overflow for a finite query are answered as they are
    lock = RWLock()
    labels = np.arange(6, dtype=np.uint64).reshape(2, 3)
    bad_first = np.array([[0.0, 0.5, 1.0], [np.nan, np.nan, np.nan]], np.float32)
    assert fast.search(FakeNative(result=(labels, bad_first)), vectors(2, 4), 3, 4, 10, False, lock) is None
    late_inf = np.array([[0.0, 0.5, np.inf], [0.1, 0.2, 0.3]], np.float32)
    ids, scores = fast.search(FakeNative(result=(labels, late_inf)), vectors(2, 4), 3, 4, 10, False, lock)
    assert np.isneginf(scores[0, 2]) and np.isfinite(scores[1]).all() and ids.dtype == np.int64
    assert lock.readers == 0


class WatchedLock(RWLock):
    """An RWLock that counts wake-ups and can fail them."""

    __slots__ = ("fail", "woken")

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.woken, self.fail = 0, fail

    def wake_writer(self) -> None:
        self.woken += 1
        if self.fail:
            raise OSError("wake failed")
        super().wake_writer()


class WriterArrives(FakeNative):
    """A writer raises its flag while knn_query runs (hnswlib releases the GIL there)."""

    def knn_query(self, queries: Any, k: int) -> Any:
        assert self.lock is not None
        self.lock._writer = True
        return super().knn_query(queries, k)


def test_a_writer_that_arrived_during_the_call_is_woken() -> None:
    lock = WatchedLock()
    native = WriterArrives()
    native.lock = lock
    ids, _ = fast.search(native, vectors(1, 4), 3, 4, 10, False, lock)
    assert ids.shape == (1, 3) and lock.woken == 1 and lock.readers == 0
    lock._writer = False
    native = WriterArrives(error=ValueError("search failed"))
    native.lock = lock
    with pytest.raises(ValueError, match="search failed"):
        fast.search(native, vectors(1, 4), 3, 4, 10, False, lock)
    assert lock.woken == 2 and lock.readers == 0


def test_a_failing_release_chains_the_search_error_like_finally() -> None:
    lock = WatchedLock(fail=True)
    native = WriterArrives(error=ValueError("search failed"))
    native.lock = lock
    with pytest.raises(OSError, match="wake failed") as info:
        fast.search(native, vectors(1, 4), 3, 4, 10, False, lock)
    assert isinstance(info.value.__context__, ValueError) and lock.readers == 0
    assert info.value.__context__.__traceback__ is not None
    lock._writer = False
    native = WriterArrives()  # the search succeeded: the release error alone, no result
    native.lock = lock
    with pytest.raises(OSError, match="wake failed") as info:
        fast.search(native, vectors(1, 4), 3, 4, 10, False, lock)
    assert info.value.__context__ is None and lock.readers == 0


def test_an_unbalanced_lock_is_reported_not_hidden() -> None:
    class Drains(FakeNative):
        def knn_query(self, queries: Any, k: int) -> Any:
            assert self.lock is not None
            self.lock._active.clear()  # someone popped this reader's registration
            return super().knn_query(queries, k)

    lock = RWLock()
    native = Drains()
    native.lock = lock
    with pytest.raises(RuntimeError, match="imbalance"):
        fast.search(native, vectors(1, 4), 3, 4, 10, False, lock)


def test_refcounts_do_not_leak() -> None:
    nat, _ = pair("ip", n=50, dim=8)
    q = vectors(1, 8)
    native, lock = nat.hnswlib_index, nat._lock
    for _ in range(50):
        fast.search(native, q, 5, 8, 50, False, lock)
    before = (sys.getrefcount(q), sys.getrefcount(native), sys.getrefcount(lock), sys.getrefcount(None))
    for _ in range(1000):
        ids, scores = fast.search(native, q, 5, 8, 50, False, lock)
        assert sys.getrefcount(ids) == 2 and sys.getrefcount(scores) == 2
        fast.search(native, q, 500, 8, 50, False, lock)  # None
    del ids, scores
    after = (sys.getrefcount(q), sys.getrefcount(native), sys.getrefcount(lock), sys.getrefcount(None))
    assert after[:3] == before[:3]
    assert abs(after[3] - before[3]) < 100  # None is immortal-ish; a leak would add ~1000


def test_refcounts_do_not_leak_on_any_path() -> None:
    # every exit of the C code, 500 times each; a leaked or over-released reference to a shared
    # object (the int64/uint64 dtypes, the queries, the lock, None) shows as a drift
    q = vectors(2, 4)
    labels = np.arange(6, dtype=np.uint64).reshape(2, 3)
    watched: dict[str, Any] = {
        "int64": np.dtype(np.int64),
        "uint64": np.dtype(np.uint64),
        "float32": np.dtype(np.float32),
        "queries": q,
        "None": None,
    }
    failing = WatchedLock(fail=True)

    def writer_failing_wake() -> Any:
        native = WriterArrives()
        native.lock = failing
        failing._writer = False
        return fast.search(native, q, 3, 4, 10, False, failing)

    lock = RWLock()
    paths = {
        "fresh": lambda: fast.search(FakeNative(), q, 3, 4, 10, False, lock),
        "fresh l2": lambda: fast.search(FakeNative(), q, 3, 4, 10, True, lock),
        "shared": lambda: fast.search(FakeNative(keep=True), q, 3, 4, 10, False, lock),
        "runtime error": lambda: fast.search(FakeNative(error=RuntimeError("x")), q, 3, 4, 10, False, lock),
        "other error": lambda: fast.search(FakeNative(error=ValueError("x")), q, 3, 4, 10, False, lock),
        "non-finite": lambda: fast.search(
            FakeNative(result=(labels, np.full((2, 3), np.nan, np.float32))), q, 3, 4, 10, False, lock
        ),
        "malformed": lambda: fast.search(FakeNative(result=(labels,)), q, 3, 4, 10, False, lock),
        "unserved": lambda: fast.search(FakeNative(), q, 99, 4, 10, False, lock),
        "failing release": writer_failing_wake,
    }
    for name, call in paths.items():

        def run(call: Any = call) -> None:
            try:
                call()
            except (ValueError, TypeError, OSError):
                pass

        for _ in range(20):
            run()
        gc.collect()  # a raised error and its fake's frame form a cycle: not a C-level leak
        before = {k: sys.getrefcount(v) for k, v in watched.items()}
        for _ in range(500):
            run()
        gc.collect()
        after = {k: sys.getrefcount(v) for k, v in watched.items()}
        drift = {
            k: after[k] - before[k] for k in after if abs(after[k] - before[k]) > (50 if k == "None" else 0)
        }
        assert not drift, f"{name}: reference drift {drift}"
        assert lock.readers == 0 and failing.readers == 0


def test_the_built_extension_is_not_older_than_its_source() -> None:
    # editable installs build the module next to its source; a stale one would test old code
    from pathlib import Path

    built = Path(fast.__file__)
    source = built.with_name("_hnswfast.c")
    if not source.exists():
        pytest.skip("installed from a wheel: no source next to the module")
    assert built.stat().st_mtime >= source.stat().st_mtime, (
        f"{built.name} is older than _hnswfast.c: re-run `pip install -e packages/common`"
    )


def test_concurrent_searches_and_writes_on_the_native_path() -> None:
    index = HNSWIndex(space(8, "l2"), seed=1)
    x = vectors(400, 8, seed=4)
    index.add(np.arange(200), x[:200])
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                ids, _ = index.search(x[:4], 5)
                assert ids.shape == (4, 5) and (ids >= 0).all()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(200, 400, 10):
        index.add(np.arange(i, i + 10), x[i : i + 10])
        index.remove(np.arange(i - 200, i - 195))
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors
    assert index._lock.readers == 0 and len(index) == 300


def test_native_flag_is_validated_and_persisted(tmp_path: Any) -> None:
    with pytest.raises(InvalidInputError, match="native"):
        HNSWIndex(space(8), native="yes")
    py = HNSWIndex(space(8), native=False)
    py.add([1, 2], vectors(2))
    py.save(tmp_path / "idx")
    back = HNSWIndex.load(tmp_path / "idx")
    assert back.config.native is False and back._native is None
    back.set_params(native=True)  # a search-time switch: same index, other path
    assert back._native is fast.search
    np.testing.assert_array_equal(back.search(vectors(3), 2)[0], py.search(vectors(3), 2)[0])
    with pytest.raises(InvalidInputError, match="native"):
        back.set_params(native=1)
    assert back._native is fast.search
