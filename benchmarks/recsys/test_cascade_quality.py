"""The learned ranking stage against every single model: MovieLens-100K warm protocol (issue 13).

Prints, per split seed: EASE (l2=500, the best single model of the warm table), each retrieval
source of the ranker (fit on the full training split), and the LightGBM LambdaMART ranker, with
NDCG@10 and Recall@10, plus a paired test of the ranker against EASE (bootstrap CI, randomisation
and t-test over users). The ranker is trained and tuned on folds of the training split only.

Smoke mode (MLSYS_BENCH_SMOKE=1) runs on generated data in seconds and asserts nothing about the
figure. Full mode: seed 0 is the official figure (the 0.47 goal printed; beating EASE asserted); seeds 1 and 2 are
printed for the spread. MovieLens: Harper & Konstan (2015).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from conftest import SMOKE
from mlsys.common.metrics import EvalResult, compare
from mlsys.recsys import (
    EASE,
    EvaluationResult,
    RecsysDataset,
    Split,
    evaluate_recommender,
    load_movielens,
    random_holdout,
    split_qrels,
    synthetic_dataset,
)

pytest.importorskip("lightgbm", reason="the learned ranker needs lightgbm (pip install 'mlsys-recsys[ltr]')")

from mlsys.recsys.cascade._ltr import LearnedRanker, LearnedRankerConfig

TARGET = 0.47
FULL_CONFIG = LearnedRankerConfig(num_threads=1)
SMOKE_CONFIG = LearnedRankerConfig(
    n_candidates=30, n_folds=3, ease_l2_grid=(5.0, 20.0, 80.0), als_factors=8, max_rounds=40, n_models=1,
    min_data_in_leaf=10, num_leaves=7, num_threads=1,
)  # fmt: skip
SEEDS = (0,) if SMOKE else tuple(int(s) for s in os.environ.get("MLSYS_CASCADE_SEEDS", "0,1,2").split(","))


def _as_eval(r: EvaluationResult, users: npt.NDArray[np.int64]) -> EvalResult:
    per = {m: r.per_user[m] for m in ("ndcg@10", "recall@10")}
    return EvalResult([str(u) for u in users], per, {m: float(v.mean()) for m, v in per.items()})


def _data(dataset: Any) -> tuple[RecsysDataset, str]:
    if SMOKE:
        return synthetic_dataset(n_users=150, n_items=80, per_user=10, seed=1), "synthetic (smoke)"
    return load_movielens(dataset("movielens-100k")), "MovieLens-100K"


def _run_seed(ds: RecsysDataset, seed: int, cfg: LearnedRankerConfig) -> dict[str, Any]:
    split: Split = random_holdout(ds.interactions, seed=seed)
    users, _ = split_qrels(split)
    t0 = time.perf_counter()
    ease = EASE(l2=500.0).fit(split.train, catalogue=ds.items.ids)
    ease_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ranker = LearnedRanker(cfg).fit(split.train, catalogue=ds.items.ids, users=ds.users, items=ds.items)
    fit_s = time.perf_counter() - t0
    rows: dict[str, tuple[EvaluationResult, float | None]] = {
        "ease (l2=500)": (evaluate_recommender(ease, split, ks=(10,)), ease_s)
    }
    for s in ranker.signals_.sources:
        label = f"source {s}" + (f" (l2={ranker.ease_l2_:.0f}, fold-tuned)" if s == "ease" else "")
        rows[label] = (evaluate_recommender(ranker.source(s), split, ks=(10,)), None)
    t0 = time.perf_counter()
    rr = evaluate_recommender(ranker, split, ks=(10,))
    rows["learned ranker"] = (rr, fit_s)
    serve_s = time.perf_counter() - t0
    persist = _round_trip(ranker, split, rr)
    cmp_ = compare(_as_eval(rr, users), _as_eval(rows["ease (l2=500)"][0], users), "ndcg@10", seed=0)
    return {
        "rows": rows, "cmp": cmp_, "ranker": ranker, "serve_s": serve_s, "n_users": users.shape[0],
        "persist": persist,
    }  # fmt: skip


def _round_trip(ranker: LearnedRanker, split: Split, before: EvaluationResult) -> dict[str, float]:
    """save -> load of the fitted ranker: seconds, size, and the loaded ranker's per-user NDCG@10,
    which must equal the fitted one's exactly (a persisted ranker that serves a different slate is a
    silent failure)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ranker"
        t0 = time.perf_counter()
        ranker.save(path)
        save_s = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        t0 = time.perf_counter()
        loaded = LearnedRanker.load(path)
        load_s = time.perf_counter() - t0
    after = evaluate_recommender(loaded, split, ks=(10,))
    np.testing.assert_array_equal(after.per_user["ndcg@10"], before.per_user["ndcg@10"])
    return {"save_s": save_s, "load_s": load_s, "mib": size / 2**20}


