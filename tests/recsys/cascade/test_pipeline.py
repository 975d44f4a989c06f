"""The cascade: stage order and cutoffs, explicit degradation, the inventory guard, accounting."""

from __future__ import annotations

import itertools
import time
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys.common.errors import InvalidInputError
from mlsys.recsys import EASE, ItemKNN, Popularity
from mlsys.recsys.cascade import (
    CandidateBatch,
    Cascade,
    DiversityStage,
    InventoryMask,
    RetrievalStage,
    ScoringStage,
    Stage,
)


@pytest.fixture(scope="module")
def models(synth):  # type: ignore[no-untyped-def]
    x = synth.interactions
    return {
        "ease": EASE(l2=50.0).fit(x, catalogue=synth.items.ids),
        "knn": ItemKNN().fit(x, catalogue=synth.items.ids),
        "pop": Popularity().fit(x, catalogue=synth.items.ids),
    }


def _cascade(models, **kw):  # type: ignore[no-untyped-def]
    retrieval = RetrievalStage(
        [("ease", models["ease"], 30), ("knn", models["knn"], 30), ("pop", models["pop"], 10)], cutoff=40
    )
    ease = models["ease"]

    def light_scores(users: np.ndarray, items: np.ndarray) -> np.ndarray:
        pos = ease.item_index_.positions(items.ravel(), missing="mask").reshape(items.shape)
        return ease.score(users)[np.arange(len(users))[:, None], np.maximum(pos, 0)]

    light = ScoringStage("light", light_scores, cutoff=20)
    rng = np.random.default_rng(0)
    vecs = {int(i): rng.normal(size=8) for i in models["ease"].item_ids_}
    div = DiversityStage(
        "diversity", lambda ids: np.stack([vecs[int(i)] for i in ids]), cutoff=10, strength=0.8
    )
    return Cascade(retrieval, [light, div], **kw)


def test_cascade_returns_k_distinct_retrieved_items_with_features(models, synth) -> None:  # type: ignore[no-untyped-def]
    cas = _cascade(models)
    users = synth.interactions.users[:40:4]
    res = cas.recommend(users, 10)
    assert res.ids.shape == (len(users), 10)
    assert res.degraded_stages == (), cas.stats_dict()
    for row in res.ids:
        assert len(set(row.tolist())) == 10 and (row >= 0).all()
    stats = cas.stats_dict()["stages"]
    assert stats["light"]["candidates_out"] == 20 * len(users) and stats["diversity"][
        "candidates_out"
    ] == 10 * len(users)
    assert stats["retrieval"]["requests"] == len(users)
    assert set(cas.profiler.stats()) >= {"retrieval", "light", "diversity", "end_to_end"}
    # retrieval merges the sources and records their scores and ranks as features
    batch = cas.retrieval.run(users)
    assert {"ease_score", "ease_rank", "knn_score", "pop_rank"} <= set(batch.features)
    ease_ids, _ = models["ease"].recommend(users, 30)
    assert (
        np.isin(ease_ids[0], batch.items[0]).sum() >= 30 - 10
    )  # most of EASE's list survives the fusion cut


class _Boom(Stage):
    def run(self, batch: CandidateBatch) -> CandidateBatch:
        raise RuntimeError("model server down")


class _Foreign(Stage):
    def run(self, batch: CandidateBatch) -> CandidateBatch:
        return CandidateBatch(
            batch.users, np.full((len(batch.users), 5), 10**9), np.zeros((len(batch.users), 5), np.float32)
        )


class _Slow(Stage):
    def run(self, batch: CandidateBatch) -> CandidateBatch:
        time.sleep(0.05)
        return batch.cut(self.cutoff)


@pytest.mark.parametrize(
    "stage", [_Boom("heavy", 5), _Foreign("heavy", 5), _Slow("heavy", 5, budget_s=0.001)]
)
def test_failing_or_slow_stage_degrades_to_previous_order_and_is_counted(models, synth, stage) -> None:  # type: ignore[no-untyped-def]
    retrieval = RetrievalStage([("ease", models["ease"], 20)], cutoff=20)
    cas = Cascade(retrieval, [stage])
    users = synth.interactions.users[:3]
    res = cas.recommend(users, 5)
    assert res.degraded_stages == ("heavy",)
    expected, _ = models["ease"].recommend(users, 5)
    assert np.array_equal(res.ids, expected)  # exactly the previous stage's order
    st = cas.stats["heavy"]
    assert st.degraded == 1 and st.calls == 1
    if isinstance(stage, _Slow):
        assert st.budget_overruns == 1 and st.failures == 0
    else:
        assert st.failures == 1 and st.last_error


