"""Compare a gate run with the committed baseline; print and write the table; update the baseline.

A *run* is pytest-benchmark's JSON (``--benchmark-json``): each gate benchmark stores its figures in
``extra_info["gate"]`` as ``{name: record}``, a record being either

* ``{"value": v, "kind": "quality" | "hash" | "ratio", "better": "higher" | "lower" | "equal",
  "tolerance": t, "note": ...}`` or
* ``{"skipped": "reason", "kind": ...}`` (a data set or checkpoint is absent: never a failure).

The *baseline* (``benchmarks/gate/baseline.json``) holds, per figure, ``kind``, ``value``,
``tolerance`` and ``better``. Verdicts:

* quality (``tolerance`` absolute): ``ok`` within it; a move in the worse direction is a
  ``REGRESSION``, in the better direction ``CHANGED`` (also a failure: a figure that moves on
  purpose is locked in with ``--update-baseline``, and the diff shows it in review);
* hash: ``ok`` when equal, else ``CHANGED``;
* ratio (time of the candidate / time of its in-run reference, lower is better; ``tolerance``
  relative): ``REGRESSION`` above ``value * (1 + tolerance)``, ``faster`` below
  ``value / (1 + tolerance)`` (passes), else ``ok``;
* ``skipped (reason)`` passes; ``MISSING`` (in the baseline, not in the run) fails; ``new`` (in the
  run, not yet in the baseline) passes;
* a baseline entry with ``"gated": false`` (and a ``why_not_gated``) is compared and shown, but a
  verdict outside its band reads ``report-only (...)`` and does not fail.

    python benchmarks/gate/core.py check --run RUN.json [--baseline B] [--out DIR]
    python benchmarks/gate/core.py update --run RUN.json [RUN2.json ...] [--retune-ratios]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import statistics
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BASELINE = HERE / "baseline.json"
FAILING = ("REGRESSION", "CHANGED", "MISSING")
EPS = 1e-12
# ratio bands: measured spread across repeated runs times this margin, and never below the floor
RATIO_MARGIN = 2.5
RATIO_FLOOR = 0.15


@dataclass
class Row:
    figure: str
    kind: str
    baseline: Any
    now: Any
    delta: float | None
    tolerance: Any
    verdict: str
    note: str = ""

    @property
    def failed(self) -> bool:
        return self.verdict.split()[0] in FAILING


# ----------------------------------------------------------------------------- reading runs
def figures_from_run(run: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{figure: record}`` from one pytest-benchmark JSON (every benchmark's ``extra_info["gate"]``)."""
    out: dict[str, dict[str, Any]] = {}
    for bench in run.get("benchmarks", []):
        for name, rec in (bench.get("extra_info") or {}).get("gate", {}).items():
            out[name] = dict(rec, source=bench.get("name", ""))
    return out


def load_run(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    return figures_from_run(json.loads(Path(path).read_text(encoding="utf-8")))


def load_baseline(path: str | os.PathLike[str] = BASELINE) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        return {"format": 1, "figures": {}}
    return dict(json.loads(p.read_text(encoding="utf-8")))


# ----------------------------------------------------------------------------- comparing
def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, str) and len(v) > 16:
        return v[:12] + "…"
    return str(v)


def compare_one(name: str, base: Mapping[str, Any] | None, now: Mapping[str, Any] | None) -> Row:
    """The verdict for one figure (see the module docstring)."""
    if base is None:
        assert now is not None
        kind = now.get("kind", "?")
        if "skipped" in now:
            return Row(name, kind, None, None, None, None, f"skipped ({now['skipped']})")
        return Row(
            name, kind, None, now.get("value"), None, now.get("tolerance"), "new", "not in the baseline"
        )
    kind = base["kind"]
    tol = base.get("tolerance", 0.0)
    bval = base.get("value")
    if now is None:
        return Row(name, kind, bval, None, None, tol, "MISSING", "the run did not produce this figure")
    if "skipped" in now:
        return Row(name, kind, bval, None, None, tol, f"skipped ({now['skipped']})")
    nval = now["value"]
    if kind == "hash":
        return Row(name, kind, bval, nval, None, "exact", "ok" if nval == bval else "CHANGED")
    if bval is None or nval is None or not math.isfinite(float(nval)):
        return Row(
            name, kind, bval, nval, None, tol, "CHANGED" if nval != bval else "ok", "not a finite number"
        )
    nval, bval = float(nval), float(bval)
    delta = nval - bval
    if kind == "ratio":
        rel = nval / bval - 1 if bval else math.inf
        if nval > bval * (1 + tol) + EPS:
            verdict = "REGRESSION"
        elif nval < bval / (1 + tol) - EPS:
            verdict = "faster"
        else:
            verdict = "ok"
        return Row(name, kind, bval, nval, rel, tol, verdict, "relative: now/baseline - 1")
    better = base.get("better", "higher")
    if abs(delta) <= tol + EPS:
        verdict = "ok"
    elif better == "equal":
        verdict = "CHANGED"
    else:
        worse = delta < 0 if better == "higher" else delta > 0
        verdict = "REGRESSION" if worse else "CHANGED"
    note = (
        ""
        if verdict == "ok"
        else "improved: lock it in with --update-baseline"
        if verdict == "CHANGED" and better != "equal"
        else ""
    )
    return Row(name, kind, bval, nval, delta, tol, verdict, note)


