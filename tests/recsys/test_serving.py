"""Serving: retrieval equals brute force, add_items makes new items servable, routing never crashes."""

from __future__ import annotations

import numpy as np
import pytest

from mlsys.common.ann import ExactIndex
from mlsys.common.errors import (
    DuplicateIdError,
    EmbeddingSpaceMismatchError,
    InvalidInputError,
    UnknownIdError,
)
from mlsys.common.spaces import EmbeddingSpace
from mlsys.recsys import (
    EASE,
    DemographicPrior,
    FallbackChain,
    FeatureTable,
    Popularity,
    TwoTowerConfig,
    TwoTowerModel,
    TwoTowerRetriever,
)

FAST = {"dim": 16, "feature_dim": 8, "hidden": 32, "epochs": 2, "batch_size": 128, "lr": 1e-2}


@pytest.fixture(scope="module")
def model(synth):  # type: ignore[no-untyped-def]
    return TwoTowerModel(TwoTowerConfig(**FAST)).fit(
        synth.interactions, items=synth.items, users=synth.users, progress=False
    )


def test_recommend_equals_bruteforce(model, synth) -> None:  # type: ignore[no-untyped-def]
    r = TwoTowerRetriever(model, synth.items)
    users = np.array([1, 2, 3, 40])
    ids, scores = r.recommend(users, 10)
    s = model.encode_users(users) @ model.encode_items(synth.items).T
    for row, u in enumerate(users):
        seen = set(synth.interactions.items[synth.interactions.users == u].tolist())
        order = [
            int(synth.items.ids[j])
            for j in np.argsort(-s[row], kind="stable")
            if synth.items.ids[j] not in seen
        ]
        assert ids[row].tolist() == order[:10]
        np.testing.assert_allclose(
            scores[row], np.sort(s[row][np.isin(synth.items.ids, order[:10])])[::-1], rtol=1e-5
        )
    with_seen, _ = r.recommend(users[:1], 10, exclude_seen=False)
    assert with_seen[0].tolist() == [int(synth.items.ids[j]) for j in np.argsort(-s[0], kind="stable")[:10]]
    allow = synth.items.ids[::5]
    a, _ = r.recommend(users, 4, allow=allow)
    assert np.isin(a[a >= 0], allow).all()
    big, big_sc = r.recommend(users[:1], 1000)  # k larger than the catalogue: padded, never an error
    n_unseen = len(synth.items.ids) - len(
        set(synth.interactions.items[synth.interactions.users == 1].tolist())
    )
    assert (
        (big[0, :n_unseen] >= 0).all()
        and (big[0, n_unseen:] == -1).all()
        and np.isneginf(big_sc[0, n_unseen:]).all()
    )


def test_add_items_servable_immediately_and_rejections_change_nothing(model, synth) -> None:  # type: ignore[no-untyped-def]
    r = TwoTowerRetriever(model, synth.items)
    before = len(r.index)
    cols = {k: v[:5].copy() for k, v in synth.items.columns.items()}
    new = FeatureTable(np.arange(9000, 9005), cols, synth.items.specs)
    r.add_items(new)
    assert len(r.index) == before + 5 and r.last_add_seconds_ is not None
    # A new item with exactly the features of item 100 (the first row) scores like item 100 without its id.
    ids, _ = r.recommend([1], 5, allow=[9000])
    assert ids[0, 0] == 9000
    u = model.encode_users([1])
    got = r.index.search(u, 1, allow=[9000])[1][0, 0]
    want = float(u[0] @ model.encode_items(synth.items.rows([100]), use_ids=False)[0])
    assert got == pytest.approx(want, rel=1e-5)
    # Duplicates (already indexed), another schema: refused, nothing lost or added.
    with pytest.raises(DuplicateIdError):
        r.add_items(FeatureTable([9000, 9100], {k: v[:2] for k, v in cols.items()}, synth.items.specs))
    assert len(r.index) == before + 5 and 9100 not in r.index
    with pytest.raises(DuplicateIdError):  # duplicate ids inside one batch are refused by the table itself
        FeatureTable([9200, 9200], {k: v[:2] for k, v in cols.items()}, synth.items.specs)
    with pytest.raises(InvalidInputError, match="NaN"):
        bad = {k: v[:1].copy() for k, v in cols.items()}
        bad["genres"] = bad["genres"].astype(np.float32) * np.nan
        FeatureTable([9300], bad, synth.items.specs)
    other = FeatureTable([9400], {"genres": cols["genres"][:1]}, synth.items.specs[:1])
    with pytest.raises(InvalidInputError, match="schema"):
        r.add_items(other)
    assert len(r.index) == before + 5
    assert r.items.n == synth.items.n + 5


