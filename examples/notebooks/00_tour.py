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
# # mlsys in ten minutes
#
# One shared core (`mlsys.common`) and three domain packages built on it. This tour touches each
# of them once, on the shared data sets when they are present (`$MLSYS_DATA`, by default
# `../shared/data` next to the repository) and on generated data otherwise; the first output says
# which. It runs in about a minute on two CPU cores.
#
# | package | what you get |
# | --- | --- |
# | `mlsys.common` | embedding spaces, ANN indexes with one API, trec_eval-exact metrics, latency profiling |
# | `mlsys.recsys` | baselines, two-tower retrieval with cold start, cascades, exploration |
# | `mlsys.rag` | exact-offset chunking, a versioned document store, BM25 + dense + hybrid retrieval |
# | `mlsys.vision` | a profiled file-to-label pipeline, a ViT, token pruning and merging, ONNX export |

# %%
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a model hub

import numpy as np

from mlsys.common.data import data_root

ROOT = data_root()  # $MLSYS_DATA, else ../shared/data beside the repository root
FOUND = {name: (ROOT / name).is_dir() for name in ("movielens-100k", "scifact", "fashion-mnist")}
for name, ok in FOUND.items():
    print(
        f"{name:<15} {'shared data set at ' + str(ROOT / name) if ok else 'absent: generated data instead'}"
    )

# %% [markdown]
# ## Embedding spaces
# A vector is only comparable with vectors from the same model, revision, metric and
# normalisation. An `EmbeddingSpace` names all of that; indexes and stores are bound to one and
# refuse vectors from another, even when the widths match.

# %%
from mlsys.common import EmbeddingSpace
from mlsys.common.errors import EmbeddingSpaceMismatchError

v1 = EmbeddingSpace("all-MiniLM-L6-v2", "sha256:53aa51", 384, metric="cosine", normalized=True)
v2 = EmbeddingSpace("all-MiniLM-L6-v2", "sha256:8b3219", 384, metric="cosine", normalized=True)
try:
    v1.check_same(v2)
except EmbeddingSpaceMismatchError as exc:
    print("refused:", exc)

# %% [markdown]
# ## ANN indexes: one API over exact search, faiss and hnswlib
# `make_index(kind, space, **params)` returns an index with external int64 ids, filtered search
# (`allow=` / `deny=`) that still returns `k` results whenever `k` items are allowed, and verified
# persistence.

# %%
from mlsys.common.ann import make_index, recall_at_k

rng = np.random.default_rng(0)
space = EmbeddingSpace("tour-vectors", "1", 64, metric="cosine")
vectors = rng.standard_normal((20_000, 64), dtype=np.float32)
queries = rng.standard_normal((200, 64), dtype=np.float32)
ids = np.arange(20_000, dtype=np.int64) * 10 + 7  # any int64 ids

exact = make_index("exact", space)
exact.add(ids, vectors)
hnsw = make_index("hnsw", space, M=16)
hnsw.add(ids, vectors)
truth, _ = exact.search(queries, k=10)
found, _ = hnsw.search(queries, k=10)
print(f"hnswlib recall@10 vs exact: {recall_at_k(found, truth):.3f}")

in_stock = rng.choice(ids, size=50, replace=False)  # a 0.25% allow-list
found, scores = hnsw.search(queries, k=10, allow=in_stock)
print(
    "every result allowed:",
    bool(np.isin(found, in_stock).all()),
    "| results per query:",
    (found >= 0).sum(1).min(),
)
hnsw

# %% [markdown]
# ## Ranking metrics with trec_eval semantics, and a paired comparison
# `evaluate(run, qrels, metrics)` takes TREC-shaped dicts and returns an `EvalResult` (means and
# per-query values); `compare` adds a paired bootstrap interval and two significance tests.

# %%
from mlsys.common.metrics import compare, evaluate

qids = [f"q{i}" for i in range(200)]
qrels = {q: {f"d{j}": 1 for j in rng.choice(100, size=3, replace=False)} for q in qids}


def noisy_run(noise: float, seed: int) -> dict[str, dict[str, float]]:
    """Scores that favour the relevant documents, blurred by ``noise``."""
    r = np.random.default_rng(seed)
    return {
        q: {f"d{j}": float((f"d{j}" in qrels[q]) + noise * r.standard_normal()) for j in range(100)}
        for q in qids
    }


good = evaluate(noisy_run(0.6, 1), qrels, ["ndcg@10", "mrr@10", "recall@100"])
worse = evaluate(noisy_run(0.8, 2), qrels, ["ndcg@10", "mrr@10", "recall@100"])
good

