"""Shared helpers for the metrics tests: trec ordering and pytrec_eval measure names."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytrec_eval

from mlsys.common.metrics import MetricSpec, Qrels

CUTOFFS = (1, 3, 5, 10)


def trec_order(docs: dict[str, float]) -> list[str]:
    """trec_eval's ranking: score (as C float) descending, then doc id descending (as strings)."""
    return [
        d for d, _ in sorted(docs.items(), key=lambda kv: (float(np.float32(kv[1])), kv[0]), reverse=True)
    ]


def all_metric_names(cutoffs: tuple[int, ...] = CUTOFFS) -> list[str]:
    names = ["ndcg", "mrr", "recall", "precision", "map", "hit_rate", "r_precision"]
    for k in cutoffs:
        names += [f"ndcg@{k}", f"mrr@{k}", f"recall@{k}", f"precision@{k}", f"map@{k}", f"hit_rate@{k}"]
    return names


def pytrec_values(
    run: dict[str, dict[str, float]],
    qrels: dict[str, dict[str, int]],
    names: list[str],
    *,
    relevance_level: int = 1,
    max_depth: int = 100_000,
) -> dict[str, dict[str, float]]:
    """Per-query values of each mlsys metric name computed by pytrec_eval: {metric: {qid: value}}.

    ``mrr@k`` is trec_eval's ``recip_rank`` (which has no cutoff) on the run truncated to its top k
    in trec order; ``hit_rate`` (no cutoff) is ``success`` at a cutoff deeper than any run.
    """
    cuts = sorted({MetricSpec.parse(n).k for n in names if MetricSpec.parse(n).k is not None})
    cut_s = ",".join(map(str, cuts)) or "1"
    measures = {
        f"ndcg_cut.{cut_s}",
        f"recall.{cut_s}",
        f"P.{cut_s}",
        f"map_cut.{cut_s}",
        f"success.{cut_s},{max_depth}",
        "ndcg",
        "recip_rank",
        "set_recall",
        "set_P",
        "map",
        "Rprec",
    }
    ev = pytrec_eval.RelevanceEvaluator(qrels, measures, relevance_level=relevance_level)
    full = ev.evaluate(run)
    out: dict[str, dict[str, float]] = {}
    for n in names:
        s = MetricSpec.parse(n)
        k = s.k
        if s.family == "mrr" and k is not None:
            trunc = {q: {d: run[q][d] for d in trec_order(run[q])[:k]} for q in full}
            rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}, relevance_level=relevance_level)
            res = rr.evaluate(trunc)
            out[s.name] = {q: res[q]["recip_rank"] if q in res else 0.0 for q in full}
            continue
        key = {
            ("ndcg", True): f"ndcg_cut_{k}",
            ("ndcg", False): "ndcg",
            ("mrr", False): "recip_rank",
            ("recall", True): f"recall_{k}",
            ("recall", False): "set_recall",
            ("precision", True): f"P_{k}",
            ("precision", False): "set_P",
            ("map", True): f"map_cut_{k}",
            ("map", False): "map",
            ("hit_rate", True): f"success_{k}",
            ("hit_rate", False): f"success_{max_depth}",
            ("r_precision", False): "Rprec",
        }[(s.family, k is not None)]
        out[s.name] = {q: v[key] for q, v in full.items()}
    return out


def to_arrays(
    run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]], qids: list[str]
) -> tuple[np.ndarray, Qrels]:
    """Encode a dict run (trec order) and qrels as the array path's inputs, rows = ``qids``."""
    docs = sorted({d for r in run.values() for d in r} | {d for r in qrels.values() for d in r})
    index = {d: i for i, d in enumerate(docs)}
    width = max([len(run.get(q, {})) for q in qids] + [1])
    ranked = np.full((len(qids), width), -1, dtype=np.int64)
    for i, q in enumerate(qids):
        order = trec_order(run.get(q, {}))
        ranked[i, : len(order)] = [index[d] for d in order]
    return ranked, Qrels.from_dict({q: qrels.get(q, {}) for q in qids}, doc_ids=index)


def reference_ndcg(ranked: list[str], judged: dict[str, int], k: int | None, gain: str) -> float:
    """Textbook nDCG with IDCG from the judgements (for the exponential-gain check)."""

    def g(r: Any) -> float:
        r = int(r)
        if r <= 0:
            return 0.0
        return float(2**r - 1) if gain == "exponential" else float(r)

    top = ranked if k is None else ranked[:k]
    dcg = sum(g(judged.get(d, 0)) / math.log2(i + 2) for i, d in enumerate(top))
    ideal = sorted((int(v) for v in judged.values()), reverse=True)
    ideal = ideal if k is None else ideal[:k]
    idcg = sum(g(r) / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0
