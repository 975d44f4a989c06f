"""Seeded, reproducible train/test splits of :class:`Interactions`.

Each split returns a :class:`Split` that states what it is (``description``) so that every number
computed from it can say which split produced it.

Example:
    >>> x = Interactions(users=[1] * 5 + [2] * 5, items=list(range(10)))
    >>> s = random_holdout(x, train_fraction=0.8, seed=0)
    >>> len(s.train), len(s.test)
    (8, 2)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mlsys.common.errors import InvalidInputError
from mlsys.common.validation import as_ids, check_unique
from mlsys.recsys._data import Interactions

__all__ = [
    "Split",
    "item_cold_start",
    "random_holdout",
    "temporal_holdout",
    "validation_holdout",
    "young_user",
]


@dataclass(frozen=True, eq=False)
class Split:
    """A train/test split.

    Attributes:
        name: short name (``"random_80_20"``, ``"item_cold_start"``, ...).
        description: how it was made (fractions, seed, filtering), printed with every figure.
        train: training events.
        test: held-out events (the relevant items of each test user).
        candidate_items: when set, evaluation ranks only these item ids (item cold start ranks
            among the held-out items); otherwise the full catalogue.
    """

    name: str
    description: str
    train: Interactions
    test: Interactions
    candidate_items: npt.NDArray[np.int64] | None = None


def _check_fraction(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
        raise InvalidInputError(f"{name} must be a float in (0, 1), got {value!r}")
    return float(value)


def _rows_by_user(x: Interactions, order: str) -> list[npt.NDArray[np.int64]]:
    """Row indices of each user, users in ascending id order; rows in file order or by time (stable)."""
    if order == "time":
        perm = np.lexsort((np.arange(len(x)), x.timestamps, x.users))
    else:
        perm = np.argsort(x.users, kind="stable")
    users = x.users[perm]
    cuts = np.flatnonzero(np.diff(users)) + 1
    return [g.astype(np.int64) for g in np.split(perm, cuts)] if perm.size else []


def random_holdout(x: Interactions, *, train_fraction: float = 0.8, seed: int = 0) -> Split:
    """Per-user random holdout (the reference protocol).

    ``rng = numpy.random.default_rng(seed)``; for each user in ascending id order, the user's rows
    *in their original order* are permuted with ``rng.permutation`` and the first
    ``floor(train_fraction * n)`` go to train, the rest to test.

    Example:
        >>> x = Interactions(users=[1, 1, 1, 1, 1], items=[1, 2, 3, 4, 5])
        >>> sorted(random_holdout(x, seed=0).train.items.tolist())
        [1, 3, 4, 5]
    """
    frac = _check_fraction(train_fraction, "train_fraction")
    x.require_nonempty()
    rng = np.random.default_rng(seed)
    train_rows, test_rows = [], []
    for rows in _rows_by_user(x, "file"):
        perm = rng.permutation(rows)
        n_train = math.floor(frac * rows.shape[0])
        train_rows.append(perm[:n_train])
        test_rows.append(perm[n_train:])
    pct = round(100 * frac)
    return Split(
        name=f"random_{pct}_{100 - pct}",
        description=(
            f"per-user random {pct}/{100 - pct} holdout (default_rng({seed}), users in id order, "
            "rows in file order), no filtering"
        ),
        train=x.select(np.concatenate(train_rows)),
        test=x.select(np.concatenate(test_rows)),
    )


def temporal_holdout(x: Interactions, *, train_fraction: float = 0.8) -> Split:
    """Per-user temporal holdout: each user's earliest ``floor(train_fraction * n)`` events train, the rest test.

    Ties in time keep file order. Deterministic (no seed needed).

    Example:
        >>> x = Interactions(users=[1, 1, 1, 1, 1], items=[1, 2, 3, 4, 5], timestamps=[5, 4, 3, 2, 1])
        >>> temporal_holdout(x).test.items.tolist()
        [1]
    """
    frac = _check_fraction(train_fraction, "train_fraction")
    x.require_nonempty()
    train_rows, test_rows = [], []
    for rows in _rows_by_user(x, "time"):
        n_train = math.floor(frac * rows.shape[0])
        train_rows.append(rows[:n_train])
        test_rows.append(rows[n_train:])
    pct = round(100 * frac)
    return Split(
        name=f"temporal_{pct}_{100 - pct}",
        description=f"per-user temporal {pct}/{100 - pct} holdout (earliest events train), no filtering",
        train=x.select(np.concatenate(train_rows)),
        test=x.select(np.concatenate(test_rows)),
    )


def item_cold_start(
    x: Interactions, *, catalogue: npt.ArrayLike | None = None, cold_fraction: float = 0.2, seed: int = 0
) -> Split:
    """Item cold start: ``floor(cold_fraction * n_items)`` items are removed from training entirely.

    ``rng = numpy.random.default_rng(seed)`` permutes the catalogue (ascending ids; default: the
    items of ``x``) and the first items of the permutation are cold. Test = every event on a cold
    item; evaluation ranks only among the cold items (``candidate_items``).

    Example:
        >>> x = Interactions(users=[1, 1, 2, 2, 2], items=[1, 2, 3, 4, 5])
        >>> s = item_cold_start(x, cold_fraction=0.4, seed=0)
        >>> len(s.candidate_items), set(s.test.items) == set(s.candidate_items) & set(x.items)
        (2, True)
    """
    frac = _check_fraction(cold_fraction, "cold_fraction")
    x.require_nonempty()
    items = np.unique(x.items) if catalogue is None else np.sort(as_ids(catalogue, name="catalogue"))
    check_unique(items, name="catalogue")
    n_cold = math.floor(frac * items.shape[0])
    if n_cold == 0:
        raise InvalidInputError(
            f"cold_fraction {frac} of {items.shape[0]} items holds out no item; expected at least one"
        )
    cold = np.sort(np.random.default_rng(seed).permutation(items)[:n_cold])
    is_cold = np.isin(x.items, cold)
    return Split(
        name="item_cold_start",
        description=(
            f"item cold start: {n_cold} of {items.shape[0]} items ({round(100 * frac)}%, default_rng({seed})) "
            "removed from training; ranking among the held-out items only"
        ),
        train=x.select(~is_cold),
        test=x.select(is_cold),
        candidate_items=cold,
    )


def young_user(
    x: Interactions, *, history: int = 5, user_fraction: float | None = None, seed: int = 0
) -> Split:
    """Young users: a user's earliest ``history`` events are their history (train), the rest the future (test).

    With ``user_fraction=None`` every user is truncated (the strict definition); with a fraction in
    (0, 1), only that share of users (``default_rng(seed)``) are young and the others keep all their
    events in train, which is how a live system meets a new cohort. Users with ``history`` events
    or fewer contribute nothing to test.

    Example:
        >>> x = Interactions(users=[1] * 4, items=[1, 2, 3, 4], timestamps=[1, 2, 3, 4])
        >>> young_user(x, history=1).test.items.tolist()
        [2, 3, 4]
    """
    if isinstance(history, bool) or not isinstance(history, int) or history < 1:
        raise InvalidInputError(f"history must be an int >= 1, got {history!r}")
    x.require_nonempty()
    users = np.unique(x.users)
    if user_fraction is None:
        young = users
    else:
        frac = _check_fraction(user_fraction, "user_fraction")
        n_young = max(1, math.floor(frac * users.shape[0]))
        young = np.sort(np.random.default_rng(seed).permutation(users)[:n_young])
    young_set = set(young.tolist())
    train_rows, test_rows = [], []
    for rows in _rows_by_user(x, "time"):
        if int(x.users[rows[0]]) in young_set:
            train_rows.append(rows[:history])
            test_rows.append(rows[history:])
        else:
            train_rows.append(rows)
    who = "every user" if user_fraction is None else f"{young.shape[0]} young users (default_rng({seed}))"
    return Split(
        name=f"young_user_h{history}",
        description=f"young user: {who} keep their first {history} events (by time) as history, the rest is test",
        train=x.select(np.concatenate(train_rows)),
        test=x.select(np.concatenate(test_rows) if test_rows else np.zeros(0, dtype=np.int64)),
    )


def validation_holdout(
    x: Interactions, *, fraction: float = 0.1, cold_fraction: float = 0.0, seed: int = 0
) -> Split:
    """A validation split carved from training data: per-user held-out pairs, and optionally held-out items.

    Used by :class:`~mlsys.recsys.TwoTowerModel` to choose its hyperparameters without looking at
    the test split. Works on distinct ``(user, item)`` pairs, so every event of a pair lands on
    the same side (a repeated event never leaks a validation item into training):

    1. ``cold_fraction`` (0 to skip): ``floor(cold_fraction * n_items)`` of the distinct items of
       ``x`` (``default_rng(seed)`` permutation of the ascending ids) are *validation-cold*: all
       their events go to validation and they are listed in ``candidate_items``.
    2. For each user in ascending id order, ``floor(fraction * p)`` of the user's ``p`` remaining
       distinct pairs (``rng.permutation`` of the pairs in ascending item order, the same
       generator continued) go to validation; a user with ``p < 1 / fraction`` keeps everything.

    Raises:
        InvalidInputError: a fraction outside [0, 1) (``fraction`` in (0, 1)), or nothing held out.

    Example:
        >>> x = Interactions(users=[1] * 10 + [2] * 10, items=list(range(10)) * 2)
        >>> v = validation_holdout(x, fraction=0.2, seed=0)
        >>> len(v.train), len(v.test), v.candidate_items is None
        (16, 4, True)
    """
    frac = _check_fraction(fraction, "fraction")
    if isinstance(cold_fraction, bool) or not isinstance(cold_fraction, (int, float)):
        raise InvalidInputError(f"cold_fraction must be a float in [0, 1), got {cold_fraction!r}")
    cold_frac = float(cold_fraction)
    if not 0.0 <= cold_frac < 1.0:
        raise InvalidInputError(f"cold_fraction must be a float in [0, 1), got {cold_fraction!r}")
    x.require_nonempty()
    rng = np.random.default_rng(seed)
    items = np.unique(x.items)
    n_cold = math.floor(cold_frac * items.shape[0])
    cold = np.sort(rng.permutation(items)[:n_cold]) if n_cold else np.zeros(0, dtype=np.int64)
    is_cold = np.isin(x.items, cold)
    pairs = np.unique(np.stack([x.users[~is_cold], x.items[~is_cold]]), axis=1)  # sorted by user, item
    held_users: list[npt.NDArray[np.int64]] = []
    held_items: list[npt.NDArray[np.int64]] = []
    if pairs.size:
        cuts = np.flatnonzero(np.diff(pairs[0])) + 1
        for user_items, user in zip(np.split(pairs[1], cuts), pairs[0][np.r_[0, cuts]], strict=True):
            n_val = math.floor(frac * user_items.shape[0])
            if n_val:
                held_items.append(rng.permutation(user_items)[:n_val])
                held_users.append(np.full(n_val, user, dtype=np.int64))
    val_pair = np.zeros(len(x), dtype=bool)
    if held_users:
        # Every event of a held-out pair goes to validation: match on a dense (user, item) key.
        uniq_users = np.unique(x.users)
        n_items = items.shape[0]
        key = np.searchsorted(uniq_users, x.users) * n_items + np.searchsorted(items, x.items)
        held = np.concatenate(held_users)
        held_key = np.searchsorted(uniq_users, held) * n_items + np.searchsorted(
            items, np.concatenate(held_items)
        )
        val_pair = np.isin(key, held_key)
    to_val = is_cold | val_pair
    if not to_val.any():
        raise InvalidInputError(
            f"fraction {frac} and cold_fraction {cold_frac} hold out nothing of {len(x)} events; "
            "expected users with at least 1/fraction distinct items"
        )
    pct = round(100 * frac)
    cold_txt = (
        f"{n_cold} of {items.shape[0]} items ({round(100 * cold_frac)}%) validation-cold, then "
        if n_cold
        else ""
    )
    return Split(
        name=f"validation_{pct}",
        description=(
            f"validation carved from training: {cold_txt}per-user {pct}% of distinct (user, item) pairs "
            f"held out (default_rng({seed}), users in id order, floor(fraction * pairs))"
        ),
        train=x.select(~to_val),
        test=x.select(to_val),
        candidate_items=cold if n_cold else None,
    )
