"""Behaviour of evaluate / evaluate_ranked: values, ties, query policies, bad input."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import pytrec_eval
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys.common.errors import DuplicateIdError, InvalidInputError, MlsysError, UnknownNameError
from mlsys.common.metrics import (
    EvalResult,
    MetricSpec,
    MetricsPolicyWarning,
    Qrels,
    average_precision,
    evaluate,
    evaluate_ranked,
    hit_rate,
    mrr,
    ndcg,
    precision,
    r_precision,
    recall,
)

EXPLICIT = {"missing_queries": "ignore", "extra_queries": "ignore", "empty_queries": "zero"}


# ----------------------------------------------------------------------------- hand-computed values
def test_hand_computed_values() -> None:
    # ranking: d3 (rel 0), d9 (unjudged), d1 (rel 2), d2 (rel 1); d5 (rel 1) never retrieved
    run = {"q": {"d1": 0.7, "d2": 0.6, "d3": 0.9, "d9": 0.8}}
    qrels = {"q": {"d1": 2, "d2": 1, "d3": 0, "d5": 1}}
    names = ["ndcg@3", "mrr@2", "mrr@3", "recall@3", "precision@3", "map@4", "hit_rate@2", "r_precision"]
    r = evaluate(run, qrels, names, **EXPLICIT)  # type: ignore[arg-type]
    dcg3 = 2 / math.log2(4)
    idcg3 = 2 + 1 / math.log2(3) + 1 / math.log2(4)
    assert r["ndcg@3"] == pytest.approx(dcg3 / idcg3, abs=1e-12)
    assert r["mrr@2"] == 0.0 and r["mrr@3"] == pytest.approx(1 / 3)
    assert r["recall@3"] == pytest.approx(1 / 3) and r["precision@3"] == pytest.approx(1 / 3)
    assert r["map@4"] == pytest.approx((1 / 3 + 2 / 4) / 3)
    assert r["hit_rate@2"] == 0.0
    assert r["r_precision"] == pytest.approx(1 / 3)  # R = 3; top 3 holds d1 only


def test_exponential_gain() -> None:
    run = {"q": {"a": 2.0, "b": 1.0}}
    qrels = {"q": {"a": 1, "b": 3}}
    lin = evaluate(run, qrels, ["ndcg"], **EXPLICIT)["ndcg"]  # type: ignore[arg-type]
    exp = evaluate(run, qrels, ["ndcg"], gain="exponential", **EXPLICIT)["ndcg"]  # type: ignore[arg-type]
    assert lin == pytest.approx((1 + 3 / math.log2(3)) / (3 + 1 / math.log2(3)))
    assert exp == pytest.approx((1 + 7 / math.log2(3)) / (7 + 1 / math.log2(3)))


def test_trec_ties_score_desc_then_docid_desc_as_strings() -> None:
    # "d10" < "d2" as strings; trec_eval puts d2 first among the tied docs
    run = {"q": {"d10": 1.0, "d2": 1.0, "d1": 1.0}}
    qrels = {"q": {"d10": 1}}
    assert evaluate(run, qrels, ["mrr"], **EXPLICIT)["mrr"] == pytest.approx(1 / 2)  # type: ignore[arg-type]
    assert evaluate(run, qrels, ["mrr"], ties="input", **EXPLICIT)["mrr"] == 1.0  # type: ignore[arg-type]
    ev = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"})
    assert ev.evaluate(run)["q"]["recip_rank"] == pytest.approx(1 / 2)


def test_trec_ties_compare_scores_in_single_precision_like_trec_eval() -> None:
    run = {"q": {"a": 1.0 + 1e-9, "b": 1.0}}  # equal as C float
    qrels = {"q": {"a": 1}}
    assert evaluate(run, qrels, ["mrr"], **EXPLICIT)["mrr"] == 0.5  # type: ignore[arg-type]
    assert pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(run)["q"]["recip_rank"] == 0.5
    # "input" compares the float64 values
    assert evaluate(run, qrels, ["mrr"], ties="input", **EXPLICIT)["mrr"] == 1.0  # type: ignore[arg-type]


def test_ties_input_keeps_insertion_order_within_equal_scores() -> None:
    run = {"q": {"z": 1.0, "a": 2.0, "m": 1.0, "b": 1.0}}
    qrels = {"q": {"m": 1}}
    # order: a, z, m, b
    assert evaluate(run, qrels, ["mrr"], ties="input", **EXPLICIT)["mrr"] == pytest.approx(1 / 3)  # type: ignore[arg-type]


def test_dict_path_truncates_ties_straddling_the_cutoff_correctly() -> None:
    # many docs share the score at the cutoff boundary; which ones enter the top 3 depends on the doc id
    rng = np.random.default_rng(0)
    docs = {f"d{i:03d}": float(s) for i, s in enumerate(rng.integers(0, 3, 200))}
    qrels = {"q": {d: 1 for d in list(docs)[::7]}}
    names = ["ndcg@3", "precision@3", "mrr@3", "recall@10", "map@5"]
    r = evaluate({"q": docs}, qrels, names, **EXPLICIT)  # type: ignore[arg-type]
    ref = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.3", "P.3", "recall.10", "map_cut.5"}).evaluate(
        {"q": docs}
    )
    assert r["ndcg@3"] == pytest.approx(ref["q"]["ndcg_cut_3"], abs=1e-12)
    assert r["precision@3"] == pytest.approx(ref["q"]["P_3"], abs=1e-12)
    assert r["recall@10"] == pytest.approx(ref["q"]["recall_10"], abs=1e-12)
    assert r["map@5"] == pytest.approx(ref["q"]["map_cut_5"], abs=1e-12)


# ----------------------------------------------------------------------------- query policies
RUN = {"q1": {"a": 1.0}, "q2": {"a": 1.0}, "q_run_only": {"a": 1.0}}
QRELS = {"q1": {"a": 1}, "q2": {"a": 0}, "q_qrels_only": {"a": 1}}


def test_default_policies_are_trec_eval_and_warn() -> None:
    with pytest.warns(MetricsPolicyWarning) as rec:
        r = evaluate(RUN, QRELS, ["ndcg@10"])
    messages = " ".join(str(w.message) for w in rec)
    assert "q_qrels_only" in messages and "q_run_only" in messages and "'q2'" in messages
    # trec_eval: q1 and q2 (both in run and qrels) are evaluated; q2 has no relevant doc -> 0
    ref = pytrec_eval.RelevanceEvaluator(QRELS, {"ndcg_cut.10"}).evaluate(RUN)
    assert sorted(r.query_ids) == sorted(ref) == ["q1", "q2"]
    assert r.per_query["ndcg@10"].tolist() == [1.0, 0.0]
    assert r["ndcg@10"] == 0.5
    assert r.notes["missing_from_run"] == ("q_qrels_only",)
    assert r.notes["not_in_qrels"] == ("q_run_only",)
    assert r.notes["no_relevant"] == ("q2",)


def test_explicit_policies_do_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluate(RUN, QRELS, ["ndcg@10"], **EXPLICIT)  # type: ignore[arg-type]


def test_missing_zero_is_trec_eval_dash_c() -> None:
    # trec_eval -c averages over every qrels query, missing ones count 0
    r = evaluate(
        RUN,
        QRELS,
        ["ndcg@10", "recall@5"],
        missing_queries="zero",
        extra_queries="ignore",
        empty_queries="zero",
    )
    assert r.query_ids == ["q1", "q2", "q_qrels_only"]
    assert r.per_query["ndcg@10"].tolist() == [1.0, 0.0, 0.0]
    assert r["ndcg@10"] == pytest.approx(1 / 3)


def test_empty_skip_and_errors() -> None:
    r = evaluate(
        RUN, QRELS, ["ndcg@10"], missing_queries="ignore", extra_queries="ignore", empty_queries="skip"
    )
    assert r.query_ids == ["q1"] and r["ndcg@10"] == 1.0
    with pytest.raises(InvalidInputError, match="q2"):
        evaluate(
            RUN, QRELS, ["ndcg@10"], missing_queries="ignore", extra_queries="ignore", empty_queries="error"
        )
    with pytest.raises(InvalidInputError, match="q_qrels_only"):
        evaluate(
            RUN, QRELS, ["ndcg@10"], missing_queries="error", extra_queries="ignore", empty_queries="zero"
        )
    with pytest.raises(InvalidInputError, match="q_run_only"):
        evaluate(
            RUN, QRELS, ["ndcg@10"], missing_queries="ignore", extra_queries="error", empty_queries="zero"
        )
    with pytest.raises(UnknownNameError, match="empty_queries"):
        evaluate(RUN, QRELS, ["ndcg@10"], empty_queries="drop")  # type: ignore[arg-type]


def test_qrels_query_with_no_judgements_is_a_query_without_relevant_docs() -> None:
    r = evaluate({"q": {"a": 1.0}, "e": {"a": 1.0}}, {"q": {"a": 1}, "e": {}}, ["mrr"], **EXPLICIT)  # type: ignore[arg-type]
    assert r.query_ids == ["q", "e"] and r.per_query["mrr"].tolist() == [1.0, 0.0]
    assert r.notes["no_relevant"] == ("e",)


def test_no_common_query_is_an_error() -> None:
    with pytest.raises(InvalidInputError, match="no query is in both"):
        evaluate({"a": {"d": 1.0}}, {"b": {"d": 1}}, ["ndcg@10"], **EXPLICIT)  # type: ignore[arg-type]


def test_empty_run_for_a_query_scores_zero_like_pytrec_eval() -> None:
    run = {"q": {}, "p": {"d": 1.0}}
    qrels = {"q": {"d": 1}, "p": {"d": 1}}
    r = evaluate(run, qrels, ["ndcg@10", "precision", "r_precision", "map"], **EXPLICIT)  # type: ignore[arg-type]
    ref = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "set_P", "Rprec", "map"}).evaluate(run)
    assert r.per_query["ndcg@10"].tolist() == [ref["q"]["ndcg_cut_10"], ref["p"]["ndcg_cut_10"]] == [0.0, 1.0]


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("name", "err"),
    [
        ("ndcg@0", InvalidInputError),
        ("ndcg@-3", InvalidInputError),
        ("ndcg@x", InvalidInputError),
        ("dcg@10", UnknownNameError),
        ("r_precision@5", UnknownNameError),
        ("P_10", UnknownNameError),
        (10, UnknownNameError),
    ],
)
def test_bad_metric_names(name: object, err: type[Exception]) -> None:
    with pytest.raises(err) as exc:
        evaluate({"q": {"a": 1.0}}, {"q": {"a": 1}}, [name], **EXPLICIT)  # type: ignore[list-item, arg-type]
    assert isinstance(exc.value, MlsysError)
    if err is UnknownNameError:
        assert "ndcg@k" in str(exc.value) and "r_precision" in str(exc.value)


def test_unknown_name_is_also_a_value_error() -> None:
    with pytest.raises(ValueError, match="valid names"):
        MetricSpec.parse("nope")


def test_nan_score_is_rejected_naming_query_and_doc() -> None:
    with pytest.raises(InvalidInputError, match=r"'b'.*'q2'.*NaN"):
        evaluate(
            {"q1": {"a": 1.0}, "q2": {"a": 1.0, "b": float("nan")}}, {"q1": {"a": 1}, "q2": {"a": 1}}, ["mrr"]
        )


def test_non_numeric_score_is_rejected() -> None:
    with pytest.raises(InvalidInputError, match="expected a number"):
        evaluate({"q": {"a": "high"}}, {"q": {"a": 1}}, ["mrr"], **EXPLICIT)  # type: ignore[dict-item, arg-type]


@pytest.mark.parametrize("rel", [-1, 1.5, "x", float("nan")])
def test_bad_relevance_is_rejected(rel: object) -> None:
    with pytest.raises(InvalidInputError):
        evaluate({"q": {"a": 1.0}}, {"q": {"a": rel}}, ["mrr"], **EXPLICIT)  # type: ignore[dict-item, arg-type]
    with pytest.raises(InvalidInputError):
        Qrels.from_dict({"q": {"a": rel}})  # type: ignore[dict-item]


def test_other_bad_arguments() -> None:
    run, qrels = {"q": {"a": 1.0}}, {"q": {"a": 1}}
    with pytest.raises(UnknownNameError, match="gain"):
        evaluate(run, qrels, ["ndcg"], gain="log")  # type: ignore[arg-type]
    with pytest.raises(UnknownNameError, match="ties"):
        evaluate(run, qrels, ["ndcg"], ties="random")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="relevance_level"):
        evaluate(run, qrels, ["ndcg"], relevance_level=0)
    with pytest.raises(InvalidInputError, match="empty"):
        evaluate(run, qrels, [])
    with pytest.raises(InvalidInputError, match="mapping"):
        evaluate([("q", "a", 1.0)], qrels, ["ndcg"])  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- array path
def _q() -> Qrels:
    return Qrels.from_lists(
        [np.array([7, 3]), np.array([4]), np.array([1])], [np.array([2, 1]), np.array([1]), np.array([0])]
    )


def test_array_path_values_and_helpers() -> None:
    ranked = np.array([[3, 7, -1], [9, 4, 5], [1, 2, 3]])
    q = _q()
    r = evaluate_ranked(ranked, q, ["mrr@10", "recall@1", "ndcg@2"], empty_queries="zero")
    assert r.per_query["mrr@10"].tolist() == [1.0, 0.5, 0.0]
    assert r.per_query["recall@1"].tolist() == [0.5, 0.0, 0.0]
    assert r.query_ids == ["0", "1", "2"]
    np.testing.assert_allclose(mrr(ranked, q, 10), r.per_query["mrr@10"])
    np.testing.assert_allclose(ndcg(ranked, q, 2), r.per_query["ndcg@2"])
    np.testing.assert_allclose(recall(ranked, q, 1), r.per_query["recall@1"])
    assert precision(ranked, q, 2).tolist() == [1.0, 0.5, 0.0]
    assert precision(ranked, q).tolist() == [1.0, 1 / 3, 0.0]  # set_P divides by the number retrieved
    assert hit_rate(ranked, q, 1).tolist() == [1.0, 0.0, 0.0]
    assert average_precision(ranked, q).tolist() == [1.0, 0.5, 0.0]
    assert r_precision(ranked, q).tolist() == [1.0, 0.0, 0.0]


def test_array_path_empty_policy() -> None:
    ranked = np.array([[3, 7, -1], [9, 4, 5], [1, 2, 3]])
    with pytest.warns(MetricsPolicyWarning, match="'2'"):
        evaluate_ranked(ranked, _q(), ["mrr@10"])
    r = evaluate_ranked(ranked, _q(), ["mrr@10"], empty_queries="skip")
    assert r.query_ids == ["0", "1"] and r["mrr@10"] == 0.75


@pytest.mark.parametrize(
    ("ranked", "err", "match"),
    [
        (np.array([[3, 3, 1], [1, 2, 4], [1, 2, 3]]), DuplicateIdError, "ranked twice"),
        (np.array([[3, -1, 1], [1, 2, 4], [1, 2, 3]]), InvalidInputError, "after -1 padding"),
        (np.array([[3, -2, 1], [1, 2, 4], [1, 2, 3]]), InvalidInputError, "-2"),
        (np.array([[3, 1], [1, 2]]), InvalidInputError, "2 rows"),
        (np.array([3, 1, 2]), InvalidInputError, "shape"),
        (np.array([[3.0, 1], [1, 2], [1, 2]]), InvalidInputError, "integer"),
    ],
)
def test_array_path_bad_input(ranked: np.ndarray, err: type[Exception], match: str) -> None:
    with pytest.raises(err, match=match):
        evaluate_ranked(ranked, _q(), ["mrr@10"], empty_queries="zero")


def test_array_path_rejects_dict_qrels() -> None:
    with pytest.raises(InvalidInputError, match="Qrels"):
        evaluate_ranked(np.array([[1]]), {"q": {"a": 1}}, ["mrr"])  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- Qrels
def test_qrels_from_dict_maps_doc_ids_and_keeps_unmapped_judgements() -> None:
    q = Qrels.from_dict({"q1": {"d1": 1, "d9": 2}, "q2": {"d2": 0}}, doc_ids={"d1": 10, "d2": 20})
    assert q.query_ids == ["q1", "q2"]
    assert q.num_relevant().tolist() == [2, 0]
    # d9 is relevant but can never be retrieved: recall@10 is capped at 1/2
    r = evaluate_ranked(np.array([[10], [20]]), q, ["recall@10"], empty_queries="zero")
    assert r.per_query["recall@10"].tolist() == [0.5, 0.0]


def test_qrels_rejects_duplicates_and_bad_lists() -> None:
    with pytest.raises(DuplicateIdError, match="twice"):
        Qrels.from_lists([np.array([1, 1])])
    with pytest.raises(DuplicateIdError):
        Qrels.from_dict({"q": {"a": 1, "b": 1}}, doc_ids={"a": 1, "b": 1})
    with pytest.raises(InvalidInputError, match="negative"):
        Qrels.from_lists([np.array([-3])])
    with pytest.raises(InvalidInputError, match="shape"):
        Qrels.from_lists([np.array([1, 2])], [np.array([1])])
    with pytest.raises(InvalidInputError, match="empty"):
        Qrels.from_lists([])
    with pytest.raises(InvalidInputError, match="empty"):
        Qrels.from_dict({})
    with pytest.raises(DuplicateIdError):
        Qrels.from_lists([np.array([1]), np.array([2])], query_ids=["a", "a"])


def test_qrels_arrays_are_read_only() -> None:
    q = _q()
    with pytest.raises(ValueError):
        q.relevance[0] = 5


def test_eval_result_accessors() -> None:
    r = evaluate({"q": {"a": 1.0}}, {"q": {"a": 1}}, ["NDCG@10", "mrr"], **EXPLICIT)  # type: ignore[arg-type]
    assert isinstance(r, EvalResult)
    assert r.metrics == ["ndcg@10", "mrr"]
    assert r["NDCG@10"] == r["ndcg@10"] == 1.0
    with pytest.raises(UnknownNameError, match="not evaluated"):
        r["recall@5"]
    d = r.to_dict()
    assert d["per_query"]["mrr"] == {"q": 1.0} and d["mean"]["ndcg@10"] == 1.0
    assert "ndcg@10=1.0000" in repr(r)
    with pytest.raises(ValueError):
        r.per_query["mrr"][0] = 0.0


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_duplicate_doc_within_evaluated_depth_is_rejected(data: st.DataObject) -> None:
    n, k = data.draw(st.integers(1, 5)), data.draw(st.integers(2, 8))
    ranked = np.stack([np.random.default_rng(i).permutation(50)[:k] for i in range(n)]).astype(np.int64)
    row, a, b = (
        data.draw(st.integers(0, n - 1)),
        data.draw(st.integers(0, k - 1)),
        data.draw(st.integers(0, k - 1)),
    )
    if a == b:
        return
    ranked[row, b] = ranked[row, a]
    q = Qrels.from_lists([np.array([1, 2, 3]) for _ in range(n)])
    before = ranked.copy()
    with pytest.raises(DuplicateIdError, match=f"row {row}"):
        evaluate_ranked(ranked, q, ["map"], empty_queries="zero")  # "map" reads every rank
    np.testing.assert_array_equal(ranked, before)  # a rejected call changes nothing
    # beyond the depth the metrics read, a duplicate cannot change any value and is not inspected
    if min(a, b) >= 1:
        evaluate_ranked(ranked, q, ["mrr@1"], empty_queries="zero")


def test_array_path_large_ids_use_the_binary_search_path_with_same_values() -> None:
    rng = np.random.default_rng(3)
    ranked = np.stack([rng.permutation(300)[:40] for _ in range(30)]).astype(np.int64)
    ranked[::4, 30:] = -1
    docs = [rng.choice(300, 6, replace=False) for _ in range(30)]
    rels = [rng.integers(0, 4, 6) for _ in range(30)]
    names = ["ndcg@10", "mrr@10", "recall@20", "map", "r_precision", "precision"]
    small = evaluate_ranked(ranked, Qrels.from_lists(docs, rels), names, empty_queries="zero")
    shift = 2**40  # too sparse for the direct table: binary search on the judged ids instead
    big_ranked = np.where(ranked >= 0, ranked + shift, -1)
    big = evaluate_ranked(
        big_ranked, Qrels.from_lists([d + shift for d in docs], rels), names, empty_queries="zero"
    )
    for name in names:
        np.testing.assert_array_equal(small.per_query[name], big.per_query[name])
