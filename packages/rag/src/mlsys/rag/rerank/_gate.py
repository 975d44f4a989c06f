"""The relevance gate: answer, ask for clarification, or abstain, from a query's re-ranked list.

A confidently irrelevant retrieval ("employee training models" for a question about model
training) looks like any other list to the reader. The gate reads features of the whole list -
the calibrated re-ranker's top probability, its margin over the runner-up and the top-5 mean,
each retriever's best score (dense cosine, BM25), whether the retrievers agree on the top hits,
and, given the store's BM25 index, how much of the query's rarest vocabulary the top hits hold
(a same-topic passage shares the common words, the evidence also names the gene or the drug) -
and a logistic regression turns them into ``P(the list can answer the query)``. Two thresholds
split that into ``answer`` / ``ambiguous`` / ``abstain``; both are chosen on a validation slice
of the training lists (the answer threshold for a target precision of the answered set, the
abstain threshold for the same precision of the abstentions).

Persistence is one JSON file (feature names, imputation values, scaler, coefficients,
thresholds): nothing is unpickled.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from mlsys.common._optional import import_optional
from mlsys.common.errors import CorruptFileError, FormatVersionError, InvalidInputError, NotFittedError
from mlsys.rag._bm25 import BM25Index
from mlsys.rag._retrievers import Hit
from mlsys.rag.rerank._calibration import coverage_at_precision
from mlsys.rag.rerank._lexical import COVERAGE_FEATURES, term_coverage
from mlsys.rag.rerank._protocol import check_candidates

__all__ = ["GATE_FEATURES", "GateDecision", "RelevanceGate"]

F64 = npt.NDArray[np.float64]
Decision = Literal["answer", "ambiguous", "abstain"]
_FORMAT_VERSION = 2  # 2: the per-retriever "gap_below10" feature and the optional term coverage

GATE_FEATURES: tuple[str, ...] = ("top", "margin", "mean_top5", "std_top10", "n_candidates")
"""List-level features of the relevance gate (besides the per-retriever ones)."""
_PER_RETRIEVER = ("best", "top1_score", "found_top10", "top1_rank", "gap_below10")
_COVERAGE_AGG = ("top1", "best3", "best10")  # the top hit's coverage, the best of the top 3 / top 10


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict on one query's list.

    Args:
        decision: ``"answer"``, ``"ambiguous"`` (between the thresholds) or ``"abstain"``.
        probability: ``P(answerable)``; 0 for an empty list.
        reason: a sentence saying why, for the user or the logs.
    """

    decision: Decision
    probability: float
    reason: str


