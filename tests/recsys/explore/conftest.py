"""Fixtures of the exploration tests: the Open Bandit Dataset sample when obp ships it here."""

from __future__ import annotations

import pytest

from mlsys.common.errors import DatasetNotFoundError
from mlsys.recsys.explore import OpenBanditData, load_open_bandit_dataset


@pytest.fixture(scope="session")
def obd() -> dict[str, OpenBanditData]:
    """Campaign "all" of both behaviour policies; skips when the sample is not installed."""
    try:
        return {b: load_open_bandit_dataset(b, "all") for b in ("random", "bts")}
    except DatasetNotFoundError as exc:
        pytest.skip(f"Open Bandit Dataset sample absent: {exc}")
