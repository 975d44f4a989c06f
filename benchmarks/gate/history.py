"""Plot one figure's history across the runs pytest-benchmark saved under ``.benchmarks/``.

A figure is a gate figure (``extra_info["gate"]``, e.g. ``ann.hnswlib.single_query.ratio``), any
number under a benchmark's ``extra_info`` addressed as ``BENCH_NAME:key.sub`` (e.g.
``test_exact_batch_vs_faiss_flat:ratios.exact_vs_faiss_flat``), or a benchmark's own timing as
``BENCH_NAME:stats.min``. Runs are ordered by their time; the committed baseline value and its
tolerance band are drawn when the figure is a gate figure.

    python benchmarks/gate/history.py ann.hnswlib.single_query.ratio [--storage .benchmarks] [--out fig.png]
    python benchmarks/gate/history.py --list          # the gate figures found in the saved runs
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from gate.core import load_baseline  # noqa: E402


def saved_runs(storage: Path) -> list[tuple[str, Path, dict[str, Any]]]:
    """``(datetime, path, json)`` of every saved pytest-benchmark run, oldest first."""
    runs = []
    for p in storage.rglob("*.json"):
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and "benchmarks" in data:
            runs.append((str(data.get("datetime", "")), p, data))
    return sorted(runs, key=lambda r: r[0])


def _dig(obj: Any, path: str) -> float | None:
    for part in path.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return float(obj) if isinstance(obj, int | float) else None


def value_in(run: dict[str, Any], figure: str) -> float | None:
    if ":" in figure:
        bench, path = figure.split(":", 1)
        for b in run["benchmarks"]:
            if b.get("name") == bench or b.get("fullname", "").endswith(bench):
                head = path.split(".", 1)
                src = b.get("stats", {}) if head[0] == "stats" else b.get("extra_info", {})
                return _dig(src, head[1] if head[0] == "stats" and len(head) > 1 else path)
        return None
    for b in run["benchmarks"]:
        rec = (b.get("extra_info") or {}).get("gate", {}).get(figure)
        if rec is not None and isinstance(rec.get("value"), int | float):
            return float(rec["value"])
    return None


def history(storage: Path, figure: str) -> list[tuple[str, float, str]]:
    out = []
    for when, path, run in saved_runs(storage):
        v = value_in(run, figure)
        if v is not None:
            commit = (run.get("commit_info") or {}).get("id", "")[:8]
            out.append((when, v, commit or path.stem))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("figure", nargs="?")
    p.add_argument("--storage", type=Path, default=Path(".benchmarks"))
    p.add_argument(
        "--out", type=Path, default=None, help="PNG to write (default .benchmarks/history/<figure>.png)"
    )
    p.add_argument("--list", action="store_true")
    a = p.parse_args(argv)
    if a.list or not a.figure:
        names = sorted(
            {
                n
                for _, _, r in saved_runs(a.storage)
                for b in r["benchmarks"]
                for n in (b.get("extra_info") or {}).get("gate", {})
            }
        )
        print("\n".join(names) if names else f"no gate figures in {a.storage}")
        return 0
    rows = history(a.storage, a.figure)
    if not rows:
        print(f"{a.figure}: not found in any run under {a.storage}", file=sys.stderr)
        return 1
    base = load_baseline()["figures"].get(a.figure)
    print(
        f"{a.figure}: {len(rows)} runs"
        + (f"; baseline {base['value']:.6g} (tolerance {base['tolerance']})" if base else "")
    )
    for when, v, tag in rows:
        print(f"  {when}  {v:.6g}  {tag}")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: text only (pip install mlsys-common[plot])")
        return 0
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.plot(range(len(rows)), [v for _, v, _ in rows], marker="o", label="run")
    if base is not None and isinstance(base.get("value"), int | float):
        b, tol = float(base["value"]), base.get("tolerance", 0.0)
        if base["kind"] == "ratio":
            lo, hi = b / (1 + tol), b * (1 + tol)
        else:
            lo, hi = b - tol, b + tol
        ax.axhline(b, color="k", lw=1, label="baseline")
        ax.axhspan(lo, hi, color="g", alpha=0.12, label="tolerance")
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([w[5:16] for w, _, _ in rows], rotation=60, fontsize=7)
    ax.set_title(a.figure, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    out = a.out or a.storage / "history" / (a.figure.replace("/", "_").replace(":", "_") + ".png")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"plot written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
