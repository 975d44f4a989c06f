"""The data-driven two-tower (issue 18): warm and cold MovieLens-100K, mixed catalogues, a second data set.

    pytest benchmarks/recsys/test_two_tower_data_driven.py -s         # every part (slow: tens of minutes)
    python benchmarks/recsys/test_two_tower_data_driven.py warm|cold|full|longtail|longtail-seeds
    MLSYS_LONGTAIL_GENRES=10 python benchmarks/recsys/test_two_tower_data_driven.py longtail-seeds  # earlier variant

Every two-tower here tunes itself on a validation split carved from its training data (the shipped
``WARM_CONFIG``/``COLD_CONFIG`` are only the starting points); the test split is used once, for
the figure. Smoke mode (MLSYS_BENCH_SMOKE=1) runs each part on small generated data in seconds.
MovieLens: Harper & Konstan (2015).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import SMOKE, shared_data_root
from mlsys.common.metrics import EvalResult, compare
from mlsys.recsys import (
    EASE,
    FeaturesToFactors,
    RecsysDataset,
    TwoTowerModel,
    TwoTowerRetriever,
    evaluate_recommender,
    format_table,
    load_movielens,
    random_holdout,
    synthetic_dataset,
)
from mlsys.recsys.evaluate import (
    COLD_COLUMNS,
    COLD_CONFIG,
    WARM_CONFIG,
    FullCatalogueResult,
    long_tail_dataset,
    machine_facts,
    run_cold,
    run_full_catalogue,
)

#: Search budget of the benchmark fits: generous, so that on the shared 2-core machine the search
#: completes (each report says whether it bound).
BUDGET_S = 3600.0
SMOKE_WARM = replace(WARM_CONFIG, epochs=2, batch_size=128, dim=16, hidden=32)
SMOKE_COLD = replace(COLD_CONFIG, epochs=2, batch_size=128, dim=16, hidden=32)
#: Data seeds of the long-tail comparison (each seed draws a new data set and a new split).
LONGTAIL_SEEDS = (
    (0, 1)
    if SMOKE
    else tuple(
        int(s) for s in os.environ.get("MLSYS_LONGTAIL_SEEDS", ",".join(map(str, range(20)))).split(",")
    )
)

#: Genres of the long-tail data set (30, the default; 10 is the earlier variant of the README).
LONGTAIL_GENRES = int(os.environ.get("MLSYS_LONGTAIL_GENRES", "30"))


def _movielens() -> tuple[RecsysDataset, str]:
    if SMOKE:
        return synthetic_dataset(n_users=120, n_items=80, per_user=10), "synthetic (smoke)"
    path = shared_data_root() / "movielens-100k"
    if not path.is_dir():
        pytest.skip(f"data set 'movielens-100k' not found at {path}")
    return load_movielens(path), "MovieLens-100K"


def _warm_cfg() -> Any:
    return replace(SMOKE_WARM if SMOKE else WARM_CONFIG, tune_budget_s=BUDGET_S)


def _describe(model: TwoTowerModel) -> str:
    r = model.report_
    runs = "; ".join(
        f"T={x['temperature']:.3g} lr={x['lr']:.2g}: best {x['best_ndcg@10']:.4f} @ epoch {x['best_epoch']}"
        f" of {x['epochs_run']}"
        for x in r.runs
    )
    cal = r.cold_calibration
    cold = (
        ""
        if cal is None
        else f"; cold offset {cal['chosen_offset']:.3f} (validation cold share {cal['chosen_cold_share@10']:.3f})"
    )
    return (
        f"{r.reason}; {r.objective}; chosen {r.chosen}; budget exhausted: {r.budget_exhausted}; "
        f"total {r.total_seconds:.0f} s\n  runs: {runs}{cold}"
    )


def part_warm() -> dict[str, float]:
    """Warm users, random 80/20 (the reference protocol): the tuned two-tower next to EASE."""
    torch.set_num_threads(1)
    ds, name = _movielens()
    split = random_holdout(ds.interactions, train_fraction=0.8, seed=0)
    t0 = time.perf_counter()
    ease = EASE(l2=500.0).fit(split.train, catalogue=ds.items.ids)
    ease_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    tt = TwoTowerModel(_warm_cfg()).fit(split.train, items=ds.items, users=ds.users, progress=False)
    tt_s = time.perf_counter() - t0
    res = [
        evaluate_recommender(ease, split, ks=(10, 20), fit_seconds=ease_s),
        evaluate_recommender(
            TwoTowerRetriever(tt, ds.items), split, ks=(10, 20), name="two_tower_tuned", fit_seconds=tt_s
        ),
    ]
    print(f"\n{name}; {machine_facts()}\n")
    print(format_table(res, columns=("ndcg@10", "recall@10", "hit_rate@10", "ndcg@20", "coverage@10")))
    print("two_tower_tuned:", _describe(tt))
    return {r.model: r.metrics["ndcg@10"] for r in res}


def part_cold() -> dict[str, float]:
    """Item cold start, 3 seeds: the tuned features-only two-tower next to features -> factors baselines."""
    torch.set_num_threads(1)
    ds, name = _movielens()
    cfg = replace(SMOKE_COLD if SMOKE else COLD_CONFIG, tune_budget_s=BUDGET_S)
    res = run_cold(ds, config=cfg, seeds=(0,) if SMOKE else (0, 1, 2), progress=False)
    print(f"\n{name}; {machine_facts()}\n")
    print(format_table(res, columns=COLD_COLUMNS))
    return {r.model: r.metrics["ndcg@10"] for r in res}


def _full_rows(
    ds: RecsysDataset, cold_fraction: float, shipped: bool
) -> list[tuple[str, FullCatalogueResult]]:
    rows: list[tuple[str, FullCatalogueResult]] = []
    tuned_res, tuned = run_full_catalogue(ds, TwoTowerModel(_warm_cfg()), cold_fraction=cold_fraction)
    rows.append(("two_tower_tuned", tuned_res))
    print("two_tower_tuned:", _describe(tuned))
    # The same model without the calibrated offset: how the cold items crowded the top 10 before.
    saved = tuned.cold_offset_
    tuned.cold_offset_ = 0.0
    try:
        tuned.space = tuned._make_space()
        raw_res = _rescore(ds, tuned, cold_fraction)
    finally:
        tuned.cold_offset_ = saved
        tuned.space = tuned._make_space()
    rows.append(("two_tower_tuned, no offset", raw_res))
    if shipped:
        fixed = replace(SMOKE_WARM if SMOKE else WARM_CONFIG, tune=False)
        shipped_res, _ = run_full_catalogue(ds, TwoTowerModel(fixed), cold_fraction=cold_fraction)
        rows.append(("two_tower_shipped_constants", shipped_res))
    ease_res, _ = run_full_catalogue(ds, EASE(l2=500.0), cold_fraction=cold_fraction)
    rows.append(("ease", ease_res))
    f2f, _ = run_full_catalogue(
        ds, FeaturesToFactors("ease", features=("genres", "year")), cold_fraction=cold_fraction
    )
    rows.append(("features_to_ease_factors", f2f))
    return rows


def _rescore(ds: RecsysDataset, model: TwoTowerModel, cold_fraction: float) -> FullCatalogueResult:
    """Evaluate an already fitted two-tower on the same protocol (no refit)."""
    from mlsys.recsys import split_qrels
    from mlsys.recsys.evaluate import _cold_exposure, full_catalogue_split

    split, cold = full_catalogue_split(ds.interactions, ds.items.ids, cold_fraction=cold_fraction, seed=0)
    trained = np.unique(split.train.items)
    full_rec = TwoTowerRetriever(model, ds.items)
    warm_rec = TwoTowerRetriever(model, ds.items.rows(trained))
    full = evaluate_recommender(full_rec, split, catalogue=ds.items.ids, ks=(10,), name="no offset")
    warm = evaluate_recommender(warm_rec, split, catalogue=trained, ks=(10,), name="no offset")
    share, cov = _cold_exposure(full_rec, split, cold)
    users, _ = split_qrels(split)
    pairs = np.unique(np.stack([split.test.users, split.test.items]), axis=1)
    rel = float(np.isin(pairs[1][np.isin(pairs[0], users)], cold).mean())
    return FullCatalogueResult(full, warm, share, cov, rel)


def _print_full(title: str, rows: list[tuple[str, FullCatalogueResult]]) -> None:
    print(f"\n{title}; {machine_facts()}\n")
    print(f"protocol: {rows[0][1].full.protocol}")
    print(f"relevant test pairs on removed items: {rows[0][1].cold_relevant_share:.3f}\n")
    print(
        "| model | ndcg@10 full catalogue | ndcg@10 trained items only | ratio | cold share of top 10 | cold items shown | fit s |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in rows:
        fit = r.full.fit_seconds or 0.0
        print(
            f"| {name} | {r.full.metrics['ndcg@10']:.4f} | {r.trained_only.metrics['ndcg@10']:.4f} | "
            f"{r.ratio:.3f} | {r.cold_share:.3f} | {r.cold_coverage:.3f} | {fit:.0f} |"
        )


def part_full() -> dict[str, FullCatalogueResult]:
    """MovieLens-100K, 20% of the items removed from training but kept in the catalogue."""
    torch.set_num_threads(1)
    ds, name = _movielens()
    rows = _full_rows(ds, 0.2, shipped=False)
    _print_full(f"{name}, full catalogue, 20% of items never trained", rows)
    return dict(rows)


def part_longtail() -> dict[str, FullCatalogueResult]:
    """The second data set: 10x more items than users, long tail, 30% of items without training events."""
    torch.set_num_threads(1)
    ds = _long_tail(0)
    rows = _full_rows(ds, 0.3, shipped=True)
    _print_full(
        f"synthetic long tail: {ds.users.n} users, {ds.items.n} items, {len(ds.interactions)} events, 30% of items never trained",
        rows,
    )
    return dict(rows)


def _long_tail(seed: int) -> RecsysDataset:
    if SMOKE:
        return synthetic_dataset(n_users=60, n_items=600, n_genres=10, per_user=20, zipf=1.2, seed=seed)
    return long_tail_dataset(seed=seed, n_genres=LONGTAIL_GENRES)


def _pooled(qids: list[str], per_draw: list[np.ndarray]) -> EvalResult:
    """Per-user NDCG@10 of every draw as one result (users are ``"seed:position"``)."""
    v = np.concatenate(per_draw)
    return EvalResult(qids, {"ndcg@10": v}, {"ndcg@10": float(v.mean())})


def part_longtail_seeds() -> dict[str, float]:
    """Data-driven vs shipped constants on many draws of the long-tail data set, paired per user.

    One draw is too noisy to tell the two apart (a few hundredths of NDCG between runs), so each
    seed draws a new data set and a new split, both models are fitted on it side by side, and the
    per-user NDCG@10 values of every draw are pooled into one paired comparison
    (:func:`mlsys.common.metrics.compare`: bootstrap interval and randomisation test).
    """
    torch.set_num_threads(1)
    per: dict[str, list[np.ndarray]] = {"tuned": [], "shipped": [], "ease": []}
    # the same users over the trained items only: the search's share of the gap, without the cold offset
    trained: dict[str, list[np.ndarray]] = {"tuned": [], "shipped": []}
    qids: list[str] = []
    print(f"\nlong-tail data set ({LONGTAIL_GENRES} genres), seeds {LONGTAIL_SEEDS}; {machine_facts()}\n")
    print("| seed | data-driven | shipped constants | EASE (l2 500) | chosen (T, lr, epochs, distill) |")
    print("| ---: | ---: | ---: | ---: | --- |")
    for seed in LONGTAIL_SEEDS:
        ds = _long_tail(seed)
        tuned_cfg = replace(_warm_cfg(), seed=seed)
        shipped_cfg = replace(SMOKE_WARM if SMOKE else WARM_CONFIG, tune=False, seed=seed)
        tuned_res, tuned = run_full_catalogue(ds, TwoTowerModel(tuned_cfg), cold_fraction=0.3, seed=seed)
        shipped_res, _ = run_full_catalogue(ds, TwoTowerModel(shipped_cfg), cold_fraction=0.3, seed=seed)
        ease_res, _ = run_full_catalogue(ds, EASE(l2=500.0), cold_fraction=0.3, seed=seed)
        rows = {"tuned": tuned_res, "shipped": shipped_res, "ease": ease_res}
        for k, r in rows.items():
            per[k].append(r.full.per_user["ndcg@10"])
            if k in trained:
                trained[k].append(r.trained_only.per_user["ndcg@10"])
        qids += [f"{seed}:{i}" for i in range(per["tuned"][-1].shape[0])]
        c = tuned.config
        print(
            f"| {seed} | {tuned_res.full.metrics['ndcg@10']:.4f} | {shipped_res.full.metrics['ndcg@10']:.4f} | "
            f"{ease_res.full.metrics['ndcg@10']:.4f} | {c.temperature:g}, {c.lr:g}, {c.epochs}, {c.distill:g} |"
        )
    pooled = {k: _pooled(qids, v) for k, v in per.items()}
    cmp = compare(pooled["tuned"], pooled["shipped"], "ndcg@10")
    pooled_trained = {k: _pooled(qids, v) for k, v in trained.items()}
    cmp_trained = compare(pooled_trained["tuned"], pooled_trained["shipped"], "ndcg@10")
    wins = sum(float(a.mean()) > float(b.mean()) for a, b in zip(per["tuned"], per["shipped"], strict=True))
    print(
        f"\nmean over {len(LONGTAIL_SEEDS)} seeds ({len(qids)} user-draws): data-driven "
        f"{cmp.mean_a:.4f}, shipped {cmp.mean_b:.4f}, EASE {pooled['ease'].mean['ndcg@10']:.4f}; "
        f"paired diff {cmp.diff:+.4f} [{cmp.ci_low:+.4f}, {cmp.ci_high:+.4f}], p (randomisation) "
        f"{cmp.p_randomization:.4f}; data-driven ahead on {wins} of {len(LONGTAIL_SEEDS)} draws"
    )
    print(
        f"trained items only (no cold items to place): data-driven {cmp_trained.mean_a:.4f}, shipped "
        f"{cmp_trained.mean_b:.4f}; paired diff {cmp_trained.diff:+.4f} [{cmp_trained.ci_low:+.4f}, "
        f"{cmp_trained.ci_high:+.4f}], p (randomisation) {cmp_trained.p_randomization:.4f}"
    )
    return {
        "tuned": cmp.mean_a, "shipped": cmp.mean_b, "ease": pooled["ease"].mean["ndcg@10"],
        "diff": cmp.diff, "ci_low": cmp.ci_low, "ci_high": cmp.ci_high, "p": cmp.p_randomization,
        "wins": float(wins), "trained_diff": cmp_trained.diff, "trained_ci_low": cmp_trained.ci_low,
        "trained_ci_high": cmp_trained.ci_high, "trained_p": cmp_trained.p_randomization,
    }  # fmt: skip


def test_warm_movielens(benchmark) -> None:  # type: ignore[no-untyped-def]
    out = benchmark.pedantic(part_warm, rounds=1, iterations=1)
    benchmark.extra_info["quality"] = out
    if not SMOKE:
        print(f"goal: two-tower NDCG@10 >= 0.42 -> {out['two_tower_tuned']:.4f}")


def test_cold_movielens(benchmark) -> None:  # type: ignore[no-untyped-def]
    out = benchmark.pedantic(part_cold, rounds=1, iterations=1)
    benchmark.extra_info["quality"] = out
    if not SMOKE:  # the smoke data's 16 cold items are too few to rank meaningfully
        assert out["two_tower_features_only"] > out["random"]
        best_baseline = max(v for k, v in out.items() if k.startswith("features_to"))
        print(
            f"goal: two-tower above features->factors: {out['two_tower_features_only']:.4f} vs {best_baseline:.4f}"
        )
        assert out["two_tower_features_only"] > best_baseline  # issue 18 (met narrowly: 0.3283 vs 0.3215)


def test_full_catalogue_movielens(benchmark) -> None:  # type: ignore[no-untyped-def]
    out = benchmark.pedantic(part_full, rounds=1, iterations=1)
    tuned = out["two_tower_tuned"]
    benchmark.extra_info["quality"] = {"ratio": tuned.ratio, "cold_share": tuned.cold_share}
    assert tuned.cold_share > 0.0  # cold items still get exposure


def test_long_tail_data_set(benchmark) -> None:  # type: ignore[no-untyped-def]
    out = benchmark.pedantic(part_longtail, rounds=1, iterations=1)
    benchmark.extra_info["quality"] = {k: v.full.metrics["ndcg@10"] for k, v in out.items()}


def test_long_tail_many_draws(benchmark) -> None:  # type: ignore[no-untyped-def]
    out = benchmark.pedantic(part_longtail_seeds, rounds=1, iterations=1)
    benchmark.extra_info["quality"] = out
    if not SMOKE:  # the claim of the README: the data-driven model adapts (beats the constants)
        assert out["ci_low"] > 0.0, out


if __name__ == "__main__":
    parts = {
        "warm": part_warm, "cold": part_cold, "full": part_full, "longtail": part_longtail,
        "longtail-seeds": part_longtail_seeds,
    }  # fmt: skip
    for arg in sys.argv[1:] or list(parts):
        parts[arg]()
