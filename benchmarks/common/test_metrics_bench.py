"""Ranking metrics: mlsys vs a plain numpy reference, pytrec_eval and ranx, side by side in one run.

Workload (issue 3): 10,000 queries x 1,000 retrieved documents, graded qrels (0-3, some relevant
documents never retrieved, some queries without relevant documents), NDCG@10 + MRR@10 +
Recall@100. Smoke mode: 50 x 100, ranx skipped (its numba compilation alone takes 20-80 s).

Systems, all starting from the same arrays (``ranked`` ids ``(n, depth)`` + per-query judged ids
and grades):

* ``mlsys array``: ``Qrels.from_lists`` + ``evaluate_ranked`` (end to end from arrays);
* ``mlsys dict``: ``evaluate(run_dict, qrels_dict)`` (TREC-shaped dicts, trec_eval tie order);
* ``numpy reference``: a plain per-query numpy implementation of the three metrics;
* ``pytrec_eval``: ``RelevanceEvaluator(qrels, {ndcg_cut.10, recip_rank, recall.100}).evaluate(run)``
  (its ``recip_rank`` has no cutoff; the cost is what matters here);
* ``ranx``: ``evaluate(Qrels, Run, metrics)`` warm (numba compiled), build and first call reported apart.

Timings are interleaved (each repeat runs every system once, in turn) and reported as ratios to
``mlsys array``. Peak memory is measured in one fresh subprocess per system: the kernel's resident
high-water mark (``VmHWM``) is reset through ``/proc/self/clear_refs`` just before the measured
phase and read after it, minus the resident size at the reset (this counts C allocations, which
tracemalloc would miss for pytrec_eval and numba). Figures: benchmarks/common/README.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

try:
    from conftest import SMOKE, size
except ImportError:  # run as a script (the memory worker): sizes come from the command line
    SMOKE = False

    def size(full: int, smoke_size: int) -> int:
        return full


from mlsys.common.metrics import Qrels, evaluate, evaluate_ranked

N_QUERIES = size(10_000, 50)
DEPTH = size(1_000, 100)
REPEATS = size(3, 1)
METRICS = ["ndcg@10", "mrr@10", "recall@100"]
PRIME = 999_983  # doc ids of row i: (a_i * j + b_i) mod PRIME, distinct for j < PRIME


# ----------------------------------------------------------------------------- data
def make_data(n: int, depth: int, seed: int = 0) -> dict[str, Any]:
    """Ranked ids, strictly decreasing scores (no ties, also as float32) and graded qrels."""
    rng = np.random.default_rng(seed)
    a = rng.integers(1, PRIME, n)[:, None]
    b = rng.integers(0, PRIME, n)[:, None]
    ranked = (a * np.arange(depth)[None, :] + b) % PRIME
    scores = (depth - np.arange(depth))[None, :] + 0.5 * rng.random((n, depth))
    bias = 1.0 / (np.arange(depth) + 10.0)
    bias /= bias.sum()
    docs: list[np.ndarray] = []
    rels: list[np.ndarray] = []
    for i in range(n):
        m_in = int(rng.integers(0, 11))
        pos = rng.choice(depth, size=m_in, replace=False, p=bias)
        m_out = int(rng.integers(0 if m_in else 1, 6))
        out = PRIME + i * 8 + np.arange(m_out)  # relevant but never retrieved
        d = np.concatenate([ranked[i, pos], out]).astype(np.int64)
        docs.append(d)
        rels.append(rng.integers(0, 4, d.shape[0]))
    return {"ranked": ranked.astype(np.int64), "scores": scores, "docs": docs, "rels": rels}


def to_dicts(data: dict[str, Any]) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, int]]]:
    """TREC-shaped dicts, as pytrec_eval, ranx and ``evaluate`` take them."""
    ranked, scores = data["ranked"], data["scores"]
    run = {
        str(i): dict(zip(map(str, ranked[i].tolist()), scores[i].tolist(), strict=True))
        for i in range(ranked.shape[0])
    }
    qrels = {
        str(i): dict(zip(map(str, d.tolist()), r.tolist(), strict=True))
        for i, (d, r) in enumerate(zip(data["docs"], data["rels"], strict=True))
    }
    return run, qrels


# ----------------------------------------------------------------------------- systems
def mlsys_array(data: dict[str, Any]) -> dict[str, float]:
    q = Qrels.from_lists(data["docs"], data["rels"])
    return evaluate_ranked(data["ranked"], q, METRICS, empty_queries="zero").mean


def mlsys_dict(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    res = evaluate(
        run, qrels, METRICS, missing_queries="ignore", extra_queries="ignore", empty_queries="zero"
    )
    return res.mean


def numpy_reference(data: dict[str, Any]) -> dict[str, float]:
    """Plain numpy, one query at a time: the straightforward implementation."""
    ranked = data["ranked"]
    disc = 1.0 / np.log2(np.arange(2, 102))
    out = np.zeros((ranked.shape[0], 3))
    for i in range(ranked.shape[0]):
        d, r = data["docs"][i], data["rels"][i]
        lut = dict(zip(d.tolist(), r.tolist(), strict=True))
        rel = np.array([lut.get(x, 0) for x in ranked[i, :100].tolist()], dtype=np.float64)
        ideal = np.sort(r)[::-1][:10].astype(np.float64)
        idcg = ideal @ disc[: ideal.shape[0]]
        out[i, 0] = (rel[:10] @ disc[:10]) / idcg if idcg > 0 else 0.0
        hits = rel >= 1
        out[i, 1] = 1.0 / (np.argmax(hits[:10]) + 1) if hits[:10].any() else 0.0
        n_rel = int((r >= 1).sum())
        out[i, 2] = hits.sum() / n_rel if n_rel else 0.0
    return dict(zip(METRICS, out.mean(axis=0).tolist(), strict=True))


def pytrec(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    import pytrec_eval

    res = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recip_rank", "recall.100"}).evaluate(run)
    vals = np.array([[v["ndcg_cut_10"], v["recip_rank"], v["recall_100"]] for v in res.values()])
    # recip_rank has no cutoff (it is >= mrr@10); reported under its own name
    return {
        "ndcg@10": float(vals[:, 0].mean()),
        "recip_rank": float(vals[:, 1].mean()),
        "recall@100": float(vals[:, 2].mean()),
    }


def ranx_build(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]]) -> tuple[Any, Any]:
    import ranx

    return ranx.Qrels(qrels), ranx.Run(run)


def ranx_eval(q: Any, r: Any) -> dict[str, float]:
    import ranx

    return {k: float(v) for k, v in ranx.evaluate(q, r, METRICS).items()}


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def machine_facts() -> str:
    load = os.getloadavg()
    return (
        f"cpus={os.cpu_count()} load(1/5/15 min)={load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f} "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')} "
        f"NUMBA_NUM_THREADS={os.environ.get('NUMBA_NUM_THREADS', 'unset (all cores)')} "
        f"numpy={np.__version__} python={sys.version.split()[0]}"
    )


# ----------------------------------------------------------------------------- speed
def test_metrics_speed_side_by_side(benchmark) -> None:  # type: ignore[no-untyped-def]
    data = make_data(N_QUERIES, DEPTH)
    t_build, (run, qrels) = _timed(lambda: to_dicts(data))
    with_ranx = not SMOKE
    times: dict[str, list[float]] = {
        k: [] for k in ("mlsys array", "mlsys dict", "numpy reference", "pytrec_eval")
    }
    results: dict[str, dict[str, float]] = {}
    extra: dict[str, float] = {"dict input build (pytrec_eval, ranx, mlsys dict)": t_build}
    rq = rr = None
    if with_ranx:
        t_rb, (rq, rr) = _timed(lambda: ranx_build(run, qrels))
        extra["ranx Qrels+Run build"] = t_rb
        t_first, _ = _timed(lambda: ranx_eval(rq, rr))
        extra["ranx first call (numba compile or disk-cache load)"] = t_first
        times["ranx warm"] = []
    systems: dict[str, Callable[[], dict[str, float]]] = {
        "mlsys array": lambda: mlsys_array(data),
        "mlsys dict": lambda: mlsys_dict(run, qrels),
        "numpy reference": lambda: numpy_reference(data),
        "pytrec_eval": lambda: pytrec(run, qrels),
    }
    if with_ranx:
        systems["ranx warm"] = lambda: ranx_eval(rq, rr)
    for _ in range(REPEATS):  # interleaved: every system once per repeat
        for name, fn in systems.items():
            t, results[name] = _timed(fn)
            times[name].append(t)
    # pytest-benchmark's own record of the mlsys array path
    benchmark.pedantic(lambda: mlsys_array(data), rounds=REPEATS, iterations=1)

    # every system computes the same numbers
    ref = results["mlsys array"]
    for name, res in results.items():
        for m in ("ndcg@10", "recall@100"):
            assert abs(res[m] - ref[m]) < 1e-9, (name, m, res[m], ref[m])
        if "mrr@10" in res:
            assert abs(res["mrr@10"] - ref["mrr@10"]) < 1e-9, (name, res["mrr@10"], ref["mrr@10"])

    base = min(times["mlsys array"])
    benchmark.extra_info["ratios"] = {  # mlsys array time / each system's time (best of the repeats)
        f"mlsys_array_vs_{name.replace(' ', '_')}": base / min(ts)
        for name, ts in times.items()
        if name != "mlsys array"
    }
    benchmark.extra_info["means"] = ref
    print(
        f"\n=== ranking metrics, {N_QUERIES} queries x {DEPTH} docs, {', '.join(METRICS)}, best of {REPEATS} ==="
    )
    print(machine_facts())
    print(f"{'system':<22}{'best s':>10}{'median s':>10}{'x mlsys array':>15}")
    for name, ts in times.items():
        print(f"{name:<22}{min(ts):>10.3f}{float(np.median(ts)):>10.3f}{min(ts) / base:>15.1f}")
    for name, t in extra.items():
        print(f"{name:<52}{t:>8.3f} s  ({t / base:.1f}x mlsys array)")
    print(
        f"pytrec_eval incl. building its dict input: {(min(times['pytrec_eval']) + t_build) / base:.1f}x mlsys array"
    )
    print(f"means: {json.dumps({k: round(v, 6) for k, v in ref.items()})}")
    if not SMOKE:
        assert min(times["pytrec_eval"]) / base >= 10, "goal: >= 10x faster than pytrec_eval"
        assert min(times["ranx warm"]) / base >= 5, "goal: >= 5x faster than ranx warm"


# ----------------------------------------------------------------------------- memory
def _status_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _phase(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Run ``fn``; return (peak RSS above the start in MiB, seconds, result)."""
    if not _reset_peak():
        raise RuntimeError("cannot reset the RSS high-water mark (/proc/self/clear_refs)")
    rss0 = _status_kb("VmRSS")
    t, out = _timed(fn)
    return (_status_kb("VmHWM") - rss0) / 1024, t, out


