"""Text table of stage statistics."""

from __future__ import annotations

from collections.abc import Mapping

from mlsys.common.errors import UnknownNameError
from mlsys.common.profiling._stats import StageStats

__all__ = ["UNITS", "format_table", "pick_unit"]

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
