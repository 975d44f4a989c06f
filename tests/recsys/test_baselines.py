"""Baselines: closed forms checked against independent numpy code, the recommend contract, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys.common.errors import EmptyIndexError, InvalidInputError, NotFittedError, UnknownIdError
from mlsys.recsys import (
    EASE,
    ContentBased,
    DemographicPrior,
    FeatureSpec,
    FeatureTable,
    Interactions,
    ItemKNN,
    Popularity,
    RandomRecommender,
    top_k,
)


def _dense(x: Interactions, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    m = np.zeros((len(users), len(items)))
    for u, i in zip(x.users, x.items):
        m[np.searchsorted(users, u), np.searchsorted(items, i)] = 1.0
    return m


@given(st.lists(st.floats(-5, 5, allow_nan=False, width=32), min_size=1, max_size=30), st.integers(1, 40))
@settings(max_examples=60, deadline=None)
def test_top_k_matches_stable_full_sort(values: list[float], k: int) -> None:
    s = np.array([values, values[::-1]], dtype=np.float32)
    s[:, ::3] = np.round(s[:, ::3])  # plenty of ties
    pos, sc = top_k(s, k)
    ref = np.argsort(-s, axis=1, kind="stable")[:, :k]
    kk = min(k, s.shape[1])
    assert (pos[:, :kk] == ref).all()
    assert (pos[:, kk:] == -1).all() and np.isneginf(sc[:, kk:]).all()


def test_popularity_global_and_decayed() -> None:
    x = Interactions(users=[1, 2, 3, 3, 4], items=[5, 5, 6, 6, 6], timestamps=[0, 0, 0, 0, 1000])
    m = Popularity().fit(x)
    assert m.item_scores_.tolist() == [2.0, 2.0]  # distinct users; user 3's repeat counts once
    d = Popularity(half_life=100.0).fit(x)
    # Item 6: one event at age 0 (weight 1) and two at age 1000 (2**-10 each).
    assert d.item_scores_[1] == pytest.approx(1 + 2 * 2**-10)
    assert d.item_scores_[0] == pytest.approx(2 * 2**-10)
    assert m.recommend([99], 2, exclude_seen=False)[0].tolist() == [[5, 6]]  # unknown users served
    with pytest.raises(InvalidInputError):
        Popularity(half_life=-1.0)


def _reference_similarity(xd: np.ndarray, similarity: str, shrink: float, alpha: float) -> np.ndarray:
    """sim[i, j] (i = history item, j = scored item), written out entry by entry from the definitions."""
    n_items = xd.shape[1]
    counts = xd.sum(axis=0)
    sim = np.zeros((n_items, n_items))
    for i in range(n_items):
        for j in range(n_items):
            if i == j:
                continue
            c = float(xd[:, i] @ xd[:, j])
            if similarity == "cosine":
                den = np.sqrt(counts[i] * counts[j])
            elif similarity == "jaccard":
                den = counts[i] + counts[j] - c
            else:
                den = counts[i] ** alpha * counts[j] ** (1 - alpha)
            den += shrink
            sim[i, j] = c / den if den > 0 else 0.0
    return sim


def _prune_rows(sim: np.ndarray, k: int) -> np.ndarray:
    """Keep each row's k largest positive entries, ties to the lower column (the documented rule)."""
    out = np.zeros_like(sim)
    for r in range(sim.shape[0]):
        order = sorted(range(sim.shape[1]), key=lambda c: (-sim[r, c], c))[:k]
        for c in order:
            if sim[r, c] > 0:
                out[r, c] = sim[r, c]
    return out


