"""RWLock: many readers at once, one writer alone, writers not starved."""

from __future__ import annotations

import inspect
import sys
import threading
import time
from typing import Any

import pytest

from mlsys.common.ann import RWLock


def test_readers_share_the_lock() -> None:
    lock = RWLock()
    inside = threading.Barrier(4, timeout=5)

    def reader() -> None:
        with lock.read():
            inside.wait()  # all four readers must be inside together, or this times out

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert not any(t.is_alive() for t in threads)
    assert lock.readers == 0


def test_writer_excludes_readers_and_writers() -> None:
    lock = RWLock()
    state = {"active_readers": 0, "writers": 0, "violations": 0}
    guard = threading.Lock()
    stop = time.monotonic() + 1.0

    def reader() -> None:
        while time.monotonic() < stop:
            lock.acquire_read()
            try:
                with guard:
                    state["active_readers"] += 1
                    if state["writers"]:
                        state["violations"] += 1
                time.sleep(0)
                with guard:
                    state["active_readers"] -= 1
            finally:
                lock.release_read()

    def writer() -> None:
        while time.monotonic() < stop:
            with lock.write():
                with guard:
                    state["writers"] += 1
                    if state["writers"] > 1 or state["active_readers"]:
                        state["violations"] += 1
                time.sleep(0.0005)
                with guard:
                    state["writers"] -= 1

    threads = [threading.Thread(target=reader) for _ in range(4)] + [
        threading.Thread(target=writer) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert state["violations"] == 0
    assert lock.readers == 0


def test_waiting_writer_blocks_new_readers() -> None:
    lock = RWLock()
    lock.acquire_read()
    got_write = threading.Event()
    writer = threading.Thread(target=lambda: (lock.acquire_write(), got_write.set(), lock.release_write()))
    writer.start()
    time.sleep(0.05)
    assert not got_write.is_set()  # a reader holds the lock
    late_reader_in = threading.Event()
    late = threading.Thread(target=lambda: (lock.acquire_read(), late_reader_in.set(), lock.release_read()))
    late.start()
    time.sleep(0.05)
    assert not late_reader_in.is_set()  # writer preference: the new reader queues behind the writer
    lock.release_read()
    writer.join(5)
    late.join(5)
    assert got_write.is_set() and late_reader_in.is_set()


# ---------------------------------------------------------------- interrupts (a Ctrl-C mid-call)
# A KeyboardInterrupt is delivered where the interpreter checks for signals: right after a call
# returns. These tests raise one from a trace function at chosen lines, which is where such a
# check would deliver it, and assert the lock is left usable.


def _interrupt_at(predicate: Any) -> Any:
    """A trace function that raises KeyboardInterrupt once, at the first line event matching."""
    fired = []

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        def local(frame: Any, event: str, arg: Any) -> Any:
            if not fired and event == "line" and predicate(frame):
                fired.append(frame.f_lineno)
                raise KeyboardInterrupt
            return local

        return local

    tracer.fired = fired  # type: ignore[attr-defined]
    return tracer


def _line_of(func: Any, text: str, after: str = "") -> int:
    """Line number of the first line of ``func``'s source containing ``text`` (past one containing ``after``)."""
    lines, start = inspect.getsourcelines(func)
    first = next(i for i, line in enumerate(lines) if after in line) if after else 0
    return start + next(i for i, line in enumerate(lines) if i > first and text in line)


def _line_after(func: Any, text: str) -> int:
    """Line number of the line after the first one in ``func``'s source that contains ``text``."""
    return _line_of(func, text) + 1


def _start_writer(lock: RWLock) -> threading.Event:
    """Start a thread that takes and releases the write lock; the event is set once it got in."""
    done = threading.Event()

    def writer() -> None:
        with lock.write():
            done.set()

    threading.Thread(target=writer, daemon=True).start()
    return done


def _writer_gets_through(lock: RWLock, timeout: float = 5.0) -> bool:
    return _start_writer(lock).wait(timeout)


def _run_interrupted(fn: Any, tracer: Any) -> None:
    sys.settrace(tracer)
    try:
        fn()
    except KeyboardInterrupt:
        pass
    finally:
        sys.settrace(None)
    assert tracer.fired, "the interrupt was never delivered: the traced line moved"


@pytest.mark.parametrize("kind", ["hnsw-python", "faiss"])
def test_interrupt_right_after_registering_unregisters(kind: str) -> None:
    from ann_testlib import space, vectors  # type: ignore[import-not-found]

    from mlsys.common.ann import FaissIndex, HNSWIndex

    pytest.importorskip("hnswlib" if kind.startswith("hnsw") else "faiss")
    index: Any = HNSWIndex(space(4), native=False) if kind != "faiss" else FaissIndex(space(4), "HNSW8")
    index.add([1, 2, 3], vectors(3, 4))
    target = _line_after(type(index).search, "active.append(None)")
    path = inspect.getsourcefile(type(index).search)
    tracer = _interrupt_at(lambda f: f.f_code.co_filename == path and f.f_lineno == target)
    _run_interrupted(lambda: index.search(vectors(1, 4), 2), tracer)
    assert index._lock.readers == 0
    assert _writer_gets_through(index._lock)  # a leaked registration would block every write


def test_interrupted_reader_wait_unregisters() -> None:
    lock = RWLock()
    lock.acquire_write()  # a writer holds the lock: the reader waits in _acquire_read_slow
    target = _line_of(RWLock._acquire_read_slow, "cond.wait(", after="while self._writer:")
    tracer = _interrupt_at(lambda f: f.f_code is RWLock._acquire_read_slow.__code__ and f.f_lineno == target)
    _run_interrupted(lock.acquire_read, tracer)
    assert lock.readers == 0
    lock.release_write()
    with lock.read():
        assert lock.readers == 1


def test_interrupted_writer_wait_gives_the_lock_back() -> None:
    lock = RWLock()
    lock.acquire_read()
    target = _line_of(RWLock.acquire_write, "cond.wait(", after="while self._active:")
    tracer = _interrupt_at(lambda f: f.f_code is RWLock.acquire_write.__code__ and f.f_lineno == target)
    _run_interrupted(lock.acquire_write, tracer)
    assert not lock._writer
    lock.release_read()
    assert _writer_gets_through(lock)  # the writer mutex was released too


def test_lost_wakeup_does_not_strand_the_writer() -> None:
    # a reader interrupted between leaving and notifying: the writer's timed re-check gets it through
    lock = RWLock()
    lock.acquire_read()
    got = _start_writer(lock)
    deadline = time.monotonic() + 5
    while not lock._writer and time.monotonic() < deadline:
        time.sleep(0.001)
    assert lock._writer
    lock._active.pop()  # leave without waking the writer (wake_writer lost to an interrupt)
    assert got.wait(5)