class RelevanceGate:
    """Logistic regression over list-level features, with answer / abstain thresholds.

    Args:
        retrievers: provenance names that give features (best score in the top 10, the
            re-ranked top hit's score and rank there, how many of the top 10 it found, and how far
            the top 10's best stands above the mean of list positions 11-50), e.g.
            ``("dense", "bm25")``; add the base re-ranker's name (``"learned"``) to read its raw
            scores, which a :class:`~mlsys.rag.rerank.CalibratedReranker` keeps in provenance.
        precision: target precision of the answered set (and of the abstentions) when choosing
            the thresholds on validation.
        validation_fraction: share of the training lists held out to choose the thresholds.
        C: inverse L2 strength of the logistic regression.
        seed: the validation split.
        lexical: the store's :class:`~mlsys.rag.BM25Index` (``store.bm25``). When given, the gate
            also reads :func:`~mlsys.rag.rerank.term_coverage` of the query in the top hit and the
            best of the top 3 and top 10 (idf from this index), and every call that computes
            features needs the ``query``.

    The hits' ``score`` is read as the re-ranker's score; give the gate the output of a
    :class:`~mlsys.rag.rerank.CalibratedReranker` so those are probabilities. A view that every
    hit of every training list carried (``required_``: one a re-ranking stage computes, unlike a
    retriever that may find nothing) must be there later: a list without it is refused with a
    typed error rather than scored as if the view were low (a stage left out of the serving chain
    would otherwise silently lower every probability). Give it lists of the depth it was trained
    on: the list length is a feature, and the gap features read positions 11-50.

    Example:
        >>> gate = RelevanceGate(retrievers=())
        >>> good = [[Hit(1, 1, 0.9, text="x"), Hit(2, 2, 0.2, text="y")]] * 20
        >>> bad = [[Hit(1, 1, 0.3, text="x"), Hit(2, 2, 0.25, text="y")]] * 20
        >>> _ = gate.fit(good + bad, [1] * 20 + [0] * 20)
        >>> gate.decide(good[0]).decision, gate.decide(bad[0]).decision, gate.decide([]).decision
        ('answer', 'abstain', 'abstain')
    """

    def __init__(
        self,
        *,
        retrievers: Sequence[str] = ("dense", "bm25"),
        precision: float = 0.9,
        validation_fraction: float = 0.3,
        C: float = 1.0,
        seed: int = 0,
        lexical: BM25Index | None = None,
    ) -> None:
        names = list(retrievers)
        if not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
            raise InvalidInputError(f"retrievers must be distinct non-empty names, got {retrievers!r}")
        if not isinstance(precision, float) or not 0.5 <= precision < 1.0:
            raise InvalidInputError(f"precision must be a float in [0.5, 1), got {precision!r}")
        if not isinstance(validation_fraction, float) or not 0.0 < validation_fraction < 1.0:
            raise InvalidInputError(
                f"validation_fraction must be a float in (0, 1), got {validation_fraction!r}"
            )
        if isinstance(C, bool) or not isinstance(C, (int, float)) or not C > 0:
            raise InvalidInputError(f"C must be a positive number, got {C!r}")
        if lexical is not None and not isinstance(lexical, BM25Index):
            raise InvalidInputError(f"lexical must be a BM25Index (store.bm25), got {type(lexical).__name__}")
        self.lexical = lexical
        self.required_: tuple[str, ...] = ()  # views every training hit carried (set by fit)
        self.retrievers = tuple(names)
        self.precision = precision
        self.validation_fraction = validation_fraction
        self.C = float(C)
        self.seed = seed
        self.names: tuple[str, ...] = GATE_FEATURES + tuple(f"{r}_{f}" for r in names for f in _PER_RETRIEVER)
        if lexical is not None:
            self.names += tuple(f"{a}_{c}" for a in _COVERAGE_AGG for c in COVERAGE_FEATURES)

    def __repr__(self) -> str:
        lex = ", lexical=BM25Index" if self.lexical is not None else ""
        return f"RelevanceGate(retrievers={self.retrievers}, precision={self.precision}{lex}, fitted={hasattr(self, 'coef_')})"

    # -- features -------------------------------------------------------------------------------
    def _need_query(self, query: str | None) -> None:
        if self.lexical is not None and not isinstance(query, str):
            raise InvalidInputError(
                "this gate reads the query's term coverage (lexical=...): pass query=<the question>, "
                f"got {type(query).__name__}"
            )

    def features(self, hits: Sequence[Hit], query: str | None = None) -> F64:
        """The feature vector of one re-ranked list (NaN where a value does not exist).

        ``query`` is needed when the gate was built with ``lexical=`` (and ignored otherwise).
        """
        self._need_query(query)
        h = check_candidates(hits, what="hits", need_text=False)
        for r in self.required_:
            if h and not any(r in c.provenance for c in h):
                raise InvalidInputError(
                    f"the gate was trained on lists whose every hit carried the view {r!r}, and none of "
                    f"these does: compute it before the gate (e.g. RerankChain([EmbedderReranker(..., "
                    f"name={r!r}), reranker])); got views {sorted({k for c in h for k in c.provenance})}"
                )
        x = np.full(len(self.names), np.nan)
        x[4] = len(h)
        if not h:
            return x
        s = np.array([c.score for c in h], dtype=np.float64)
        s = np.where(np.isfinite(s), s, np.nan)
        x[0] = s[0]
        x[1] = s[0] - s[1] if len(s) > 1 else np.nan
        x[2] = np.nanmean(s[:5]) if np.isfinite(s[:5]).any() else np.nan
        x[3] = np.nanstd(s[:10]) if np.isfinite(s[:10]).sum() > 1 else np.nan
        for j, r in enumerate(self.retrievers):
            base = len(GATE_FEATURES) + j * len(_PER_RETRIEVER)
            top10 = [c.provenance.get(r) for c in h[:10]]
            vals = [p[1] for p in top10 if p is not None and np.isfinite(p[1])]
            x[base] = max(vals) if vals else np.nan
            first = h[0].provenance.get(r)
            x[base + 1] = first[1] if first is not None else np.nan
            x[base + 2] = sum(p is not None for p in top10)
            x[base + 3] = first[0] if first is not None else np.nan
            # how far the top 10 stand above the rest of the list (positions 11-50): a claim whose
            # words are everywhere in the corpus scores every passage high, not only the evidence
            below = [p[1] for c in h[10:50] if (p := c.provenance.get(r)) is not None and np.isfinite(p[1])]
            x[base + 4] = max(vals) - float(np.mean(below)) if vals and below else np.nan
        if self.lexical is not None and query is not None:
            x[len(x) - len(_COVERAGE_AGG) * len(COVERAGE_FEATURES) :] = self._coverage(query, h)
        return x

    def _coverage(self, query: str, hits: Sequence[Hit]) -> F64:
        """Term coverage of the top hit, then the best over the top 3 and the top 10 (the smallest
        missing idf is the best for ``missing_idf_max``)."""
        assert self.lexical is not None
        an = self.lexical.analyzer
        terms = an.terms(query)
        idf = self.lexical.idf(terms)
        rows = np.array([term_coverage(terms, idf, set(an.terms(c.text or ""))) for c in hits[:10]])
        out = []
        for k in (1, 3, 10):
            top = rows[:k]
            best = np.nanmax(top, axis=0) if np.isfinite(top).any() else np.full(top.shape[1], np.nan)
            if np.isfinite(top[:, -1]).any():
                best[-1] = np.nanmin(top[:, -1])
            out.append(best)
        return np.concatenate(out)

    def feature_matrix(self, lists: Sequence[Sequence[Hit]], queries: Sequence[str] | None = None) -> F64:
        """:meth:`features` of several lists, ``(n_lists, n_features)`` (``queries``: one per list,
        needed with ``lexical=``)."""
        if queries is not None and len(queries) != len(lists):
            raise InvalidInputError(f"{len(queries)} queries for {len(lists)} lists; expected one per list")
        if self.lexical is not None and queries is None:
            self._need_query(None)
        qs: Sequence[str | None] = queries if queries is not None else [None] * len(lists)
        if not len(lists):
            return np.zeros((0, len(self.names)))
        return np.stack([self.features(h, q) for h, q in zip(lists, qs)])

    def _design(self, x: F64) -> F64:
        filled = np.where(np.isnan(x), self.fill_[None, :], x)
        z = (filled - self.mean_[None, :]) / self.scale_[None, :]
        return np.concatenate([z, np.isnan(x).astype(np.float64)], axis=1)

    # -- training -------------------------------------------------------------------------------
    def fit(
        self, lists: Sequence[Sequence[Hit]], labels: Sequence[int], queries: Sequence[str] | None = None
    ) -> RelevanceGate:
        """Fit on re-ranked lists labelled 1 (answerable) / 0 (not); returns ``self``.

        ``queries`` (one per list) are needed when the gate was built with ``lexical=``.
        """
        self.required_ = ()  # a refit learns which views it relies on anew
        self.fit_features(self.feature_matrix(lists, queries), labels)
        # a view on every hit of every training list is computed by a stage that scores them all
        # (a re-ranker, an EmbedderReranker): its absence later means the stage did not run
        self.required_ = tuple(
            r for r in self.retrievers if all(r in h.provenance for lst in lists for h in lst)
        )
        return self

    def fit_features(self, x: Any, labels: Sequence[int]) -> RelevanceGate:
        """Fit from precomputed :meth:`feature_matrix` rows."""
        lm = import_optional("sklearn.linear_model", package="scikit-learn", extra="mlsys-rag[rerank]")
        xs = np.asarray(x, dtype=np.float64)
        y = np.asarray(labels, dtype=np.float64).ravel()
        if xs.ndim != 2 or xs.shape[1] != len(self.names) or y.shape != (xs.shape[0],):
            raise InvalidInputError(
                f"features {xs.shape} and labels {y.shape}; expected (n, {len(self.names)}) and (n,)"
            )
        if not np.isin(y, (0.0, 1.0)).all():
            raise InvalidInputError("labels must be 0 (not answerable) or 1 (answerable)")
        if np.isinf(xs).any():
            raise InvalidInputError("features must be finite or NaN (missing)")
        rng = np.random.default_rng(self.seed)
        perm = rng.permutation(xs.shape[0])
        n_val = round(self.validation_fraction * xs.shape[0])
        val, fit = perm[:n_val], perm[n_val:]
        for part, what in ((fit, "fitting"), (val, "validation")):
            if part.size == 0 or y[part].min() == y[part].max():
                raise InvalidInputError(
                    f"the {what} slice needs both answerable (1) and unanswerable (0) lists; "
                    f"got {int(y.sum())} answerable of {y.shape[0]}"
                )

        def train(rows: npt.NDArray[np.int64]) -> Any:
            xf = xs[rows]
            all_missing = np.asarray(np.isnan(xf).all(axis=0), dtype=bool)
            fill = np.nanmedian(np.where(all_missing[None, :], 0.0, xf), axis=0)
            self.fill_ = np.where(np.isnan(fill), 0.0, fill)
            filled = np.where(np.isnan(xf), self.fill_[None, :], xf)
            self.mean_ = filled.mean(axis=0)
            sd = filled.std(axis=0)
            self.scale_ = np.where(sd > 0, sd, 1.0)
            model = lm.LogisticRegression(C=self.C, max_iter=2000)
            model.fit(self._design(xf), y[rows])
            self.coef_ = model.coef_[0].astype(np.float64)
            self.intercept_ = float(model.intercept_[0])

        train(fit)
        pv = self.predict_proba_features(xs[val])
        yv = y[val]
        _, t_answer = coverage_at_precision(yv, pv, self.precision)
        # abstain threshold: the largest t with precision >= target among the lists below t
        _, t_neg = coverage_at_precision(1.0 - yv, 1.0 - pv, self.precision)
        t_abstain = 1.0 - t_neg if np.isfinite(t_neg) else 0.0
        if not np.isfinite(t_answer):
            t_answer = 1.0
        self.answer_threshold_ = float(t_answer)
        self.abstain_threshold_ = float(min(t_abstain, t_answer))
        self.validation_ = {"n_fit": int(fit.size), "n_validation": int(val.size)}
        train(np.sort(perm))  # refit on everything; thresholds stay those chosen on validation
        self.required_ = ()  # known only to fit(), which sees the hits
        return self

    # -- inference ------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise NotFittedError(
                "RelevanceGate is not fitted; call fit(lists, labels) or RelevanceGate.load(path)"
            )

    def predict_proba_features(self, x: Any) -> F64:
        """``P(answerable)`` of precomputed feature rows."""
        self._check_fitted()
        xs = np.asarray(x, dtype=np.float64)
        if xs.ndim != 2 or xs.shape[1] != len(self.names):
            raise InvalidInputError(f"features {xs.shape}; expected (n, {len(self.names)})")
        z = self._design(xs) @ self.coef_ + self.intercept_
        return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -500, 500))), dtype=np.float64)

    def probability(self, hits: Sequence[Hit], query: str | None = None) -> float:
        """``P(answerable)`` of one re-ranked list (0 for an empty list); ``query`` as in :meth:`features`."""
        self._check_fitted()
        self._need_query(query)
        if len(hits) == 0:
            return 0.0
        return float(self.predict_proba_features(self.features(hits, query)[None, :])[0])

    def decide(self, hits: Sequence[Hit], query: str | None = None) -> GateDecision:
        """Answer, ambiguous or abstain for one re-ranked list; ``query`` as in :meth:`features`."""
        self._check_fitted()
        self._need_query(query)
        if len(hits) == 0:
            return GateDecision("abstain", 0.0, "nothing was retrieved for this question")
        p = self.probability(hits, query)
        if p >= self.answer_threshold_:
            return GateDecision("answer", p, f"the retrieved context looks relevant (p={p:.2f})")
        if p < self.abstain_threshold_:
            return GateDecision(
                "abstain",
                p,
                f"I don't have enough relevant context to answer (p={p:.2f} < {self.abstain_threshold_:.2f})",
            )
        return GateDecision(
            "ambiguous", p,
            f"the retrieved context may not answer this question (p={p:.2f}, between "
            f"{self.abstain_threshold_:.2f} and {self.answer_threshold_:.2f})",
        )  # fmt: skip

    # -- persistence ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON form of the fitted gate."""
        self._check_fitted()
        return {
            "class": "RelevanceGate",
            "format_version": _FORMAT_VERSION,
            "retrievers": list(self.retrievers),
            "lexical": self.lexical is not None,
            "names": list(self.names),
            "precision": self.precision,
            "validation_fraction": self.validation_fraction,
            "C": self.C,
            "seed": self.seed,
            "fill": self.fill_.tolist(),
            "mean": self.mean_.tolist(),
            "scale": self.scale_.tolist(),
            "coef": self.coef_.tolist(),
            "intercept": self.intercept_,
            "answer_threshold": self.answer_threshold_,
            "abstain_threshold": self.abstain_threshold_,
            "required": list(self.required_),
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the JSON form to a file."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, lexical: BM25Index | None = None) -> RelevanceGate:
        """Read a gate written by :meth:`save` (verifies shapes and finiteness).

        A gate fitted with ``lexical=`` needs the store's BM25 index again (``lexical=store.bm25``);
        the idf values come from that index, so give it the index of the corpus it will gate.
        """
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CorruptFileError(f"{path}: unreadable gate file ({exc})") from exc
        if not isinstance(d, dict) or d.get("class") != "RelevanceGate":
            raise CorruptFileError(f"{path}: not a RelevanceGate file")
        if d.get("format_version") != _FORMAT_VERSION:
            raise FormatVersionError(
                f"{path}: format version {d.get('format_version')!r}, expected {_FORMAT_VERSION}"
            )
        wants_lexical = bool(d.get("lexical", False))
        if wants_lexical != (lexical is not None):
            raise InvalidInputError(
                f"{path}: the gate was fitted "
                + (
                    "with term coverage: pass lexical=store.bm25"
                    if wants_lexical
                    else "without term coverage: leave lexical=None"
                )
            )
        try:
            gate = cls(retrievers=d["retrievers"], precision=float(d["precision"]),
                       validation_fraction=float(d["validation_fraction"]), C=float(d["C"]), seed=int(d["seed"]),
                       lexical=lexical)  # fmt: skip
            arrays = {k: np.asarray(d[k], dtype=np.float64) for k in ("fill", "mean", "scale")}
            coef = np.asarray(d["coef"], dtype=np.float64)
            n = len(gate.names)
            if (
                list(d["names"]) != list(gate.names)
                or any(a.shape != (n,) for a in arrays.values())
                or coef.shape != (2 * n,)
            ):
                raise ValueError("feature names or array shapes do not match")
            nums = np.concatenate(
                [*arrays.values(), coef, [d["intercept"], d["answer_threshold"], d["abstain_threshold"]]]
            )
            if not np.isfinite(nums).all() or (arrays["scale"] <= 0).any():
                raise ValueError("non-finite numbers or non-positive scales")
        except (KeyError, TypeError, ValueError, InvalidInputError) as exc:
            raise CorruptFileError(f"{path}: malformed gate file ({exc})") from exc
        gate.fill_, gate.mean_, gate.scale_ = arrays["fill"], arrays["mean"], arrays["scale"]
        gate.coef_, gate.intercept_ = coef, float(d["intercept"])
        gate.answer_threshold_, gate.abstain_threshold_ = (
            float(d["answer_threshold"]),
            float(d["abstain_threshold"]),
        )
        required = d.get("required", [])
        if not isinstance(required, list) or not set(required) <= set(gate.retrievers):
            raise CorruptFileError(f"{path}: malformed gate file (required views {required!r})")
        gate.required_ = tuple(required)
        return gate
