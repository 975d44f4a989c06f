"""Benchmark helpers: smoke mode and the shared data root (the `dataset` fixture is in the root conftest).

Benchmarks import these with ``from conftest import SMOKE, size`` (``benchmarks`` is on pytest's
``pythonpath``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlsys.common.data import data_root

REPO_ROOT = Path(__file__).resolve().parents[1]
SMOKE = os.environ.get("MLSYS_BENCH_SMOKE") == "1"


def shared_data_root() -> Path:
    """``$MLSYS_DATA`` or ``<repo>/../shared/data``."""
    return data_root(REPO_ROOT)


@pytest.fixture(scope="session")
def smoke() -> bool:
    """True in CI's smoke mode (``nox -s bench -- --smoke``): benchmarks shrink their sizes and run once."""
    return SMOKE


def size(full: int, smoke_size: int) -> int:
    """Pick the benchmark size: ``full`` normally, ``smoke_size`` in smoke mode."""
    return smoke_size if SMOKE else full


def interleaved(
    fns: dict[str, Callable[[], Any]], repeats: int, inner: int = 1, *, rotate: bool = False
) -> dict[str, list[float]]:
    """Seconds per call of each function; every repeat runs each function in turn (``inner`` calls).

    ``rotate=True`` starts each repeat one function later, so that no function always runs right
    after the same one (a function that follows a large matrix product finds the caches cold and
    the BLAS threads still spinning: measured +0.1-0.2 ms on a 0.4 ms greedy DPP).
    """
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():  # warm-up
        fn()
    items = list(fns.items())
    for rep in range(repeats):
        shift = rep % len(items) if rotate else 0
        for name, fn in items[shift:] + items[:shift]:
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            times[name].append((time.perf_counter() - t0) / inner)
    return times