def test_unknown_users_go_to_fallback_or_raise(model, synth) -> None:  # type: ignore[no-untyped-def]
    r = TwoTowerRetriever(model, synth.items)
    with pytest.raises(UnknownIdError, match="424242"):
        r.recommend([1, 424242], 3)
    pop = Popularity().fit(synth.interactions, catalogue=synth.items.ids)
    rf = TwoTowerRetriever(model, synth.items, fallback=pop)
    ids, _ = rf.recommend([1, 424242], 3)
    assert ids[1].tolist() == pop.recommend([424242], 3)[0][0].tolist()
    assert ids[0].tolist() == r.recommend([1], 3)[0][0].tolist()


def test_index_space_is_checked(model, synth) -> None:  # type: ignore[no-untyped-def]
    wrong = ExactIndex(EmbeddingSpace("other", "1", model.config.dim, metric="ip", normalized=True))
    with pytest.raises(EmbeddingSpaceMismatchError):
        TwoTowerRetriever(model, synth.items, index=wrong)
    ok = TwoTowerRetriever(model, synth.items, index=ExactIndex(model.space))
    assert ok.index.space == model.space and len(ok.index) == synth.items.n


def test_fallback_chain_routes_by_history_and_reports_sources(model, synth) -> None:  # type: ignore[no-untyped-def]
    x = synth.interactions
    chain = FallbackChain(
        [
            ("ease", EASE(l2=5.0).fit(x, catalogue=synth.items.ids), 10),
            ("two_tower", TwoTowerRetriever(model, synth.items), 1),
            ("demographic", DemographicPrior(features=["age"]).fit(x, users=synth.users), 0),
            ("popularity", Popularity().fit(x, catalogue=synth.items.ids), 0),
        ],
        history=x,
    )
    few = x.select(~((x.users == 1) & (np.arange(len(x)) % 12 >= 3)))  # user 1 keeps 3 events
    chain_few = FallbackChain(chain.stages, history=few)
    out = chain_few.recommend_with_sources([1, 2, 424242], 5)
    # User 1 has 3 events (< 10): two-tower; user 2 has 12: EASE; an unknown id: no feature row for the
    # demographic stage either, which serves everyone via its global back-off.
    assert out.sources.tolist() == ["two_tower", "ease", "demographic"]
    assert out.ids.shape == (3, 5) and (out.ids >= 0).all()
    only_pop = FallbackChain([("popularity", Popularity().fit(x), 0)], history=x)
    assert only_pop.route([424242]).tolist() == ["popularity"]
    picky = FallbackChain([("ease", EASE().fit(x), 1)], history=x)
    with pytest.raises(UnknownIdError, match="no stage"):
        picky.recommend([424242], 3)
    with pytest.raises(InvalidInputError):
        FallbackChain([], history=x)
    with pytest.raises(DuplicateIdError):
        FallbackChain([("a", Popularity().fit(x), 0), ("a", Popularity().fit(x), 0)], history=x)


def test_unknown_item_ids_in_allow_are_ignored(model, synth) -> None:  # type: ignore[no-untyped-def]
    r = TwoTowerRetriever(model, synth.items)
    ids, _ = r.recommend([1], 3, allow=[100, 101, 555_555])
    assert set(ids[0][ids[0] >= 0].tolist()) <= {100, 101}
    ease = EASE(l2=5.0).fit(synth.interactions, catalogue=synth.items.ids)
    ids, sc = ease.recommend([1], 3, allow=[555_555], exclude_seen=False)
    assert ids.tolist() == [[-1, -1, -1]] and np.isneginf(sc).all()
