"""Exploration conversions on the young-user protocol (issue 13, point 3).

20% of MovieLens-100K users keep only their first 5 events (the young users); the rest keep all of
theirs. For the young users, each model's top 10 is scored by ``exploration_conversions``: the share
of slots holding an item whose genres are all new to the user (exposure) and the share of those the
user went on to rate (conversion), side by side with NDCG@10. A DPP stage over EASE's top 100 shows
what diversity does to both. Smoke: generated data.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse.linalg as spla

from conftest import SMOKE
from mlsys.common.metrics import evaluate_ranked
from mlsys.recsys import (
    EASE,
    DemographicPrior,
    IdIndex,
    ItemKNN,
    Popularity,
    load_movielens,
    split_qrels,
    synthetic_dataset,
    young_user,
)
from mlsys.recsys.cascade import dpp_greedy, exploration_conversions


def test_exploration_conversions_young_users(benchmark, dataset) -> None:  # type: ignore[no-untyped-def]
    ds = (
        synthetic_dataset(n_users=120, n_items=80, per_user=12)
        if SMOKE
        else load_movielens(dataset("movielens-100k"))
    )
    split = young_user(ds.interactions, history=5, user_fraction=0.2, seed=0)
    users, qrels = split_qrels(split)
    catalogue = ds.items.ids
    genre = "genres" if "genres" in {s.name for s in ds.items.specs} else ds.items.specs[0].name
    rows: list[tuple[str, float, object]] = []

    def run() -> None:
        models = {
            "popularity": Popularity(),
            "demographic": DemographicPrior(features=[s.name for s in ds.users.specs][:2]),
            "itemknn": ItemKNN(),
            "ease": EASE(l2=500.0 if not SMOKE else 20.0),
        }
        recs = {}
        for name, m in models.items():
            m.fit(split.train, catalogue=catalogue, users=ds.users) if name == "demographic" else m.fit(
                split.train, catalogue=catalogue
            )
            recs[name] = m.recommend(users, 10)[0]
        cand, scores = models["ease"].recommend(users, 100 if not SMOKE else 30)
        index = IdIndex(catalogue)
        x = split.train.to_csr(IdIndex(np.unique(split.train.users)), index).astype(np.float64)
        _, _, vt = spla.svds(x, k=32 if not SMOKE else 8, random_state=0)
        vecs = vt.T + 1e-9
        for theta in (0.9, 0.6):
            out = np.full((cand.shape[0], 10), -1, np.int64)
            for i in range(cand.shape[0]):
                valid = np.flatnonzero(cand[i] >= 0)
                picks = dpp_greedy(scores[i, valid], vecs[index.positions(cand[i, valid])], 10, theta=theta)
                out[i, : picks.shape[0]] = cand[i, valid[picks]]
            recs[f"ease + dpp (theta={theta})"] = out
        for name, rec in recs.items():
            ndcg = evaluate_ranked(rec, qrels, "ndcg@10")["ndcg@10"]
            conv = exploration_conversions(users, rec, split.train, split.test, ds.items, genre)
            rows.append((name, ndcg, conv))

    benchmark.pedantic(run, rounds=1, iterations=1)
    print(f"\nyoung users: {users.shape[0]} (5 events of history each)")
    print(
        f"{'model':24s} {'ndcg@10':>8s} {'exposure':>9s} {'conversion':>11s} {'conversions':>12s} {'users':>6s}"
    )
    for name, ndcg, c in rows:
        print(
            f"{name:24s} {ndcg:8.4f} {c.exposure_rate:9.3f} {c.conversion_rate:11.3f} "  # type: ignore[attr-defined]
            f"{c.conversions:12d} {c.users_converted:6d}"  # type: ignore[attr-defined]
        )
    assert all(0.0 <= c.exposure_rate <= 1.0 for _, _, c in rows)  # type: ignore[attr-defined]
