"""Run a callable N times after a warm-up and summarise its latency."""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter_ns
from typing import Any

import numpy as np

from mlsys.common.errors import InvalidInputError
from mlsys.common.profiling._stats import StageStats

__all__ = ["measure"]


def measure(fn: Callable[[], Any], *, n: int = 100, warmup: int = 10) -> StageStats:
    """Call ``fn()`` ``warmup`` times untimed, then ``n`` times timed; return the exact statistics.

    Every call is timed separately with ``time.perf_counter_ns`` and all ``n`` samples are kept,
    so the percentiles are exact (``numpy.percentile``, linear interpolation).

    Args:
        fn: a callable taking no arguments (bind arguments with a lambda or ``functools.partial``).
        n: timed calls, at least 1.
        warmup: untimed calls first (JIT, caches, lazy imports), at least 0.

    Example:
        >>> s = measure(lambda: sum(range(1000)), n=20, warmup=2)
        >>> s.count, s.min <= s.p50 <= s.p99 <= s.max
        (20, True)
    """
    if not callable(fn):
        raise InvalidInputError(f"fn must be callable, got {type(fn).__name__}")
    for value, name, low in ((n, "n", 1), (warmup, "warmup", 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise InvalidInputError(f"{name} must be an integer >= {low}, got {value!r}")
    for _ in range(int(warmup)):
        fn()
    out = np.empty(int(n), dtype=np.int64)
    for i in range(int(n)):
        t0 = perf_counter_ns()
        fn()
        out[i] = perf_counter_ns() - t0
    return StageStats.from_samples(out.astype(np.float64) * 1e-9)
