"""Evaluation layer 3: a seeded, stratified sample for human review, and the three-layer report.

Each evaluated query becomes an :class:`EvalRecord` (question, contexts, answer or abstention,
whether retrieval found a relevant document, the judge's verdict). :func:`review_sample` puts
every record in one stratum - ``judge_failed``, ``abstained``, ``disagreement`` (retrieval and
judge disagree: a relevant document was retrieved but the answer is judged unfaithful, or none
was retrieved yet the answer is judged faithful), ``no_claims`` or ``agree`` - and draws a
seeded sample that over-samples the strata a reviewer learns most from (``weights``). Each item
carries its inclusion probability, so a reviewer's error rate can be re-weighted to the whole
population. :func:`write_jsonl` / :func:`write_csv` export it; :class:`ThreeLayerReport` puts
retrieval metrics (layer 1), faithfulness (layer 2) and the review sample (layer 3) side by side.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlsys.common._display import DisplayTable, TabularDisplay
from mlsys.common.errors import InvalidInputError
from mlsys.rag.judge._judges import FaithfulnessVerdict

__all__ = [
    "DEFAULT_WEIGHTS",
    "STRATA",
    "EvalRecord",
    "FaithfulnessSummary",
    "ReviewItem",
    "ThreeLayerReport",
    "review_sample",
    "stratum_of",
    "summarize_faithfulness",
    "write_csv",
    "write_jsonl",
]

STRATA: tuple[str, ...] = ("judge_failed", "abstained", "disagreement", "no_claims", "agree")
"""The strata of the human-review sample, in priority order."""
DEFAULT_WEIGHTS: Mapping[str, float] = {
    "judge_failed": 4.0,
    "abstained": 3.0,
    "disagreement": 3.0,
    "no_claims": 1.5,
    "agree": 1.0,
}
"""Default sampling weight of each stratum (judge failures and abstentions reviewed most)."""


@dataclass(frozen=True)
class EvalRecord:
    """One evaluated query.

    Args:
        query_id, question: the query.
        contexts: the texts the answer was generated from (or that the system saw, if it abstained).
        answer: the answer text, ``None`` for an abstention.
        abstention_reason: why it abstained, if it did.
        retrieval_hit: whether a relevant document was among the retrieved (``None``: unjudged).
        verdict: the layer-2 verdict.
        cited: cited document ids.
    """

    query_id: str
    question: str
    contexts: tuple[str, ...]
    answer: str | None
    verdict: FaithfulnessVerdict
    retrieval_hit: bool | None = None
    abstention_reason: str | None = None
    cited: tuple[str, ...] = ()


def stratum_of(record: EvalRecord, *, faithful_at: float = 0.5) -> str:
    """The review stratum of a record (see the module docstring).

    Example:
        >>> from mlsys.rag.judge import FaithfulnessVerdict
        >>> v = FaithfulnessVerdict("scored", (), 0.0, "j")
        >>> stratum_of(EvalRecord("q", "?", (), "a", v, retrieval_hit=True))
        'disagreement'
    """
    if not isinstance(record, EvalRecord):
        raise InvalidInputError(f"record must be an EvalRecord, got {type(record).__name__}")
    v = record.verdict
    if v.status == "failed":
        return "judge_failed"
    if record.answer is None or v.status == "abstained":
        return "abstained"
    if v.status == "no_claims":
        return "no_claims"
    faithful = v.score is not None and v.score >= faithful_at
    if record.retrieval_hit is not None and record.retrieval_hit != faithful:
        return "disagreement"
    return "agree"


@dataclass(frozen=True)
class ReviewItem:
    """A sampled record with its stratum and inclusion probability."""

    record: EvalRecord
    stratum: str
    inclusion_probability: float

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON form (the JSONL row)."""
        r = self.record
        return {
            "query_id": r.query_id,
            "stratum": self.stratum,
            "inclusion_probability": self.inclusion_probability,
            "question": r.question,
            "answer": r.answer,
            "abstention_reason": r.abstention_reason,
            "retrieval_hit": r.retrieval_hit,
            "cited": list(r.cited),
            "contexts": list(r.contexts),
            "verdict": r.verdict.to_dict(),
        }


