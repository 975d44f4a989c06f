"""Parity with pytrec-eval-terrier (trec_eval) to 1e-9 on generated and real runs."""

from __future__ import annotations

import importlib.metadata
import json
import math
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlsys.common.metrics import evaluate, evaluate_ranked

sys.path.insert(0, str(Path(__file__).parent))
from metrics_testlib import all_metric_names, pytrec_values, reference_ndcg, to_arrays, trec_order

TOL = 1e-9
POLICY = {"missing_queries": "ignore", "extra_queries": "ignore", "empty_queries": "zero"}

# Doc ids chosen so string order differs from natural order ("d10" < "d2", "D" < "a", non-ASCII last).
DOCS = ["a", "aa", "b", "D", "d10", "d2", "d3", "x", "é", "zz", "10", "9"]
QUERIES = ["q1", "q2", "q3", "q4", "q5"]
# A few repeated values so that ties are frequent; -0.0 ties with 0.0 as in C.
SCORES = st.one_of(
    st.sampled_from([-1.0, -0.0, 0.0, 0.5, 1.0, 2.0]),
    # any double, subnormals included: trec_eval (and so mlsys) compares scores as C float
    st.floats(min_value=-5, max_value=5, allow_nan=False, allow_infinity=False),
    st.sampled_from([1.0 + 1e-9, 1.0 + 1e-7, 1e-310, 1e-50, float("inf"), float("-inf")]),
)


@st.composite
def run_and_qrels(draw: st.DrawFn) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, int]]]:
    run: dict[str, dict[str, float]] = {}
    qrels: dict[str, dict[str, int]] = {}
    for q in QUERIES:
        if draw(st.booleans()) or q == "q1":
            docs = draw(st.lists(st.sampled_from(DOCS), unique=True, max_size=len(DOCS)))
            run[q] = {d: draw(SCORES) for d in docs}  # may be {} (an empty ranking)
        if draw(st.booleans()) or q == "q1":
            judged = draw(st.lists(st.sampled_from(DOCS), unique=True, min_size=1, max_size=8))
            qrels[q] = {d: draw(st.integers(0, 3)) for d in judged}  # may hold only 0s
    return run, qrels


def test_pytrec_eval_version_is_pinned() -> None:
    assert importlib.metadata.version("pytrec-eval-terrier") == "0.5.11"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=run_and_qrels(), level=st.sampled_from([1, 2]))
def test_dict_path_equals_pytrec_eval(
    data: tuple[dict[str, dict[str, float]], dict[str, dict[str, int]]], level: int
) -> None:
    run, qrels = data
    names = all_metric_names()
    res = evaluate(run, qrels, names, relevance_level=level, **POLICY)
    ref = pytrec_values(run, qrels, names, relevance_level=level)
    # pytrec_eval evaluates exactly the queries present in both run and qrels
    assert set(res.query_ids) == set(next(iter(ref.values())))
    for name in names:
        for q, v in zip(res.query_ids, res.per_query[name].tolist(), strict=True):
            assert abs(v - ref[name][q]) <= TOL, (name, q, v, ref[name][q])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=run_and_qrels(), cut=st.sampled_from([(1,), (2, 3), (1, 5)]), ties=st.sampled_from(["trec", "input"])
)
def test_cutoff_only_metrics_equal_the_full_set_and_pytrec_eval(
    data: tuple[dict[str, dict[str, float]], dict[str, dict[str, int]]], cut: tuple[int, ...], ties: str
) -> None:
    # a cutoff metric must not change when a full-depth one is evaluated alongside it (ragged
    # rows, ties at the cutoff)
    run, qrels = data
    names = [n for n in all_metric_names(cut) if "@" in n]
    res = evaluate(run, qrels, names, ties=ties, **POLICY)  # type: ignore[arg-type]
    full = evaluate(run, qrels, [*names, "map"], ties=ties, **POLICY)  # type: ignore[arg-type]
    for name in names:
        np.testing.assert_array_equal(res.per_query[name], full.per_query[name])
    if ties == "trec":
        ref = pytrec_values(run, qrels, names)
        for name in names:
            for q, v in zip(res.query_ids, res.per_query[name].tolist(), strict=True):
                assert abs(v - ref[name][q]) <= TOL, (name, q, v, ref[name][q])


