"""Where scikit-learn and ranx disagree with trec_eval/mlsys, and why (see benchmarks/common/README.md).

torchmetrics is not installed here; its documented behaviour (IDCG and recall from the items
passed in, i.e. the retrieved list; sklearn's tie averaging for nDCG since 1.3) is the
"restricted qrels" case tested below with scikit-learn.
"""

from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import ndcg_score

from mlsys.common.metrics import evaluate

sys.path.insert(0, str(Path(__file__).parent))
from metrics_testlib import trec_order

EXPLICIT = {"missing_queries": "ignore", "extra_queries": "ignore", "empty_queries": "zero"}


def _sk_ndcg(run: dict[str, float], judged: dict[str, int], k: int | None) -> float:
    docs = list(run)
    y_true = np.array([[judged.get(d, 0) for d in docs]], dtype=float)
    y_score = np.array([[run[d] for d in docs]])
    return float(ndcg_score(y_true, y_score, k=k))


def test_sklearn_ndcg_takes_idcg_from_the_retrieved_list() -> None:
    # d5 (rel 2) is relevant but not retrieved: trec_eval's IDCG counts it, sklearn cannot see it
    run = {"d1": 0.9, "d2": 0.8, "d3": 0.7}
    qrels = {"d1": 0, "d2": 1, "d3": 1, "d5": 2}
    ours = evaluate({"q": run}, {"q": qrels}, ["ndcg@10"], **EXPLICIT)["ndcg@10"]  # type: ignore[arg-type]
    sk = _sk_ndcg(run, qrels, 10)
    dcg = 1 / math.log2(3) + 1 / math.log2(4)
    assert ours == pytest.approx(dcg / (2 + 1 / math.log2(3) + 1 / math.log2(4)))
    assert sk == pytest.approx(dcg / (1 + 1 / math.log2(3)))
    assert sk > ours  # sklearn over-estimates whenever a relevant document was missed


@st.composite
def untied_run(draw: st.DrawFn) -> tuple[dict[str, float], dict[str, int]]:
    docs = [f"d{i}" for i in range(draw(st.integers(2, 12)))]
    scores = draw(st.lists(st.integers(0, 10_000), min_size=len(docs), max_size=len(docs), unique=True))
    judged = {d: draw(st.integers(0, 3)) for d in docs if draw(st.booleans())}
    judged.update({f"missed{i}": draw(st.integers(1, 3)) for i in range(draw(st.integers(0, 3)))})
    return {d: float(s) for d, s in zip(docs, scores)}, judged


@settings(max_examples=60, deadline=None)
@given(untied_run(), st.sampled_from([None, 3, 10]))
def test_sklearn_equals_mlsys_with_qrels_restricted_to_retrieved_docs(
    data: tuple[dict[str, float], dict[str, int]], k: int | None
) -> None:
    run, judged = data
    name = "ndcg" if k is None else f"ndcg@{k}"
    if not any(v > 0 for d, v in judged.items() if d in run):
        return  # sklearn returns 0 for an all-zero y_true, as we do; nothing to compare
    restricted = {d: v for d, v in judged.items() if d in run}
    ours_full = evaluate({"q": run}, {"q": judged}, [name], **EXPLICIT)[name]  # type: ignore[arg-type]
    ours_restricted = evaluate({"q": run}, {"q": restricted}, [name], **EXPLICIT)[name]  # type: ignore[arg-type]
    sk = _sk_ndcg(run, judged, k)
    assert sk == pytest.approx(ours_restricted, abs=1e-9)
    assert sk >= ours_full - 1e-12


def test_sklearn_averages_ties_instead_of_breaking_them() -> None:
    # d1 (rel 1) and d2 (rel 0) tie; trec_eval ranks d2 first (doc id descending)
    run = {"d1": 1.0, "d2": 1.0, "d3": 0.5}
    judged = {"d1": 1, "d3": 1}
    ours = evaluate({"q": run}, {"q": judged}, ["ndcg"], **EXPLICIT)["ndcg"]  # type: ignore[arg-type]
    assert trec_order(run) == ["d2", "d1", "d3"]
    sk = _sk_ndcg(run, judged, None)
    # sklearn's tie-averaged DCG is the mean DCG over the orderings of each tied group
    perms = [
        evaluate({"q": dict([*p, ("d3", 0.5)])}, {"q": judged}, ["ndcg"], ties="input", **EXPLICIT)["ndcg"]  # type: ignore[arg-type]
        for p in itertools.permutations([("d1", 1.0), ("d2", 1.0)])
    ]
    assert sk == pytest.approx(float(np.mean(perms)), abs=1e-12)
    assert sk != pytest.approx(ours)


