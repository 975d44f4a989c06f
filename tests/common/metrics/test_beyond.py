"""Beyond-accuracy metrics against direct per-list Python definitions."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mlsys.common.errors import InvalidInputError
from mlsys.common.metrics import Qrels, catalog_coverage, intra_list_diversity, novelty, serendipity

N_ITEMS = 12


@st.composite
def ranked_lists(draw: st.DrawFn, min_len: int = 0) -> np.ndarray:
    n = draw(st.integers(1, 6))
    k = draw(st.integers(max(1, min_len), 6))
    out = np.full((n, k), -1, dtype=np.int64)
    for i in range(n):
        items = draw(st.lists(st.integers(0, N_ITEMS - 1), unique=True, min_size=min_len, max_size=k))
        out[i, : len(items)] = items
    return out


def _lists(ranked: np.ndarray) -> list[list[int]]:
    return [[int(x) for x in row if x >= 0] for row in ranked]


@given(ranked_lists())
def test_catalog_coverage_matches_set_definition(ranked: np.ndarray) -> None:
    expected = len({i for row in _lists(ranked) for i in row}) / N_ITEMS
    assert catalog_coverage(ranked, N_ITEMS) == pytest.approx(expected)


@given(ranked_lists(min_len=1), hnp.arrays(np.float64, N_ITEMS, elements=st.floats(0.01, 1.0)))
def test_novelty_matches_definition(ranked: np.ndarray, pop: np.ndarray) -> None:
    lists = _lists(ranked)
    expected = np.mean([np.mean([-math.log2(pop[i]) for i in row]) for row in lists])
    assert novelty(ranked, pop) == pytest.approx(expected, rel=1e-12)


@settings(max_examples=50, deadline=None)
@given(
    ranked_lists(min_len=2),
    hnp.arrays(np.int64, (N_ITEMS, 4), elements=st.integers(-3, 3)),
)
def test_intra_list_diversity_cosine_matches_pairwise_loop(ranked: np.ndarray, ints: np.ndarray) -> None:
    vecs = ints + 0.5  # never a zero vector

    def dist(u: int, v: int) -> float:
        a, b = vecs[u], vecs[v]
        return 1.0 - float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

    per = [np.mean([dist(u, v) for u, v in itertools.permutations(row, 2)]) for row in _lists(ranked)]
    assert intra_list_diversity(ranked, vecs) == pytest.approx(np.mean(per), abs=1e-10)


@settings(max_examples=50, deadline=None)
@given(ranked_lists(min_len=2), hnp.arrays(np.int64, (N_ITEMS, 5), elements=st.integers(0, 1)))
def test_intra_list_diversity_categories(ranked: np.ndarray, multi_hot: np.ndarray) -> None:
    def jaccard(u: int, v: int) -> float:
        a, b = set(np.flatnonzero(multi_hot[u])), set(np.flatnonzero(multi_hot[v]))
        return 0.0 if not (a | b) else 1.0 - len(a & b) / len(a | b)

    lists = _lists(ranked)
    per = [np.mean([jaccard(u, v) for u, v in itertools.permutations(row, 2)]) for row in lists]
    assert intra_list_diversity(ranked, categories=multi_hot) == pytest.approx(np.mean(per), abs=1e-12)
    labels = multi_hot.argmax(axis=1)
    per_l = [
        np.mean([float(labels[u] != labels[v]) for u, v in itertools.permutations(row, 2)]) for row in lists
    ]
    assert intra_list_diversity(ranked, categories=labels) == pytest.approx(np.mean(per_l), abs=1e-12)


def test_intra_list_diversity_extremes_and_k() -> None:
    vecs = np.eye(4)
    assert intra_list_diversity(np.array([[0, 1, 2, 3]]), vecs) == pytest.approx(1.0)  # orthogonal
    same = np.ones((4, 3))
    assert intra_list_diversity(np.array([[0, 1, 2]]), same) == pytest.approx(0.0, abs=1e-12)
    # lists with fewer than 2 items are left out
    assert intra_list_diversity(np.array([[0, 1], [2, -1]]), vecs) == pytest.approx(1.0)
    assert intra_list_diversity(np.array([[0, 0 + 1, 2]]), categories=np.array([1, 1, 2, 2]), k=2) == 0.0


@settings(max_examples=50, deadline=None)
@given(ranked_lists(), st.data())
def test_serendipity_matches_ge_et_al_definition(ranked: np.ndarray, data: st.DataObject) -> None:
    n = ranked.shape[0]
    relevant = [
        np.array(data.draw(st.lists(st.integers(0, N_ITEMS - 1), unique=True)), dtype=np.int64)
        for _ in range(n)
    ]
    expected = [data.draw(st.lists(st.integers(0, N_ITEMS - 1), unique=True, max_size=4)) for _ in range(n)]
    exp_arr = np.full((n, 4), -1, dtype=np.int64)
    for i, e in enumerate(expected):
        exp_arr[i, : len(e)] = e
    lists = _lists(ranked)
    vals = [
        len([i for i in row if i in set(relevant[u].tolist()) and i not in expected[u]]) / len(row)
        for u, row in enumerate(lists)
        if row
    ]
    q = Qrels.from_lists(relevant)
    if not vals:
        with pytest.raises(InvalidInputError):
            serendipity(ranked, q, exp_arr)
        return
    assert serendipity(ranked, q, exp_arr) == pytest.approx(np.mean(vals))


def test_serendipity_with_one_shared_expected_list_and_levels() -> None:
    q = Qrels.from_lists([np.array([1, 2, 3]), np.array([4])], [np.array([1, 2, 1]), np.array([2])])
    ranked = np.array([[1, 2, 3, 9], [4, 5, -1, -1]])
    # user 0: relevant & unexpected = {2, 3} of 4; user 1: {4} of 2 (expected = [1, 9])
    assert serendipity(ranked, q, np.array([1, 9])) == pytest.approx((2 / 4 + 1 / 2) / 2)
    # level 2: user 0 only item 2; user 1 item 4
    assert serendipity(ranked, q, np.array([1, 9]), relevance_level=2) == pytest.approx((1 / 4 + 1 / 2) / 2)
    assert serendipity(ranked, q, np.array([1, 9]), k=1) == pytest.approx((0 + 1) / 2)


def test_bad_input() -> None:
    r = np.array([[0, 1]])
    with pytest.raises(InvalidInputError, match="catalogue"):
        catalog_coverage(np.array([[0, 20]]), 10)
    with pytest.raises(InvalidInputError):
        catalog_coverage(r, 0)
    with pytest.raises(InvalidInputError, match="-5"):
        catalog_coverage(np.array([[0, -5]]), 10)
    with pytest.raises(InvalidInputError, match="counts"):
        novelty(r, np.array([3.0, 4.0]))
    with pytest.raises(InvalidInputError, match="popularity 0"):
        novelty(r, np.array([0.5, 0.0]))
    with pytest.raises(InvalidInputError, match="exactly one"):
        intra_list_diversity(r)
    with pytest.raises(InvalidInputError, match="exactly one"):
        intra_list_diversity(r, np.eye(2), categories=np.array([0, 1]))
    with pytest.raises(InvalidInputError, match="zero vector"):
        intra_list_diversity(r, np.zeros((2, 3)))
    with pytest.raises(InvalidInputError, match="two or more"):
        intra_list_diversity(np.array([[0, -1]]), np.eye(2))
    with pytest.raises(InvalidInputError, match="multi-hot"):
        intra_list_diversity(r, categories=np.array([[0, 2], [1, 0]]))
    with pytest.raises(InvalidInputError, match="k"):
        novelty(r, np.array([0.5, 0.5]), k=0)
    with pytest.raises(InvalidInputError, match="rows"):
        serendipity(r, Qrels.from_lists([np.array([1]), np.array([2])]), np.array([1]))
