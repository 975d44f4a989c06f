"""The mixed-catalogue protocol: full_catalogue_split, run_full_catalogue, the long-tail data set."""

from __future__ import annotations

import numpy as np
import pytest

from mlsys.common.errors import InvalidInputError
from mlsys.recsys import EASE, TwoTowerConfig, TwoTowerModel, random_holdout
from mlsys.recsys.evaluate import full_catalogue_split, long_tail_dataset, run_full_catalogue


def test_full_catalogue_split_removes_items_from_training_only(synth) -> None:  # type: ignore[no-untyped-def]
    split, cold = full_catalogue_split(synth.interactions, synth.items.ids, cold_fraction=0.2, seed=3)
    base = random_holdout(synth.interactions, seed=0)
    assert cold.shape == (12,) and set(cold) <= set(synth.items.ids.tolist())
    assert not np.isin(split.train.items, cold).any()
    np.testing.assert_array_equal(split.test.items, base.test.items)  # the test split is the holdout's
    kept = ~np.isin(base.train.items, cold)
    np.testing.assert_array_equal(split.train.items, base.train.items[kept])
    assert "removed from training and kept in the catalogue" in split.description
    _, cold2 = full_catalogue_split(synth.interactions, synth.items.ids, cold_fraction=0.2, seed=3)
    np.testing.assert_array_equal(cold, cold2)


def test_run_full_catalogue_reports_exposure(synth) -> None:  # type: ignore[no-untyped-def]
    res, fitted = run_full_catalogue(synth, EASE(l2=10.0), cold_fraction=0.2)
    assert isinstance(fitted, EASE)
    # EASE gives never-trained items a zero score: they can only fill slots after every positive score.
    assert res.cold_share < 0.05 and 0.0 < res.cold_relevant_share < 1.0
    assert res.full.n_users == res.trained_only.n_users
    cfg = TwoTowerConfig(
        dim=16,
        feature_dim=8,
        hidden=32,
        epochs=2,
        batch_size=128,
        lr=1e-2,
        temperature=0.1,
        validation_fraction=0.25,
    )
    tt_res, tt = run_full_catalogue(synth, TwoTowerModel(cfg), cold_fraction=0.2)
    assert tt.report_.tuned and 0.0 <= tt_res.cold_share <= 1.0 and 0.0 <= tt_res.cold_coverage <= 1.0
    assert tt_res.ratio == pytest.approx(
        tt_res.full.metrics["ndcg@10"] / tt_res.trained_only.metrics["ndcg@10"]
    )


def test_long_tail_data_set_shape() -> None:
    ds = long_tail_dataset(seed=0)
    assert ds.items.n == 10 * ds.users.n == 3000
    counts = np.bincount(ds.interactions.items - 100, minlength=3000)
    top = np.sort(counts)[::-1]
    # A long tail: the top 10% of items hold far more than 10% of the events, many items have none.
    assert top[:300].sum() > 0.3 * counts.sum() and (counts == 0).mean() > 0.2


def test_long_tail_data_set_genres() -> None:
    ds = long_tail_dataset(seed=0)
    assert ds.items.column("genres").shape[1] == 30  # the default: about 100 items per genre
    earlier = long_tail_dataset(seed=0, n_genres=10)
    assert earlier.items.column("genres").shape[1] == 10 and earlier.items.n == 3000
    for bad in (0, 2.5, True):
        with pytest.raises(InvalidInputError, match="n_genres"):
            long_tail_dataset(seed=0, n_genres=bad)  # type: ignore[arg-type]
