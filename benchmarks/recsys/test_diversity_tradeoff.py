"""Diversity/accuracy trade-off of MMR and greedy DPP on MovieLens-100K (warm protocol).

EASE (λ=500) retrieves each user's top 100; MMR and DPP re-rank them to 10 over item vectors from a
64-d truncated SVD of the training user-item matrix, across the trade-off parameter. Prints NDCG@10
and intra-list diversity (genre Jaccard distance, ``mlsys.common.metrics.intra_list_diversity``) and
saves the plot to ``.benchmarks/diversity_tradeoff.png``. Smoke mode: generated data, 3 settings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse.linalg as spla

from conftest import REPO_ROOT, SMOKE
from mlsys.common.metrics import evaluate_ranked, intra_list_diversity
from mlsys.recsys import EASE, IdIndex, load_movielens, random_holdout, split_qrels, synthetic_dataset
from mlsys.recsys.cascade import dpp_greedy, mmr


def test_diversity_tradeoff(benchmark, dataset) -> None:  # type: ignore[no-untyped-def]
    ds = (
        synthetic_dataset(n_users=100, n_items=80, per_user=12)
        if SMOKE
        else load_movielens(dataset("movielens-100k"))
    )
    split = random_holdout(ds.interactions, seed=0)
    catalogue = ds.items.ids
    ease = EASE(l2=500.0).fit(split.train, catalogue=catalogue)
    users, qrels = split_qrels(split)
    cand, scores = ease.recommend(users, 100 if not SMOKE else 30)
    index = IdIndex(catalogue)
    x = split.train.to_csr(IdIndex(np.unique(split.train.users)), index).astype(np.float64)
    _, _, vt = spla.svds(x, k=64 if not SMOKE else 8, random_state=0)
    item_vecs = vt.T + 1e-9  # (n_items, d); the epsilon keeps never-seen items off the zero vector
    genre_name = "genres" if "genres" in {s.name for s in ds.items.specs} else ds.items.specs[0].name
    genres = np.asarray(ds.items.column(genre_name))
    genres = genres.astype(np.int64) if genres.ndim == 1 else (genres > 0)

    def positions(ids: np.ndarray) -> np.ndarray:
        """Item positions of a (n, k) id array, -1 kept as padding (ILD reads catalogue positions)."""
        flat = index.positions(np.maximum(ids, 0).ravel()).reshape(ids.shape)
        return np.where(ids >= 0, flat, -1)

    settings = [0.0, 0.3, 0.6, 0.8, 0.9, 0.95] if not SMOKE else [0.0, 0.5, 0.9]
    rows: list[tuple[str, float, float, float]] = []

    def run() -> None:
        base = cand[:, :10]
        rows.append(
            (
                "relevance",
                1.0,
                evaluate_ranked(base, qrels, "ndcg@10")["ndcg@10"],
                intra_list_diversity(positions(base), categories=genres),
            )
        )
        for method in ("mmr", "dpp"):
            for t in settings:
                out = np.full((cand.shape[0], 10), -1, np.int64)
                for i in range(cand.shape[0]):
                    valid = np.flatnonzero(cand[i] >= 0)
                    emb = item_vecs[index.positions(cand[i, valid])]
                    picks = (
                        mmr(scores[i, valid], emb, 10, lambda_=t)
                        if method == "mmr"
                        else dpp_greedy(scores[i, valid], emb, 10, theta=t)
                    )
                    out[i, : picks.shape[0]] = cand[i, valid[picks]]
                ndcg = evaluate_ranked(out, qrels, "ndcg@10")["ndcg@10"]
                ild = intra_list_diversity(positions(out), categories=genres)
                rows.append((method, t, ndcg, ild))

    benchmark.pedantic(run, rounds=1, iterations=1)
    print(f"\n{'method':10s} {'param':>6s} {'ndcg@10':>8s} {'ILD(genres)':>12s}")
    for method, t, ndcg, ild in rows:
        print(f"{method:10s} {t:6.2f} {ndcg:8.4f} {ild:12.4f}")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for method, marker in (("mmr", "o"), ("dpp", "s")):
        pts = [(ild, ndcg, t) for m, t, ndcg, ild in rows if m == method]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, label=method.upper())
        for ild, ndcg, t in pts:
            ax.annotate(f"{t:g}", (ild, ndcg), textcoords="offset points", xytext=(4, 4), fontsize=7)
    rel = next(r for r in rows if r[0] == "relevance")
    ax.scatter([rel[3]], [rel[2]], color="k", zorder=5, label="EASE top-10")
    ax.set_xlabel("intra-list diversity (genre Jaccard distance)")
    ax.set_ylabel("NDCG@10")
    ax.set_title("MovieLens-100K: diversity vs accuracy" if not SMOKE else "synthetic (smoke)")
    ax.grid(alpha=0.3)
    ax.legend()
    out_dir = Path(REPO_ROOT) / ".benchmarks"
    out_dir.mkdir(exist_ok=True)
    fig.tight_layout()
    fig.savefig(out_dir / "diversity_tradeoff.png", dpi=110)
    print(f"plot: {out_dir / 'diversity_tradeoff.png'}")
