"""mlsys.recsys.cascade: ranking after retrieval — a cascade of stages with cutoffs, latency
budgets and explicit degradation, a learned ranker (LightGBM over several retrievers' out-of-fold
features), an inventory guard, and diversity re-ranking (MMR, greedy DPP).

Example:
    >>> import numpy as np
    >>> from mlsys.recsys.cascade import dpp_greedy
    >>> emb = np.array([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0]])
    >>> dpp_greedy([1.0, 0.95, 0.5], emb, 2).tolist()
    [0, 2]
"""

from mlsys.recsys.cascade._diversity import dpp_greedy, dpp_greedy_kernel, mmr
from mlsys.recsys.cascade._evaluation import ExplorationConversions, exploration_conversions, recall_vs_exact
from mlsys.recsys.cascade._guards import DriftReport, EmbeddingRegistry, drift_report, feature_hashes
from mlsys.recsys.cascade._ltr import LearnedRanker, LearnedRankerConfig
from mlsys.recsys.cascade._pipeline import (
    CandidateBatch,
    Cascade,
    CascadeResult,
    DiversityStage,
    IndexSource,
    InventoryMask,
    RetrievalSource,
    RetrievalStage,
    ScoringStage,
    Stage,
    StageStats,
)

__all__ = [
    "CandidateBatch",
    "Cascade",
    "CascadeResult",
    "DiversityStage",
    "DriftReport",
    "EmbeddingRegistry",
    "ExplorationConversions",
    "IndexSource",
    "InventoryMask",
    "LearnedRanker",
    "LearnedRankerConfig",
    "RetrievalSource",
    "RetrievalStage",
    "ScoringStage",
    "Stage",
    "StageStats",
    "dpp_greedy",
    "dpp_greedy_kernel",
    "drift_report",
    "exploration_conversions",
    "feature_hashes",
    "mmr",
    "recall_vs_exact",
]
