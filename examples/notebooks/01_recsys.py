# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Recommendations with `mlsys.recsys`
#
# Retrieval, cold start, a ranking cascade, diversity, and exploration with off-policy evaluation,
# each measured under one evaluation protocol. MovieLens-100K (Harper & Konstan, 2015) when the
# shared data set is present, a generated data set otherwise; the first output says which. Models
# are kept small (a three-epoch two-tower model, no hyper-parameter search) so that the notebook
# runs in a few minutes on two CPU cores; `benchmarks/recsys/README.md` has the full-size figures.

# %%
import os
import time
import warnings
from dataclasses import replace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# tqdm.auto asks for ipywidgets in a notebook; the bars here are off anyway (progress=False)
warnings.filterwarnings("ignore", message="IProgress not found")

import numpy as np
import torch

from mlsys.common.data import data_root
from mlsys.recsys import load_movielens, synthetic_dataset

torch.set_num_threads(1)  # a shared 2-core machine: one thread is faster and steadier
root = data_root() / "movielens-100k"
if (root / "u.data").is_file():
    ds = load_movielens(root)
    print(f"data: MovieLens-100K from {root}")
else:
    ds = synthetic_dataset(n_users=400, n_items=200, per_user=20, seed=0)
    print(f"data: generated (MovieLens-100K not found at {root})")
print(f"{len(ds.interactions):,} events, {ds.users.n:,} users, {ds.items.n:,} items")

# %% [markdown]
# ## The protocol and the baselines
# A per-user random 80/20 split; every model ranks the whole catalogue with the user's training
# items masked. `evaluate_recommender` returns an `EvaluationResult` carrying the protocol with
# the figures.

# %%
from mlsys.recsys import EASE, ItemKNN, Popularity, evaluate_recommender, random_holdout

split = random_holdout(ds.interactions, seed=0)
print(split.description)
models = {"popularity": Popularity(), "itemknn": ItemKNN(), "ease": EASE(l2=500.0)}
results = {}
for name, model in models.items():
    t0 = time.perf_counter()
    model.fit(split.train, catalogue=ds.items.ids)
    results[name] = evaluate_recommender(model, split, ks=(10,), fit_seconds=time.perf_counter() - t0)
results["ease"]

# %% [markdown]
# ## Two-tower retrieval
# A user tower and an item tower trained with an in-batch softmax; the item vectors go into an
# `mlsys.common.ann` index, so serving is one nearest-neighbour search. Three epochs, no search
# over temperature and learning rate (`tune=False`): smaller than the benchmark's model.

# %%
from mlsys.recsys import TwoTowerModel, TwoTowerRetriever
from mlsys.recsys.evaluate import COLD_CONFIG, WARM_CONFIG

config = replace(WARM_CONFIG, epochs=3, tune=False)
two_tower = TwoTowerModel(config).fit(split.train, items=ds.items, users=ds.users, progress=False)
retriever = TwoTowerRetriever(two_tower, ds.items)
results["two_tower"] = evaluate_recommender(retriever, split, ks=(10,), fit_seconds=two_tower.train_seconds_)
print(f"{'model':<12}{'NDCG@10':>9}{'Recall@10':>11}{'coverage@10':>13}{'fit s':>8}")
for name, r in results.items():
    m = r.metrics
    print(f"{name:<12}{m['ndcg@10']:9.4f}{m['recall@10']:11.4f}{m['coverage@10']:13.3f}{r.fit_seconds:8.2f}")

# %% [markdown]
# ## Cold start: items nobody has interacted with yet
# `item_cold_start` holds out 20% of the catalogue entirely; those items must be ranked from
# their features alone (genres and year). The two-tower item tower does that out of the box;
# the content-based profile is the reference.

# %%
from mlsys.recsys import ContentBased, item_cold_start

