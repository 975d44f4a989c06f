"""exact_topk against a brute-force argsort, for any block sizes, masks and k; filter helpers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys.common.ann import exact_topk
from mlsys.common.ann._filter import as_id_filter, drop_denied
from mlsys.common.errors import InvalidInputError


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 60),
    nq=st.integers(1, 7),
    k=st.integers(1, 70),
    chunk=st.integers(1, 25),
    qblock=st.integers(1, 5),
    metric=st.sampled_from(["ip", "l2"]),
    masked=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_matches_bruteforce(
    n: int, nq: int, k: int, chunk: int, qblock: int, metric: str, masked: bool, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    db = rng.standard_normal((n, 5)).astype(np.float32)
    q = rng.standard_normal((nq, 5)).astype(np.float32)
    valid = rng.random(n) < 0.6 if masked else None
    rows, scores = exact_topk(q, db, k, metric, valid=valid, chunk_rows=chunk, query_block=qblock)
    full = (
        (q.astype(np.float64) @ db.T.astype(np.float64))
        if metric == "ip"
        else -(((q[:, None, :].astype(np.float64) - db[None].astype(np.float64)) ** 2).sum(-1))
    )
    if valid is not None:
        full[:, ~valid] = -np.inf
    n_valid = n if valid is None else int(valid.sum())
    expect = -np.sort(-full, axis=1)[:, :k]
    m = min(k, n_valid)
    np.testing.assert_allclose(scores[:, :m], expect[:, :m], rtol=1e-4, atol=1e-4)
    assert (rows[:, m:] == -1).all() and np.isneginf(scores[:, m:]).all()
    assert (rows[:, :m] >= 0).all()
    np.testing.assert_allclose(np.take_along_axis(full, rows[:, :m], 1), scores[:, :m], rtol=1e-4, atol=1e-4)
    if valid is not None:
        assert valid[rows[:, :m]].all()


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(256, 3000),
    k=st.integers(1, 12),
    levels=st.sampled_from([0, 3, 50]),
    masked=st.sampled_from(["none", "sparse", "dense"]),
    metric=st.sampled_from(["ip", "l2"]),
    seed=st.integers(0, 1000),
)
def test_first_block_prefilter_matches_bruteforce(
    n: int, k: int, levels: int, masked: str, metric: str, seed: int
) -> None:
    # blocks wide enough (>= 4 k groups of 64 columns) for the group-maximum prefilter; scores
    # quantised to a few levels so that many entries tie with the k-th best
    rng = np.random.default_rng(seed)
    db = rng.standard_normal((n, 4)).astype(np.float32)
    if levels:
        db = (np.round(db * levels) / levels).astype(np.float32)
    q = np.round(rng.standard_normal((6, 4))).astype(np.float32)
    valid = None if masked == "none" else rng.random(n) < (0.02 if masked == "sparse" else 0.7)
    rows, scores = exact_topk(q, db, k, metric, valid=valid)
    full = (
        q.astype(np.float64) @ db.T.astype(np.float64)
        if metric == "ip"
        else -(((q[:, None, :].astype(np.float64) - db[None].astype(np.float64)) ** 2).sum(-1))
    )
    if valid is not None:
        full[:, ~valid] = -np.inf
    n_valid = n if valid is None else int(valid.sum())
    m = min(k, n_valid)
    expect = -np.sort(-full, axis=1)[:, :m]
    np.testing.assert_allclose(scores[:, :m], expect, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.take_along_axis(full, rows[:, :m], 1), scores[:, :m], rtol=1e-4, atol=1e-4)
    assert all(len(set(r)) == m for r in rows[:, :m].tolist())  # no row returned twice
    assert (rows[:, m:] == -1).all()
    if valid is not None:
        assert valid[rows[:, :m]].all()


def test_id_filters() -> None:
    assert as_id_filter(range(3), name="a").tolist() == [0, 1, 2]
    assert as_id_filter(np.array([5, 5, 1]), name="a").tolist() == [1, 5]
    assert as_id_filter(frozenset({2}), name="a").tolist() == [2]
    assert as_id_filter((i for i in [4, 3]), name="a").tolist() == [3, 4]
    assert as_id_filter(7, name="a").tolist() == [7]
    assert as_id_filter([], name="a").tolist() == []
    with pytest.raises(InvalidInputError, match="allow"):
        as_id_filter(["x"], name="allow")
    with pytest.raises(InvalidInputError, match="deny"):
        as_id_filter({"x"}, name="deny")


def test_drop_denied_pads() -> None:
    ids = np.array([[1, 2, 3], [4, -1, -1]])
    scores = np.array([[3, 2, 1], [5, -np.inf, -np.inf]], dtype=np.float32)
    out_i, out_s = drop_denied(ids, scores, np.array([2, 4]), 3)
    assert out_i.tolist() == [[1, 3, -1], [-1, -1, -1]]
    assert out_s[0, :2].tolist() == [3, 1] and np.isneginf(out_s[0, 2]) and np.isneginf(out_s[1]).all()
