"""LearnedRanker: LambdaMART over multi-source candidates, trained on out-of-fold features only."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlsys.common.errors import InvalidInputError, MissingDependencyError, NotFittedError, UnknownIdError
from mlsys.recsys import EASE, RecsysDataset, Split, evaluate_recommender, random_holdout, synthetic_dataset
from mlsys.recsys.cascade._ltr import LearnedRanker, LearnedRankerConfig

pytest.importorskip("lightgbm", reason="LearnedRanker needs lightgbm (pip install 'mlsys-recsys[ltr]')")

FAST = LearnedRankerConfig(
    n_candidates=30,
    n_folds=3,
    n_models=1,
    ease_l2_grid=(5.0, 20.0, 80.0),
    als_factors=0,
    max_rounds=60,
    early_stopping_rounds=15,
    min_data_in_leaf=10,
    num_leaves=7,
    num_threads=1,
    seed=0,
)


@pytest.fixture(scope="module")
def genre_data() -> RecsysDataset:
    """Users with a strong favourite genre and few events each: genre features matter."""
    return synthetic_dataset(n_users=300, n_items=120, per_user=10, favourite_boost=12.0, seed=3)


@pytest.fixture(scope="module")
def fitted(genre_data: RecsysDataset) -> tuple[LearnedRanker, Split]:
    split = random_holdout(genre_data.interactions, seed=0)
    ranker = LearnedRanker(FAST).fit(
        split.train, catalogue=genre_data.items.ids, users=genre_data.users, items=genre_data.items
    )
    return ranker, split


def test_fits_and_is_a_recommender(fitted: tuple[LearnedRanker, Split], genre_data: RecsysDataset) -> None:
    ranker, split = fitted
    ids, scores = ranker.recommend([1, 2, 3], 10)
    assert ids.shape == (3, 10) and scores.dtype == np.float32
    assert np.all(np.diff(scores, axis=1) <= 0)
    seen = {(int(u), int(i)) for u, i in zip(split.train.users, split.train.items)}
    assert not any((u, int(i)) in seen for u, row in zip([1, 2, 3], ids) for i in row)
    assert ranker.validation_["fold_l2"] in FAST.ease_l2_grid
    assert set(ranker.feature_importance()) == set(ranker.feature_names_)
    assert sum(ranker.feature_importance().values()) == pytest.approx(1.0)


def test_beats_its_best_retriever_where_features_matter(
    fitted: tuple[LearnedRanker, Split], genre_data: RecsysDataset
) -> None:
    ranker, split = fitted
    ease = EASE(l2=ranker.ease_l2_).fit(split.train, catalogue=genre_data.items.ids)
    r = evaluate_recommender(ranker, split, ks=(10,))
    e = evaluate_recommender(ease, split, ks=(10,))
    assert r.metrics["ndcg@10"] > e.metrics["ndcg@10"] + 0.01


def test_never_sees_the_test_split(fitted: tuple[LearnedRanker, Split]) -> None:
    ranker, split = fitted
    train_pairs = set(zip(split.train.users.tolist(), split.train.items.tolist()))
    test_pairs = set(zip(split.test.users.tolist(), split.test.items.tolist()))
    learned = set(zip(ranker.training_targets_.users.tolist(), ranker.training_targets_.items.tolist()))
    assert learned and learned <= train_pairs
    assert not learned & (test_pairs - train_pairs)
    # every training pair is a label exactly once (k-fold), except users with a single item
    assert len(ranker.training_targets_) == len(learned)


def test_same_seed_same_model(genre_data: RecsysDataset) -> None:
    x = genre_data.interactions
    small = LearnedRankerConfig(**{**FAST.__dict__, "max_rounds": 15, "ease_l2": 20.0})
    a = LearnedRanker(small).fit(x, users=genre_data.users, items=genre_data.items)
    b = LearnedRanker(small).fit(x, users=genre_data.users, items=genre_data.items)
    ia, sa = a.recommend([1, 5, 9], 10)
    ib, sb = b.recommend([1, 5, 9], 10)
    np.testing.assert_array_equal(ia, ib)
    np.testing.assert_array_equal(sa, sb)


def test_cascade_halves_and_padding(fitted: tuple[LearnedRanker, Split], genre_data: RecsysDataset) -> None:
    ranker, _ = fitted
    n_items = genre_data.items.n
    ids, per_source = ranker.candidates([1, 2], n_items + 5)  # more than the catalogue: padded
    assert ids.shape == (2, n_items + 5) and ids.dtype == np.int64
    assert (ids[:, -5:] == -1).all()
    assert set(per_source) == set(ranker.signals_.sources)
    for v in per_source.values():
        assert v.shape == ids.shape and v.dtype == np.float32
        assert np.isneginf(v[ids == -1]).all()
    for row in ids:
        real = row[row >= 0]
        assert np.unique(real).size == real.size
    sc = ranker.score_candidates([1, 2], ids[:, :12])
    assert sc.shape == (2, 12) and sc.dtype == np.float32 and np.isfinite(sc).all()
    padded = ids[:, :4].copy()
    padded[:, 2:] = -1
    sp_ = ranker.score_candidates([1, 2], padded)
    assert np.isneginf(sp_[:, 2:]).all()
    np.testing.assert_allclose(sp_[:, :2], sc[:, :2], rtol=1e-6)
    # recommend == candidates re-ranked by score_candidates
    top, _ = ranker.recommend([1], 5)
    cand, _ = ranker.candidates([1], FAST.n_candidates)
    s = ranker.score_candidates([1], cand)
    by_item = dict(zip(cand[0].tolist(), s[0].tolist()))
    got = [by_item[int(i)] for i in top[0]]  # every recommended item is a candidate ...
    np.testing.assert_allclose(got, np.sort(s[0])[::-1][:5], rtol=1e-6)  # ... and the best-scored ones


def test_bad_input(fitted: tuple[LearnedRanker, Split]) -> None:
    ranker, _ = fitted
    with pytest.raises(UnknownIdError):
        ranker.candidates([10_000], 5)
    with pytest.raises(UnknownIdError):
        ranker.score_candidates([1], [[999_999]])
    with pytest.raises(InvalidInputError):
        ranker.score_candidates([1, 2], [[100, 101]])  # one row for two users
    with pytest.raises(InvalidInputError):
        ranker.score_candidates([1], [[100.5]])
    with pytest.raises(InvalidInputError):
        ranker.candidates([1], 0)
    with pytest.raises(NotFittedError):
        LearnedRanker(FAST).candidates([1], 5)
    with pytest.raises(InvalidInputError):
        LearnedRanker("fast")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kw",
    [
        {"n_folds": 1},
        {"n_candidates": 0},
        {"candidate_mix": (("ease", 1.0), ("nope", 1.0))},
        {"candidate_mix": (("ease", 0.0),)},
        {"candidate_mix": ()},
        {"ease_l2": -1.0},
        {"ease_l2_grid": ()},
        {"early_stopping_fraction": 1.0},
        {"num_threads": 0},
        {"feature_fraction": 1.5},
        {"seed": -1},
        {"objective": "nope"},
        {"n_models": 0},
        {"model": "nope"},
        {"mlp_dropout": 1.0},
        {"mlp_hidden": 0},
        {"mlp_lr": 0.0},
        {"blend_grid": ()},
        {"blend_grid": (1.5,)},
    ],
)
def test_config_is_validated(kw: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        LearnedRankerConfig(**kw)


def test_missing_lightgbm_is_a_typed_error(
    monkeypatch: pytest.MonkeyPatch, genre_data: RecsysDataset
) -> None:
    monkeypatch.setitem(sys.modules, "lightgbm", None)
    with pytest.raises(MissingDependencyError, match="lightgbm"):
        LearnedRanker(FAST).fit(genre_data.interactions)


def test_too_little_data_is_a_typed_error() -> None:
    tiny = synthetic_dataset(n_users=6, n_items=6, per_user=1, seed=0)  # nobody can hold an item out
    with pytest.raises(InvalidInputError):
        LearnedRanker(FAST).fit(tiny.interactions)


@pytest.mark.slow
def test_movielens_warm_protocol(dataset: Callable[[str], Path]) -> None:
    """The issue-13 figure: NDCG@10 on the MovieLens-100K warm split (seed 0), against EASE (l2=500)."""
    from mlsys.recsys import load_movielens

    ds = load_movielens(dataset("movielens-100k"))
    split = random_holdout(ds.interactions, seed=0)
    ranker = LearnedRanker(LearnedRankerConfig(num_threads=1)).fit(
        split.train, catalogue=ds.items.ids, users=ds.users, items=ds.items
    )
    ease = EASE(l2=500.0).fit(split.train, catalogue=ds.items.ids)
    r = evaluate_recommender(ranker, split)
    e = evaluate_recommender(ease, split)
    assert e.metrics["ndcg@10"] == pytest.approx(0.4529, abs=1e-3)
    assert r.metrics["ndcg@10"] > e.metrics["ndcg@10"]
    assert (
        r.metrics["ndcg@10"] >= 0.46
    )  # measured 0.4652 (benchmarks/recsys/README.md); the goal 0.47 is not met


def test_each_source_is_a_retrieval_source(fitted: tuple[LearnedRanker, Split]) -> None:
    ranker, split = fitted
    users = np.unique(split.train.users)[:5]
    src = ranker.source("ease")
    ids, scores = src.recommend(users, 8)
    assert ids.shape == scores.shape == (5, 8)
    assert (np.diff(scores, axis=1) <= 0).all()  # best first
    train_pairs = set(zip(split.train.users.tolist(), split.train.items.tolist()))
    assert not any((int(u), int(i)) in train_pairs for u, row in zip(users, ids) for i in row if i >= 0)
    allow = ranker.item_ids_[::4]
    allowed, _ = src.recommend(users, 5, allow=allow)
    assert np.isin(allowed[allowed >= 0], allow).all()
    with pytest.raises(InvalidInputError, match="unknown source"):
        ranker.source("nope")
    with pytest.raises(NotFittedError):
        LearnedRanker(FAST).source("ease")
    with pytest.raises(InvalidInputError):
        src.recommend(users, 0)


def _fit_with(genre_data: RecsysDataset, split: Split, **kw: Any) -> LearnedRanker:
    cfg = LearnedRankerConfig(**{**FAST.__dict__, "mlp_epochs": 8, "mlp_patience": 3, **kw})
    return LearnedRanker(cfg).fit(
        split.train, catalogue=genre_data.items.ids, users=genre_data.users, items=genre_data.items
    )


@pytest.fixture(scope="module")
def fitted_mlp(genre_data: RecsysDataset, fitted: tuple[LearnedRanker, Split]) -> LearnedRanker:
    return _fit_with(genre_data, fitted[1], model="mlp")


def test_mlp_heavy_model_beats_its_best_retriever(
    fitted_mlp: LearnedRanker, fitted: tuple[LearnedRanker, Split], genre_data: RecsysDataset
) -> None:
    split = fitted[1]
    ease = EASE(l2=fitted_mlp.ease_l2_).fit(split.train, catalogue=genre_data.items.ids)
    r = evaluate_recommender(fitted_mlp, split, ks=(10,))
    e = evaluate_recommender(ease, split, ks=(10,))
    assert r.metrics["ndcg@10"] > e.metrics["ndcg@10"] + 0.01
    v = fitted_mlp.validation_
    assert v["ndcg@10_ranker"] == v["ndcg@10_mlp"] == max(v["mlp_curve"])  # the best epoch is kept
    assert 1 <= v["mlp_best_epoch"][0] <= 8
    with pytest.raises(InvalidInputError, match="LightGBM"):
        fitted_mlp.feature_importance()


def test_mlp_same_seed_same_model(genre_data: RecsysDataset, fitted: tuple[LearnedRanker, Split]) -> None:
    a = _fit_with(genre_data, fitted[1], model="mlp", mlp_epochs=3)
    b = _fit_with(genre_data, fitted[1], model="mlp", mlp_epochs=3)
    np.testing.assert_array_equal(a.recommend([1, 5, 9], 10)[1], b.recommend([1, 5, 9], 10)[1])


@pytest.mark.parametrize(("weight", "same_as"), [(1.0, "lightgbm"), (0.0, "mlp")])
def test_blend_endpoints_rank_as_their_model(
    weight: float,
    same_as: str,
    genre_data: RecsysDataset,
    fitted: tuple[LearnedRanker, Split],
    fitted_mlp: LearnedRanker,
) -> None:
    """A blend restricted to one end of the grid ranks every user's candidates as that model alone
    (per-user z-scores keep each model's order)."""
    blend = _fit_with(genre_data, fitted[1], model="blend", blend_grid=(weight,))
    ref = fitted[0] if same_as == "lightgbm" else fitted_mlp
    users = np.arange(1, 40)
    np.testing.assert_array_equal(blend.recommend(users, 10)[0], ref.recommend(users, 10)[0])
    assert blend.blend_weight_ == weight


def test_blend_weight_is_the_validation_best(
    genre_data: RecsysDataset, fitted: tuple[LearnedRanker, Split]
) -> None:
    blend = _fit_with(genre_data, fitted[1], model="blend")
    v = blend.validation_
    grid = v["blend_grid_ndcg@10"]
    assert set(grid) == set(FAST.blend_grid) and blend.blend_weight_ in grid
    assert v["ndcg@10_ranker"] == max(grid.values()) == grid[blend.blend_weight_]
    assert grid[1.0] == pytest.approx(v["ndcg@10_lightgbm"]) and grid[0.0] == pytest.approx(v["ndcg@10_mlp"])


def test_mlp_needs_no_lightgbm(monkeypatch: pytest.MonkeyPatch, genre_data: RecsysDataset) -> None:
    monkeypatch.setitem(sys.modules, "lightgbm", None)
    split = random_holdout(genre_data.interactions, seed=1)
    r = _fit_with(genre_data, split, model="mlp", mlp_epochs=2)
    assert r.recommend([1], 5)[0].shape == (1, 5)
