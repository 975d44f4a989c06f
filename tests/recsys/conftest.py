"""Small generated recommendation data for the fast recsys tests (no real data set needed)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mlsys.recsys import RecsysDataset, synthetic_dataset


@pytest.fixture(scope="session")
def synth() -> RecsysDataset:
    """80 users x 60 items, 12 events each (see :func:`mlsys.recsys.synthetic_dataset`)."""
    return synthetic_dataset()


@pytest.fixture(scope="session")
def make_synth() -> Callable[..., RecsysDataset]:
    """The generator itself, for tests that need other sizes or seeds."""

    def make(**kw: Any) -> RecsysDataset:
        return synthetic_dataset(**kw)

    return make
