"""Ranking metrics with trec_eval semantics, paired comparisons and beyond-accuracy metrics.

Two entry points give the same numbers (equal to pytrec-eval-terrier's to 1e-9, tested):

* :func:`evaluate` takes TREC-shaped dicts ``run = {qid: {doc_id: score}}`` and
  ``qrels = {qid: {doc_id: relevance}}``;
* :func:`evaluate_ranked` takes an ``(n_queries, k)`` int64 array of ranked doc ids (padded with
  -1) and a compact :class:`Qrels`; it is vectorised over all queries at once.

Metric names: ``ndcg@k``, ``mrr@k``, ``recall@k``, ``precision@k``, ``map@k``, ``hit_rate@k``
and ``r_precision``; a bare name (``"ndcg"``, ``"map"``, ...) means no cutoff. Gains are linear
(trec_eval) unless ``gain="exponential"``; the ideal DCG always comes from the qrels. Ties are
broken as trec_eval does (score descending, then doc id descending as strings) unless
``ties="input"``; like trec_eval, scores are compared as C floats in that mode.

Query policies are explicit arguments, each defaulting to trec_eval's choice (checked against
pytrec_eval) with a :class:`MetricsPolicyWarning` when it changed the result:
``missing_queries`` (in the qrels, not in the run: ``"ignore"`` = trec_eval, ``"zero"`` =
``trec_eval -c``, ``"error"``), ``extra_queries`` (in the run only: ``"ignore"``, ``"error"``)
and ``empty_queries`` (no relevant judgement: ``"zero"`` = trec_eval, ``"skip"``, ``"error"``).
Every affected query is listed in :attr:`EvalResult.notes`.

:func:`compare` gives a paired bootstrap interval, a randomisation test and a t-test for two
systems; :func:`catalog_coverage`, :func:`intra_list_diversity`, :func:`novelty` and
:func:`serendipity` measure recommendation lists beyond accuracy.

Example:
    >>> from mlsys.common.metrics import evaluate
    >>> run = {"q1": {"d1": 2.0, "d2": 1.0}, "q2": {"d3": 1.0, "d1": 0.5}}
    >>> qrels = {"q1": {"d2": 1}, "q2": {"d3": 2, "d4": 1}}
    >>> r = evaluate(run, qrels, ["ndcg@10", "mrr@10", "recall@100"])
    >>> round(r["ndcg@10"], 4), r["mrr@10"], r["recall@100"]
    (0.6956, 0.75, 0.75)
"""

from mlsys.common.metrics._beyond import catalog_coverage, intra_list_diversity, novelty, serendipity
from mlsys.common.metrics._compare import Comparison, compare
from mlsys.common.metrics._evaluate import evaluate, evaluate_ranked
from mlsys.common.metrics._qrels import Qrels
from mlsys.common.metrics._ranking import METRIC_FAMILIES, MetricSpec
from mlsys.common.metrics._result import EvalResult, MetricsPolicyWarning
from mlsys.common.metrics._single import (
    average_precision,
    hit_rate,
    mrr,
    ndcg,
    precision,
    r_precision,
    recall,
)

__all__ = [
    "METRIC_FAMILIES",
    "Comparison",
    "EvalResult",
    "MetricSpec",
    "MetricsPolicyWarning",
    "Qrels",
    "average_precision",
    "catalog_coverage",
    "compare",
    "evaluate",
    "evaluate_ranked",
    "hit_rate",
    "intra_list_diversity",
    "mrr",
    "ndcg",
    "novelty",
    "precision",
    "r_precision",
    "recall",
    "serendipity",
]
