"""Shared benchmark fixtures: locating the shared data sets and skipping when they are absent."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path:
    """``$MLSYS_DATA`` or ``<repo>/../shared/data``."""
    env = os.environ.get("MLSYS_DATA")
    return Path(env) if env else (REPO_ROOT.parent / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def dataset() -> Callable[[str], Path]:
    """Return a function ``dataset(name) -> Path`` that skips the test when the data set is absent.

    Example::

        def test_something(dataset):
            root = dataset("movielens-100k")
    """

    def _find(name: str) -> Path:
        path = shared_data_root() / name
        if not path.is_dir():
            pytest.skip(f"data set {name!r} not found at {path} (set MLSYS_DATA to the folder that holds it)")
        return path

    return _find


SMOKE = os.environ.get("MLSYS_BENCH_SMOKE") == "1"


@pytest.fixture(scope="session")
def smoke() -> bool:
    """True in CI's smoke mode (``nox -s bench -- --smoke``): benchmarks shrink their sizes and run once."""
    return SMOKE


def size(full: int, smoke_size: int) -> int:
    """Pick the benchmark size: ``full`` normally, ``smoke_size`` in smoke mode."""
    return smoke_size if SMOKE else full
