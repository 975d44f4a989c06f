"""A dependency-free baseline re-ranker: the share of the query's analysed terms the passage contains."""

from __future__ import annotations

import numpy as np

from mlsys.common.errors import InvalidInputError
from mlsys.rag._bm25 import Analyzer, AnalyzerConfig
from mlsys.rag._retrievers import Hit
from mlsys.rag.rerank._protocol import F32, BaseReranker

__all__ = ["LexicalReranker"]


class LexicalReranker(BaseReranker):
    """Score = share of the query's distinct terms (lower-cased, stop words removed, stemmed) found
    in the passage. Fast, deterministic, and exactly the signal that a passage with high lexical
    overlap but the wrong meaning fools - the baseline the learned re-ranker must beat.

    Args:
        analyzer: :class:`~mlsys.rag.AnalyzerConfig` (default: the BM25 default analysis).
        top_n, name: see :class:`BaseReranker`.

    Example:
        >>> rr = LexicalReranker()
        >>> hits = [Hit(1, 1, 0.0, text="blue sky"), Hit(2, 2, 0.0, text="red apples and pears")]
        >>> [(h.id, h.score) for h in rr.rerank("red apples", hits)]
        [(2, 1.0), (1, 0.0)]
    """

    name = "lexical"

    def __init__(
        self, analyzer: AnalyzerConfig | None = None, *, top_n: int | None = None, name: str | None = None
    ) -> None:
        super().__init__(top_n=top_n, name=name)
        if analyzer is not None and not isinstance(analyzer, AnalyzerConfig):
            raise InvalidInputError(f"analyzer must be an AnalyzerConfig, got {type(analyzer).__name__}")
        self.analyzer = Analyzer(analyzer or AnalyzerConfig())

    def __repr__(self) -> str:
        return f"LexicalReranker(top_n={self.top_n})"

    def _score_batch(self, queries: list[str], candidates: list[list[Hit]]) -> list[F32]:
        out = []
        for q, cands in zip(queries, candidates):
            terms = set(self.analyzer.terms(q))
            if not terms:
                out.append(np.zeros(len(cands), np.float32))
                continue
            out.append(
                np.array(
                    [len(terms & set(self.analyzer.terms(h.text or ""))) / len(terms) for h in cands],
                    dtype=np.float32,
                )
            )
        return out
