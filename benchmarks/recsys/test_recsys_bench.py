"""mlsys.recsys benchmarks: the MovieLens-100K table, two-tower training time, add_items latency.

Every figure is printed with the machine facts (threads, load). Smoke mode (MLSYS_BENCH_SMOKE=1)
runs each benchmark on small generated data in seconds. MovieLens: Harper & Konstan (2015).
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import SMOKE, size
from mlsys.recsys import (
    EASE,
    FeatureTable,
    RecsysDataset,
    TwoTowerModel,
    TwoTowerRetriever,
    format_table,
    load_movielens,
    random_holdout,
    synthetic_dataset,
)
from mlsys.recsys.evaluate import (
    COLD_COLUMNS,
    COLD_CONFIG,
    WARM_COLUMNS,
    WARM_CONFIG,
    machine_facts,
    run_cold,
    run_warm,
)

SMOKE_CONFIG = replace(WARM_CONFIG, epochs=1, batch_size=128, dim=16, hidden=32)
#: The shipped constants as they are (no validation search): what the timing benchmarks measure.
FIXED_WARM = replace(WARM_CONFIG, tune=False)


def _data(dataset) -> tuple[RecsysDataset, str]:  # type: ignore[no-untyped-def]
    if SMOKE:
        return synthetic_dataset(n_users=120, n_items=80, per_user=10), "synthetic (smoke)"
    return load_movielens(dataset("movielens-100k")), "MovieLens-100K"


@pytest.fixture(autouse=True)
def _one_thread():  # type: ignore[no-untyped-def]
    # One intra-op thread: on the shared 2-core machine, 2 threads made an epoch ~25x slower
    # (oversubscribed cores; measured side by side, see README.md).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_movielens_table(benchmark, dataset) -> None:  # type: ignore[no-untyped-def]
    """Every model on the warm split and the item cold-start split (the table of the README)."""
    ds, name = _data(dataset)
    warm_cfg = SMOKE_CONFIG if SMOKE else WARM_CONFIG
    cold_cfg = replace(SMOKE_CONFIG, item_id_embedding=False) if SMOKE else COLD_CONFIG
    out: dict[str, list] = {}  # type: ignore[type-arg]

    def run() -> None:
        out["warm"] = run_warm(ds, config=warm_cfg, progress=False)
        out["cold"] = run_cold(ds, config=cold_cfg, progress=False, seeds=(0,) if SMOKE else (0, 1, 2))

    benchmark.pedantic(run, rounds=1, iterations=1)
    print(f"\n{name}; {machine_facts()}\n")
    print(format_table(out["warm"], columns=WARM_COLUMNS))
    print()
    print(format_table(out["cold"], columns=COLD_COLUMNS))
    warm = {r.model: r.metrics for r in out["warm"]}
    benchmark.extra_info["quality"] = {
        f"{split}.{r.model}.{m}": r.metrics[m]
        for split in ("warm", "cold")
        for r in out[split]
        for m in ("ndcg@10", "recall@10")
        if m in r.metrics
    }
    cold = {r.model: r.metrics for r in out["cold"]}
    assert warm["ease"]["ndcg@10"] > warm["random"]["ndcg@10"]
    if not SMOKE:
        assert warm["popularity"]["ndcg@10"] == pytest.approx(0.219, abs=0.01)
        assert warm["itemknn"]["ndcg@10"] == pytest.approx(0.414, abs=0.01)  # per-target default (issue 18)
        assert warm["ease"]["ndcg@10"] == pytest.approx(0.453, abs=0.01)
        # Data-driven (tuned on a validation split) since issue 18: measured 0.397 (the fixed
        # constants gave 0.407 on this test split; the 0.42 goal is open, see README.md).
        assert warm["two_tower"]["ndcg@10"] >= 0.385
        assert cold["two_tower_features_only"]["ndcg@10"] > 0.251


def test_two_tower_training_time(benchmark, dataset) -> None:  # type: ignore[no-untyped-def]
    """Training the warm two-tower on the 80% split, against EASE's fit in the same run (1 thread)."""
    ds, name = _data(dataset)
    split = random_holdout(ds.interactions, seed=0)
    cfg = replace(SMOKE_CONFIG, tune=False) if SMOKE else FIXED_WARM
    t0 = time.perf_counter()
    EASE(l2=500.0).fit(split.train, catalogue=ds.items.ids)
    ease_s = time.perf_counter() - t0
    model = benchmark.pedantic(
        lambda: TwoTowerModel(cfg).fit(split.train, items=ds.items, users=ds.users, progress=False),
        rounds=1,
        iterations=1,
    )
    tt_s = model.train_seconds_
    benchmark.extra_info["ratios"] = {"two_tower_train_vs_ease_fit": tt_s / ease_s}
    print(
        f"\n{name}: two-tower training {tt_s:.1f} s ({cfg.epochs} epochs, {len(split.train)} events) vs "
        f"EASE fit {ease_s:.2f} s = {tt_s / ease_s:.0f}x; budget 120 s -> {tt_s / 120:.2f} of budget; {machine_facts()}"
    )
    if not SMOKE:
        assert tt_s < 120


def test_add_items_latency(benchmark, dataset) -> None:  # type: ignore[no-untyped-def]
    """Time from add_items(1,000 new items) to servable, against re-encoding and re-indexing the catalogue."""
    ds, name = _data(dataset)
    n_new = size(1000, 100)
    model = TwoTowerModel(replace(SMOKE_CONFIG, epochs=1, tune=False)).fit(
        ds.interactions, items=ds.items, users=ds.users, progress=False
    )
    rng = np.random.default_rng(0)
    rows = rng.integers(0, ds.items.n, n_new)
    cols = {k: v[rows] for k, v in ds.items.columns.items()}
    new_ids = np.arange(10_000_000, 10_000_000 + n_new)
    user = ds.interactions.users[:1]
    timings: list[float] = []
    rebuild: list[float] = []

    def setup():  # type: ignore[no-untyped-def]
        r = TwoTowerRetriever(model, ds.items)
        new = FeatureTable(new_ids, cols, ds.items.specs)
        return (r, new), {}

    def add(r: TwoTowerRetriever, new: FeatureTable) -> None:
        t0 = time.perf_counter()
        r.add_items(new)
        r.recommend(user, 10, allow=new.ids[:1])  # servable: it comes back
        timings.append(time.perf_counter() - t0)
        t1 = time.perf_counter()
        TwoTowerRetriever(model, ds.items.concat(new))  # the alternative: rebuild everything
        rebuild.append(time.perf_counter() - t1)

    benchmark.pedantic(add, setup=setup, rounds=size(5, 1), iterations=1)
    add_s, rebuild_s = float(np.median(timings)), float(np.median(rebuild))
    benchmark.extra_info["ratios"] = {"add_items_vs_rebuild": add_s / rebuild_s}
    print(
        f"\n{name}: add_items({n_new}) + first recommend {add_s * 1000:.1f} ms (median of {len(timings)}); "
        f"full re-encode + re-index of {ds.items.n + n_new} items {rebuild_s * 1000:.1f} ms "
        f"(ratio {rebuild_s / add_s:.1f}x); {machine_facts()}"
    )
    if not SMOKE:
        assert add_s < 1.0
