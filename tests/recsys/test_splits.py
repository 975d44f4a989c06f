"""Splits: the reference protocol reproduced by an independent loop, seeding, disjointness."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys.common.errors import EmptyIndexError, InvalidInputError
from mlsys.recsys import Interactions, item_cold_start, random_holdout, temporal_holdout, young_user


def _rows(x: Interactions) -> set[tuple[int, int, int]]:
    return set(zip(x.users.tolist(), x.items.tolist(), x.timestamps.tolist()))


@given(st.integers(0, 1000), st.integers(1, 8), st.integers(0, 3))
@settings(max_examples=25, deadline=None)
def test_random_holdout_matches_reference_loop(data_seed: int, n_users: int, seed: int) -> None:
    rng = np.random.default_rng(data_seed)
    users = rng.integers(1, n_users + 1, 60)
    items = rng.integers(1, 1000, 60)
    ts = np.arange(60)  # unique, so rows are identifiable
    x = Interactions(users=users, items=items, timestamps=ts)
    split = random_holdout(x, seed=seed)
    # The reference, written independently: users in id order, rows in file order, permute, floor(0.8 n).
    ref_rng = np.random.default_rng(seed)
    train, test = set(), set()
    for u in sorted(set(users.tolist())):
        rows = [(int(u), int(i), int(t)) for uu, i, t in zip(users, items, ts) if uu == u]
        perm = ref_rng.permutation(len(rows))
        n_train = math.floor(0.8 * len(rows))
        train |= {rows[p] for p in perm[:n_train]}
        test |= {rows[p] for p in perm[n_train:]}
    assert _rows(split.train) == train and _rows(split.test) == test
    assert len(split.train) + len(split.test) == len(x)


def test_random_holdout_seeded() -> None:
    x = Interactions(users=np.repeat(np.arange(10), 10), items=np.tile(np.arange(10), 10))
    a, b, c = random_holdout(x, seed=1), random_holdout(x, seed=1), random_holdout(x, seed=2)
    assert _rows(a.test) == _rows(b.test) and _rows(a.test) != _rows(c.test)
    assert "default_rng(1)" in a.description and a.name == "random_80_20"
    with pytest.raises(InvalidInputError):
        random_holdout(x, train_fraction=1.0)
    with pytest.raises(EmptyIndexError):
        random_holdout(Interactions(users=[], items=[]))


def test_temporal_holdout_keeps_latest_events_for_test() -> None:
    rng = np.random.default_rng(0)
    users = np.repeat([1, 2, 3], 10)
    ts = rng.permutation(30)
    x = Interactions(users=users, items=np.arange(30), timestamps=ts)
    s = temporal_holdout(x)
    for u in (1, 2, 3):
        tr = s.train.timestamps[s.train.users == u]
        te = s.test.timestamps[s.test.users == u]
        assert len(tr) == 8 and len(te) == 2 and tr.max() < te.min()


def test_item_cold_start_removes_items_from_training() -> None:
    x = Interactions(users=np.repeat(np.arange(20), 5), items=np.random.default_rng(0).integers(0, 50, 100))
    s = item_cold_start(x, catalogue=np.arange(50), cold_fraction=0.2, seed=3)
    assert s.candidate_items is not None and len(s.candidate_items) == 10
    assert not np.isin(s.train.items, s.candidate_items).any()
    assert np.isin(s.test.items, s.candidate_items).all()
    assert len(s.train) + len(s.test) == len(x)
    again = item_cold_start(x, catalogue=np.arange(50), cold_fraction=0.2, seed=3)
    assert again.candidate_items is not None and (again.candidate_items == s.candidate_items).all()
    with pytest.raises(InvalidInputError, match="holds out no item"):
        item_cold_start(x, catalogue=[1, 2], cold_fraction=0.2)


def test_young_user_history_is_the_earliest_events() -> None:
    users = np.repeat([1, 2, 3, 4], 6)
    ts = np.tile([50, 10, 40, 20, 30, 60], 4)
    x = Interactions(users=users, items=np.arange(24), timestamps=ts)
    s = young_user(x, history=2)
    assert sorted(s.train.timestamps[s.train.users == 1].tolist()) == [10, 20]
    assert len(s.test) == 16
    partial = young_user(x, history=2, user_fraction=0.5, seed=0)
    young = np.unique(partial.test.users)
    assert len(young) == 2
    for u in set(range(1, 5)) - set(young.tolist()):
        assert (partial.train.users == u).sum() == 6
    with pytest.raises(InvalidInputError):
        young_user(x, history=0)


@given(
    st.integers(0, 1000), st.integers(1, 6), st.sampled_from([0.1, 0.25, 0.5]), st.sampled_from([0.0, 0.2])
)
@settings(max_examples=30, deadline=None)
def test_validation_holdout_matches_reference_loop(
    data_seed: int, n_users: int, frac: float, cold: float
) -> None:
    from mlsys.recsys import validation_holdout

    rng = np.random.default_rng(data_seed)
    users = rng.integers(1, n_users + 1, 80)
    items = rng.integers(1, 30, 80)  # repeats: a pair's events must stay on one side
    x = Interactions(users=users, items=items, timestamps=np.arange(80))
    try:
        v = validation_holdout(x, fraction=frac, cold_fraction=cold, seed=3)
    except InvalidInputError as exc:
        assert "hold out nothing" in str(exc)
        return
    # Independent reference: cold items first, then per user floor(frac * pairs) pairs.
    ref = np.random.default_rng(3)
    uniq_items = sorted(set(items.tolist()))
    n_cold = math.floor(cold * len(uniq_items))
    cold_items = set(ref.permutation(np.array(uniq_items))[:n_cold].tolist()) if n_cold else set()
    held = set()
    for u in sorted(set(users.tolist())):
        its = np.array(
            sorted({int(i) for uu, i in zip(users, items) if uu == u and int(i) not in cold_items})
        )
        k = math.floor(frac * its.shape[0])
        if k:
            held |= {(u, int(i)) for i in ref.permutation(its)[:k]}
    want_test = {
        (int(u), int(i), int(t))
        for u, i, t in zip(users, items, range(80))
        if int(i) in cold_items or (int(u), int(i)) in held
    }
    assert _rows(v.test) == want_test
    assert len(v.train) + len(v.test) == len(x)
    train_pairs = set(zip(v.train.users.tolist(), v.train.items.tolist()))
    assert not train_pairs & set(zip(v.test.users.tolist(), v.test.items.tolist()))
    if n_cold:
        assert set(v.candidate_items.tolist()) == cold_items and not cold_items & set(v.train.items.tolist())
    else:
        assert v.candidate_items is None


def test_validation_holdout_seeded_and_refuses_bad_fractions() -> None:
    from mlsys.recsys import validation_holdout

    x = Interactions(users=np.repeat(np.arange(10), 10), items=np.tile(np.arange(10), 10))
    a, b = validation_holdout(x, seed=1), validation_holdout(x, seed=1)
    c = validation_holdout(x, seed=2)
    assert _rows(a.test) == _rows(b.test) and _rows(a.test) != _rows(c.test)
    assert len(a.test) == 10 and "default_rng(1)" in a.description
    for bad in (
        {"fraction": 0.0},
        {"fraction": 1.0},
        {"cold_fraction": 1.0},
        {"cold_fraction": -0.1},
        {"fraction": "x"},
    ):
        with pytest.raises(InvalidInputError):
            validation_holdout(x, **bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="hold out nothing"):
        validation_holdout(Interactions(users=[1, 2], items=[1, 2]), fraction=0.5)
    with pytest.raises(EmptyIndexError):
        validation_holdout(Interactions(users=[], items=[]))
