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


def _malloc_trim() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def measure_peak(fn: Callable[[], Any]) -> tuple[Any, int, str]:
    """Run ``fn()`` and return ``(result, peak bytes above the start, method)``.

    Two measures, the larger is returned: ``tracemalloc``'s peak (every Python and numpy
    allocation, even one that reuses memory already resident) and, on Linux, the kernel's
    resident high-water mark, reset (``/proc/self/clear_refs``) just before the call after freed
    heap memory is returned to the system (``malloc_trim``), so C/C++ heaps (faiss, hnswlib, BLAS)
    count too. ``method`` says which was larger (``"rss"`` or ``"tracemalloc"``).
    """
    gc.collect()
    _malloc_trim()
    rss_ok = _proc_status() is not None
    if rss_ok:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            rss_ok = False
    start = _proc_status() if rss_ok else None
    tracemalloc.start()
    try:
        result = fn()
        _, traced = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    end = _proc_status() if rss_ok else None
    rss = max(0, end["VmHWM"] - start["VmRSS"]) if start is not None and end is not None else 0
    return result, max(rss, traced), ("rss" if rss >= traced else "tracemalloc")


@pytest.fixture
def peak_memory() -> Callable[[Callable[[], Any]], tuple[Any, int, str]]:
    """:func:`measure_peak`, for tests that assert a call's peak memory stays within a bound."""
    return measure_peak


# ------------------------------------------------------------------------- Ray (issue 17)
RAY_SKIP_REASON = (
    "needs Ray: pip install -c constraints.txt -e 'packages/common[ray]' -e 'packages/recsys[ray]' "
    "-e 'packages/rag[ray]' -e 'packages/vision[ray]' (or run `nox -s ray`)"
)


@pytest.fixture(scope="session")
def ray_cluster() -> Any:
    """A local 2-CPU Ray cluster for the whole session, shut down at its end (skips without Ray)."""
    ray = pytest.importorskip("ray", reason=RAY_SKIP_REASON)
    if ray.is_initialized():  # a test started one on its own: keep the session's contract
        ray.shutdown()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=256 * 1024 * 1024,
        configure_logging=False,
    )
    try:
        yield ray
    finally:
        ray.shutdown()
