"""The result of an evaluation: per-query values, means and the notes of the query policies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from mlsys.common._display import DisplayTable, TabularDisplay, format_value, table_to_pandas
from mlsys.common.errors import InvalidInputError, UnknownNameError
from mlsys.common.metrics._ranking import MetricSpec

if TYPE_CHECKING:
    from pandas import DataFrame  # type: ignore[import-untyped]

__all__ = ["EvalResult", "MetricsPolicyWarning"]


class MetricsPolicyWarning(UserWarning):
    """A default query policy (trec_eval's) dropped queries or scored them 0; pass it explicitly to silence."""


@dataclass(frozen=True)
class EvalResult(TabularDisplay):
    """Per-query values and means of a set of metrics.

    Attributes:
        query_ids: the evaluated queries, in the order of ``per_query`` arrays.
        per_query: ``{metric: float64 array aligned with query_ids}``.
        mean: ``{metric: mean over query_ids}``.
        notes: the queries each policy touched: ``"missing_from_run"`` (in qrels, not in run),
            ``"not_in_qrels"`` (in run, not in qrels), ``"no_relevant"`` (no relevant judgement),
            each a tuple of query ids, plus the policies applied under ``"policy"``.

    In a notebook it displays as a one-row HTML table of the means (the policies and the queries
    they touched folded away); :meth:`to_pandas` gives the means (or the per-query values) as a
    data frame.

    Example:
        >>> from mlsys.common.metrics import evaluate
        >>> r = evaluate({"q": {"a": 1.0, "b": 0.5}}, {"q": {"b": 1}}, ["mrr@10"])
        >>> r["mrr@10"], r.per_query["mrr@10"].tolist(), r.query_ids
        (0.5, [0.5], ['q'])
        >>> r
        EvalResult(n_queries=1, mrr@10=0.5000)
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

    def to_pandas(self, *, per_query: bool = False) -> DataFrame:
        """The means as a one-row data frame (column ``n_queries``, then one column per metric), or
        with ``per_query=True`` one row per query (index ``query_id``). Values are exactly the
        stored ones. Needs pandas (``pip install 'mlsys-common[pandas]'``).

        Example:
            >>> from mlsys.common.metrics import evaluate
            >>> r = evaluate({"q": {"a": 1.0, "b": 0.5}}, {"q": {"b": 1}}, ["mrr@10"])
            >>> float(r.to_pandas()["mrr@10"].iloc[0])  # doctest: +SKIP
            0.5
        """
        if not per_query:
            return super().to_pandas()
        table = DisplayTable(
            f"EvalResult per query: {len(self.query_ids)} queries",
            ("query_id", *self.per_query),
            tuple((q, *(float(v[i]) for v in self.per_query.values())) for i, q in enumerate(self.query_ids)),
            index="query_id",
            details=self._details(),
        )
        return table_to_pandas(table, extra=self._pandas_extra)

    def _details(self) -> tuple[tuple[str, Any], ...]:
        out: list[tuple[str, Any]] = []
        for k, v in self.notes.items():
            if isinstance(v, dict):
                out.extend((f"{k}.{p}", q) for p, q in v.items())
            elif isinstance(v, (tuple, list)):
                shown = ", ".join(map(str, v[:10])) + (f", ... ({len(v)} in all)" if len(v) > 10 else "")
                out.append((k, shown))
            else:
                out.append((k, v))
        return tuple(out)

    def _display_table(self) -> DisplayTable:
        return DisplayTable(
            f"EvalResult: {len(self.query_ids)} queries",
            ("n_queries", *self.mean),
            ((len(self.query_ids), *self.mean.values()),),
            details=self._details(),
        )

    def __repr__(self) -> str:
        shown = list(self.mean.items())[:6]
        means = ", ".join(f"{k}={format_value(float(v))}" for k, v in shown)
        more = f", ... ({len(self.mean) - len(shown)} more)" if len(self.mean) > len(shown) else ""
        return f"EvalResult(n_queries={len(self.query_ids)}, {means}{more})"
