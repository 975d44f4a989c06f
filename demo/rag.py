"""mlsys.rag tour: exact-offset chunking, incremental store, BM25/dense/hybrid on SciFact, expansion.

Uses SciFact from the shared data when present (else a generated corpus) and all-MiniLM-L6-v2 when
its vectors are in the embedding cache (``benchmarks/rag/fill_embedding_cache.py``); otherwise the
dense part falls back to the hashing embedder, and says so.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

import mlsys.common.metrics  # noqa: F401 - imported up front so it is not timed with the first system
from mlsys.common.data import data_root
from mlsys.rag import (
    ChunkExpander,
    Document,
    DocumentStore,
    EmbeddingCache,
    HashingEmbedder,
    RecursiveChunker,
    SentenceChunker,
    beir_documents,
    compare_retrievers,
    evaluate_retriever,
)


def _load() -> tuple[list[Document], dict[str, str], dict[str, dict[str, int]], str]:
    root = data_root() / "scifact"
    if (root / "corpus.jsonl").is_file():
        from mlsys.common.data import load_beir

        ds = load_beir(root)
        queries = {q: t for q, t in ds.queries.items() if q in ds.qrels}
        return beir_documents(ds.corpus), queries, ds.qrels, f"SciFact ({root})"
    rng = np.random.default_rng(0)
    docs, queries, qrels = [], {}, {}
    for t in range(40):
        vocab = [f"t{t}w{i}" for i in range(15)] + [f"shared{i}" for i in range(40)]
        for i in range(5):
            docs.append(Document(f"d{t}-{i}", " ".join(rng.choice(vocab, size=80).tolist())))
        queries[f"q{t}"] = " ".join(vocab[:3])
        qrels[f"q{t}"] = {f"d{t}-0": 1, f"d{t}-1": 1}
    return docs, queries, qrels, "a generated corpus (SciFact not found)"


def _embedder(n_docs: int) -> tuple[object, str]:
    try:
        from mlsys.rag import MiniLMEmbedder

        cache = EmbeddingCache()
        emb = MiniLMEmbedder(cache=cache, num_threads=min(2, os.cpu_count() or 1))
        if cache.count(emb.space) >= n_docs:
            return emb, "all-MiniLM-L6-v2 (vectors from the embedding cache)"
        note = f"only {cache.count(emb.space)} cached MiniLM vectors for {n_docs} documents"
    except ImportError as exc:
        note = f"MiniLM unavailable ({exc})"
    return HashingEmbedder(
        dim=512
    ), f"hashing embedder, 512-d ({note}; run benchmarks/rag/fill_embedding_cache.py)"


def main() -> None:
    docs, queries, qrels, source = _load()
    print(f"data: {source}: {len(docs)} documents, {len(queries)} judged queries")

    # 1. chunking with exact offsets
    text = "\n\n".join(d.text for d in docs)[:2_000_000]
    chunker = RecursiveChunker(size=512)
    t = time.perf_counter()
    chunks = chunker.chunk(text)
    dt = time.perf_counter() - t
    exact = all(text[c.start : c.end] == c.text for c in chunks)
    line = (
        f"\n[chunking] {len(text) / 1e6:.1f} MB into {len(chunks)} chunks at {len(text) / 1e6 / dt:.1f} MB/s"
    )
    try:
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        lc = RecursiveCharacterTextSplitter(chunk_size=512, chunk_overlap=0, add_start_index=True)
        t = time.perf_counter()
        lc.create_documents([text])
        line += f" (LangChain: {len(text) / 1e6 / (time.perf_counter() - t):.1f} MB/s)"
    except ImportError:
        pass
    print(line + f"; offsets exact: {exact}; largest chunk {max(c.length for c in chunks)} <= 512 chars")
    rep = " ".join(["ab"] * 10)
    ours = SentenceChunker(size=5).chunk(rep)
    print(f"  repeated text {rep!r}: our starts {[c.start for c in ours]}")
    try:
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        lc = RecursiveCharacterTextSplitter(
            chunk_size=5, chunk_overlap=3, add_start_index=True
        )  # 3 = overlap
        print(
            f"  LangChain's (str.find) starts {[d.metadata['start_index'] for d in lc.create_documents([rep])]}"
        )
    except ImportError:
        pass

    # 2. store + retrieval evaluation
    embedder, what = _embedder(len(docs))
    print(f"\n[store] dense embedder: {what}")
    store = DocumentStore(embedder, progress=False)  # type: ignore[arg-type]
    t = time.perf_counter()
    store.upsert(docs)
    store.bm25.refresh()  # BM25 weights are otherwise built lazily by the first search
    print(f"  indexed {len(store)} documents ({store.n_chunks} chunks) in {time.perf_counter() - t:.1f} s")
    retrievers = {
        "bm25": store.bm25_retriever(),
        "dense": store.dense_retriever(),
        "hybrid RRF(60)": store.hybrid_retriever(),
        "hybrid weighted": store.hybrid_retriever(fusion="weighted", name="weighted"),
    }
    print(f"  {'system':<18}{'nDCG@10':>9}{'R@100':>8}{'MRR@10':>8}{'q/s':>8}")
    for name, r in retrievers.items():
        t = time.perf_counter()
        res = evaluate_retriever(
            r,
            queries,
            qrels,
            metrics=["ndcg@10", "recall@100", "mrr@10"],
            doc_of=store.doc_of,
            chunk_depth=100,
        )
        qps = len(queries) / (time.perf_counter() - t)
        m = res.mean
        print(f"  {name:<18}{m['ndcg@10']:9.4f}{m['recall@100']:8.4f}{m['mrr@10']:8.4f}{qps:8.0f}")

    # 3. incremental re-embedding
    n_before = getattr(embedder, "n_encoded", 0)
    edited = [Document(d.doc_id, d.text + " (erratum appended)", d.metadata) for d in docs[:5]]
    rep_ = store.upsert(edited)
    n_after = getattr(embedder, "n_encoded", 0)
    print(
        f"\n[incremental] edited 5 of {len(docs)} documents: {rep_.chunks_embedded} chunks re-embedded "
        f"({n_after - n_before} by the model, the rest from the on-disk embedding cache), "
        f"{store.n_chunks - rep_.chunks_embedded} vectors kept"
    )

    # 4. migration to another space, evaluated side by side before the swap
    shadow = store.migrate(HashingEmbedder(dim=256, ngrams=2))
    side = compare_retrievers(
        {"current": store.dense_retriever(), "shadow": shadow.dense_retriever()},
        queries,
        qrels,
        metrics=["ndcg@10"],
        doc_of=store.doc_of,
    )
    print(
        f"\n[migration] shadow index in {shadow.space}: nDCG@10 current {side['current']['ndcg@10']:.4f} vs "
        f"shadow {side['shadow']['ndcg@10']:.4f} -> "
        + ("commit" if side["shadow"]["ndcg@10"] > side["current"]["ndcg@10"] else "keep the current space")
    )
    if side["shadow"]["ndcg@10"] > side["current"]["ndcg@10"]:
        shadow.commit()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        store.save(Path(tmp) / "store")
        loaded = DocumentStore.load(Path(tmp) / "store", store.embedder)
        same = np.array_equal(
            store.hybrid_retriever().search(["cancer"], 10)[0],
            loaded.hybrid_retriever().search(["cancer"], 10)[0],
        )
        print(f"  save + load round trip in {time.perf_counter() - t:.1f} s; same hybrid results: {same}")

    # 5. the boundary failure and chunk expansion
    policy = (
        "Several internal documents were revised this year. The procurement policy was updated in Q3 "
        "after the audit. The new approval threshold is 500 units for every single purchase."
    )
    small = DocumentStore(HashingEmbedder(dim=256), chunker=SentenceChunker(size=100), progress=False)
    small.upsert({"policy": policy, "other": "The cafeteria menu changes every Monday."})
    top = small.hybrid_retriever().retrieve(["how was the procurement policy updated after the audit"], k=1)[
        0
    ]
    (ctx,) = ChunkExpander(before=0, after=1).expand(top, small)
    print(f"\n[expansion] top chunk alone: {top.hits[0].text!r}")
    print(f"  with N+1 expansion: {ctx.text!r}")


if __name__ == "__main__":
    main()