def compare(baseline: Mapping[str, Any], run: Mapping[str, Mapping[str, Any]]) -> list[Row]:
    figs = baseline.get("figures", {})
    names = sorted(set(figs) | set(run))
    rows = [compare_one(n, figs.get(n), run.get(n)) for n in names]
    for r in rows:  # a figure marked "gated": false is reported, never fails (its reason says why)
        base = figs.get(r.figure) or {}
        if base.get("gated") is False and r.failed:
            r.note = f"report only: {base.get('why_not_gated', 'not gated')}"
            r.verdict = f"report-only ({r.verdict.lower()})"
    return rows


# ----------------------------------------------------------------------------- reporting
COLUMNS = ("figure", "baseline", "now", "delta", "tolerance", "verdict")


def _cells(r: Row) -> list[str]:
    if r.delta is None:
        delta = "-"
    elif r.kind == "ratio":
        delta = f"{100 * r.delta:+.1f}%"
    else:
        delta = f"{r.delta:+.3g}"
    if r.kind == "ratio" and isinstance(r.tolerance, float | int):
        tol = f"+{100 * r.tolerance:.0f}%"
    elif isinstance(r.tolerance, float | int):
        tol = f"±{r.tolerance:.3g}"
    else:
        tol = _fmt(r.tolerance)
    return [r.figure, _fmt(r.baseline), _fmt(r.now), delta, tol, r.verdict]


def summary(rows: Sequence[Row]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        key = r.verdict.split()[0]
        out[key] = out.get(key, 0) + 1
    return out


def text_table(rows: Sequence[Row]) -> str:
    cells = [list(COLUMNS)] + [_cells(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    widths[-1] = min(widths[-1], 90)
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(COLUMNS))).rstrip() for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    failed = [r for r in rows if r.failed]
    lines.append("")
    lines.append(
        "gate: "
        + ", ".join(f"{v} {k}" for k, v in sorted(summary(rows).items()))
        + (f" -> FAIL ({len(failed)} failing)" if failed else " -> PASS")
    )
    return "\n".join(lines)


def markdown_table(rows: Sequence[Row]) -> str:
    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        c = _cells(r)
        c[-1] = f"**{c[-1]}**" if r.failed else c[-1]
        lines.append("| " + " | ".join(esc(x) for x in c) + " |")
    failed = sum(r.failed for r in rows)
    lines.append("")
    lines.append(
        f"{len(rows)} figures: "
        + ", ".join(f"{v} {k}" for k, v in sorted(summary(rows).items()))
        + (f". **FAIL** ({failed} failing)" if failed else ". PASS")
    )
    return "\n".join(lines) + "\n"


def write_reports(
    rows: Sequence[Row], out: str | os.PathLike[str], extra: Mapping[str, Any] | None = None
) -> tuple[Path, Path]:
    """``gate.json`` and ``gate.md`` under ``out`` (created)."""
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    payload = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "passed": not any(r.failed for r in rows),
        "summary": summary(rows),
        "rows": [asdict(r) for r in rows],
        **(extra or {}),
    }
    j, m = d / "gate.json", d / "gate.md"
    j.write_text(json.dumps(payload, indent=1, default=str) + "\n", encoding="utf-8")
    m.write_text(markdown_table(rows), encoding="utf-8")
    return j, m


def check(
    run: Mapping[str, Mapping[str, Any]],
    baseline: Mapping[str, Any],
    out: str | os.PathLike[str] | None = None,
) -> tuple[bool, list[Row]]:
    rows = compare(baseline, run)
    if out is not None:
        write_reports(rows, out)
    return not any(r.failed for r in rows), rows


# ----------------------------------------------------------------------------- updating
def _median(values: Iterable[Any]) -> Any:
    vals = list(values)
    if all(isinstance(v, int | float) for v in vals):
        return float(statistics.median(vals))
    return vals[-1]