def test_cascade_quality(benchmark: Any, dataset: Any) -> None:
    """The learned ranker vs EASE and its own sources; seed 0 must beat EASE (full mode; goal 0.47 printed)."""
    ds, name = _data(dataset)
    cfg = SMOKE_CONFIG if SMOKE else FULL_CONFIG
    out: dict[int, dict[str, Any]] = {}

    def run() -> None:
        for seed in SEEDS:
            out[seed] = _run_seed(ds, seed, cfg)

    benchmark.pedantic(run, rounds=1, iterations=1)
    print(f"\n{name}; per-user random 80/20 holdout, full ranking, train items masked; 1 thread")
    for seed, res in out.items():
        ranker = res["ranker"]
        v = ranker.validation_
        print(f"\nseed {seed}: {res['n_users']} test users")
        print("| model | ndcg@10 | recall@10 | fit s |")
        print("| --- | ---: | ---: | ---: |")
        for label, (r, secs) in res["rows"].items():
            fit = "" if secs is None else f"{secs:.1f}"
            print(f"| {label} | {r.metrics['ndcg@10']:.4f} | {r.metrics['recall@10']:.4f} | {fit} |")
        print(f"paired vs EASE: {res['cmp']}")
        print(
            f"validation (early-stopping users, fold sources): ranker {v['ndcg@10_ranker']:.4f} vs EASE "
            f"{v['ndcg@10_ease']:.4f}; l2 grid {v['ease_l2_grid_ndcg@10']}; rounds {v.get('best_iteration')}; "
            f"MLP epochs {v.get('mlp_best_epoch')}; candidate recall {v['candidate_recall']:.3f}; "
            f"scoring {res['serve_s']:.1f} s"
        )
        if v.get("als_grid_ndcg@10"):
            grid = v["als_grid_ndcg@10"]
            worst, best = min(grid.values()), max(grid.values())
            print(
                f"ALS on fold 0: alpha {v['als_alpha']:g}, regularization {v['fold_als_regularization']:g} "
                f"(served {v['serve_als_regularization']:.3g}); fold NDCG@10 {best:.4f} "
                f"(implicit's defaults {grid.get('alpha=1,regularization=0.01', float('nan')):.4f}, "
                f"worst of {len(grid)} {worst:.4f})"
            )
        inner = v.get("inner_ndcg@10")
        print(
            f"model: {ranker.model_}, serving: {ranker.serving_}"
            + (
                " (auto, NDCG@10 on the inner 80/20 holdout of the training split: "
                + ", ".join(f"{k} {x:.4f}" for k, x in inner.items())
                + ")"
                if inner
                else ""
            )
        )
        p = res["persist"]
        print(
            f"save {p['save_s']:.2f} s, load {p['load_s']:.2f} s ({p['mib']:.1f} MiB; load / fit "
            f"{p['load_s'] / res['rows']['learned ranker'][1]:.3f}); the loaded ranker's per-user NDCG@10 "
            "equals the fitted one's"
        )
        if ranker.boosters_:  # LightGBM's gain; an MLP has none
            top = list(ranker.feature_importance().items())[:5]
            print("top-5 gain importance: " + ", ".join(f"{k} {w:.3f}" for k, w in top))
    ndcgs = [res["rows"]["learned ranker"][0].metrics["ndcg@10"] for res in out.values()]
    eases = [res["rows"]["ease (l2=500)"][0].metrics["ndcg@10"] for res in out.values()]
    print(f"\nmean over seeds {list(out)}: ranker {np.mean(ndcgs):.4f}, EASE {np.mean(eases):.4f}")
    for r in out.values():
        assert r["rows"]["learned ranker"][0].metrics["ndcg@10"] > 0.0
    if not SMOKE and 0 in out:
        # the goal is reported, not asserted: the benchmark must keep running while it is open
        seed0 = out[0]["rows"]["learned ranker"][0].metrics["ndcg@10"]
        print(f"issue 13 goal NDCG@10 >= {TARGET}: {'met' if seed0 >= TARGET else 'NOT met'} ({seed0:.4f})")
        assert seed0 > out[0]["rows"]["ease (l2=500)"][0].metrics["ndcg@10"]  # beats the best single model
