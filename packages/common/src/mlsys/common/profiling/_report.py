"""Text table of stage statistics, and :class:`LatencyReport`: that table as a displayable result."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mlsys.common._display import DisplayTable, TabularDisplay, render_html
from mlsys.common.errors import UnknownNameError
from mlsys.common.profiling._stats import StageStats

__all__ = ["UNITS", "LatencyReport", "format_table", "pick_unit"]

UNITS: dict[str, float] = {"s": 1.0, "ms": 1e3, "us": 1e6}


def pick_unit(stats: Mapping[str, StageStats]) -> str:
    """The unit that shows the largest p50 with 1 to 3 integer digits."""
    largest = max((s.p50 for s in stats.values()), default=0.0)
    if largest >= 1.0:
        return "s"
    if largest >= 1e-3:
        return "ms"
    return "us"


def format_table(stats: Mapping[str, StageStats], *, unit: str | None = None) -> str:
    """Format ``stats`` as an aligned text table; percentiles from a reservoir are marked ``*``."""
    if unit is None:
        unit = pick_unit(stats)
    if unit not in UNITS:
        raise UnknownNameError(f"unknown unit {unit!r}; valid: {list(UNITS)}")
    scale = UNITS[unit]
    header = ["stage", "count", f"mean {unit}", f"p50 {unit}", f"p95 {unit}", f"p99 {unit}", f"max {unit}"]
    rows = [header]
    any_sampled = False
    for name, s in stats.items():
        mark = "*" if s.sampled else ""
        any_sampled |= s.sampled
        rows.append(
            [
                name,
                str(s.count),
                f"{s.mean * scale:.3f}",
                f"{s.p50 * scale:.3f}{mark}",
                f"{s.p95 * scale:.3f}{mark}",
                f"{s.p99 * scale:.3f}{mark}",
                f"{s.max * scale:.3f}",
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [
        "   ".join(
            cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        ).rstrip()
        for row in rows
    ]
    if not stats:
        lines.append("(no samples)")
    if any_sampled:
        lines.append("* percentile estimated from a reservoir sample (count, mean and max are exact)")
    return "\n".join(lines)


_FIELDS = ("count", "total", "mean", "min", "p50", "p95", "p99", "max", "n_stored")
_SHOWN = ("mean", "p50", "p95", "p99", "max")


class LatencyReport(str, TabularDisplay):
    """The text table of :meth:`LatencyProfiler.report` (a ``str``), also a displayable result.

    It *is* the text (``print`` it, compare it, split it: every ``str`` operation works); it also
    keeps the statistics it was made from (:attr:`stats`, seconds), renders as an HTML table in a
    notebook (in :attr:`unit`, reservoir estimates marked ``*``), and :meth:`to_pandas` gives one
    row per stage with every :class:`StageStats` field in seconds, exactly as measured.

    Args:
        stats: ``{stage: StageStats}``, in display order.
        unit: ``"s"``, ``"ms"`` or ``"us"`` (by default the one that suits the largest p50).
        notes: extra lines printed under the table (and shown under the HTML table).

    Example:
        >>> from mlsys.common.profiling import StageStats
        >>> import numpy as np
        >>> r = LatencyReport({"decode": StageStats.from_samples(np.array([0.002, 0.004]))})
        >>> print(r)  # doctest: +NORMALIZE_WHITESPACE
        stage    count   mean ms   p50 ms   p95 ms   p99 ms   max ms
        decode       2     3.000    3.000    3.900    3.980    4.000
        >>> r.stats["decode"].max
        0.004
    """

    stats: dict[str, StageStats]
    unit: str
    notes: tuple[str, ...]

    def __new__(
        cls, stats: Mapping[str, StageStats], *, unit: str | None = None, notes: Iterable[str] = ()
    ) -> LatencyReport:
        stats = dict(stats)
        unit = pick_unit(stats) if unit is None else unit
        notes = tuple(notes)
        obj = super().__new__(cls, "\n".join([format_table(stats, unit=unit), *notes]))
        obj.stats, obj.unit, obj.notes = stats, unit, notes
        return obj

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.stats, self.unit, self.notes))

    def __repr__(self) -> str:
        return str(self)

    def _display_table(self) -> DisplayTable:
        rows = tuple((name, *(getattr(s, f) for f in _FIELDS), s.sampled) for name, s in self.stats.items())
        return DisplayTable(
            f"LatencyReport: {len(self.stats)} stages",
            ("stage", *_FIELDS, "sampled"),
            rows,
            index="stage",
            details=(("unit", "seconds"),),
        )

    def _repr_html_(self) -> str:
        scale = UNITS[self.unit]
        rows = []
        for name, s in self.stats.items():
            mark = "*" if s.sampled else ""
            cells = [f"{getattr(s, f) * scale:.3f}{mark if f.startswith('p') else ''}" for f in _SHOWN]
            rows.append((name, s.count, *cells))
        notes = list(self.notes)
        if any(s.sampled for s in self.stats.values()):
            notes.append("* percentile estimated from a reservoir sample (count, mean and max are exact)")
        table = DisplayTable(
            f"latency per stage ({self.unit})",
            ("stage", "count", *(f"{f} {self.unit}" for f in _SHOWN)),
            tuple(rows),
            index="stage",
            notes=tuple(notes),
        )
        return render_html(table)


def _rebuild(stats: dict[str, StageStats], unit: str, notes: tuple[str, ...]) -> LatencyReport:
    return LatencyReport(stats, unit=unit, notes=notes)
