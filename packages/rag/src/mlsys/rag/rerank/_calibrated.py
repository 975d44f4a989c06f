"""A re-ranker whose scores are calibrated probabilities of relevance."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from mlsys.common.errors import InvalidInputError, NotFittedError
from mlsys.common.validation import check_k
from mlsys.rag._retrievers import Hit
from mlsys.rag.rerank._calibration import Calibrator
from mlsys.rag.rerank._protocol import BaseReranker

__all__ = ["CalibratedReranker"]


class CalibratedReranker:
    """Wrap a re-ranker so that each hit's ``score`` is ``P(relevant | raw score)``.

    The order is the base re-ranker's (a calibrator is monotone, so it never reorders; isotonic
    ties keep the raw order). The raw score stays in ``provenance[base.name]``; the probability is
    the hit's ``score`` and ``provenance[name]``.

    Args:
        base: any :class:`BaseReranker`.
        calibrator: a fitted :class:`Calibrator` (fitted on dev-split raw scores of ``base``).
        name: provenance label (default ``"<base>+calibrated"``).

    Example:
        >>> from mlsys.rag.rerank import LexicalReranker
        >>> cal = Calibrator("platt").fit([0, 1, 0, 1], [0.0, 1.0, 0.2, 0.9])
        >>> rr = CalibratedReranker(LexicalReranker(), cal)
        >>> hits = rr.rerank("red apples", [Hit(1, 1, 0.0, text="red apples"), Hit(2, 2, 0.0, text="sky")])
        >>> [h.id for h in hits], bool(0.5 < hits[0].score <= 1.0), hits[0].provenance["lexical"][1]
        ([1, 2], True, 1.0)
    """

    def __init__(self, base: BaseReranker, calibrator: Calibrator, *, name: str | None = None) -> None:
        if not isinstance(base, BaseReranker):
            raise InvalidInputError(f"base must be a BaseReranker, got {type(base).__name__}")
        if not isinstance(calibrator, Calibrator):
            raise InvalidInputError(f"calibrator must be a Calibrator, got {type(calibrator).__name__}")
        if not hasattr(calibrator, "params_"):
            raise NotFittedError("the calibrator is not fitted; fit it on dev-split scores first")
        self.base = base
        self.calibrator = calibrator
        self.name = name or f"{base.name}+calibrated"

    def __repr__(self) -> str:
        return f"CalibratedReranker({self.base!r}, {self.calibrator!r})"

    def rerank(self, query: str, candidates: Sequence[Hit], top_k: int | None = None) -> list[Hit]:
        """Re-rank with the base re-ranker; scores become probabilities."""
        return self.rerank_batch([query], [candidates], top_k)[0]

    def rerank_batch(
        self, queries: Sequence[str], candidates: Sequence[Sequence[Hit]], top_k: int | None = None
    ) -> list[list[Hit]]:
        """:meth:`rerank` for several queries."""
        k = None if top_k is None else check_k(top_k, name="top_k")
        out = []
        for hits in self.base.rerank_batch(queries, candidates, None):
            raw = np.array([h.score for h in hits], dtype=np.float64)
            finite = np.isfinite(raw)
            prob = np.zeros(raw.shape[0])
            if finite.any():
                prob[finite] = self.calibrator.transform(raw[finite])
            rows = []
            for h, p in zip(hits[:k] if k is not None else hits, prob):
                prov = dict(h.provenance)
                prov[self.name] = (h.rank, float(p))
                rows.append(dataclasses.replace(h, score=float(p), provenance=prov))
            out.append(rows)
        return out
