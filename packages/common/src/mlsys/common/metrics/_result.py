"""The result of an evaluation: per-query values, means and the notes of the query policies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from mlsys.common.errors import InvalidInputError, UnknownNameError
from mlsys.common.metrics._ranking import MetricSpec

__all__ = ["EvalResult", "MetricsPolicyWarning"]


class MetricsPolicyWarning(UserWarning):
    """A default query policy (trec_eval's) dropped queries or scored them 0; pass it explicitly to silence."""


@dataclass(frozen=True)
class EvalResult:
    """Per-query values and means of a set of metrics.

    Attributes:
        query_ids: the evaluated queries, in the order of ``per_query`` arrays.
        per_query: ``{metric: float64 array aligned with query_ids}``.
        mean: ``{metric: mean over query_ids}``.
        notes: the queries each policy touched: ``"missing_from_run"`` (in qrels, not in run),
            ``"not_in_qrels"`` (in run, not in qrels), ``"no_relevant"`` (no relevant judgement),
            each a tuple of query ids, plus the policies applied under ``"policy"``.

    Example:
        >>> from mlsys.common.metrics import evaluate
        >>> r = evaluate({"q": {"a": 1.0, "b": 0.5}}, {"q": {"b": 1}}, ["mrr@10"])
        >>> r["mrr@10"], r.per_query["mrr@10"].tolist(), r.query_ids
        (0.5, [0.5], ['q'])
    """

    query_ids: list[str]
    per_query: dict[str, npt.NDArray[np.float64]]
    mean: dict[str, float]
    notes: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, metric: str) -> float:
        """Mean of ``metric`` (e.g. ``result["ndcg@10"]``)."""
        if metric in self.mean:
            return self.mean[metric]
        try:
            name = MetricSpec.parse(metric).name
        except (UnknownNameError, InvalidInputError):
            name = metric
        if name not in self.mean:
            raise UnknownNameError(f"metric {metric!r} was not evaluated; evaluated: {sorted(self.mean)}")
        return self.mean[name]

    @property
    def metrics(self) -> list[str]:
        """Names of the evaluated metrics, in request order."""
        return list(self.mean)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: means, per-query values keyed by query id, notes."""
        return {
            "mean": dict(self.mean),
            "per_query": {
                m: dict(zip(self.query_ids, v.tolist(), strict=True)) for m, v in self.per_query.items()
            },
            "notes": {k: list(v) if isinstance(v, tuple) else v for k, v in self.notes.items()},
        }

    def __repr__(self) -> str:
        means = ", ".join(f"{k}={v:.4f}" for k, v in self.mean.items())
        return f"EvalResult(n_queries={len(self.query_ids)}, {means})"
