"""Latency distribution plot (matplotlib, imported lazily)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from mlsys.common._display import new_figure
from mlsys.common.errors import InvalidInputError, UnknownNameError
from mlsys.common.profiling._report import UNITS
from mlsys.common.profiling._stats import StageStats

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_latencies"]


def plot_latencies(
    samples: Mapping[str, npt.NDArray[np.float64]],
    stats: Mapping[str, StageStats],
    *,
    unit: str = "ms",
    log: bool = True,
) -> Figure:
    """One horizontal box per stage: box p25-p75, whiskers p1-p99, markers at p95, p99 and max."""
    if unit not in UNITS:
        raise UnknownNameError(f"unknown unit {unit!r}; valid: {list(UNITS)}")
    if not samples:
        raise InvalidInputError("no samples recorded; expected at least one stage with a sample to plot")
    scale = UNITS[unit]
    names = list(samples)
    data = [np.asarray(samples[n]) * scale for n in names]
    fig = new_figure(figsize=(8, 0.5 * len(names) + 1.5), layout="constrained")
    ax = fig.add_subplot()
    ax.boxplot(data, orientation="horizontal", whis=(1, 99), showfliers=False, tick_labels=names)
    y = np.arange(1, len(names) + 1)
    for key, marker in (("p95", "|"), ("p99", "x"), ("max", ">")):
        ax.scatter([stats[n].get(key) * scale for n in names], y, marker=marker, label=key, zorder=3)
    if log and all(float(d.min()) > 0 for d in data):
        ax.set_xscale("log")
    ax.invert_yaxis()  # first stage on top, like the report
    ax.set_xlabel(f"latency ({unit})")
    ax.set_title("latency per stage (box p25-p75, whiskers p1-p99)")
    ax.legend(loc="lower right", fontsize="small")
    ax.grid(True, axis="x", alpha=0.3)
    return fig
