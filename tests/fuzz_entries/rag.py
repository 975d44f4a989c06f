"""Fuzz entries for mlsys.rag's re-ranking, answer and judge subpackages (issue 14)."""

_REC = "exempt: a result record built by the library"
_OBJ = "exempt: takes typed library objects (a re-ranker, a retriever), not request data; validated by type"
_TRAIN = "exempt: trains a torch model (minutes); its inputs are validated and tested in tests/rag/test_cross_encoder.py"
_FS = "exempt: writes files; round-trips tested in tests/rag/test_judge.py"

MODULES = ["mlsys.rag.rerank", "mlsys.rag.answer", "mlsys.rag.judge"]
ENTRIES = {
    # ---- mlsys.rag.rerank
    "mlsys.rag.rerank.BaseReranker": "exempt: abstract base class (the concrete re-rankers are fuzzed)",
    "mlsys.rag.rerank.Calibrator": "junk",
    "mlsys.rag.rerank.CalibratedReranker": "junk",
    "mlsys.rag.rerank.CrossEncoderReranker": "junk",
    "mlsys.rag.rerank.EmbedderReranker": "junk",
    "mlsys.rag.rerank.FineTuneReport": _REC,
    "mlsys.rag.rerank.GateDecision": _REC,
    "mlsys.rag.rerank.LearnedReranker": "junk",
    "mlsys.rag.rerank.LearnedRerankerConfig": "junk",
    "mlsys.rag.rerank.LexicalReranker": "junk",
    "mlsys.rag.rerank.RelevanceGate": "junk",
    "mlsys.rag.rerank.RerankChain": "junk",
    "mlsys.rag.rerank.RerankFeatures": "junk",
    "mlsys.rag.rerank.RiskCoverage": _REC,
    "mlsys.rag.rerank.TopNChoice": _REC,
    "mlsys.rag.rerank.check_candidates": "junk",
    "mlsys.rag.rerank.check_cross_encoder_dir": "junk",
    "mlsys.rag.rerank.choose_top_n": _OBJ,
    "mlsys.rag.rerank.coverage_at_precision": "junk",
    "mlsys.rag.rerank.expected_calibration_error": "junk",
    "mlsys.rag.rerank.fine_tune_bi_encoder": _TRAIN,
    "mlsys.rag.rerank.fine_tune_cross_encoder": _TRAIN,
    "mlsys.rag.rerank.labels_from_qrels": "junk",
    "mlsys.rag.rerank.mine_hard_negatives": _OBJ,
    "mlsys.rag.rerank.risk_coverage_curve": "junk",
    "mlsys.rag.rerank.segments_of": "junk",
    "mlsys.rag.rerank.term_coverage": "junk",
    # ---- mlsys.rag.answer
    "mlsys.rag.answer.Abstention": _REC,
    "mlsys.rag.answer.Answer": _REC,
    "mlsys.rag.answer.AnswerPipeline": "junk",
    "mlsys.rag.answer.Citation": _REC,
    "mlsys.rag.answer.ExtractiveGenerator": "junk",
    "mlsys.rag.answer.GeneratedAnswer": _REC,
    "mlsys.rag.answer.LLMGenerator": "junk",
    "mlsys.rag.answer.contexts_from_hits": "junk",
    # ---- mlsys.rag.judge
    "mlsys.rag.judge.ClaimVerdict": _REC,
    "mlsys.rag.judge.EvalRecord": _REC,
    "mlsys.rag.judge.FaithfulnessSummary": _REC,
    "mlsys.rag.judge.FaithfulnessVerdict": _REC,
    "mlsys.rag.judge.LLMJudge": "junk",
    "mlsys.rag.judge.OfflineJudge": "junk",
    "mlsys.rag.judge.ReviewItem": _REC,
    "mlsys.rag.judge.ThreeLayerReport": _REC,
    "mlsys.rag.judge.judge_records": "junk",
    "mlsys.rag.judge.review_sample": "junk",
    "mlsys.rag.judge.stratum_of": "junk",
    "mlsys.rag.judge.summarize_faithfulness": "junk",
    "mlsys.rag.judge.write_csv": _FS,
    "mlsys.rag.judge.write_jsonl": _FS,
}
