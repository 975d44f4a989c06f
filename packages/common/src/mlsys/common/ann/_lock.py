"""A readers-writer lock: many concurrent searches, one writer at a time.

Writers are preferred: once a writer waits, new readers queue behind it, so a steady stream of
searches cannot starve an ``add``. The lock is not re-entrant.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["RWLock"]


class RWLock:
    """Readers-writer lock with writer preference and a cheap reader path.

    Readers register by appending to a list and leave by popping from it; both are single atomic
    operations under CPython's GIL, so an uncontended ``acquire_read``/``release_read`` pair costs
    two list operations and two flag reads (a few hundred nanoseconds, measured by the wrapper
    overhead benchmark). Correctness follows the Dekker pattern: a reader registers *then* checks
    the writer flag, a writer raises the flag *then* waits for the registry to drain, so at least
    one of them sees the other. A reader that finds the flag raised backs out and waits on a
    condition variable; the writer is woken by the last reader to leave.

    Writers are serialised by a mutex and preferred: once a writer waits, new readers queue behind
    it. The lock is not re-entrant.

    Interrupts (a Ctrl-C in the middle of a search or a write) leave it consistent: a reader
    registers as the first statement of a ``try`` whose ``finally`` unregisters it, an interrupted
    waiter unregisters (reader) or gives the lock back (writer), and every wait re-checks its
    condition every 50 ms, so a notification lost to an interrupt delays a waiter instead of
    stranding it.

    Example:
        >>> lock = RWLock()
        >>> lock.acquire_read(); lock.release_read()
        >>> with lock.write():
        ...     pass
    """

    __slots__ = ("_active", "_cond", "_writer", "_writer_mutex")

    def __init__(self) -> None:
        self._active: list[None] = []  # one entry per reader inside
        self._writer = False  # a writer holds the lock or waits for readers to drain
        self._writer_mutex = threading.Lock()
        self._cond = threading.Condition(threading.Lock())

    def __reduce__(self) -> tuple[type[RWLock], tuple[()]]:
        # a pickled copy (an index shipped to a Ray task or actor) gets a fresh, unlocked lock: lock
        # state belongs to the threads of one process
        return (RWLock, ())

    def acquire_read(self) -> None:
        """Register a reader; blocks while a writer holds or waits for the lock.

        An exception raised while it waits (a Ctrl-C) leaves the reader unregistered.
        """
        active = self._active
        try:
            active.append(None)  # first in the try: an interrupt right after it is still handled
            if self._writer:
                self._acquire_read_slow()
        except BaseException:
            self.release_read()  # _acquire_read_slow always exits registered
            raise

    def _acquire_read_slow(self) -> None:
        cond = self._cond
        active = self._active
        while True:
            try:
                active.pop()
                with cond:
                    cond.notify_all()  # the writer may be waiting for this reader to leave
                    while self._writer:
                        cond.wait(0.05)  # timeout: see acquire_write
            finally:
                active.append(None)  # registered again, also when the wait was interrupted
            if not self._writer:
                return

    def release_read(self) -> None:
        """Unregister a reader; wakes a waiting writer."""
        self._active.pop()
        if self._writer:
            self.wake_writer()

    def wake_writer(self) -> None:
        """Wake a writer waiting for readers to leave (the second half of ``release_read``)."""
        with self._cond:
            self._cond.notify_all()

    def acquire_write(self) -> None:
        """Take the lock exclusively: waits for other writers, then for readers to leave."""
        self._writer_mutex.acquire()
        cond = self._cond
        try:
            with cond:
                self._writer = True
                while self._active:
                    # re-check on a timeout too: a reader interrupted (Ctrl-C) between leaving
                    # and notifying must not leave the writer asleep with nobody left to wake it
                    cond.wait(0.05)
        except BaseException:  # interrupted while waiting for readers: give the lock back
            self.release_write()
            raise

    def release_write(self) -> None:
        """Release the exclusive lock and wake waiting readers."""
        with self._cond:
            self._writer = False
            self._cond.notify_all()
        self._writer_mutex.release()

    @property
    def readers(self) -> int:
        """Readers holding the lock now (for tests and diagnostics)."""
        return len(self._active)

    @contextmanager
    def read(self) -> Iterator[None]:
        """Context manager form of ``acquire_read``/``release_read``."""
        self.acquire_read()
        try:
            yield
        finally:
            self.release_read()

    @contextmanager
    def write(self) -> Iterator[None]:
        """Context manager form of ``acquire_write``/``release_write``."""
        self.acquire_write()
        try:
            yield
        finally:
            self.release_write()