@pytest.mark.parametrize(
    ("similarity", "shrink", "alpha"),
    [("cosine", 0.0, 0.5), ("cosine", 5.0, 0.5), ("jaccard", 2.0, 0.5), ("asymmetric", 0.0, 0.8)],
)
@pytest.mark.parametrize("neighborhood", ["target", "source"])
def test_itemknn_matches_bruteforce(
    synth, neighborhood: str, similarity: str, shrink: float, alpha: float
) -> None:  # type: ignore[no-untyped-def]
    x = synth.interactions
    users, items = np.unique(x.users), np.unique(x.items)
    xd = _dense(x, users, items)
    sim = _reference_similarity(xd, similarity, shrink, alpha)
    for k in (None, 5):
        if k is None:
            ref = sim
        elif neighborhood == "source":  # each history item keeps its k most similar scored items
            ref = _prune_rows(sim, k)
        else:  # each scored item keeps its k most similar history items
            ref = _prune_rows(sim.T, k).T
        m = ItemKNN(neighbors=k, neighborhood=neighborhood, similarity=similarity, shrink=shrink, alpha=alpha)
        m.fit(x)
        np.testing.assert_allclose(m.similarity_.toarray(), ref, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(m.score(users), xd @ ref, rtol=1e-5, atol=1e-6)
        kept = (m.similarity_.toarray() > 0).sum(axis=0 if neighborhood == "target" else 1)
        assert k is None or (kept <= k).all()


def test_itemknn_conventions_differ_and_block_size_does_not_matter(synth) -> None:  # type: ignore[no-untyped-def]
    x = synth.interactions
    target = ItemKNN(neighbors=3, similarity="cosine").fit(x).similarity_.toarray()
    source = ItemKNN(neighbors=3, neighborhood="source", similarity="cosine").fit(x).similarity_.toarray()
    assert not np.array_equal(target, source)
    blocked = ItemKNN(neighbors=3, similarity="cosine", block_size=7).fit(x).similarity_.toarray()
    np.testing.assert_array_equal(target, blocked)
    default = ItemKNN(neighbors=3).fit(x).similarity_.toarray()
    np.testing.assert_array_equal(default, ItemKNN(neighbors=3, block_size=5).fit(x).similarity_.toarray())
    # cosine is symmetric: pruning per target is pruning per source, transposed
    np.testing.assert_array_equal(target, source.T)


def test_itemknn_top_k_tie_rule() -> None:
    from mlsys.recsys._baselines import _top_k_per_row

    block = np.array([[0.5, 0.2, 0.5, 0.5, 0.1], [0.0, 0.3, 0.3, 0.3, 0.3]])
    assert _top_k_per_row(block, 2).tolist() == [
        [True, False, True, False, False],
        [False, True, True, False, False],
    ]
    assert _top_k_per_row(block, 9).all()


@pytest.mark.filterwarnings("ignore:Method expects CSR input")
def test_itemknn_agrees_with_implicit_cosine(synth) -> None:  # type: ignore[no-untyped-def]
    implicit_nn = pytest.importorskip("implicit.nearest_neighbours")
    x = synth.interactions
    m = ItemKNN(neighbors=None, similarity="cosine").fit(x)
    ref = implicit_nn.CosineRecommender(K=len(m.item_ids_) + 1)
    ref.fit(m.seen_.astype(np.float32), show_progress=False)
    theirs = np.asarray((m.seen_ @ ref.similarity).todense())
    ours = m.score(m.user_index_.ids)
    unseen = m.seen_.toarray() == 0  # implicit keeps self-similarity, which only touches seen items
    np.testing.assert_allclose(ours[unseen], theirs[unseen], rtol=1e-4, atol=1e-5)


@pytest.mark.filterwarnings("ignore:Method expects CSR input")
def test_itemknn_source_convention_is_implicits(synth) -> None:  # type: ignore[no-untyped-def]
    """implicit's CosineRecommender(K) keeps each row's (history item's) top K, itself included."""
    implicit_nn = pytest.importorskip("implicit.nearest_neighbours")
    x = synth.interactions
    k = 5
    m = ItemKNN(neighbors=k, neighborhood="source", similarity="cosine").fit(x)
    ref = implicit_nn.CosineRecommender(K=k + 1)
    ref.fit(m.seen_.astype(np.float32), show_progress=False)
    theirs = np.asarray(ref.similarity.todense(), dtype=np.float64)
    np.fill_diagonal(theirs, 0.0)
    ours = m.similarity_.toarray()
    # ties at the k-th similarity may be cut differently: compare the rows without a tie there
    full = ItemKNN(neighbors=None, similarity="cosine").fit(x).similarity_.toarray()
    srt = -np.sort(-full, axis=1)
    no_tie = srt[:, k - 1] > srt[:, k]
    assert no_tie.sum() >= 10
    np.testing.assert_allclose(ours[no_tie], theirs[no_tie], rtol=1e-4, atol=1e-6)


def test_ease_closed_form_and_optimality(synth) -> None:  # type: ignore[no-untyped-def]
    x = synth.interactions
    lam = 7.0
    m = EASE(l2=lam).fit(x)
    users, items = np.unique(x.users), np.unique(x.items)
    xd = _dense(x, users, items)
    g = xd.T @ xd
    b = m.weights_.astype(np.float64)
    assert np.allclose(np.diag(b), 0.0)
    # KKT of min ||X - XB||^2 + lam ||B||^2 s.t. diag(B) = 0: the gradient vanishes off the diagonal.
    grad = (g + lam * np.eye(len(items))) @ b - g
    off = ~np.eye(len(items), dtype=bool)
    assert np.abs(grad[off]).max() < 1e-3
    np.testing.assert_allclose(m.score(users), xd @ b, rtol=1e-4, atol=1e-5)


def test_content_based_profile_scores() -> None:
    items = FeatureTable(
        [1, 2, 3], {"g": np.array([[1, 0], [0, 1], [1, 1]])}, [FeatureSpec("g", "multi_hot", 2)]
    )
    x = Interactions(users=[7, 7], items=[1, 3])  # profile = mean([1, 0], [1, 1]) = [1, 0.5]
    dot = ContentBased().fit(x, catalogue=[1, 2, 3], items=items).score([7])[0]
    np.testing.assert_allclose(dot, [1.0, 0.5, 1.5], rtol=1e-6)
    cos = ContentBased(similarity="cosine").fit(x, catalogue=[1, 2, 3], items=items).score([7])[0]
    p = np.array([1.0, 0.5]) / np.linalg.norm([1.0, 0.5])
    np.testing.assert_allclose(cos, [p[0], p[1], p.sum() / np.sqrt(2)], rtol=1e-6)
    with pytest.raises(InvalidInputError):
        ContentBased(similarity="l1")
    with pytest.raises(InvalidInputError, match="items=FeatureTable"):
        ContentBased().fit(Interactions(users=[7], items=[1]))
    with pytest.raises(UnknownIdError):  # catalogue item without features
        ContentBased().fit(Interactions(users=[7], items=[1]), catalogue=[1, 9], items=items)


def test_demographic_prior_backs_off_to_global() -> None:
    users = FeatureTable([1, 2, 3, 4], {"g": np.array([0, 0, 1, 2])}, [FeatureSpec("g", "categorical", 3)])
    x = Interactions(users=[1, 2, 3, 3], items=[5, 5, 6, 7])
    m = DemographicPrior(features=["g"], shrinkage=2.0).fit(x, users=users)
    glob = np.array([2, 1, 1]) / 3
    s = m.score([1, 3, 4, 99])
    np.testing.assert_allclose(s[0], (np.array([2, 0, 0]) + 2 * glob) / (2 + 2), rtol=1e-6)
    np.testing.assert_allclose(s[1], (np.array([0, 1, 1]) + 2 * glob) / (1 + 2), rtol=1e-6)
    np.testing.assert_allclose(s[2], glob, rtol=1e-6)  # user 4: bucket without training users
    np.testing.assert_allclose(s[3], glob, rtol=1e-6)  # unknown user
    with pytest.raises(InvalidInputError, match="categorical"):
        DemographicPrior(features=["nope"]).fit(x, users=users)


@pytest.mark.parametrize(
    "model", [Popularity(), ItemKNN(), EASE(l2=1.0), RandomRecommender()], ids=lambda m: m.name
)
def test_recommend_contract(model, synth) -> None:  # type: ignore[no-untyped-def]
    x = synth.interactions
    model.fit(x, catalogue=synth.items.ids)
    users = np.unique(x.users)[:10]
    ids, sc = model.recommend(users, 5)
    assert ids.shape == sc.shape == (10, 5) and ids.dtype == np.int64 and sc.dtype == np.float32
    for u, row, srow in zip(users, ids, sc):
        assert not set(row.tolist()) & set(x.items[x.users == u].tolist())  # seen items masked
        assert (np.diff(srow) <= 0).all()
    allow = synth.items.ids[:7]
    a_ids, _ = model.recommend(users, 5, allow=allow)
    assert np.isin(a_ids[a_ids >= 0], allow).all()
    big, big_sc = model.recommend(users[:1], 500, exclude_seen=False)
    n = len(synth.items.ids)
    assert (big[0, :n] >= 0).all() and (big[0, n:] == -1).all() and np.isneginf(big_sc[0, n:]).all()
    assert sorted(big[0, :n].tolist()) == sorted(synth.items.ids.tolist())
    with pytest.raises(InvalidInputError):
        model.recommend(users, 0)


def test_unknown_users_empty_data_and_unfitted() -> None:
    x = Interactions(users=[1, 2], items=[5, 6])
    with pytest.raises(UnknownIdError, match="99"):
        EASE().fit(x).recommend([1, 99], 2)
    with pytest.raises(EmptyIndexError):
        EASE().fit(Interactions(users=[], items=[]))
    with pytest.raises(NotFittedError):
        ItemKNN().recommend([1], 2)
    with pytest.raises(InvalidInputError):
        EASE(l2=0.0)
    with pytest.raises(InvalidInputError):
        ItemKNN(neighbors=0)
    for bad in ({"neighborhood": "both"}, {"similarity": "pearson"}, {"shrink": -1.0}, {"alpha": 1.5}):
        with pytest.raises(InvalidInputError):
            ItemKNN(**bad)  # type: ignore[arg-type]


def test_events_outside_catalogue_are_ignored_and_failed_fit_keeps_state() -> None:
    x = Interactions(users=[1, 1, 2, 2], items=[5, 6, 5, 7])
    m = Popularity().fit(x, catalogue=[5, 6])
    assert m.item_ids_.tolist() == [5, 6] and m.item_scores_.tolist() == [2.0, 1.0]
    with pytest.raises(EmptyIndexError):
        m.fit(Interactions(users=[], items=[]))
    assert m.item_ids_.tolist() == [5, 6] and m.item_scores_.tolist() == [2.0, 1.0]
