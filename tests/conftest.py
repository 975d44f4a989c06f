"""Repository-wide test helpers: the fuzz suite's profile option (see tests/test_fuzz.py) and the
``peak_memory`` fixture (memory accounting, see tests/test_memory.py).

``pytest tests/test_fuzz.py`` runs the bounded default profile; ``--fuzz-profile=long`` (or
``MLSYS_FUZZ_PROFILE=long``) runs many more, randomised examples per entry point.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fuzz-profile",
        choices=("default", "long"),
        default=None,
        help="examples per fuzzed entry point: default (bounded, derandomised) or long; "
        "also MLSYS_FUZZ_PROFILE",
    )


# ------------------------------------------------------------------------- memory accounting
def _proc_status() -> dict[str, int] | None:
    try:
        with open("/proc/self/status") as f:
            text = f.read()
    except OSError:
        return None
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out if len(out) == 2 else None


def measure_peak(fn: Callable[[], Any]) -> tuple[Any, int, str]:
    """Run ``fn()`` and return ``(result, peak bytes above the start, method)``.

    Linux: the kernel's resident high-water mark is reset (``/proc/self/clear_refs``) just before
    the call and ``VmHWM - VmRSS(at reset)`` is read after it, so C/C++ heaps (faiss, hnswlib,
    BLAS) count too (method ``"rss"``). Elsewhere ``tracemalloc``'s peak (Python and numpy
    allocations only; method ``"tracemalloc"``).
    """
    gc.collect()
    before = _proc_status()
    if before is not None:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            before = None
    if before is not None:
        start = _proc_status()
        assert start is not None
        result = fn()
        end = _proc_status()
        assert end is not None
        return result, max(0, end["VmHWM"] - start["VmRSS"]), "rss"
    tracemalloc.start()
    try:
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak, "tracemalloc"


@pytest.fixture
def peak_memory() -> Callable[[Callable[[], Any]], tuple[Any, int, str]]:
    """:func:`measure_peak`, for tests that assert a call's peak memory stays within a bound."""
    return measure_peak
