"""Cascade evaluation: recall against brute force, exploration conversions with their exposure."""

from __future__ import annotations

import numpy as np
import pytest

from mlsys.common.errors import InvalidInputError
from mlsys.recsys import FeatureSpec, FeatureTable, Interactions
from mlsys.recsys.cascade import exploration_conversions, recall_vs_exact


def test_recall_vs_exact() -> None:
    assert recall_vs_exact([[1, 2], [3, 4]], [[1, 2], [3, 4]]) == 1.0
    assert recall_vs_exact([[1, 9], [8, 9]], [[1, 2], [3, 4]]) == 0.25
    with pytest.raises(InvalidInputError):
        recall_vs_exact([[1, 2]], [[1], [2]])


def test_exploration_conversions_counts_only_items_in_new_categories() -> None:
    # items 1-2: genre A, 3: genre B, 4: genres A+B, 5: genre C
    genres = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    cats = FeatureTable([1, 2, 3, 4, 5], {"g": genres}, [FeatureSpec("g", "multi_hot", 3)])
    train = Interactions(users=[10, 20], items=[1, 3])  # user 10 knows A, user 20 knows B
    test = Interactions(users=[10, 10, 20], items=[3, 4, 5])
    rec = [[3, 4, 5], [1, 5, 2]]
    r = exploration_conversions([10, 20], rec, train, test, cats, "g")
    # user 10: 3 (B, new), 4 (A+B, not all new), 5 (C, new): 2 exposures, 1 conversion (3)
    # user 20: 1 (A, new), 5 (C, new), 2 (A, new): 3 exposures, 1 conversion (5)
    assert (r.exposures, r.conversions, r.slots, r.users_converted) == (5, 2, 6, 2)
    assert r.exposure_rate == pytest.approx(5 / 6) and r.conversion_rate == pytest.approx(2 / 5)
    # padding is ignored, unknown items never count as new
    r2 = exploration_conversions([10], [[3, -1, 99]], train, test, cats, "g")
    assert (r2.slots, r2.exposures, r2.conversions) == (2, 1, 1)
    with pytest.raises(InvalidInputError, match="one row per user"):
        exploration_conversions([10, 20], [[1, 2]], train, test, cats, "g")