# ----------------------------------------------------------------------------- ranx (numba: slow)
@pytest.mark.slow
def test_ranx_differences() -> None:
    ranx = pytest.importorskip("ranx")

    def rx(
        qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]], metric: str, **kw: object
    ) -> list[float]:
        # ranx returns per-query values in sorted query-id order; put them back in qrels order
        q = ranx.Qrels(qrels)
        vals = ranx.evaluate(q, ranx.Run(run), metric, return_mean=False, **kw)
        by_id = dict(zip(sorted(q.keys()), np.asarray(vals).tolist()))
        return [by_id[k] for k in qrels if k in by_id]

    # 1. ties: ranx keeps the run's insertion order, trec_eval sorts tied docs by id descending
    qrels = {"q": {"d10": 1}, "p": {"a": 1}}
    run = {"q": {"d10": 1.0, "d2": 1.0, "d1": 1.0}, "p": {"a": 1.0}}
    assert rx(qrels, run, "mrr") == [1.0, 1.0]
    assert evaluate(run, qrels, ["mrr"], **EXPLICIT).per_query["mrr"].tolist() == [0.5, 1.0]  # type: ignore[arg-type]
    assert evaluate(run, qrels, ["mrr"], ties="input", **EXPLICIT).per_query["mrr"].tolist() == [1.0, 1.0]  # type: ignore[arg-type]
    # 2. ranx compares float64 scores; trec_eval (and mlsys ties="trec") compare C floats
    run2 = {"q": {"d1": 1.0 + 1e-9, "d10": 1.0}, "p": {"a": 1.0}}
    assert rx(qrels, run2, "mrr") == [0.5, 1.0]
    assert evaluate(run2, qrels, ["mrr"], **EXPLICIT).per_query["mrr"].tolist() == [1.0, 1.0]  # type: ignore[arg-type]
    # 3. mismatched query sets: ranx refuses unless make_comparable=True (= missing_queries="zero")
    with pytest.raises(AssertionError):
        rx({"q1": {"a": 1}, "q2": {"a": 1}}, {"q1": {"a": 1.0}, "q3": {"a": 1.0}}, "ndcg@10")
    mc = rx(
        {"q1": {"a": 1}, "q2": {"a": 1}},
        {"q1": {"a": 1.0}, "q3": {"a": 1.0}},
        "ndcg@10",
        make_comparable=True,
    )
    ours = evaluate(
        {"q1": {"a": 1.0}, "q3": {"a": 1.0}},
        {"q1": {"a": 1}, "q2": {"a": 1}},
        ["ndcg@10"],
        missing_queries="zero",
        extra_queries="ignore",
        empty_queries="zero",
    )
    assert mc == ours.per_query["ndcg@10"].tolist() == [1.0, 0.0]
    # 4. ranx accepts NaN scores and negative relevance silently; mlsys refuses both
    assert len(rx({"q": {"a": 1}}, {"q": {"a": float("nan"), "b": 0.5}}, "mrr")) == 1
    assert len(rx({"q": {"a": -1, "b": 1}}, {"q": {"a": 1.0, "b": 0.5}}, "ndcg@10")) == 1
    # 5. where inputs have no ties and matching queries, ranx agrees with trec_eval and mlsys
    rng = np.random.default_rng(0)
    run3 = {f"q{i}": {f"d{j}": float(s) for j, s in enumerate(rng.permutation(200)[:50])} for i in range(20)}
    qrels3 = {
        f"q{i}": {f"d{j}": int(rng.integers(1, 4)) for j in rng.choice(200, 8, replace=False)}
        for i in range(20)
    }
    names = {
        "ndcg@10": "ndcg@10",
        "mrr@10": "mrr@10",
        "recall@20": "recall@20",
        "map@10": "map@10",
        "precision@5": "precision@5",
    }
    ours3 = evaluate(run3, qrels3, list(names), **EXPLICIT)  # type: ignore[arg-type]
    for ours_name, ranx_name in names.items():
        np.testing.assert_allclose(
            np.asarray(rx(qrels3, run3, ranx_name)), ours3.per_query[ours_name], atol=1e-9
        )
    # ranx's "ndcg_burges" is the exponential-gain nDCG
    burges = np.asarray(rx(qrels3, run3, "ndcg_burges@10"))
    ours_exp = evaluate(run3, qrels3, ["ndcg@10"], gain="exponential", **EXPLICIT)  # type: ignore[arg-type]
    np.testing.assert_allclose(burges, ours_exp.per_query["ndcg@10"], atol=1e-9)
