"""RWLock: many readers at once, one writer alone, writers not starved."""

from __future__ import annotations

import threading
import time

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
