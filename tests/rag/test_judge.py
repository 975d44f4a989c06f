"""Evaluation layers 2 and 3: judges, failures recorded, seeded stratified review sample, exports, report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mlsys.common.errors import InvalidInputError, ParseError
from mlsys.rag.judge import (
    EvalRecord,
    FaithfulnessVerdict,
    LLMJudge,
    OfflineJudge,
    ThreeLayerReport,
    judge_records,
    review_sample,
    stratum_of,
    summarize_faithfulness,
    write_csv,
    write_jsonl,
)


def test_offline_judge_scores_claims_and_never_returns_nan() -> None:
    j = OfflineJudge()
    ctx = ["Aspirin reduces the risk of heart attacks in adults.", "Statins lower cholesterol."]
    v = j.judge("Aspirin reduces heart attack risk. Statins cure cancer. Yes.", ctx)
    assert v.status == "scored" and [c.supported for c in v.claims] == [True, False]
    assert v.claims[0].evidence == 0 and v.score == 0.5  # "Yes." is not a claim
    for empty in ("", "Yes.", "I don't know.", "   "):
        nv = j.judge(empty, ctx)
        assert nv.status == "no_claims" and nv.score is None and nv.claims == ()
    assert j.judge("Statins lower cholesterol.", ctx).score == 1.0
    with pytest.raises(InvalidInputError):
        j.judge(3, ctx)  # type: ignore[arg-type]


def test_judge_failures_are_recorded_and_the_evaluation_continues() -> None:
    replies = iter(['{"claims": [{"claim": "a", "supported": true}, {"claim": "b", "supported": false}]}',
                    "not json at all", '{"claims": [{"claim": "a"}]}', '{"claims": []}', "[1, 2]"])  # fmt: skip
    j = LLMJudge(lambda prompt: next(replies))
    vs = judge_records(j, ["x", "x", "x", "x", "x", None], [["c"]] * 6)
    assert [v.status for v in vs] == ["scored", "failed", "failed", "no_claims", "failed", "abstained"]
    assert vs[0].score == 0.5 and "ParseError" in (vs[1].error or "")
    with pytest.raises(ParseError):
        LLMJudge(lambda p: "{}").judge("x", ["c"])

    class Garbage:
        name = "garbage"

        def judge(self, answer: str, contexts: list[str]) -> object:
            return {"score": 2.0} if answer == "dict" else FaithfulnessVerdict("scored", (), 7.0, "g")

    g = judge_records(Garbage(), ["dict", "bad-score"], [["c"], ["c"]])
    assert [v.status for v in g] == ["failed", "failed"] and "expected a FaithfulnessVerdict" in (
        g[0].error or ""
    )
    s = summarize_faithfulness(vs)
    assert (s.mean_score, s.n_scored, s.n_no_claims, s.n_failed, s.n_abstained) == (0.5, 1, 1, 3, 1)


def _records(n: int = 200) -> list[EvalRecord]:
    out = []
    for i in range(n):
        if i % 20 == 0:
            v = FaithfulnessVerdict("failed", (), None, "j", "timeout")
        elif i % 10 == 1:
            v = FaithfulnessVerdict("abstained", (), None, "j")
        else:
            v = FaithfulnessVerdict("scored", (), 1.0 if i % 7 else 0.0, "j")
        ans = None if v.status == "abstained" else f"answer {i}"
        out.append(
            EvalRecord(
                f"q{i}", f"question {i}?", (f"ctx {i}", "other, with comma\nand newline"), ans, v, True
            )
        )
    return out


def test_review_sample_is_seeded_stratified_and_oversamples_the_informative_strata() -> None:
    recs = _records()
    strata = [stratum_of(r) for r in recs]
    a = review_sample(recs, 40, seed=3)
    assert a == review_sample(recs, 40, seed=3) and a != review_sample(recs, 40, seed=4)
    assert len(a) == 40 and len({it.record.query_id for it in a}) == 40
    pop = {s: strata.count(s) / len(recs) for s in set(strata)}
    got = {s: sum(it.stratum == s for it in a) / 40 for s in set(strata)}
    for s in ("judge_failed", "abstained", "disagreement"):
        assert got[s] > pop[s]  # over-sampled
    assert got["agree"] < pop["agree"]
    for it in a:
        assert it.stratum == stratum_of(it.record)
        assert it.inclusion_probability == pytest.approx(got[it.stratum] * 40 / strata.count(it.stratum))
    everything = review_sample(recs, 10_000)
    assert len(everything) == len(recs) and all(it.inclusion_probability == 1.0 for it in everything)
    with pytest.raises(InvalidInputError):
        review_sample(recs, 5, weights={"nope": 1.0})


def test_exports_round_trip(tmp_path: Path) -> None:
    items = review_sample(_records(), 15, seed=0)
    write_jsonl(items, tmp_path / "s.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["query_id"] for r in rows] == [it.record.query_id for it in items]
    assert rows[0]["contexts"] == list(items[0].record.contexts) and "verdict" in rows[0]
    write_csv(items, tmp_path / "s.csv")
    with (tmp_path / "s.csv").open(encoding="utf-8", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["query_id"] for r in table] == [it.record.query_id for it in items]
    assert table[0]["contexts"].split("\n---\n") == list(items[0].record.contexts)
    assert all(r["reviewer_verdict"] == "" for r in table)


def test_three_layer_report_puts_the_layers_side_by_side() -> None:
    recs = _records(40)
    rep = ThreeLayerReport({"ndcg@10": 0.75, "recall@100": 0.95}, summarize_faithfulness([r.verdict for r in recs]),
                           review_sample(recs, 10, seed=0), len(recs))  # fmt: skip
    md = rep.to_markdown()
    assert "| 1 retrieval | ndcg@10 | 0.7500 |" in md and "| 2 faithfulness | failed | 2 |" in md
    assert "| 3 review sample |" in md
    d = rep.to_dict()
    assert d["layer3_review"]["sampled"] == 10 and d["layer2_faithfulness"]["abstained"] == 4
