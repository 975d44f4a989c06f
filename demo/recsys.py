"""mlsys.recsys tour: baselines under the reference protocol, a two-tower model, cold items served
from their features alone, and a fallback chain that says which source answered.

Runs on MovieLens-100K when the shared data set is present (Harper & Konstan, 2015), otherwise on
generated data; it says which. About a minute of CPU.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np


def _data_root() -> Path:
    env = os.environ.get("MLSYS_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


def main() -> None:
    import torch

    from mlsys.recsys import (
        EASE,
        DemographicPrior,
        FallbackChain,
        FeatureTable,
        ItemKNN,
        Popularity,
        TwoTowerModel,
        TwoTowerRetriever,
        evaluate_recommender,
        load_movielens,
        random_holdout,
        synthetic_dataset,
    )
    from mlsys.recsys.evaluate import WARM_CONFIG

    torch.set_num_threads(1)  # 2 threads were ~25x slower on the shared 2-core machine
    root = _data_root() / "movielens-100k"
    if (root / "u.data").is_file():
        ds = load_movielens(root)
        print(f"data: MovieLens-100K from {root} (Harper & Konstan 2015)")
        config = replace(WARM_CONFIG, epochs=6)  # shorter than the benchmark's run, to keep the tour quick
    else:
        ds = synthetic_dataset(n_users=300, n_items=150, per_user=15)
        print(f"data: generated (MovieLens-100K not found at {root})")
        config = replace(WARM_CONFIG, epochs=5, dim=32, hidden=64, batch_size=256)
    print(f"{len(ds.interactions)} events, {ds.users.n} users, {ds.items.n} items")

    split = random_holdout(ds.interactions, seed=0)
    print(f"\nsplit: {split.description}")
    print(f"{'model':<12} {'NDCG@10':>8} {'Recall@10':>10} {'fit s':>7}")
    for model in (Popularity(), ItemKNN(neighbors=100), EASE(l2=500.0)):
        t0 = time.perf_counter()
        model.fit(split.train, catalogue=ds.items.ids)
        secs = time.perf_counter() - t0
        r = evaluate_recommender(model, split, ks=(10,))
        print(f"{model.name:<12} {r.metrics['ndcg@10']:>8.4f} {r.metrics['recall@10']:>10.4f} {secs:>7.2f}")

    tt = TwoTowerModel(config).fit(split.train, items=ds.items, users=ds.users, progress=False)
    retriever = TwoTowerRetriever(tt, ds.items)
    r = evaluate_recommender(retriever, split, ks=(10,))
    print(
        f"{'two_tower':<12} {r.metrics['ndcg@10']:>8.4f} {r.metrics['recall@10']:>10.4f} {tt.train_seconds_:>7.2f}"
        f"   ({config.epochs} epochs; the benchmark trains {WARM_CONFIG.epochs})"
    )
    print(f"embedding space: {tt.space}")

    # Brand-new items, servable at once from their features (copies of existing rows under new ids).
    rng = np.random.default_rng(0)
    rows = rng.integers(0, ds.items.n, 1000)
    new_ids = np.arange(1_000_000, 1_001_000)
    new = FeatureTable(new_ids, {k: v[rows] for k, v in ds.items.columns.items()}, ds.items.specs)
    retriever.add_items(new)
    assert retriever.last_add_seconds_ is not None
    user = int(split.test.users[0])
    ids, _ = retriever.recommend([user], 5, allow=new_ids)
    print(f"\nadd_items(1,000 new items): servable after {retriever.last_add_seconds_ * 1000:.1f} ms")
    titles = {int(i): str(t) for i, t in zip(ds.items.ids, ds.item_titles)}
    picks = [titles[int(ds.items.ids[rows[int(i) - 1_000_000]])] for i in ids[0]]
    print(f"user {user}: top new items (features copied from) {picks}")

    chain = FallbackChain(
        [
            ("ease", EASE(l2=500.0).fit(split.train, catalogue=ds.items.ids), 20),
            ("two_tower", retriever, 1),
            ("demographic", DemographicPrior(features=["age"]).fit(split.train, users=ds.users), 0),
            ("popularity", Popularity().fit(split.train, catalogue=ds.items.ids), 0),
        ],
        history=split.train,
    )
    counts = chain.history_size(np.unique(split.train.users))
    light = int(np.unique(split.train.users)[np.argmin(counts)])
    heavy = int(np.unique(split.train.users)[np.argmax(counts)])
    out = chain.recommend_with_sources([heavy, light, 10_000_000], 5)
    print("\nfallback chain (EASE for >= 20 items, two-tower for >= 1, demographics, popularity):")
    for u, src, row in zip([heavy, light, 10_000_000], out.sources, out.ids):
        print(f"  user {u} ({int(chain.history_size([u])[0])} training items) -> {src}: {row.tolist()}")


if __name__ == "__main__":
    main()