def updated_baseline(
    baseline: Mapping[str, Any],
    runs: Sequence[Mapping[str, Mapping[str, Any]]],
    *,
    retune_ratios: bool = False,
    machine: str | None = None,
) -> dict[str, Any]:
    """The baseline rewritten from ``runs``: values are medians over the runs; tolerances are kept
    (a new figure takes the default its benchmark declares). With ``retune_ratios`` and two or more
    runs, each ratio's band becomes ``max(RATIO_FLOOR, RATIO_MARGIN * widest relative deviation
    from the median)``. Figures skipped in every run keep their old entry."""
    old = dict(baseline.get("figures", {}))
    names = sorted({n for r in runs for n in r})
    figs: dict[str, Any] = {}
    for name in names:
        recs = [r[name] for r in runs if name in r and "skipped" not in r[name]]
        if not recs:
            if name in old:
                figs[name] = old[name]
            continue
        prev = old.get(name, {})
        last = recs[-1]
        entry = {
            "kind": last.get("kind", prev.get("kind", "quality")),
            "value": _median(r["value"] for r in recs),
            "tolerance": prev.get("tolerance", last.get("tolerance", 0.0)),
            "better": prev.get("better", last.get("better", "higher")),
        }
        for key in ("note", "reference"):
            if key in last:
                entry[key] = last[key]
        for key in ("gated", "why_not_gated"):  # decisions taken in review stay
            if key in prev:
                entry[key] = prev[key]
        if entry["kind"] == "ratio":
            vals = [float(r["value"]) for r in recs]
            med = float(statistics.median(vals))
            spread = max(abs(v / med - 1) for v in vals) if med else 0.0
            if len(vals) >= 2:
                entry["measured"] = {
                    "runs": len(vals),
                    "min": min(vals),
                    "max": max(vals),
                    "max_rel_dev": spread,
                }
                if retune_ratios or name not in old:
                    entry["tolerance"] = round(max(RATIO_FLOOR, RATIO_MARGIN * spread), 3)
            elif "measured" in prev:
                entry["measured"] = prev["measured"]
        figs[name] = entry
    for name, entry in old.items():  # figures no run produced stay (a removed benchmark shows as MISSING)
        figs.setdefault(name, entry)
    return {
        "format": 1,
        "about": baseline.get(
            "about",
            "Benchmark gate baseline: quality figures (absolute tolerance), hashes (exact) and speed "
            "ratios (candidate time / in-run reference time; relative tolerance). Rewrite with "
            "`nox -s bench -- --update-baseline`.",
        ),
        "machine": machine or baseline.get("machine", ""),
        "updated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "figures": figs,
    }


def write_baseline(data: Mapping[str, Any], path: str | os.PathLike[str] = BASELINE) -> None:
    Path(path).write_text(json.dumps(data, indent=1, sort_keys=False) + "\n", encoding="utf-8")


def _machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{os.cpu_count()} cores, load {load:.1f} at update"


# ----------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="benchmark regression gate")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="compare a run with the baseline; exit 1 on a regression")
    c.add_argument("--run", required=True, type=Path)
    c.add_argument("--baseline", type=Path, default=BASELINE)
    c.add_argument("--out", type=Path, default=Path(".benchmarks/gate"))
    u = sub.add_parser("update", help="rewrite the baseline from one or more runs")
    u.add_argument("--run", required=True, type=Path, nargs="+")
    u.add_argument("--baseline", type=Path, default=BASELINE)
    u.add_argument("--retune-ratios", action="store_true")
    a = p.parse_args(argv)
    if a.cmd == "check":
        run = load_run(a.run)
        ok, rows = check(run, load_baseline(a.baseline), a.out)
        print(text_table(rows))
        gated_skips = [r.figure for r in rows if r.verdict.startswith("skipped") and r.baseline is not None]
        if gated_skips:
            # skips pass (a data set may be absent), but a figure with a baseline that stops being
            # measured is no longer guarded: say so loudly
            print(
                f"WARNING: {len(gated_skips)} figures with a baseline were skipped and are NOT gated in this run: "
                + ", ".join(gated_skips[:10])
                + (" ..." if len(gated_skips) > 10 else "")
            )
        print(f"gate table written to {a.out / 'gate.json'} and {a.out / 'gate.md'}")
        return 0 if ok else 1
    runs = [load_run(r) for r in a.run]
    new = updated_baseline(load_baseline(a.baseline), runs, retune_ratios=a.retune_ratios, machine=_machine())
    write_baseline(new, a.baseline)
    rows = compare(new, runs[-1])
    print(text_table(rows))
    print(f"baseline rewritten: {a.baseline} ({len(new['figures'])} figures from {len(runs)} run(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
