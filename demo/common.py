"""Tour of mlsys.common: embedding spaces, data readers, ranking metrics, comparisons, profiling."""

from __future__ import annotations

import re
import time
from collections import Counter

import numpy as np
import scipy.sparse as sp

from mlsys.common.data import find_dataset, load_beir, load_fashion_mnist, load_movielens_100k
from mlsys.common.errors import DatasetNotFoundError, EmbeddingSpaceMismatchError
from mlsys.common.metrics import Qrels, compare, evaluate, evaluate_ranked
from mlsys.common.profiling import LatencyProfiler, measure
from mlsys.common.spaces import EmbeddingSpace

_TOKEN = re.compile(r"[a-z0-9]+")


def _tfidf(texts: list[str], vocab: dict[str, int] | None = None) -> tuple[sp.csr_matrix, dict[str, int]]:
    """A tiny L2-normalised TF-IDF (log tf) for the demo run; mlsys.rag has the real BM25."""
    rows, cols, vals = [], [], []
    vocab = {} if vocab is None else vocab
    grow = not vocab
    for i, text in enumerate(texts):
        for term, tf in Counter(_TOKEN.findall(text.lower())).items():
            j = vocab.setdefault(term, len(vocab)) if grow else vocab.get(term)
            if j is not None:
                rows.append(i)
                cols.append(j)
                vals.append(1.0 + np.log(tf))
    m = sp.csr_matrix((vals, (rows, cols)), shape=(len(texts), len(vocab)), dtype=np.float32)
    return m, vocab


def _spaces() -> None:
    print("\n-- Embedding spaces: a same-width model swap is caught")
    v1 = EmbeddingSpace("all-MiniLM-L6-v2", "sha256:53aa51", 384, metric="cosine", normalized=True)
    v2 = EmbeddingSpace("all-MiniLM-L6-v2", "sha256:8b3219", 384, metric="cosine", normalized=True)
    print(f"   {v1}  space_id={v1.space_id}\n   {v2}  space_id={v2.space_id}")
    try:
        v1.check_same(v2)
    except EmbeddingSpaceMismatchError as exc:
        print(f"   refused: {exc}")


def _data() -> None:
    print("\n-- Data readers (validated, file:line errors)")
    for name, load in (("movielens-100k", load_movielens_100k), ("fashion-mnist", load_fashion_mnist)):
        try:
            root = find_dataset(name)
        except DatasetNotFoundError as exc:
            print(f"   {name}: skipped ({exc})")
            continue
        t0 = time.perf_counter()
        data = load(root)
        dt = time.perf_counter() - t0
        if name == "movielens-100k":
            r = data.ratings  # type: ignore[attr-defined]
            print(
                f"   {name}: {len(r)} ratings, {len(np.unique(r[:, 0]))} users, {len(np.unique(r[:, 1]))} items ({dt:.2f} s)"
            )
        else:
            print(f"   {name}: train {data[0].shape}, test {data[2].shape} ({dt:.2f} s)")


def _metrics() -> None:
    print("\n-- Ranking metrics (trec_eval semantics) on SciFact, TF-IDF run")
    try:
        ds = load_beir(find_dataset("scifact"), split="test")
    except DatasetNotFoundError as exc:
        print(f"   skipped ({exc})")
        return
    doc_ids = list(ds.corpus)
    qids = [q for q in ds.queries if q in ds.qrels]
    runs = {}
    for variant, fields in (("title+text", ("title", "text")), ("text only", ("text",))):
        docs, vocab = _tfidf([" ".join(ds.corpus[d][f] for f in fields) for d in doc_ids])
        idf = np.log(docs.shape[0] / (1.0 + np.bincount(docs.indices, minlength=docs.shape[1]))).astype(
            np.float32
        )
        docs = docs @ sp.diags(idf)
        queries, _ = _tfidf([ds.queries[q] for q in qids], vocab)
        scores = (queries @ docs.T).toarray()
        top = np.argsort(-scores, axis=1)[:, :100]
        runs[variant] = {q: {doc_ids[j]: float(scores[i, j]) for j in top[i]} for i, q in enumerate(qids)}
    results = {v: evaluate(run, ds.qrels, ["ndcg@10", "mrr@10", "recall@100"]) for v, run in runs.items()}
    for v, res in results.items():
        print(
            f"   {v:<11} nDCG@10 {res['ndcg@10']:.4f}  MRR@10 {res['mrr@10']:.4f}  R@100 {res['recall@100']:.4f}"
        )
    try:
        import pytrec_eval

        ev = pytrec_eval.RelevanceEvaluator(ds.qrels, {"ndcg_cut_10"})
        ref = np.mean([m["ndcg_cut_10"] for m in ev.evaluate(runs["title+text"]).values()])
        print(f"   pytrec_eval nDCG@10 {ref:.10f} vs mlsys {results['title+text']['ndcg@10']:.10f}")
    except ImportError:
        print("   (pytrec_eval not installed: parity is checked in the test suite)")
    print(
        "   paired comparison:",
        compare(results["title+text"], results["text only"], "ndcg@10", n_resamples=2000),
    )

    print("\n-- Fast array path: 10,000 queries x 1,000 ranked docs, graded qrels")
    rng = np.random.default_rng(0)
    n_q, k, n_docs = 10_000, 1_000, 100_000
    # unique ids per row: one random permutation shifted by a random offset per query
    ranked = (rng.permutation(n_docs)[None, :k] + rng.integers(0, n_docs, size=(n_q, 1))) % n_docs
    relevant = [
        rng.choice(np.concatenate([ranked[i, :50], [n_docs + i]]), size=5, replace=False) for i in range(n_q)
    ]
    qrels = Qrels.from_lists(relevant, [rng.integers(1, 4, size=5) for _ in range(n_q)])
    t0 = time.perf_counter()
    res = evaluate_ranked(ranked, qrels, ["ndcg@10", "mrr@10", "recall@100"])
    print(
        f"   nDCG@10 {res['ndcg@10']:.4f} MRR@10 {res['mrr@10']:.4f} R@100 {res['recall@100']:.4f} "
        f"in {time.perf_counter() - t0:.3f} s (see benchmarks/common/README.md for ranx/pytrec_eval ratios)"
    )


def _profiling() -> None:
    print("\n-- Latency profiler: a toy retrieval pipeline with budgets")
    prof = LatencyProfiler()
    rng = np.random.default_rng(0)
    items = rng.standard_normal((20_000, 64)).astype(np.float32)
    for _ in range(200):
        with prof.request():
            with prof.stage("embed"):
                q = rng.standard_normal(64).astype(np.float32)
            with prof.stage("retrieve"):
                top = np.argpartition(-(items @ q), 100)[:100]
            with prof.stage("rerank"):
                top[np.argsort(-(items[top] @ q))]
    print(prof.report(unit="ms"))
    for v in prof.check_budgets({"retrieve": 50e-6, "rerank": 5e-3}, percentile="p95"):
        print(f"   budget violated: {v}")
    stats = measure(lambda: prof.stage("x").__enter__().__exit__(None, None, None), n=20_000, warmup=1000)
    print(f"   one stage enter/exit: p50 {stats.p50 * 1e9:.0f} ns")


def main() -> None:
    _spaces()
    _data()
    _metrics()
    _profiling()


if __name__ == "__main__":
    main()
