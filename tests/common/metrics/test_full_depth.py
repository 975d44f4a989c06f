"""Full-depth metrics on the dict path (issue 22): ranks of the relevant documents only, two ways.

``evaluate`` ranks only the retrieved documents judged relevant, either by counting the documents
scored above each (the count strategy, blocks of relevant documents at a time) or by one sort of
every (query, score) key (the sort strategy, for many relevant documents per query); ties are
resolved inside tied groups by comparing doc ids. Both strategies, with tiny blocks and ragged
rows, must equal pytrec_eval (ties="trec") and a stable-sort reference (ties="input") to 1e-9,
with heavy ties.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlsys.common.metrics import Qrels, _dict_run, evaluate, evaluate_ranked

sys.path.insert(0, str(Path(__file__).parent))
from metrics_testlib import pytrec_values

TOL = 1e-9
POLICY = {"missing_queries": "ignore", "extra_queries": "ignore", "empty_queries": "zero"}
FULL_DEPTH = ["map", "ndcg", "r_precision", "recall", "precision", "mrr", "hit_rate"]
WITH_CUTOFFS = [*FULL_DEPTH, "ndcg@10", "recall@100", "map@5", "mrr@3", "precision@7"]
# doc ids whose string order differs from their natural order
POOL = [f"d{i}" for i in range(60)] + ["D", "a", "é", "10", "9"]
# few distinct values: most documents tie with several others; -0.0 and 0.0 tie; a value that
# differs from 0.5 beyond float32 precision ties with it under trec_eval's C floats
VALUES = [-1.0, -0.0, 0.0, 0.25, 0.5, 0.5 + 1e-12, 1.0, float("inf"), float("-inf")]


@contextmanager
def strategy(name: str) -> Iterator[None]:
    """Force the count strategy (with blocks of 3 relevant documents) or the sort strategy."""
    budget, block = _dict_run._COUNT_BUDGET, _dict_run._BLOCK
    try:
        if name == "count":
            _dict_run._COUNT_BUDGET, _dict_run._BLOCK = float("inf"), 3 * 70
        else:
            _dict_run._COUNT_BUDGET = -1.0
        yield
    finally:
        _dict_run._COUNT_BUDGET, _dict_run._BLOCK = budget, block


@st.composite
def tied_runs(draw: st.DrawFn) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, int]]]:
    run: dict[str, dict[str, float]] = {}
    qrels: dict[str, dict[str, int]] = {}
    n_q = draw(st.integers(1, 6))
    for i in range(n_q):
        q = f"q{i}"
        docs = draw(st.lists(st.sampled_from(POOL), unique=True, max_size=40))  # ragged, may be empty
        coarse = draw(st.booleans())
        run[q] = {
            d: draw(st.sampled_from(VALUES) if coarse else st.floats(-3, 3, allow_nan=False)) for d in docs
        }
        judged = draw(st.lists(st.sampled_from(POOL), unique=True, min_size=1, max_size=25))
        qrels[q] = {d: draw(st.integers(0, 3)) for d in judged}
    return run, qrels


def _input_order_reference(
    run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]], names: list[str], level: int
) -> dict[str, np.ndarray]:
    """ties="input": a stable sort by score (float64) descending, evaluated on the array path."""
    qids = list(qrels)
    docs = sorted({d for r in run.values() for d in r} | {d for r in qrels.values() for d in r})
    index = {d: i for i, d in enumerate(docs)}
    width = max([len(run.get(q, {})) for q in qids] + [1])
    ranked = np.full((len(qids), width), -1, dtype=np.int64)
    for i, q in enumerate(qids):
        scored = run.get(q, {})
        order = sorted(scored, key=lambda d, r=scored: -r[d])  # type: ignore[misc]  # stable
        ranked[i, : len(order)] = [index[d] for d in order]
    q_arrays = Qrels.from_dict({q: qrels[q] for q in qids}, doc_ids=index)
    res = evaluate_ranked(ranked, q_arrays, names, relevance_level=level, empty_queries="zero")
    return res.per_query


@pytest.mark.parametrize("how", ["count", "sort"])
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=tied_runs(), level=st.sampled_from([1, 2]))
def test_full_depth_with_ties_equals_pytrec_eval(
    how: str, data: tuple[dict[str, dict[str, float]], dict[str, dict[str, int]]], level: int
) -> None:
    run, qrels = data
    with strategy(how):
        res = evaluate(run, qrels, WITH_CUTOFFS, relevance_level=level, **POLICY)  # type: ignore[arg-type]
    ref = pytrec_values(
        run, {q: v for q, v in qrels.items() if q in run}, WITH_CUTOFFS, relevance_level=level
    )
    for name in WITH_CUTOFFS:
        for q, v in zip(res.query_ids, res.per_query[name].tolist(), strict=True):
            if q in ref[name]:
                assert abs(v - ref[name][q]) <= TOL, (how, name, q, v, ref[name][q])


@pytest.mark.parametrize("how", ["count", "sort"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=tied_runs(), level=st.sampled_from([1, 2]))
def test_full_depth_with_input_ties_equals_a_stable_sort(
    how: str, data: tuple[dict[str, dict[str, float]], dict[str, dict[str, int]]], level: int
) -> None:
    run, qrels = data
    with strategy(how):
        res = evaluate(run, qrels, WITH_CUTOFFS, ties="input", relevance_level=level, **POLICY)  # type: ignore[arg-type]
    ref = _input_order_reference(run, qrels, WITH_CUTOFFS, level)
    for name in WITH_CUTOFFS:
        np.testing.assert_allclose(res.per_query[name], ref[name], rtol=0, atol=TOL, err_msg=f"{how} {name}")


def test_both_strategies_agree_on_a_wide_run() -> None:
    # 300 queries x ~500 documents, 3-decimal scores (ties in most queries), 1-14 relevant each
    rng = np.random.default_rng(0)
    run: dict[str, dict[str, float]] = {}
    qrels: dict[str, dict[str, int]] = {}
    for i in range(300):
        n = int(rng.integers(400, 501))
        ids = rng.choice(100_000, size=n, replace=False)
        run[f"q{i}"] = {f"doc{j}": float(s) for j, s in zip(ids, np.round(rng.random(n), 3), strict=True)}
        rel = rng.choice(ids, size=int(rng.integers(1, 15)), replace=False)
        qrels[f"q{i}"] = {f"doc{j}": int(rng.integers(1, 4)) for j in rel}
        qrels[f"q{i}"]["unretrieved"] = 2
    names = ["ndcg@10", "recall@100", "map", "ndcg", "r_precision", "recall"]
    out = {}
    for how in ("count", "sort"):
        with strategy(how):
            out[how] = evaluate(run, qrels, names, **POLICY)  # type: ignore[arg-type]
    ref = pytrec_values(run, qrels, names)
    for name in names:
        np.testing.assert_array_equal(out["count"].per_query[name], out["sort"].per_query[name])
        got = dict(zip(out["count"].query_ids, out["count"].per_query[name].tolist(), strict=True))
        assert max(abs(got[q] - ref[name][q]) for q in got) <= TOL, name


def test_validation_still_runs_on_the_fast_path() -> None:
    from mlsys.common.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="NaN"):
        evaluate({"q": {"a": float("nan"), "b": 1.0}}, {"q": {"a": 1}}, ["map"], **POLICY)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="expected a number"):
        evaluate({"q": {"a": "high"}}, {"q": {"a": 1}}, ["map"], **POLICY)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="expected an integer"):
        evaluate({"q": {"a": 1.0}}, {"q": {"a": "yes"}}, ["map"], **POLICY)  # type: ignore[arg-type]