def memory_worker(system: str, n: int, depth: int) -> dict[str, Any]:
    """Measure one system in this (fresh) process; see the module docstring."""
    data = make_data(n, depth)
    out: dict[str, Any] = {"system": system}
    if system == "mlsys array":
        peak, t, _ = _phase(lambda: mlsys_array(data))
        out.update(from_arrays_mib=peak, eval_mib=peak, eval_s=t)
        return out
    if system == "ranx":
        small = make_data(5, 20, seed=1)
        t_first, _ = _timed(lambda: ranx_eval(*ranx_build(*to_dicts(small))))
        out["first_call_s"] = t_first  # compile with a fresh NUMBA_CACHE_DIR (see the caller)

        def build() -> Any:
            return ranx_build(*to_dicts(data))

        peak_b, t_b, (rq, rr) = _phase(build)
        peak_e, t_e, _ = _phase(lambda: ranx_eval(rq, rr))
        out.update(
            build_mib=peak_b,
            eval_mib=peak_e,
            from_arrays_mib=max(peak_b, 0) + peak_e,
            build_s=t_b,
            eval_s=t_e,
        )
        return out
    peak_b, t_b, (run, qrels) = _phase(lambda: to_dicts(data))
    fn = {"mlsys dict": mlsys_dict, "pytrec_eval": pytrec}[system]
    peak_e, t_e, _ = _phase(lambda: fn(run, qrels))
    out.update(build_mib=peak_b, eval_mib=peak_e, from_arrays_mib=peak_b + peak_e, build_s=t_b, eval_s=t_e)
    return out


