"""Score calibration and the selective-prediction measures that say whether scores mean something.

* :class:`Calibrator` maps raw scores to probabilities: Platt scaling (a logistic regression on
  the score, Platt 1999) or isotonic regression (Zadrozny & Elkan 2002), fitted with
  scikit-learn on a dev split and saved as plain JSON numbers (no pickle).
* :func:`expected_calibration_error`: the bin-weighted mean ``|accuracy - confidence|``.
* :func:`risk_coverage_curve` / :func:`coverage_at_precision`: answer only the most confident
  fraction; how often is an answer wrong (risk) at each coverage.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mlsys.common._display import DisplayTable, TabularDisplay
from mlsys.common._optional import import_optional
from mlsys.common.errors import CorruptFileError, InvalidInputError, NotFittedError, UnknownNameError

__all__ = [
    "Calibrator",
    "RiskCoverage",
    "coverage_at_precision",
    "expected_calibration_error",
    "risk_coverage_curve",
]

F64 = npt.NDArray[np.float64]
METHODS = ("platt", "isotonic")


def _pair(labels: Any, scores: Any, *, probabilities: bool = False) -> tuple[F64, F64]:
    try:
        y = np.asarray(labels, dtype=np.float64).ravel()
        s = np.asarray(scores, dtype=np.float64).ravel()
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"labels and scores must be numeric arrays ({exc})") from exc
    if y.shape != s.shape:
        raise InvalidInputError(f"labels {y.shape} and scores {s.shape} must have the same length")
    if y.size == 0:
        raise InvalidInputError("labels and scores are empty; expected at least one example")
    if not np.isin(y, (0.0, 1.0)).all():
        raise InvalidInputError("labels must be 0 or 1")
    if not np.isfinite(s).all():
        raise InvalidInputError("scores must be finite (no NaN or inf)")
    if probabilities and ((s < 0).any() or (s > 1).any()):
        raise InvalidInputError("probabilities must lie in [0, 1]")
    return y, s


class Calibrator:
    """Raw score -> probability of relevance, fitted on a dev split.

    Args:
        method: ``"platt"`` (monotone, smooth, 2 parameters) or ``"isotonic"`` (monotone step
            function with linear interpolation; flat outside the fitted range).

    Example:
        >>> cal = Calibrator("platt").fit([0, 0, 1, 1, 0, 1], [-2.0, -1.0, 1.0, 2.0, 0.5, -0.5])
        >>> p = cal.transform([-3.0, 0.0, 3.0])
        >>> bool(p[0] < p[1] < p[2]), bool(((p > 0) & (p < 1)).all())
        (True, True)
    """

    def __init__(self, method: str = "platt") -> None:
        if method not in METHODS:
            raise UnknownNameError(f"unknown calibration method {method!r}; expected one of {METHODS}")
        self.method = method

    def __repr__(self) -> str:
        return f"Calibrator({self.method!r}, fitted={hasattr(self, 'params_')})"

    def fit(self, labels: Any, scores: Any) -> Calibrator:
        """Fit on dev-split labels (0/1) and raw scores; returns ``self``."""
        y, s = _pair(labels, scores)
        if y.min() == y.max():
            raise InvalidInputError("calibration needs both relevant (1) and non-relevant (0) examples")
        if self.method == "platt":
            lm = import_optional("sklearn.linear_model", package="scikit-learn", extra="mlsys-rag[rerank]")
            model = lm.LogisticRegression(C=1e6, max_iter=1000)
            model.fit(s[:, None], y)
            self.params_: dict[str, Any] = {"a": float(model.coef_[0, 0]), "b": float(model.intercept_[0])}
        else:
            iso = import_optional("sklearn.isotonic", package="scikit-learn", extra="mlsys-rag[rerank]")
            model = iso.IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
            model.fit(s, y)
            self.params_ = {
                "x": [float(v) for v in model.X_thresholds_],
                "y": [float(v) for v in model.y_thresholds_],
            }
        return self

    def transform(self, scores: Any) -> F64:
        """Probabilities of the raw scores (same shape)."""
        if not hasattr(self, "params_"):
            raise NotFittedError("Calibrator is not fitted; call fit(labels, scores) first")
        try:
            s = np.asarray(scores, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"scores must be numeric ({exc})") from exc
        if self.method == "platt":
            z = self.params_["a"] * s + self.params_["b"]
            return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -500, 500))), dtype=np.float64)
        return np.interp(s, np.asarray(self.params_["x"]), np.asarray(self.params_["y"]))

    def to_dict(self) -> dict[str, Any]:
        """JSON form (method and fitted numbers)."""
        if not hasattr(self, "params_"):
            raise NotFittedError("Calibrator is not fitted")
        return {"method": self.method, "params": self.params_}

    @classmethod
    def from_dict(cls, d: Any) -> Calibrator:
        """Inverse of :meth:`to_dict`; refuses malformed input with :class:`CorruptFileError`."""
        try:
            out = cls(d["method"])
            p = d["params"]
            params: dict[str, Any]
            if out.method == "platt":
                params = {"a": float(p["a"]), "b": float(p["b"])}
            else:
                xs, ys = [float(v) for v in p["x"]], [float(v) for v in p["y"]]
                if len(xs) != len(ys) or not xs or any(b < a for a, b in itertools.pairwise(xs)):
                    raise ValueError("x must be non-empty, sorted and as long as y")
                params = {"x": xs, "y": ys}
        except (KeyError, TypeError, ValueError, InvalidInputError) as exc:
            raise CorruptFileError(f"not a calibrator description ({exc})") from exc
        flat = [v for val in params.values() for v in (val if isinstance(val, list) else [val])]
        if not np.isfinite(np.asarray(flat, dtype=np.float64)).all():
            raise CorruptFileError("calibrator parameters must be finite")
        out.params_ = params
        return out

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the JSON form to a file."""
        Path(path).write_text(json.dumps(self.to_dict()), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Calibrator:
        """Read a file written by :meth:`save`."""
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CorruptFileError(f"{path}: unreadable calibrator ({exc})") from exc
        return cls.from_dict(d)


def expected_calibration_error(labels: Any, probabilities: Any, *, n_bins: int = 15) -> float:
    """ECE with ``n_bins`` equal-width bins: ``sum_b |B|/n * |mean(y in B) - mean(p in B)|``.

    Example:
        >>> expected_calibration_error([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5])
        0.0
        >>> round(expected_calibration_error([1, 1, 1, 1], [0.6, 0.6, 0.6, 0.6]), 3)
        0.4
    """
    y, p = _pair(labels, probabilities, probabilities=True)
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise InvalidInputError(f"n_bins must be a positive int, got {n_bins!r}")
    b = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    acc = np.bincount(b, weights=y, minlength=n_bins)
    conf = np.bincount(b, weights=p, minlength=n_bins)
    return float(np.abs(acc - conf).sum() / y.shape[0])


@dataclass(frozen=True)
class RiskCoverage(TabularDisplay):
    """Selective prediction curve: answer the ``coverage`` most confident examples.

    Args:
        coverage: fraction answered, increasing (``k / n`` for ``k = 1..n``; ties answered together).
        risk: error rate (share of label 0) among the answered.
        threshold: the confidence at that coverage (answer when ``confidence >= threshold``).
        aurc: area under the risk-coverage curve (lower is better).

    In a notebook it displays as the curve's table (long curves shortened; AURC in the title);
    :meth:`to_pandas` gives every point, exactly.
    """

    coverage: F64
    risk: F64
    threshold: F64
    aurc: float

    _pandas_extra = "mlsys-rag[pandas]"

    def __repr__(self) -> str:
        return f"RiskCoverage(points={self.coverage.shape[0]}, aurc={self.aurc:.4f})"

    def _display_table(self) -> DisplayTable:
        rows = zip(self.coverage.tolist(), self.risk.tolist(), self.threshold.tolist(), strict=True)
        return DisplayTable(
            f"risk-coverage curve: {self.coverage.shape[0]} points, AURC {self.aurc:.4f}",
            ("coverage", "risk", "threshold"),
            tuple(rows),
            details=(("aurc", self.aurc),),
        )


def risk_coverage_curve(labels: Any, confidence: Any) -> RiskCoverage:
    """The risk-coverage curve of answering the most confident examples first.

    Example:
        >>> rc = risk_coverage_curve([1, 1, 0, 0], [0.9, 0.8, 0.3, 0.1])
        >>> rc.coverage.tolist(), rc.risk.tolist()
        ([0.25, 0.5, 0.75, 1.0], [0.0, 0.0, 0.3333333333333333, 0.5])
    """
    y, c = _pair(labels, confidence)
    order = np.argsort(-c, kind="stable")
    ys, cs = y[order], c[order]
    wrong = np.cumsum(1.0 - ys)
    n = np.arange(1, y.shape[0] + 1, dtype=np.float64)
    # ties: only the last position of a run of equal confidences is a reachable operating point
    last = np.r_[cs[1:] != cs[:-1], True]
    cov, risk, thr = n[last] / y.shape[0], wrong[last] / n[last], cs[last]
    aurc = float(np.sum(wrong / n) / y.shape[0])
    return RiskCoverage(cov, risk, thr, aurc)


def coverage_at_precision(labels: Any, confidence: Any, precision: float = 0.9) -> tuple[float, float]:
    """Largest coverage whose answered set has at least ``precision``; returns ``(coverage, threshold)``.

    ``(0.0, inf)`` when no threshold reaches the precision.

    Example:
        >>> coverage_at_precision([1, 1, 0, 1, 0], [0.9, 0.8, 0.7, 0.6, 0.1], 0.75)
        (0.8, 0.6)
    """
    if not isinstance(precision, (int, float)) or isinstance(precision, bool) or not 0 < precision <= 1:
        raise InvalidInputError(f"precision must be in (0, 1], got {precision!r}")
    rc = risk_coverage_curve(labels, confidence)
    ok = np.flatnonzero(1.0 - rc.risk >= precision - 1e-12)
    if ok.size == 0:
        return 0.0, float("inf")
    j = ok[-1]
    return float(rc.coverage[j]), float(rc.threshold[j])
