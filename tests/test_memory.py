"""Memory accounting (issue 24): the peak memory of the main calls stays within a stated bound.

Each case builds its objects, then measures only the call (``peak_memory`` fixture in
tests/conftest.py: the larger of tracemalloc's peak and the kernel's resident high-water mark,
reset just before the call, so faiss / hnswlib / BLAS heaps count). The bound is what the call must hold: its result and inputs plus a
stated scratch term, with 2x slack and a 24 MiB floor for allocator noise; a call that allocated
in proportion to ``k`` or to the requested size rather than to what exists would exceed it.

The default suite runs small sizes; ``pytest -m slow tests/test_memory.py -s`` runs the sizes of
the benchmark tables and prints the figures recorded in benchmarks/<package>/README.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from mlsys.common import EmbeddingSpace
from mlsys.common.limits import get_limits

MiB = 1024**2
FLOOR = 24 * MiB


@dataclass
class Case:
    call: Callable[[], Any]
    bound: int  # bytes the call may need (before slack)
    what: str


def _search(kind: str, n: int, dim: int, nq: int, k: int) -> Case:
    from mlsys.common.ann import make_index

    rng = np.random.default_rng(0)
    db = rng.standard_normal((n, dim)).astype(np.float32)
    q = rng.standard_normal((nq, dim)).astype(np.float32)
    params: dict[str, Any] = {"hnsw": {"M": 16}, "faiss": {"factory": "Flat"}}.get(kind, {})
    idx = make_index(kind, EmbeddingSpace("mem", "1", dim, metric="ip"), **params)
    idx.add(np.arange(n), db)
    result = nq * k * 12
    # exact: one (query block x row chunk) float32 score block and its partition (x3); faiss Flat:
    # its own (nq x n) blocks; hnsw: the visited lists, per query
    scratch = {"exact": min(nq, 1024) * min(n, 16384) * 4 * 3, "faiss": min(nq, 1024) * min(n, 16384) * 4 * 3}
    return Case(
        lambda: idx.search(q, k), result + scratch.get(kind, n * 2), f"{kind} search {nq}x{n:,}x{dim} k={k}"
    )


def _huge_k_search(n: int) -> Case:
    from mlsys.common.ann import make_index
    from mlsys.common.errors import LimitExceededError

    idx = make_index("exact", EmbeddingSpace("mem", "1", 8, metric="ip"))
    idx.add(np.arange(n), np.ones((n, 8), np.float32))

    def call() -> None:
        with pytest.raises(LimitExceededError):
            idx.search(np.ones((1, 8), np.float32), 10**12)

    return Case(call, 0, "search k=10**12 (refused before allocating)")


def _recommend(model: str, n_users: int, n_items: int, per_user: int) -> Case:
    from mlsys.recsys import EASE, ItemKNN, Popularity, synthetic_dataset

    ds = synthetic_dataset(n_users=n_users, n_items=n_items, per_user=per_user, seed=0)
    m = {"popularity": Popularity, "ease": EASE, "itemknn": lambda: ItemKNN(neighbors=100)}[model]()
    m.fit(ds.interactions)
    users = np.unique(ds.interactions.users)
    k = 10
    batch = 1024
    # the result, plus one batch of dense scores (float32 and the float64 seen mask), x2 for top-k
    bound = len(users) * k * 12 + min(len(users), batch) * n_items * (4 + 8) * 2
    return Case(
        lambda: m.recommend(users, k), bound, f"{model} recommend {len(users)} users x {n_items} items k={k}"
    )


def _evaluate(nq: int, depth: int) -> Case:
    from mlsys.common.metrics import Qrels, evaluate_ranked

    rng = np.random.default_rng(0)
    n_docs = 50_000
    # distinct doc ids per row: a random offset plus a stride
    ranked = ((np.arange(depth)[None, :] * 37 + rng.integers(0, n_docs, size=(nq, 1))) % n_docs).astype(
        np.int64
    )
    doc_ids = {str(d): d for d in range(n_docs)}
    qrels = Qrels.from_dict(
        {
            str(q): {str(int(d)): int(rng.integers(1, 4)) for d in rng.integers(0, n_docs, size=5)}
            for q in range(nq)
        },
        doc_ids=doc_ids,
    )
    metrics = ["ndcg@10", "mrr@10", "recall@100"]
    # per-query arrays and the (nq, needed depth) relevance and gain matrices (float64)
    bound = nq * min(depth, 100) * 8 * 4 + nq * len(metrics) * 8
    return Case(lambda: evaluate_ranked(ranked, qrels, metrics), bound, f"evaluate_ranked {nq} x {depth}")


def _rag(n_docs: int, n_queries: int) -> tuple[Case, Case, Case]:
    from mlsys.rag import DocumentStore, HashingEmbedder, RecursiveChunker

    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(5000)]

    def doc() -> str:
        return " ".join(rng.choice(vocab, size=int(rng.integers(80, 240))).tolist()) + "."

    docs = {f"d{i}": doc() for i in range(n_docs)}
    store = DocumentStore(
        HashingEmbedder(dim=384), chunker=RecursiveChunker(size=128, length="words"), progress=False
    )
    store.upsert(docs)
    queries = [" ".join(rng.choice(vocab, size=8).tolist()) for _ in range(n_queries)]
    n_chunks = store.n_chunks
    k = 10
    dense, hybrid = store.dense_retriever(), store.hybrid_retriever()
    # dense: query vectors plus exact-search scratch over the chunk vectors; hybrid adds BM25's
    # (batch x n_chunks) dense score buffer and the fusion of both depth-100 lists
    dense_bound = n_queries * 384 * 4 + min(n_queries, 1024) * min(n_chunks, 16384) * 4 * 3
    hybrid_bound = dense_bound + min(n_queries, 256) * n_chunks * 8 * 2 + n_queries * 100 * 12 * 4
    edited = {d: t + " Erratum." for d, t in list(docs.items())[: max(1, n_docs // 100)]}
    # re-chunking and embedding only the edited documents, and the index/BM25 updates: the vector
    # index may copy its (n_chunks, dim) matrix twice (remove + add; what exists), never more
    upsert_bound = len(edited) * 4 * 384 * 4 + n_chunks * (2 * 384 * 4 + 64)
    return (
        Case(
            lambda: dense.retrieve(queries, k),
            dense_bound,
            f"dense retrieve {n_queries} q over {n_chunks:,} chunks",
        ),
        Case(
            lambda: hybrid.retrieve(queries, k),
            hybrid_bound,
            f"hybrid retrieve {n_queries} q over {n_chunks:,} chunks",
        ),
        Case(lambda: store.upsert(edited), upsert_bound, f"upsert {len(edited)} edited of {n_docs:,} docs"),
    )


def _check(peak_memory: Callable[..., Any], case: Case) -> tuple[int, int]:
    _, peak, method = peak_memory(case.call)
    allowed = max(FLOOR, 2 * case.bound)
    assert peak <= allowed, (
        f"{case.what}: peak {peak / MiB:.1f} MiB > bound {allowed / MiB:.1f} MiB ({method})"
    )
    return peak, allowed


SMALL: dict[str, Callable[[], Any]] = {
    "search-exact": lambda: _search("exact", 20_000, 64, 200, 10),
    "search-faiss": lambda: _search("faiss", 20_000, 64, 200, 10),
    "search-hnsw": lambda: _search("hnsw", 5_000, 32, 200, 10),
    "search-huge-k": lambda: _huge_k_search(1_000),
    "recommend-popularity": lambda: _recommend("popularity", 300, 500, 20),
    "recommend-ease": lambda: _recommend("ease", 300, 500, 20),
    "evaluate": lambda: _evaluate(2_000, 200),
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_peak_memory_within_bound(name: str, peak_memory: Callable[..., Any]) -> None:
    _check(peak_memory, SMALL[name]())


def test_peak_memory_rag(peak_memory: Callable[..., Any]) -> None:
    for case in _rag(300, 50):
        _check(peak_memory, case)


def test_peak_memory_helper_sees_c_allocations(peak_memory: Callable[..., Any]) -> None:
    _, peak, method = peak_memory(lambda: np.ones(10_000_000).sum())  # 76 MiB, freed before return
    assert 60 * MiB < peak < 120 * MiB or method == "tracemalloc"
    assert get_limits().max_k >= 1024


@pytest.mark.slow
def test_peak_memory_at_benchmark_sizes(peak_memory: Callable[..., Any]) -> None:
    """The sizes of the benchmark tables; prints the figures recorded in the benchmark READMEs."""
    cases = [
        _search("exact", 100_000, 128, 1_000, 10),
        _search("faiss", 100_000, 128, 1_000, 10),
        _search("hnsw", 100_000, 128, 1_000, 10),
        _huge_k_search(100_000),
        _recommend("popularity", 943, 1_682, 85),  # MovieLens-100K shape
        _recommend("ease", 943, 1_682, 85),
        _recommend("itemknn", 943, 1_682, 85),
        _evaluate(10_000, 1_000),
        *_rag(5_183, 300),  # SciFact shape: 5,183 abstracts, 300 test queries
    ]
    print()
    for case in cases:
        _, peak, method = peak_memory(case.call)
        allowed = max(FLOOR, 2 * case.bound)
        print(f"| {case.what} | {peak / MiB:.1f} MiB ({method}) | {allowed / MiB:.1f} MiB |")
        assert peak <= allowed, case.what
