"""Small generated recommendation data for the fast recsys tests (no real data set needed)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
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


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> Iterator[None]:
    """Tiny models train much faster on one intra-op thread; on a busy 2-core machine 2 threads were ~25x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