def test_out_of_stock_items_are_never_served_while_stock_changes(models, synth) -> None:  # type: ignore[no-untyped-def]
    inv = InventoryMask()
    cas = _cascade(models, inventory=inv)
    rng = np.random.default_rng(1)
    catalogue = models["ease"].item_ids_
    users = np.unique(synth.interactions.users)
    served = 0
    for _ in range(30):
        inv.set_in_stock(catalogue)
        oos = rng.choice(catalogue, size=len(catalogue) // 3, replace=False)
        inv.set_out_of_stock(oos)
        batch_users = rng.choice(users, 8, replace=False)
        res = cas.recommend(batch_users, 10)
        assert not np.isin(res.ids, oos).any()
        assert (res.ids >= 0).all()  # still a full slate: 2/3 of the catalogue is in stock
        served += res.ids.size
    stats = cas.stats_dict()
    assert stats["out_of_stock_served"] == 0 and stats["out_of_stock_filtered"] > 0
    assert served == 30 * 8 * 10


def test_stock_change_during_a_request_is_caught(models, synth) -> None:  # type: ignore[no-untyped-def]
    inv = InventoryMask()

    class _SellsOut(Stage):
        def run(self, batch: CandidateBatch) -> CandidateBatch:
            inv.set_out_of_stock(batch.items[:, 0])  # the top candidates sell out mid-request
            return batch.cut(self.cutoff)

    cas = Cascade(
        RetrievalStage([("ease", models["ease"], 20)], cutoff=20), [_SellsOut("heavy", 10)], inventory=inv
    )
    res = cas.recommend(synth.interactions.users[:4], 10)
    assert not np.isin(res.ids, inv.out_of_stock()).any()
    assert cas.out_of_stock_caught_late > 0 and cas.out_of_stock_served == 0


def test_bad_configuration_and_input(models) -> None:  # type: ignore[no-untyped-def]
    ease = models["ease"]
    with pytest.raises(InvalidInputError, match="non-empty list"):
        RetrievalStage([], cutoff=10)
    with pytest.raises(InvalidInputError, match="unique"):
        RetrievalStage([("a", ease, 5), ("a", ease, 5)], cutoff=10)
    retrieval = RetrievalStage([("a", ease, 5)], cutoff=10)
    with pytest.raises(InvalidInputError, match="unique"):
        Cascade(retrieval, [ScoringStage("x", lambda u, i: i, 3), ScoringStage("x", lambda u, i: i, 3)])
    with pytest.raises(InvalidInputError, match="budget_s"):
        ScoringStage("x", lambda u, i: i, 3, budget_s=0)
    cas = Cascade(retrieval)
    with pytest.raises(InvalidInputError):
        cas.recommend([], 5)
    with pytest.raises(InvalidInputError):
        cas.recommend([1], 0)
    bad_shape = Cascade(retrieval, [ScoringStage("x", lambda u, i: np.zeros(3), 3)])
    assert bad_shape.recommend([int(models["ease"].user_index_.ids[0])], 3).degraded_stages == ("x",)


class _FixedSource:
    def __init__(self, ids: np.ndarray) -> None:
        self.ids = ids

    def recommend(self, users, k, *, exclude_seen=True, allow=None):  # type: ignore[no-untyped-def]
        ids = self.ids[: len(users), :k]
        scores = np.where(ids >= 0, -np.arange(ids.shape[1], dtype=np.float32)[None, :], -np.inf)
        return ids, scores.astype(np.float32)


def _naive_merge(lists: list[np.ndarray], n: int) -> tuple[list[list[int]], dict[tuple[int, int, int], int]]:
    rows: list[list[int]] = []
    ranks: dict[tuple[int, int, int], int] = {}
    for i in range(n):
        seen: list[int] = []
        for s, ids in enumerate(lists):
            for r, it in enumerate(ids[i]):
                if it >= 0:
                    ranks[(i, s, int(it))] = r + 1
                    if int(it) not in seen:
                        seen.append(int(it))
        rows.append(seen)
    return rows, ranks


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 4), st.integers(1, 3), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_retrieval_merge_equals_a_naive_union(n: int, n_sources: int, k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    lists = []
    for _ in range(n_sources):
        ids = np.full((n, k), -1, np.int64)
        for i in range(n):
            m = int(rng.integers(0, k + 1))
            ids[i, :m] = rng.choice(10, size=m, replace=False)
        lists.append(ids)
    stage = RetrievalStage([(f"s{j}", _FixedSource(ids), k) for j, ids in enumerate(lists)], cutoff=100)
    batch = stage.run(np.arange(n))
    rows, ranks = _naive_merge(lists, n)
    for i in range(n):
        got = batch.items[i][batch.items[i] >= 0].tolist()
        assert sorted(got) == sorted(rows[i])
        for c, it in enumerate(batch.items[i]):
            if it < 0:
                continue
            for j in range(n_sources):
                r = batch.features[f"s{j}_rank"][i, c]
                assert (np.isnan(r) and (i, j, int(it)) not in ranks) or r == ranks.get((i, j, int(it)))
        # fused order: descending reciprocal-rank fusion score
        fused = [
            sum(1 / (60 + ranks[(i, j, it)]) for j in range(n_sources) if (i, j, it) in ranks) for it in got
        ]
        assert all(a >= b - 1e-6 for a, b in itertools.pairwise(fused))


def test_allow_and_deny_apply_before_scoring_and_keep_slates_full(models, synth) -> None:  # type: ignore[no-untyped-def]
    cas = _cascade(models)
    users = np.unique(synth.interactions.users)[:6]
    catalogue = models["ease"].item_ids_
    first, _ = models["ease"].recommend(users, 3)
    deny = np.unique(first[first >= 0])  # everything the retrievers would put first
    res = cas.recommend(users, 10, deny=deny)
    assert not np.isin(res.ids, deny).any() and (res.ids >= 0).all()
    allow = catalogue[::3]
    res2 = cas.recommend(users, 5, allow=allow)
    assert np.isin(res2.ids[res2.ids >= 0], allow).all()


def test_index_source_with_inventory(models, synth) -> None:  # type: ignore[no-untyped-def]
    from mlsys.common import EmbeddingSpace
    from mlsys.common.ann import make_index
    from mlsys.recsys.cascade import IndexSource

    rng = np.random.default_rng(0)
    ids = models["ease"].item_ids_
    index = make_index("exact", EmbeddingSpace("t", "1", 8, metric="ip"))
    index.add(ids, rng.normal(size=(len(ids), 8)).astype(np.float32))
    user_vecs = {int(u): rng.normal(size=8).astype(np.float32) for u in np.unique(synth.interactions.users)}
    src = IndexSource(index, lambda us: np.stack([user_vecs[int(u)] for u in us]))
    inv = InventoryMask()
    cas = Cascade(RetrievalStage([("ann", src, 10)], cutoff=10), inventory=inv)
    users = np.array(list(user_vecs)[:5])
    top, _ = src.recommend(users, 10)
    inv.set_out_of_stock(np.unique(top))  # every first-choice item sells out
    res = cas.recommend(users, 10)
    assert (res.ids >= 0).all() and not np.isin(res.ids, top).any()  # re-retrieved among in-stock items


def test_size_parameters_at_10_to_the_12_are_refused_before_allocating(models, synth) -> None:  # type: ignore[no-untyped-def]
    from mlsys.common.errors import LimitExceededError

    ease = models["ease"]
    for call in (
        lambda: ScoringStage("x", lambda u, i: i, 10**12),
        lambda: RetrievalStage([("ease", ease, 10**12)], cutoff=10),
        lambda: RetrievalStage([("ease", ease, 10)], cutoff=10**12),
        lambda: Cascade(RetrievalStage([("ease", ease, 10)], cutoff=10)).recommend([1], 10**12),
    ):
        t0 = time.perf_counter()
        with pytest.raises(LimitExceededError):
            call()
        assert time.perf_counter() - t0 < 1.0


def test_result_size_limit_covers_the_cascade(models, synth) -> None:  # type: ignore[no-untyped-def]
    from mlsys.common.errors import LimitExceededError
    from mlsys.common.limits import limits

    cas = Cascade(RetrievalStage([("ease", models["ease"], 10)], cutoff=10))
    users = np.unique(synth.interactions.users)[:50]
    with limits(max_result_size=10_000), pytest.raises(LimitExceededError):
        cas.recommend(users, 1_000)  # k within max_k, n x k over the result-size limit
    wide = Cascade(RetrievalStage([("ease", models["ease"], 10)], cutoff=5_000))
    with limits(max_result_size=10_000), pytest.raises(LimitExceededError):
        wide.recommend(users, 10)  # a stage's cutoff x users over the limit


class _IgnoresAllow:
    """A source that ignores ``allow`` (the cascade must not trust it)."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner, self.item_ids_ = inner, inner.item_ids_

    def recommend(self, users, k, *, exclude_seen=True, allow=None):  # type: ignore[no-untyped-def]
        return self.inner.recommend(users, k)


def test_a_source_that_ignores_allow_is_filtered_before_scoring(models, synth) -> None:  # type: ignore[no-untyped-def]
    inv = InventoryMask()
    seen_by_scorer: list[np.ndarray] = []

    def scorer(u: np.ndarray, items: np.ndarray) -> np.ndarray:
        seen_by_scorer.append(items.copy())
        return -np.arange(items.shape[1], dtype=np.float32)[None, :].repeat(items.shape[0], 0)

    cas = Cascade(
        RetrievalStage([("ease", _IgnoresAllow(models["ease"]), 10)], cutoff=10),
        [ScoringStage("light", scorer, cutoff=5)],
        inventory=inv,
    )
    users = np.unique(synth.interactions.users)[:4]
    top, _ = models["ease"].recommend(users, 10)
    inv.set_out_of_stock(np.unique(top))  # everything the source returns is out of stock
    res = cas.recommend(users, 5)
    oos = inv.out_of_stock()
    assert all(not np.isin(b[b >= 0], oos).any() for b in seen_by_scorer)  # never reached scoring
    assert not np.isin(res.ids, oos).any()


_junk = st.one_of(
    st.none(),
    st.text(max_size=3),
    st.floats(allow_nan=True),
    st.lists(st.text(max_size=2), max_size=3),
    st.just(np.array([[1, 2], [3, 4]])),
    st.just(np.array(["a", "b"])),
)


@settings(max_examples=60, deadline=None)
@given(
    users=st.one_of(st.lists(st.integers(-5, 200), min_size=0, max_size=4), _junk),
    k=st.one_of(st.integers(-3, 30), st.just(10**12), _junk),
    allow=st.one_of(st.none(), st.lists(st.integers(90, 170), max_size=20), _junk),
    deny=st.one_of(st.none(), st.lists(st.integers(90, 170), max_size=20), _junk),
)
def test_fuzz_cascade_recommend_is_valid_or_typed(models, users, k, allow, deny) -> None:  # type: ignore[no-untyped-def]
    """The request path of the cascade: any request gives a valid slate or a typed MlsysError."""
    from mlsys.common.errors import MlsysError

    cas = _fuzz_cascade(models)
    try:
        res = cas.recommend(users, k, allow=allow, deny=deny)
    except MlsysError:
        return
    n = len(users)
    assert res.ids.shape == (n, k) and res.scores.shape == (n, k)
    got = res.ids[res.ids >= 0]
    if deny is not None:
        assert not np.isin(got, np.asarray(deny, dtype=np.int64)).any()
    if allow is not None:
        assert np.isin(got, np.asarray(allow, dtype=np.int64)).all()
    for row in res.ids:
        valid = row[row >= 0]
        assert len(set(valid.tolist())) == valid.shape[0]


_FUZZ_CASCADE: list[Cascade] = []


def _fuzz_cascade(models):  # type: ignore[no-untyped-def]
    if not _FUZZ_CASCADE:
        _FUZZ_CASCADE.append(_cascade(models))
    return _FUZZ_CASCADE[0]


# -- scope: a stage that judges only some users / items ------------------------------------------
def _scoped_batch() -> Any:
    from mlsys.recsys.cascade import CandidateBatch

    items = np.array([[10, 11, 12, 13], [20, 21, 22, -1], [30, 31, 32, 33]])
    scores = np.array([[4, 3, 2, 1], [3, 2, 1, -np.inf], [4, 3, 2, 1]], np.float32)
    return CandidateBatch(np.array([1, 2, 3]), items, scores)


def test_scope_keeps_out_of_scope_slots_and_rows() -> None:
    from mlsys.recsys.cascade import ScoringStage

    # the stage prefers larger ids; items >= 30 (row 3) and item 11 are out of its scope
    def scope(users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return (items < 30) & (items != 11)

    stage = ScoringStage("heavy", lambda u, i: i.astype(np.float32), cutoff=4, scope=scope)
    out = stage.run(_scoped_batch())
    # row 1: 11 keeps slot 1; 10, 12, 13 re-sorted into slots 0, 2, 3
    assert out.items[0].tolist() == [13, 11, 12, 10]
    assert out.items[1].tolist() == [22, 21, 20, -1]  # all in scope: an ordinary re-sort
    assert out.items[2].tolist() == [30, 31, 32, 33]  # nothing in scope: the previous order
    np.testing.assert_array_equal(out.scores[2], [4, 3, 2, 1])  # ... and the previous scores
    assert np.all(np.diff(out.scores[0]) < 0)  # a mixed row gets one consistent (slot) scale
    col = out.features["heavy_score"]
    assert np.isnan(col[0, 1]) and col[0, 0] == 13 and np.isnan(col[2]).all()
    assert (stage.scoped_out_, stage.partly_scoped_) == (1, 1)


def test_scope_without_any_candidate_in_scope_never_calls_the_scorer() -> None:
    from mlsys.recsys.cascade import ScoringStage

    def boom(u: np.ndarray, i: np.ndarray) -> np.ndarray:
        raise AssertionError("scored")

    stage = ScoringStage("heavy", boom, cutoff=2, scope=lambda u, i: np.zeros(i.shape, bool))
    out = stage.run(_scoped_batch())
    assert out.items.tolist() == [[10, 11], [20, 21], [30, 31]] and stage.scoped_out_ == 3


@pytest.mark.parametrize("bad", [lambda u, i: np.ones((1, 1), bool), lambda u, i: np.ones(i.shape)])
def test_scope_of_the_wrong_shape_or_dtype_is_typed(bad: Any) -> None:
    from mlsys.recsys.cascade import ScoringStage

    with pytest.raises(InvalidInputError, match="scope returned"):
        ScoringStage("heavy", lambda u, i: i.astype(np.float32), cutoff=2, scope=bad).run(_scoped_batch())
    with pytest.raises(InvalidInputError, match="scope must be"):
        ScoringStage("heavy", lambda u, i: i, cutoff=2, scope=3)  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 8))
def test_scope_is_a_permutation_that_never_moves_out_of_scope_items(seed: int, cutoff: int) -> None:
    from mlsys.recsys.cascade import CandidateBatch, ScoringStage

    rng = np.random.default_rng(seed)
    n, width = 4, 6
    items = rng.permutation(100)[: n * width].reshape(n, width).astype(np.int64)
    items[rng.random((n, width)) < 0.15] = -1
    items = np.sort(np.where(items < 0, 10**6, items), axis=1)  # padding at the end
    items = np.where(items == 10**6, -1, items)
    scores = np.where(items >= 0, -np.arange(width, dtype=np.float32)[None, :], -np.inf).astype(np.float32)
    mask = rng.random((n, width)) < 0.5
    stage = ScoringStage("h", lambda u, i: rng.random(i.shape).astype(np.float32), cutoff=cutoff,
                         scope=lambda u, i: mask.copy())  # fmt: skip
    out = stage.run(CandidateBatch(np.arange(n), items, scores))
    full = ScoringStage("h", lambda u, i: np.zeros(i.shape, np.float32), cutoff=width,
                        scope=lambda u, i: mask.copy())  # fmt: skip
    for r in range(n):
        got = out.items[r][out.items[r] >= 0].tolist()
        assert len(got) == min(cutoff, int((items[r] >= 0).sum()))
        for slot in range(min(cutoff, width)):
            if items[r, slot] >= 0 and not mask[r, slot]:
                assert out.items[r, slot] == items[r, slot]  # out-of-scope items keep their slot
    kept = full.run(CandidateBatch(np.arange(n), items, scores)).items
    for r in range(n):  # with every candidate kept it is a permutation of the row
        assert sorted(kept[r][kept[r] >= 0].tolist()) == sorted(items[r][items[r] >= 0].tolist())