# %%
comparison = compare(good, worse, "ndcg@10", seed=0)
comparison

# %% [markdown]
# Once the result classes gain `to_pandas()` (pandas is an optional extra), a result becomes a
# data frame to sort, plot or save:

# %%
if hasattr(good, "to_pandas"):
    from IPython.display import display

    display(good.to_pandas())
else:
    print("this version's EvalResult has no to_pandas(); the mean metrics:", dict(good.mean))

# %% [markdown]
# ## Latency profiling with budgets
# Named, nestable stages timed into preallocated buffers; a report per stage and end to end, and
# budgets that report violations.

# %%
from mlsys.common.profiling import LatencyProfiler

prof = LatencyProfiler()
for q in queries:
    with prof.request():
        with prof.stage("retrieve"):
            cand, _ = hnsw.search(q[None], k=100)
        with prof.stage("rerank"):
            vecs = hnsw.get_vectors(cand[0])
            order = np.argsort(-(vecs @ q))[:10]
print(prof.report(unit="ms"))
print("budget violations:", prof.check_budgets({"retrieve": 1e-3, "rerank": 1e-6}, percentile="p95"))

# %% [markdown]
# ## Recommendations: baselines under one evaluation protocol
# MovieLens-100K when present (else a generated data set), a per-user random 80/20 split, full
# ranking with training items masked. The `01_recsys` notebook goes further: two-tower retrieval,
# cold start, a cascade, diversity and off-policy evaluation.

# %%
from mlsys.recsys import (
    EASE,
    ItemKNN,
    Popularity,
    evaluate_recommender,
    load_movielens,
    random_holdout,
    synthetic_dataset,
)

if FOUND["movielens-100k"]:
    ds = load_movielens(ROOT / "movielens-100k")
else:
    ds = synthetic_dataset(n_users=300, n_items=150, per_user=15)
split = random_holdout(ds.interactions, seed=0)
results = [
    evaluate_recommender(model.fit(split.train, catalogue=ds.items.ids), split, ks=(10,))
    for model in (Popularity(), ItemKNN(), EASE(l2=500.0))
]
for r in results:
    print(f"{r.model:<12} NDCG@10 {r.metrics['ndcg@10']:.4f}  Recall@10 {r.metrics['recall@10']:.4f}")
results[-1]

# %% [markdown]
# ## Retrieval-augmented generation: chunk, index, retrieve
# Chunks keep exact character offsets into their document; the store indexes BM25 and dense
# vectors side by side and fuses them. The hashing embedder needs no model; the `02_rag` notebook
# uses all-MiniLM-L6-v2 on SciFact.

# %%
from mlsys.rag import DocumentStore, HashingEmbedder, SentenceChunker

handbook = (
    "Expenses are reimbursed within 30 days. The procurement policy was updated in Q3 after the audit. "
    "The new approval threshold is 500 units for every single purchase. Travel must be booked through "
    "the portal."
)
store = DocumentStore(HashingEmbedder(dim=256), chunker=SentenceChunker(size=120), progress=False)
store.upsert({"handbook": handbook, "menu": "The cafeteria menu changes every Monday."})
hits = store.hybrid_retriever().retrieve(["what is the approval threshold?"], k=2)[0]
for h in hits.hits:
    print(f"{h.doc_id}[{h.start}:{h.end}] score {h.score:.4f}: {h.text!r}")
    assert handbook[h.start : h.end] == h.text or h.doc_id != "handbook"

# %% [markdown]
# ## Vision: a profiled file-to-label pipeline
# Decode, resize, crop and normalise (PIL or OpenCV), each a profiler stage, then the model. A
# random-weight ViT here (the `03_vision` notebook says how to train one); the point is the
# per-stage latency table.

# %%
import tempfile
from pathlib import Path

import torch
from PIL import Image

from mlsys.vision import InferencePipeline, PreprocessConfig, ViT, ViTConfig

torch.manual_seed(0)
torch.set_num_threads(1)
tmp = Path(tempfile.mkdtemp(prefix="mlsys-tour-"))
for i in range(16):
    Image.fromarray(rng.integers(0, 256, (56, 56), dtype=np.uint8)).save(tmp / f"{i}.png")
config = PreprocessConfig(resize=28, crop=28, mean=(0.286,), std=(0.353,), channels=1, backend="pil")
pipe = InferencePipeline(config, ViT(ViTConfig.fashion_mnist()).eval(), top_k=3)
for path in sorted(tmp.glob("*.png")):
    prediction = pipe.predict(path)
print(prediction)
print(pipe.report())
