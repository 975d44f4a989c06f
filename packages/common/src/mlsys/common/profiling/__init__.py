"""Latency profiling: named stages, end-to-end requests, budgets, a text report (an HTML
table and a data frame in a notebook), JSON and a plot.

:class:`LatencyProfiler` times stages with ``time.perf_counter_ns`` into preallocated buffers
(reservoir sampling beyond ``capacity``), and :func:`measure` runs a callable N times after a
warm-up. Statistics are in seconds.

Example:
    >>> from mlsys.common.profiling import LatencyProfiler
    >>> prof = LatencyProfiler()
    >>> with prof.request():
    ...     with prof.stage("retrieval"):
    ...         pass
    >>> prof.stats()["end_to_end"].count
    1
"""

from mlsys.common.profiling._measure import measure
from mlsys.common.profiling._profiler import END_TO_END, LatencyProfiler
from mlsys.common.profiling._report import LatencyReport
from mlsys.common.profiling._stats import PERCENTILES, BudgetViolation, StageStats

__all__ = [
    "END_TO_END",
    "PERCENTILES",
    "BudgetViolation",
    "LatencyProfiler",
    "LatencyReport",
    "StageStats",
    "measure",
]
