"""Fixtures shared by tests/ and benchmarks/: locating the shared data sets, skipping when absent."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mlsys.common.data import data_root

REPO_ROOT = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def dataset() -> Callable[[str], Path]:
    """Return a function ``dataset(name) -> Path`` that skips the test when the data set is absent.

    Data sets are looked up under ``$MLSYS_DATA``, default ``<repo>/../shared/data``.

    Example::

        def test_something(dataset):
            root = dataset("movielens-100k")
    """

    def _find(name: str) -> Path:
        path = data_root(REPO_ROOT) / name
        if not path.is_dir():
            pytest.skip(f"data set {name!r} not found at {path} (set MLSYS_DATA to the folder that holds it)")
        return path

    return _find
