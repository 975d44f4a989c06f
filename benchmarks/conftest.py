"""Benchmark helpers: smoke mode and the shared data root (the `dataset` fixture is in the root conftest).

Benchmarks import these with ``from conftest import SMOKE, size`` (``benchmarks`` is on pytest's
``pythonpath``).
"""

from __future__ import annotations

import os
from pathlib import Path

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
