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
    """Readers-writer lock with writer preference.

    The hot path (``acquire_read``/``release_read``) takes one mutex twice and does no allocation;
    callers use explicit ``try/finally`` instead of a generator context manager to keep it cheap.

    Example:
        >>> lock = RWLock()
        >>> lock.acquire_read(); lock.release_read()
        >>> with lock.write():
        ...     pass
    """

    __slots__ = ("_cond", "_readers", "_writer", "_writers_waiting")

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    def acquire_read(self) -> None:
        """Block until no writer holds or waits for the lock, then register a reader."""
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1

    def release_read(self) -> None:
        """Unregister a reader; wake writers when the last reader leaves."""
        with self._cond:
            self._readers -= 1
            if self._readers == 0:
                self._cond.notify_all()

    def acquire_write(self) -> None:
        """Block until no reader or writer holds the lock, then take it exclusively."""
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True

    def release_write(self) -> None:
        """Release the exclusive lock and wake everyone waiting."""
        with self._cond:
            self._writer = False
            self._cond.notify_all()

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
