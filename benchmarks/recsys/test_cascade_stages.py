"""Each cascade stage's contribution on MovieLens-100K (warm protocol, split seed 0), issue 13.

Retrieval: the learned ranker's sources (EASE, ItemKNN, ALS, co-occurrence, ...), top 50 each,
merged by reciprocal-rank fusion (200 kept) -> light: EASE (l2=500) scores keep 100 -> heavy: the
learned ranker keeps 30 -> diversity: greedy DPP picks 10 over 64-d SVD item vectors. NDCG@10 after
each stage (a stage's order cut to 10), intra-list diversity, and the retrieval's recall of the heavy
ranker's own top 10 over the whole catalogue (the brute-force reference). Smoke: generated data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import scipy.sparse.linalg as spla

from conftest import SMOKE
from mlsys.common.metrics import evaluate_ranked, intra_list_diversity
from mlsys.recsys import EASE, IdIndex, load_movielens, random_holdout, split_qrels, synthetic_dataset
from mlsys.recsys._base import top_k
from mlsys.recsys.cascade import Cascade, DiversityStage, RetrievalStage, ScoringStage, recall_vs_exact

pytest.importorskip("lightgbm", reason="the learned ranker needs lightgbm (pip install 'mlsys-recsys[ltr]')")

from mlsys.recsys.cascade import LearnedRanker, LearnedRankerConfig

SMOKE_CONFIG = LearnedRankerConfig(
    n_candidates=30, n_folds=3, ease_l2_grid=(5.0, 20.0, 80.0), als_factors=8, max_rounds=40, n_models=1,
    min_data_in_leaf=10, num_leaves=7, num_threads=1,
)  # fmt: skip


def test_cascade_stage_contributions(benchmark, dataset) -> None:  # type: ignore[no-untyped-def]
    ds = (
        synthetic_dataset(n_users=150, n_items=80, per_user=10, seed=1)
        if SMOKE
        else load_movielens(dataset("movielens-100k"))
    )
    split = random_holdout(ds.interactions, seed=0)
    catalogue = ds.items.ids
    index = IdIndex(catalogue)
    users, qrels = split_qrels(split)
    out: dict[str, Any] = {}

    def run() -> None:
        ease = EASE(l2=500.0).fit(split.train, catalogue=catalogue)
        ranker = LearnedRanker(SMOKE_CONFIG if SMOKE else LearnedRankerConfig(num_threads=1)).fit(
            split.train, catalogue=catalogue, users=ds.users, items=ds.items
        )
        x = split.train.to_csr(IdIndex(np.unique(split.train.users)), index).astype(np.float64)
        _, _, vt = spla.svds(x, k=8 if SMOKE else 64, random_state=0)
        item_vecs = vt.T + 1e-9
        ease_scores = ease.score(users)

        def light(u: np.ndarray, items: np.ndarray) -> np.ndarray:
            rows = np.searchsorted(users, u)
            pos = index.positions(items.ravel(), missing="mask").reshape(items.shape)
            return ease_scores[rows[:, None], np.maximum(pos, 0)]  # padding (-1) is ignored by the stage

        retrieval = RetrievalStage([(s, ranker.source(s), 50) for s in ranker.signals_.sources], cutoff=200)
        stages = [
            ScoringStage("light", light, cutoff=100),
            ScoringStage("heavy", ranker.score_candidates, cutoff=30),
            DiversityStage("dpp", lambda ids: item_vecs[index.positions(ids)], cutoff=10, strength=0.9),
        ]
        rows = []
        batch = retrieval.run(users)
        rows.append(("retrieval (RRF of the sources)", batch))
        for st in stages:
            batch = st.run(batch)
            rows.append((f"+ {st.name}", batch))
        # the same chain through Cascade, to check it serves exactly what the stage walk measured
        res = Cascade(retrieval, stages).recommend(users, 10)
        out["cascade_equal"] = bool(np.array_equal(res.ids, rows[-1][1].cut(10).items))
        all_items = np.tile(catalogue, (users.shape[0], 1))
        full = ranker.score_candidates(users, all_items)
        seen = ranker.seen_[ranker.user_index_.positions(users)].toarray() > 0
        brute, _ = top_k(np.where(seen, -np.inf, full).astype(np.float32), 10)
        brute_ids = np.where(brute >= 0, catalogue[np.maximum(brute, 0)], -1)
        out["recall"] = recall_vs_exact(rows[0][1].items, brute_ids)
        out["rows"] = rows
        out["ease"] = evaluate_ranked(ease.recommend(users, 10)[0], qrels, "ndcg@10")["ndcg@10"]

    benchmark.pedantic(run, rounds=1, iterations=1)
    genres = np.asarray(ds.items.column(ds.items.specs[0].name if SMOKE else "genres"))
    genres = genres.astype(np.int64) if genres.ndim == 1 else genres > 0
    print(f"\n{'stage':34s} {'ndcg@10':>8s} {'ILD':>6s}   (EASE alone {out['ease']:.4f})")
    for name, b in out["rows"]:
        top10 = b.cut(10).items
        pos = index.positions(top10.ravel(), missing="mask").reshape(top10.shape)
        ndcg = evaluate_ranked(top10, qrels, "ndcg@10")["ndcg@10"]
        print(f"{name:34s} {ndcg:8.4f} {intra_list_diversity(pos, categories=genres):6.3f}")
    print(f"retrieval recall of the heavy ranker's full-catalogue top 10: {out['recall']:.4f}")
    assert out["cascade_equal"]