@settings(max_examples=100, deadline=None)
@given(data=run_and_qrels(), level=st.sampled_from([1, 2]), gain=st.sampled_from(["linear", "exponential"]))
def test_array_path_equals_dict_path(
    data: tuple[dict[str, dict[str, float]], dict[str, dict[str, int]]], level: int, gain: str
) -> None:
    run, qrels = data
    names = all_metric_names()
    res = evaluate(run, qrels, names, relevance_level=level, gain=gain, **POLICY)  # type: ignore[arg-type]
    ranked, q = to_arrays(run, qrels, res.query_ids)
    arr = evaluate_ranked(ranked, q, names, relevance_level=level, gain=gain, empty_queries="zero")  # type: ignore[arg-type]
    assert arr.query_ids == res.query_ids
    for name in names:
        np.testing.assert_allclose(arr.per_query[name], res.per_query[name], rtol=0, atol=TOL)


@settings(max_examples=100, deadline=None)
@given(
    data=run_and_qrels(), gain=st.sampled_from(["linear", "exponential"]), k=st.sampled_from([None, 1, 3, 10])
)
def test_ndcg_matches_textbook_reference(
    data: tuple[dict[str, dict[str, float]], dict[str, dict[str, int]]], gain: str, k: int | None
) -> None:
    run, qrels = data
    name = "ndcg" if k is None else f"ndcg@{k}"
    res = evaluate(run, qrels, [name], gain=gain, **POLICY)  # type: ignore[arg-type]
    for q, v in zip(res.query_ids, res.per_query[name].tolist(), strict=True):
        assert math.isclose(v, reference_ndcg(trec_order(run[q]), qrels[q], k, gain), abs_tol=TOL)


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _bm25_run(
    root: Path, n_queries: int, depth: int
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, int]]]:
    """A BM25 run (k1=0.9, b=0.4, numpy/scipy sparse) over SciFact for the test queries."""
    from scipy import sparse

    qrels: dict[str, dict[str, int]] = {}
    with open(root / "qrels" / "test.tsv", encoding="utf-8") as f:
        next(f)
        for line in f:
            qid, did, score = line.rstrip("\n").split("\t")
            qrels.setdefault(qid, {})[did] = int(score)
    doc_ids: list[str] = []
    vocab: dict[str, int] = {}
    rows: list[int] = []
    cols: list[int] = []
    counts: list[int] = []
    with open(root / "corpus.jsonl", encoding="utf-8") as f:
        for i, line in enumerate(f):
            d = json.loads(line)
            doc_ids.append(str(d["_id"]))
            for t, c in Counter(_tokens(d.get("title", "") + " " + d["text"])).items():
                rows.append(i)
                cols.append(vocab.setdefault(t, len(vocab)))
                counts.append(c)
    tf = sparse.csr_matrix((np.asarray(counts, float), (rows, cols)), shape=(len(doc_ids), len(vocab)))
    dl = np.asarray(tf.sum(axis=1)).ravel()
    df = np.bincount(tf.indices, minlength=len(vocab))
    n = len(doc_ids)
    idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
    k1, b = 0.9, 0.4
    coo = tf.tocoo()
    w = coo.data * (k1 + 1) / (coo.data + k1 * (1 - b + b * dl[coo.row] / dl.mean())) * idf[coo.col]
    weights = sparse.csc_matrix((w, (coo.row, coo.col)), shape=tf.shape)
    queries: dict[str, str] = {}
    with open(root / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            queries[str(d["_id"])] = d["text"]
    qids = [q for q in qrels if q in queries][:n_queries]
    run: dict[str, dict[str, float]] = {}
    for q in qids:
        terms = [vocab[t] for t in _tokens(queries[q]) if t in vocab]
        scores = np.asarray(weights[:, terms].sum(axis=1)).ravel()
        top = np.argsort(-scores, kind="stable")[:depth]
        # round so that ties occur, as in real BM25 runs with few matching terms
        run[q] = {doc_ids[j]: round(float(scores[j]), 2) for j in top}
    return run, {q: qrels[q] for q in qids}


@pytest.mark.slow
def test_scifact_bm25_run_equals_pytrec_eval(dataset) -> None:  # type: ignore[no-untyped-def]
    root = dataset("scifact")
    run, qrels = _bm25_run(root, n_queries=300, depth=1000)
    names = all_metric_names((1, 5, 10, 100, 1000))
    res = evaluate(run, qrels, names, **POLICY)
    ref = pytrec_values(run, qrels, names)
    assert len(res.query_ids) == 300
    for name in names:
        for q, v in zip(res.query_ids, res.per_query[name].tolist(), strict=True):
            assert abs(v - ref[name][q]) <= TOL, (name, q)
    ranked, q = to_arrays(run, qrels, res.query_ids)
    arr = evaluate_ranked(ranked, q, names, empty_queries="zero")
    for name in names:
        np.testing.assert_allclose(arr.per_query[name], res.per_query[name], rtol=0, atol=TOL)
    # a sane BM25 on SciFact: nDCG@10 well above chance (published BM25 ~0.66)
    assert 0.4 < res["ndcg@10"] < 0.8