def _run_worker(system: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--memory", system, str(N_QUERIES), str(DEPTH)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_metrics_peak_memory(benchmark) -> None:  # type: ignore[no-untyped-def]
    if not _reset_peak():
        import pytest

        pytest.skip("/proc/self/clear_refs is not writable here; cannot reset the RSS high-water mark")
    systems = ["mlsys array", "mlsys dict", "pytrec_eval"] + ([] if SMOKE else ["ranx"])
    rows = {}
    for s in systems:
        env = None
        if s == "ranx":  # a cold numba cache, so that the first call shows the real compile time
            env = {**os.environ, "NUMBA_CACHE_DIR": tempfile.mkdtemp(prefix="mlsys-numba-")}
        rows[s] = _run_worker(s, env)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    print(f"\n=== peak resident memory above the start of the phase (MiB), {N_QUERIES} x {DEPTH} ===")
    print("method: VmHWM reset via /proc/self/clear_refs in a fresh subprocess per system")
    print(machine_facts())
    print(f"{'system':<14}{'from arrays':>13}{'input build':>13}{'evaluation':>12}{'eval s':>9}")
    for s, r in rows.items():
        print(
            f"{s:<14}{r['from_arrays_mib']:>13.1f}{r.get('build_mib', 0.0):>13.1f}{r['eval_mib']:>12.1f}{r['eval_s']:>9.2f}"
        )
        if "first_call_s" in r:
            print(f"  ranx first call on a cold numba cache (compile): {r['first_call_s']:.1f} s")
    ours = rows["mlsys array"]["from_arrays_mib"]
    benchmark.extra_info["peak_mib"] = {s: r["from_arrays_mib"] for s, r in rows.items()}
    for s in systems[1:]:
        print(
            f"mlsys array peak / {s} peak (from arrays): {ours / max(rows[s]['from_arrays_mib'], 1e-9):.3f}"
        )
    if not SMOKE:
        assert ours < rows["pytrec_eval"]["from_arrays_mib"] and ours < rows["ranx"]["from_arrays_mib"]


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--memory":
        print(json.dumps(memory_worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
    else:
        sys.exit("usage: test_metrics_bench.py --memory SYSTEM N_QUERIES DEPTH")
