"""Lexical signals: a dependency-free baseline re-ranker (the share of the query's analysed terms
the passage contains) and the idf-weighted coverage of a query's rarest terms."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from mlsys.common.errors import InvalidInputError
from mlsys.rag._bm25 import Analyzer, AnalyzerConfig
from mlsys.rag._embedders import check_texts
from mlsys.rag._retrievers import Hit
from mlsys.rag.rerank._protocol import F32, BaseReranker

__all__ = ["COVERAGE_FEATURES", "LexicalReranker", "term_coverage"]

COVERAGE_FEATURES: tuple[str, ...] = ("idf_coverage", "rare_term_found", "rare3_coverage", "missing_idf_max")
"""What :func:`term_coverage` returns, in order."""


def term_coverage(
    query_terms: Sequence[str], idf: npt.ArrayLike, passage_terms: Collection[str]
) -> tuple[float, float, float, float]:
    """How much of the query's *specific* vocabulary a passage holds (:data:`COVERAGE_FEATURES`).

    A passage on the query's topic shares its common words; the evidence for a claim usually also
    holds its rarest ones (the gene, the drug, the population). Returns the idf-weighted share of
    the query's distinct terms in the passage, whether its rarest term is there, the share of its
    three rarest, and the largest idf among the terms the passage lacks (0 when it has them all).
    All NaN for a query without terms. Ties in idf keep the query's term order.

    Args:
        query_terms: the query's analysed terms (duplicates are counted once).
        idf: the idf of each of ``query_terms`` (e.g. :meth:`~mlsys.rag.BM25Index.idf`).
        passage_terms: the passage's analysed terms (a set, or any collection of them).

    Example:
        >>> term_coverage(["tmem27", "cleav", "beta"], np.array([6.0, 3.0, 1.0]), {"cleav", "beta"})
        (0.4, 0.0, 0.6666666666666666, 6.0)
    """
    qterms = check_texts(query_terms, what="query_terms")
    weights = _as_idf(idf)
    if weights.shape != (len(qterms),):
        raise InvalidInputError(f"idf has shape {weights.shape} for {len(qterms)} query terms")
    pset = set(check_texts(passage_terms, what="passage_terms"))
    first: dict[str, float] = {}
    for t, w in zip(qterms, weights.tolist()):
        first.setdefault(t, w)
    if not first:
        return (np.nan, np.nan, np.nan, np.nan)
    terms = list(first)
    w = np.array([first[t] for t in terms])
    found = np.array([t in pset for t in terms])
    order = np.argsort(-w, kind="stable")
    total = float(w.sum())
    return (
        float((w * found).sum() / total) if total > 0 else float(found.mean()),
        float(found[order[0]]),
        float(found[order[:3]].mean()),
        float(np.max(np.where(found, 0.0, w))),
    )


def _as_idf(idf: Any) -> npt.NDArray[np.float64]:
    try:
        w = np.asarray(idf, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"idf must be numbers, got {type(idf).__name__}") from exc
    if w.ndim != 1 or not np.isfinite(w).all() or (w < 0).any():
        raise InvalidInputError(
            f"idf must be a 1-d array of finite non-negative numbers, got shape {w.shape}"
        )
    return w


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
