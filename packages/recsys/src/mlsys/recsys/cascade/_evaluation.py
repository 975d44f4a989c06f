"""Cascade evaluation helpers: recall of a retrieval stage against brute force, and exploration
conversions (did users consume what was new to them, and how much of it were they shown)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from mlsys.common.ann import recall_at_k
from mlsys.common.errors import InvalidInputError
from mlsys.common.validation import as_array, as_ids
from mlsys.recsys._data import FeatureTable, Interactions

__all__ = ["ExplorationConversions", "exploration_conversions", "recall_vs_exact"]


def recall_vs_exact(found: Any, exact: Any) -> float:
    """Mean fraction of the exact top-k (brute force, ``-1`` padded) that the retrieval returned.

    Example:
        >>> recall_vs_exact([[1, 2, 3]], [[3, 4, 1]])
        0.6666666666666666
    """
    f = as_array(found, dtype=np.int64, name="found")
    e = as_array(exact, dtype=np.int64, name="exact")
    if f.ndim != 2 or e.ndim != 2 or f.shape[0] != e.shape[0]:
        raise InvalidInputError(
            f"found {f.shape} and exact {e.shape} must be (n_queries, k) arrays with the same rows"
        )
    return float(recall_at_k(f, e))


@dataclass(frozen=True)
class ExplorationConversions:
    """Exploration on a recommendation run, per recommended slot.

    Attributes:
        exposure_rate: share of recommended slots holding an item all of whose categories are new
            to the user (none of them in the user's training history).
        conversion_rate: share of those exploratory slots that the user consumed (in the test set).
        conversions: number of consumed exploratory recommendations.
        exposures: number of exploratory slots.
        slots: number of recommended slots evaluated.
        users_converted: users with at least one consumed exploratory recommendation.
    """

    exposure_rate: float
    conversion_rate: float
    conversions: int
    exposures: int
    slots: int
    users_converted: int


def exploration_conversions(
    users: Any,
    recommended: Any,
    train: Interactions,
    test: Interactions,
    item_categories: FeatureTable,
    column: str,
) -> ExplorationConversions:
    """Consumed recommendations in categories the user never interacted with, with their exposure.

    Report the two together: a policy can raise conversions just by showing more unfamiliar
    items, which the exposure rate reveals. ``item_categories.column(column)`` is a multi-hot
    ``(n_items, n_categories)`` matrix (e.g. MovieLens genres) or integer labels.

    Example:
        >>> import numpy as np
        >>> from mlsys.recsys import FeatureSpec, FeatureTable, Interactions
        >>> cats = FeatureTable([1, 2, 3], {"g": np.array([0, 0, 1])}, [FeatureSpec("g", "categorical", 2)])
        >>> r = exploration_conversions([7], [[2, 3]], Interactions([7], [1]), Interactions([7], [3]), cats, "g")
        >>> r.exposure_rate, r.conversion_rate
        (0.5, 1.0)
    """
    u = as_ids(users, name="users")
    rec = as_array(recommended, dtype=np.int64, name="recommended")
    for name, x in (("train", train), ("test", test)):
        if not isinstance(x, Interactions):
            raise InvalidInputError(f"{name} must be Interactions, got {type(x).__name__}")
    if not isinstance(item_categories, FeatureTable):
        raise InvalidInputError(
            f"item_categories must be a FeatureTable, got {type(item_categories).__name__}"
        )
    if rec.ndim != 2 or rec.shape[0] != u.shape[0]:
        raise InvalidInputError(f"recommended must be (n_users, k) with one row per user, got {rec.shape}")
    col = np.asarray(item_categories.column(column))
    if col.ndim == 1:
        n_cat = int(col.max()) + 1 if col.size else 1
        onehot = np.zeros((col.shape[0], n_cat), dtype=bool)
        onehot[np.arange(col.shape[0]), col.astype(np.int64)] = True
        col = onehot
    cat = col.astype(bool)
    index = item_categories.index

    def categories_of(items: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        pos = index.positions(items, missing="mask")
        out = np.zeros((items.shape[0], cat.shape[1]), dtype=bool)
        ok = pos >= 0
        out[ok] = cat[pos[ok]]
        return out

    order = np.argsort(train.users, kind="stable")
    tu, ti = train.users[order], train.items[order]
    test_pairs = set(zip(test.users.tolist(), test.items.tolist()))
    exposures = conversions = slots = converted_users = 0
    for row, user in enumerate(u.tolist()):
        lo, hi = np.searchsorted(tu, [user, user + 1])
        seen: npt.NDArray[np.bool_] = np.asarray(categories_of(ti[lo:hi]).any(axis=0))
        items = rec[row][rec[row] >= 0]
        slots += items.shape[0]
        item_cats = categories_of(items)
        new = item_cats.any(axis=1) & ~(item_cats & seen[None, :]).any(axis=1)
        exposures += int(new.sum())
        hits = sum((user, int(it)) in test_pairs for it in items[new])
        conversions += hits
        converted_users += int(hits > 0)
    return ExplorationConversions(
        exposure_rate=exposures / slots if slots else 0.0,
        conversion_rate=conversions / exposures if exposures else 0.0,
        conversions=conversions,
        exposures=exposures,
        slots=slots,
        users_converted=converted_users,
    )
