"""One thread's samples of one stage: a preallocated buffer, exact aggregates, reservoir sampling.

Only the owning thread writes to a recorder, so the record path takes no lock (a lock
acquire/release alone costs 250-550 ns on the 2-core VM this was measured on, more than the rest
of a stage enter/exit). Readers copy ``count`` first and the buffer after, so a concurrent read
sees at worst the sample in flight missing.

Beyond ``capacity`` samples the buffer is a uniform random sample of everything recorded
(Li's "Algorithm L" reservoir: each of the ``n`` samples seen is kept with probability
``capacity / n``). Algorithm L draws random numbers only when a sample is actually kept, so past
capacity the common case costs one integer comparison. ``count``, ``total``, ``min`` and ``max``
are exact whatever the capacity.
"""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Snapshot", "StageRecorder"]

Snapshot = tuple[npt.NDArray[np.float64], int, float, float, float]


class StageRecorder:
    """Single-writer sample store of one stage (internal; use :class:`LatencyProfiler`)."""

    __slots__ = ("_buf", "_next", "_rng", "_view", "_w", "capacity", "count", "max", "min", "total")

    def __init__(self, capacity: int, seed: int | str) -> None:
        self.capacity = capacity
        self._buf: npt.NDArray[np.float64] = np.empty(capacity, dtype=np.float64)
        # Writes go through a memoryview of the numpy buffer: a scalar store costs about half
        # of ``ndarray.__setitem__`` and the data stays in the preallocated numpy array.
        self._view: Any = memoryview(self._buf)  # type: ignore[arg-type]  # ndarray is a Buffer
        self._rng = random.Random(seed)
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf
        self._w = 1.0
        self._next = 0

    def _uniform_open(self) -> float:
        u = self._rng.random()
        while u == 0.0:
            u = self._rng.random()
        return u

    def _skip(self) -> int:
        """Number of samples to pass over before the next one is kept (Algorithm L)."""
        w = self._w
        if w >= 1.0:  # exp() rounded to 1.0 (log(u) / capacity below float precision): keep the next
            return 0
        return math.floor(math.log(self._uniform_open()) / math.log1p(-w))

    def add(self, seconds: float) -> None:
        """Record one sample (seconds); called only by the owning thread."""
        n = self.count
        if n < self.capacity:
            self._view[n] = seconds
            if n + 1 == self.capacity:
                self._w = math.exp(math.log(self._uniform_open()) / self.capacity)
                self._next = n + 1 + self._skip()
        elif n == self._next:
            self._view[self._rng.randrange(self.capacity)] = seconds
            self._w *= math.exp(math.log(self._uniform_open()) / self.capacity)
            self._next = n + 1 + self._skip()
        self.total += seconds
        if seconds > self.max:
            self.max = seconds
        if seconds < self.min:
            self.min = seconds
        self.count = n + 1  # last: a reader that sees the new count also sees the stored sample

    @classmethod
    def restore(cls, capacity: int, seed: int | str, snap: Snapshot) -> StageRecorder:
        """A recorder holding ``snap`` that continues as if it had recorded those samples itself.

        Past capacity, Algorithm L's threshold after ``n`` samples is the ``capacity``-th smallest
        of ``n`` uniform keys, i.e. ``Beta(capacity, n - capacity + 1)``; it is drawn from that law.
        """
        samples, count, total, lo, hi = snap
        stored = int(samples.shape[0])
        if stored != min(count, capacity):
            raise ValueError(f"snapshot stores {stored} of {count} samples; expected min(count, {capacity})")
        rec = cls(capacity, seed)
        rec._buf[:stored] = samples
        rec.count, rec.total, rec.min, rec.max = count, total, lo, hi
        if count >= capacity:
            if count == capacity:
                rec._w = math.exp(math.log(rec._uniform_open()) / capacity)
            else:
                rec._w = rec._rng.betavariate(capacity, count - capacity + 1)
            rec._next = count + rec._skip()
        return rec

    def snapshot(self) -> Snapshot:
        """Copy of the stored samples and the exact aggregates ``(samples, count, total, min, max)``."""
        count = self.count
        stored = min(count, self.capacity)
        return self._buf[:stored].copy(), count, self.total, self.min, self.max
