"""Evaluation layers 2 and 3: faithfulness judges and the human-review sample, and one report
with all three layers (layer 1, golden-set retrieval, is :func:`mlsys.rag.evaluate_retriever`).

Example:
    >>> from mlsys.rag.judge import OfflineJudge, judge_records, summarize_faithfulness
    >>> vs = judge_records(OfflineJudge(), ["Aspirin thins blood.", "Yes.", None],
    ...                    [["Aspirin thins blood."], ["x"], []])
    >>> [v.status for v in vs], summarize_faithfulness(vs).mean_score
    (['scored', 'no_claims', 'abstained'], 1.0)
"""

from mlsys.rag.judge._judges import (
    ClaimVerdict,
    FaithfulnessVerdict,
    Judge,
    LLMJudge,
    OfflineJudge,
    judge_records,
)
from mlsys.rag.judge._review import (
    DEFAULT_WEIGHTS,
    STRATA,
    EvalRecord,
    FaithfulnessSummary,
    ReviewItem,
    ThreeLayerReport,
    review_sample,
    stratum_of,
    summarize_faithfulness,
    write_csv,
    write_jsonl,
)

__all__ = [
    "DEFAULT_WEIGHTS",
    "STRATA",
    "ClaimVerdict",
    "EvalRecord",
    "FaithfulnessSummary",
    "FaithfulnessVerdict",
    "Judge",
    "LLMJudge",
    "OfflineJudge",
    "ReviewItem",
    "ThreeLayerReport",
    "judge_records",
    "review_sample",
    "stratum_of",
    "summarize_faithfulness",
    "write_csv",
    "write_jsonl",
]