cold = item_cold_start(ds.interactions, catalogue=ds.items.ids, cold_fraction=0.2, seed=0)
cold_config = replace(COLD_CONFIG, epochs=3, tune=False)
cold_tower = TwoTowerModel(cold_config).fit(cold.train, items=ds.items, users=ds.users, progress=False)
cold_results = {
    "two_tower (features only)": evaluate_recommender(
        TwoTowerRetriever(cold_tower, ds.items), cold, ks=(10,)
    ),
    "content_based": evaluate_recommender(
        ContentBased(features=["genres"]).fit(cold.train, catalogue=ds.items.ids, items=ds.items),
        cold,
        ks=(10,),
    ),
}
for name, r in cold_results.items():
    print(f"{name:<26} NDCG@10 {r.metrics['ndcg@10']:.4f}  Recall@10 {r.metrics['recall@10']:.4f}")

# %% [markdown]
# New items are servable the moment they are added: the item tower embeds their features and
# the index takes the vectors, no retraining.

# %%
from mlsys.recsys import FeatureTable

rows = np.random.default_rng(0).integers(0, ds.items.n, 1_000)
new_ids = np.arange(1_000_000, 1_001_000)
growing = TwoTowerRetriever(two_tower, ds.items)  # a second index over the same model
growing.add_items(FeatureTable(new_ids, {k: v[rows] for k, v in ds.items.columns.items()}, ds.items.specs))
user = int(split.test.users[0])
top_new, _ = growing.recommend([user], 5, allow=new_ids)
print(
    f"1,000 new items servable after {1e3 * growing.last_add_seconds_:.1f} ms; user {user}'s top new items: {top_new[0].tolist()}"
)

# %% [markdown]
# ## A ranking cascade
# Retrieval merges several sources by reciprocal-rank fusion (each source's score and rank kept as
# features), then each stage re-orders and cuts: an EASE scorer keeps 50, greedy DPP over the
# two-tower item vectors keeps 10. An inventory mask removes out-of-stock items before any
# scoring. Every stage is timed and may carry a latency budget; a stage that fails or overruns
# degrades to the previous order, and the cascade counts it.

# %%
from mlsys.recsys import IdIndex
from mlsys.recsys.cascade import Cascade, DiversityStage, InventoryMask, RetrievalStage, ScoringStage

ease = models["ease"]
ease_items = IdIndex(ease.item_ids_)
item_vectors = two_tower.encode_items(ds.items)
vector_rows = IdIndex(ds.items.ids)


