"""Scaling curves: cost vs size for one operation, the fitted log-log exponent, the ratio to an anchor.

Each benchmark in ``benchmarks/<package>/test_scaling.py`` measures every system of an operation at
a few sizes (setup untimed, systems interleaved within a size, best of ``repeats``), then:

* fits ``log(seconds) = a + b * log(size)`` per system: ``b`` is the exponent (1 = linear; a
  quadratic step shows as ``b`` near 2 long before it hurts);
* reports ``ours / anchor`` at each size, the anchor being the established library doing the
  same work (raw hnswlib, pytrec_eval, bm25s, LangChain), so a ratio that grows with the size
  is a super-linear step of ours;
* prints a markdown table and saves a log-log plot (png) next to the package's benchmark README.

Sizes shrink in smoke mode (``nox -s bench -- --smoke``); the largest points (1M vectors or
documents, 100k queries, 100 MB) run only with ``MLSYS_BENCH_SCALING_LARGE=1``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

LARGE = os.environ.get("MLSYS_BENCH_SCALING_LARGE") == "1"

Setup = Callable[[int], Callable[[], Any]]


@dataclass
class Curve:
    """Seconds per call of one system of one operation at each size."""

    operation: str
    system: str
    sizes: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    anchor: bool = False

    @property
    def exponent(self) -> float:
        """Slope of log(seconds) against log(size) (nan with fewer than two sizes)."""
        if len(self.sizes) < 2:
            return math.nan
        return float(np.polyfit(np.log(self.sizes), np.log(self.seconds), 1)[0])


def measure(
    operation: str,
    systems: dict[str, Setup],
    sizes: Sequence[int],
    *,
    anchor: str | None = None,
    repeats: int = 2,
) -> list[Curve]:
    """Time every system at every size: ``systems[name](size)`` builds the data (untimed) and
    returns the call to time; within a size the systems run in turn, ``repeats`` rounds, best kept."""
    curves = {name: Curve(operation, name, anchor=name == anchor) for name in systems}
    for n in sizes:
        calls = {name: setup(n) for name, setup in systems.items()}
        best = dict.fromkeys(calls, math.inf)
        for _ in range(repeats):
            for name, fn in calls.items():
                t0 = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - t0)
        for name in calls:
            curves[name].sizes.append(int(n))
            curves[name].seconds.append(best[name])
        del calls
    return list(curves.values())


def ratios(curves: Sequence[Curve]) -> dict[str, list[float]]:
    """``system: [seconds / anchor's seconds at each size]`` for the non-anchor systems."""
    anchors = [c for c in curves if c.anchor]
    if not anchors:
        return {}
    a = anchors[0]
    return {
        c.system: [s / r for s, r in zip(c.seconds, a.seconds, strict=True)] for c in curves if not c.anchor
    }


def _fmt_s(s: float) -> str:
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def table(curves: Sequence[Curve], unit: str = "size") -> str:
    """Markdown: one row per system, seconds at each size, the exponent, and ratios to the anchor."""
    sizes = curves[0].sizes
    rs = ratios(curves)
    anchor = next((c.system for c in curves if c.anchor), None)
    head = (
        f"| {curves[0].operation} | "
        + " | ".join(f"{unit} {n:,}" for n in sizes)
        + " | exponent | ratio to anchor by size |"
    )
    lines = [head, "|" + "---|" * (len(sizes) + 3)]
    for c in curves:
        r = "anchor" if c.anchor else ", ".join(f"{x:.2f}" for x in rs.get(c.system, [])) or "-"
        label = f"{c.system} (anchor)" if c.system == anchor else c.system
        lines.append(
            f"| {label} | " + " | ".join(_fmt_s(s) for s in c.seconds) + f" | {c.exponent:.2f} | {r} |"
        )
    return "\n".join(lines)


def plot(groups: dict[str, Sequence[Curve]], path: Path, title: str) -> None:
    """One log-log panel per operation, each system a line labelled with its exponent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(groups)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    for ax, (name, curves) in zip(axes.ravel(), groups.items(), strict=False):
        for c in curves:
            style = "--" if c.anchor else "-"
            ax.loglog(c.sizes, c.seconds, style, marker="o", label=f"{c.system} (b={c.exponent:.2f})")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("size")
        ax.set_ylabel("seconds")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def machine() -> str:
    """Cores, load average and the large-mode flag, printed with every table."""
    load = os.getloadavg()
    return (
        f"{os.cpu_count()} cores, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min), "
        f"large sizes {'on' if LARGE else 'off (MLSYS_BENCH_SCALING_LARGE=1 adds them)'}"
    )


def report(groups: dict[str, Sequence[Curve]], png: Path | None, title: str, unit: dict[str, str]) -> str:
    """Print (and return) every table with the machine facts; save the plot unless smoke."""
    text = [f"## {title}", machine(), ""]
    for name, curves in groups.items():
        text += [table(curves, unit.get(name, "size")), ""]
    out = "\n".join(text)
    print("\n" + out)
    if png is not None:
        plot(groups, png, title)
    return out