def review_sample(
    records: Sequence[EvalRecord],
    n: int,
    *,
    seed: int = 0,
    weights: Mapping[str, float] | None = None,
    faithful_at: float = 0.5,
) -> list[ReviewItem]:
    """A seeded stratified sample of ``n`` records (all of them when ``n >= len(records)``).

    Stratum ``s`` of size ``N_s`` gets ``n * w_s N_s / sum_t w_t N_t`` items (largest remainder,
    capped at ``N_s``, what a full stratum cannot take goes to the others by the same rule);
    items are drawn without replacement inside each stratum. Same records, ``n`` and seed: same
    sample. Items come back grouped by stratum in :data:`STRATA` order.

    Example:
        >>> from mlsys.rag.judge import FaithfulnessVerdict
        >>> ok = FaithfulnessVerdict("scored", (), 1.0, "j")
        >>> recs = [EvalRecord(str(i), "?", (), None if i < 5 else "a", ok, True) for i in range(100)]
        >>> sample = review_sample(recs, 10, seed=1, weights={"abstained": 19.0, "agree": 1.0})
        >>> sum(it.stratum == "abstained" for it in sample)  # 5% of the records, half of the sample
        5
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise InvalidInputError(f"n must be a non-negative int, got {n!r}")
    w = dict(DEFAULT_WEIGHTS if weights is None else weights)
    bad = [s for s in w if s not in STRATA]
    if bad or any(not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0) for v in w.values()):
        raise InvalidInputError(f"weights must map strata {STRATA} to positive numbers, got {weights!r}")
    if not isinstance(records, Sequence) or isinstance(records, str):
        raise InvalidInputError(f"records must be a sequence of EvalRecord, got {type(records).__name__}")
    groups: dict[str, list[int]] = {s: [] for s in STRATA}
    for i, r in enumerate(records):
        if not isinstance(r, EvalRecord):
            raise InvalidInputError(f"records[{i}] is {type(r).__name__}, expected an EvalRecord")
        groups[stratum_of(r, faithful_at=faithful_at)].append(i)
    size = {s: len(g) for s, g in groups.items()}
    take = {s: 0 for s in STRATA}
    left = min(n, len(records))
    open_ = [s for s in STRATA if size[s] > 0]
    while left > 0 and open_:
        mass = np.array([w.get(s, 1.0) * (size[s] - take[s]) for s in open_], dtype=np.float64)
        share = left * mass / mass.sum()
        base = np.floor(share).astype(int)
        rem = left - int(base.sum())
        order = np.argsort(-(share - base), kind="stable")
        base[order[:rem]] += 1
        for s, b in zip(open_, base.tolist()):
            add = min(b, size[s] - take[s])
            take[s] += add
            left -= add
        open_ = [s for s in open_ if take[s] < size[s]]
    rng = np.random.default_rng(seed)
    out = []
    for s in STRATA:
        if take[s] == 0:
            continue
        chosen = sorted(rng.choice(size[s], size=take[s], replace=False).tolist())
        p = take[s] / size[s]
        out += [ReviewItem(records[groups[s][j]], s, p) for j in chosen]
    return out


def write_jsonl(items: Sequence[ReviewItem], path: str | os.PathLike[str]) -> None:
    """One JSON object per line (UTF-8)."""
    with Path(path).open("w", encoding="utf-8") as f:
        for it in items:
            f.write(json.dumps(it.to_dict(), ensure_ascii=False) + "\n")


CSV_COLUMNS = ("query_id", "stratum", "inclusion_probability", "question", "answer", "abstention_reason",
               "retrieval_hit", "judge_status", "faithfulness", "claims", "cited", "contexts", "reviewer_verdict")  # fmt: skip


def write_csv(items: Sequence[ReviewItem], path: str | os.PathLike[str]) -> None:
    """A spreadsheet for reviewers: one row per item, claims and contexts as text, an empty
    ``reviewer_verdict`` column to fill in."""
    with Path(path).open("w", encoding="utf-8", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(CSV_COLUMNS)
        for it in items:
            r, v = it.record, it.record.verdict
            claims = "\n".join(
                f"[{'supported' if c.supported else 'UNSUPPORTED'}] {c.claim}" for c in v.claims
            )
            wr.writerow([
                r.query_id, it.stratum, f"{it.inclusion_probability:.6g}", r.question, r.answer or "",
                r.abstention_reason or "", "" if r.retrieval_hit is None else str(r.retrieval_hit).lower(),
                v.status if v.error is None else f"{v.status}: {v.error}",
                "" if v.score is None else f"{v.score:.4f}", claims, " ".join(r.cited),
                "\n---\n".join(r.contexts), "",
            ])  # fmt: skip


@dataclass(frozen=True)
class FaithfulnessSummary:
    """Layer-2 totals: mean score over scored answers and the count of every status."""

    mean_score: float | None
    n_scored: int
    n_no_claims: int
    n_failed: int
    n_abstained: int
    judge: str
    errors: tuple[str, ...] = field(default=())


def summarize_faithfulness(verdicts: Sequence[FaithfulnessVerdict]) -> FaithfulnessSummary:
    """Counts per status and the mean score of the scored ones (``None`` when none was scored).

    Example:
        >>> vs = [FaithfulnessVerdict("scored", (), 1.0, "j"), FaithfulnessVerdict("no_claims", (), None, "j")]
        >>> s = summarize_faithfulness(vs)
        >>> s.mean_score, s.n_no_claims
        (1.0, 1)
    """
    if not isinstance(verdicts, Sequence) or not all(isinstance(v, FaithfulnessVerdict) for v in verdicts):
        raise InvalidInputError("verdicts must be a sequence of FaithfulnessVerdict")
    scored = [v.score for v in verdicts if v.status == "scored" and v.score is not None]
    count = {s: sum(v.status == s for v in verdicts) for s in ("no_claims", "failed", "abstained")}
    return FaithfulnessSummary(
        float(np.mean(scored)) if scored else None, len(scored), count["no_claims"], count["failed"],
        count["abstained"], verdicts[0].judge if verdicts else "", tuple(v.error or "" for v in verdicts if v.status == "failed"),
    )  # fmt: skip


@dataclass(frozen=True)
class ThreeLayerReport(TabularDisplay):
    """Layer 1 (golden-set retrieval metrics), layer 2 (faithfulness), layer 3 (review sample).

    In a notebook it displays as the ``layer | measure | value`` table of :meth:`to_markdown`
    (notes underneath, the judge's errors folded away); :meth:`to_pandas` gives that table with
    the values exactly as stored.

    Example:
        >>> from mlsys.rag.judge import FaithfulnessVerdict
        >>> v = FaithfulnessVerdict("scored", (), 1.0, "j")
        >>> rec = EvalRecord("q1", "?", ("ctx",), "a", v, True)
        >>> rep = ThreeLayerReport({"ndcg@10": 0.7}, summarize_faithfulness([v]), review_sample([rec], 1), 1)
        >>> print(rep.to_markdown().splitlines()[0])
        ## RAG evaluation: 1 queries
    """

    retrieval: Mapping[str, float]
    faithfulness: FaithfulnessSummary
    review: Sequence[ReviewItem]
    n_queries: int
    notes: tuple[str, ...] = ()

    _pandas_extra = "mlsys-rag[pandas]"

    def __repr__(self) -> str:
        f = self.faithfulness
        first = next(iter(self.retrieval.items()), None)
        ret = f", {first[0]}={first[1]:.4f}" if first else ""
        ms = "n/a" if f.mean_score is None else f"{f.mean_score:.4f}"
        return (
            f"ThreeLayerReport(n_queries={self.n_queries}{ret}, faithfulness={ms} over {f.n_scored}, "
            f"review={len(self.review)})"
        )

    def _display_table(self) -> DisplayTable:
        d = self.to_dict()
        f = d["layer2_faithfulness"]
        rows: list[tuple[str, str, Any]] = [("1 retrieval", k, v) for k, v in d["layer1_retrieval"].items()]
        rows.append(("2 faithfulness", f"mean score ({f['judge']}, {f['scored']} scored)", f["mean_score"]))
        rows += [("2 faithfulness", k, f[k]) for k in ("no_claims", "failed", "abstained")]
        rows += [("3 review sample", s, c) for s, c in d["layer3_review"]["by_stratum"].items()]
        errors = tuple(e for e in self.faithfulness.errors if e)
        return DisplayTable(
            f"RAG evaluation: {self.n_queries} queries",
            ("layer", "measure", "value"),
            tuple(rows),
            notes=self.notes,
            details=tuple((f"judge error {i + 1}", e) for i, e in enumerate(errors[:10])),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        f = self.faithfulness
        strata: dict[str, int] = {}
        for it in self.review:
            strata[it.stratum] = strata.get(it.stratum, 0) + 1
        return {
            "n_queries": self.n_queries,
            "layer1_retrieval": dict(self.retrieval),
            "layer2_faithfulness": {
                "judge": f.judge, "mean_score": f.mean_score, "scored": f.n_scored, "no_claims": f.n_no_claims,
                "failed": f.n_failed, "abstained": f.n_abstained,
            },
            "layer3_review": {"sampled": len(self.review), "by_stratum": strata},
            "notes": list(self.notes),
        }  # fmt: skip

    def to_markdown(self) -> str:
        """The three layers as one Markdown section."""
        d = self.to_dict()
        f = d["layer2_faithfulness"]
        lines = [
            f"## RAG evaluation: {self.n_queries} queries",
            "",
            "| layer | measure | value |",
            "| --- | --- | ---: |",
        ]
        for k, v in d["layer1_retrieval"].items():
            lines.append(f"| 1 retrieval | {k} | {v:.4f} |")
        ms = "n/a" if f["mean_score"] is None else f"{f['mean_score']:.4f}"
        lines.append(
            f"| 2 faithfulness ({f['judge']}) | mean score over {f['scored']} scored answers | {ms} |"
        )
        for k in ("no_claims", "failed", "abstained"):
            lines.append(f"| 2 faithfulness | {k.replace('_', ' ')} | {f[k]} |")
        for s, c in d["layer3_review"]["by_stratum"].items():
            lines.append(f"| 3 review sample | {s} | {c} |")
        lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines)