def ease_scores(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """EASE's score of each candidate (padding ``-1`` is ignored by the stage)."""
    positions = ease_items.positions(items.ravel(), missing="mask").reshape(items.shape)
    return np.take_along_axis(ease.score(users), np.maximum(positions, 0), axis=1)


out_of_stock = ease.item_ids_[:20]  # pretend the first 20 catalogue items are out of stock
cascade = Cascade(
    RetrievalStage([("itemknn", models["itemknn"], 200), ("two_tower", retriever, 200)], cutoff=200),
    [
        ScoringStage("ease", ease_scores, cutoff=50, budget_s=0.5),
        DiversityStage("dpp", lambda ids: item_vectors[vector_rows.positions(ids)], cutoff=10, strength=0.9),
    ],
    inventory=InventoryMask(out_of_stock),
)


class CascadeRecommender:
    """The cascade behind the recommender contract that `evaluate_recommender` calls."""

    name = "cascade"

    def recommend(self, users, k, *, exclude_seen=True, allow=None):
        res = cascade.recommend(users, k, allow=allow)
        return res.ids, res.scores


results["cascade"] = evaluate_recommender(CascadeRecommender(), split, catalogue=ds.items.ids, ks=(10,))
served = cascade.recommend(np.unique(split.test.users)[:200], 10).ids
print("out-of-stock items served:", int(np.isin(served, out_of_stock).sum()))
print(cascade.profiler.report(unit="ms"))
print({name: stats.to_dict() for name, stats in cascade.stats.items()})

# %% [markdown]
# ## Accuracy against diversity
# DPP trades a little accuracy for lists that cover more of the catalogue and repeat themselves
# less. Intra-list diversity is the mean pairwise cosine distance of a list's item vectors.

# %%
from mlsys.common.metrics import catalog_coverage, intra_list_diversity

users = np.unique(split.test.users)[:300]
lists = {
    "ease": ease.recommend(users, 10)[0],
    "cascade (EASE -> DPP)": cascade.recommend(users, 10).ids,
}
print(f"{'list':<24}{'NDCG@10':>9}{'diversity':>11}{'coverage':>10}")
for (name, ids), key in zip(lists.items(), ("ease", "cascade")):
    rows_of = vector_rows.positions(ids.ravel(), missing="mask").reshape(ids.shape)
    div = intra_list_diversity(rows_of, item_vectors)
    cov = catalog_coverage(rows_of, ds.items.n)
    print(f"{name:<24}{results[key].metrics['ndcg@10']:9.4f}{div:11.4f}{cov:10.3f}")

# %% [markdown]
# Is the cascade's NDCG@10 different from EASE's, or noise? A paired test over the evaluated
# users:

# %%
from mlsys.common.metrics import EvalResult, compare


def per_user(r):
    """An `EvaluationResult`'s per-user NDCG@10 as an `EvalResult` for `compare`."""
    values = {"ndcg@10": r.per_user["ndcg@10"]}
    return EvalResult(
        [str(i) for i in range(len(values["ndcg@10"]))], values, {"ndcg@10": float(values["ndcg@10"].mean())}
    )


compare(per_user(results["cascade"]), per_user(results["ease"]), "ndcg@10", n_resamples=2000, seed=0)

# %% [markdown]
# ## Exploration and off-policy evaluation
# A policy that explores returns its slate with the propensity of every shown item; logged, those
# propensities let IPS, SNIPS and doubly-robust estimators value a *new* policy from the old
# policy's logs. On a synthetic bandit the true value of the target policy is known.

# %%
from mlsys.recsys.explore import cross_fit_rewards, evaluate_policy, synthetic_bandit

bandit = synthetic_bandit(10_000, 10, seed=0)
table = evaluate_policy(
    bandit.feedback, bandit.target_dist, cross_fit_rewards(bandit.feedback), n_bootstrap=200
)
print(f"true value of the target policy: {bandit.true_value:.4f}")
for name, iv in table.items():
    print(
        f"{name:<6}{iv.value:.4f}  95% CI [{iv.lower:.4f}, {iv.upper:.4f}]  relative error {iv.relative_error(bandit.true_value):.4f}"
    )

# %% [markdown]
# Logging is append-only JSON Lines (or Parquet) and reading back refuses a truncated record:

# %%
import tempfile
from pathlib import Path

from mlsys.recsys.explore import EpsilonGreedy, PropensityLogger, read_log, to_feedback

rng = np.random.default_rng(0)
scores = rng.normal(size=(2_000, 20))
policy = EpsilonGreedy(0.1, slate_size=3, seed=0)
slate = policy.select(scores)
clicks = (rng.random(slate.actions.shape) < 0.1).astype(float)
with tempfile.TemporaryDirectory() as tmp:
    log_path = Path(tmp) / "served.jsonl"
    with PropensityLogger(log_path) as log:
        log.log_slate(slate, clicks, policy=policy, round_ids=np.arange(2_000), contexts=scores)
    feedback = to_feedback(read_log(log_path), n_actions=20)
feedback

# %% [markdown]
# ## The feedback loop exploration breaks
# A greedy recommender only learns about what it shows; over rounds its catalogue coverage
# collapses. The simulator retrains each policy on its own logs (small sizes here).

# %%
from mlsys.recsys.explore import FeedbackLoopSimulator, SimulatorConfig

sim = SimulatorConfig(
    n_users=500, n_items=60, users_per_round=100, warm_start_users=100, propensity_draws=100
)
report = FeedbackLoopSimulator(sim).run(rounds=10, progress=False)
for name, s in report.summary().items():
    print(
        f"{name:<16} coverage {s['coverage_last']:.2f} ({s['coverage_vs_greedy']:.1f}x greedy), utility {s['utility_vs_greedy']:+.1%} vs greedy"
    )
