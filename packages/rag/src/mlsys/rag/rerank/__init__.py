"""Re-ranking after retrieval: learned (LambdaMART), cross-encoder and bi-encoder re-rankers (and
fine-tuning both encoders on the store's own hard negatives), calibration, and the relevance gate
that abstains.

Example:
    >>> from mlsys.rag import DocumentStore, HashingEmbedder
    >>> from mlsys.rag.rerank import LexicalReranker
    >>> store = DocumentStore(HashingEmbedder(dim=64))
    >>> _ = store.upsert({"a": "solar panels on roofs", "b": "wind farms at sea"})
    >>> hits = store.hybrid_retriever().retrieve(["wind at sea"], k=2)[0].hits
    >>> [(h.doc_id, h.score) for h in LexicalReranker().rerank("wind at sea", hits)]
    [('b', 1.0), ('a', 0.0)]
"""

from mlsys.rag.rerank._biencoder import EmbedderReranker, fine_tune_bi_encoder
from mlsys.rag.rerank._calibrated import CalibratedReranker
from mlsys.rag.rerank._calibration import (
    Calibrator,
    RiskCoverage,
    coverage_at_precision,
    expected_calibration_error,
    risk_coverage_curve,
)
from mlsys.rag.rerank._cross import (
    CrossEncoderReranker,
    FineTuneReport,
    check_cross_encoder_dir,
    fine_tune_cross_encoder,
    mine_hard_negatives,
)
from mlsys.rag.rerank._features import (
    FEATURE_NAMES,
    FEATURE_VERSION,
    SENTENCE_FEATURES,
    RerankFeatures,
    segments_of,
)
from mlsys.rag.rerank._gate import GATE_FEATURES, GateDecision, RelevanceGate
from mlsys.rag.rerank._learned import LearnedReranker, LearnedRerankerConfig, labels_from_qrels
from mlsys.rag.rerank._lexical import COVERAGE_FEATURES, LexicalReranker, term_coverage
from mlsys.rag.rerank._protocol import (
    BaseReranker,
    RerankChain,
    Reranker,
    TopNChoice,
    check_candidates,
    choose_top_n,
)

__all__ = [
    "COVERAGE_FEATURES",
    "GATE_FEATURES",
    "SENTENCE_FEATURES",
    "CalibratedReranker",
    "GateDecision",
    "RelevanceGate",
    "FEATURE_NAMES",
    "FEATURE_VERSION",
    "BaseReranker",
    "Calibrator",
    "CrossEncoderReranker",
    "EmbedderReranker",
    "FineTuneReport",
    "LearnedReranker",
    "LearnedRerankerConfig",
    "LexicalReranker",
    "RerankChain",
    "Reranker",
    "RerankFeatures",
    "RiskCoverage",
    "TopNChoice",
    "check_candidates",
    "check_cross_encoder_dir",
    "choose_top_n",
    "coverage_at_precision",
    "expected_calibration_error",
    "fine_tune_bi_encoder",
    "fine_tune_cross_encoder",
    "labels_from_qrels",
    "mine_hard_negatives",
    "risk_coverage_curve",
    "segments_of",
    "term_coverage",
]
