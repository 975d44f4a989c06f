"""Scaling curves of mlsys.rag's hot paths (issue 22): BM25 index and query, chunking, store upsert.

* BM25: ``BM25Index.add`` and ``BM25Index.search`` (200 queries, top 10) against bm25s (tokenize +
  index / tokenize + retrieve, one thread, English stemmer and stopwords; the anchor) on generated
  text (Zipf words, 120 per document); 1k, 3k, 10k, 30k documents (100k, 300k, 1M with
  ``MLSYS_BENCH_SCALING_LARGE=1``; 200, 400 in smoke mode).
* Chunking: ``RecursiveChunker(size=512)`` against LangChain's ``RecursiveCharacterTextSplitter``
  (chunk_size=512, no overlap, start indexes; the anchor) on generated text of 1, 3, 10 MB (30 and
  100 MB in large mode).
* Store: ``DocumentStore(HashingEmbedder(256)).upsert`` of generated documents at x1 and x10 (500
  and 5,000 documents), against chunking + embedding the same documents without a store (the
  anchor); and the store's bytes on disk per stored chunk vector against the raw float32 vectors.

Tables are printed; the plot goes to ``benchmarks/rag/scaling.png`` (not in smoke mode). Figures:
the ``## Scaling`` section of benchmarks/rag/README.md. Only public APIs are used.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import SMOKE

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gate.figures import generated_text
from scaling import LARGE, Curve, measure, report

HERE = Path(__file__).resolve().parent
CURVES: dict[str, list[Curve]] = {}
_CORPUS: dict[int, list[str]] = {}


def _corpus(n: int) -> list[str]:
    """``n`` generated documents (cached: every system of a size reads the same text)."""
    if n not in _CORPUS:
        _CORPUS.clear()
        rng = np.random.default_rng(0)
        vocab = np.array([f"term{i}" for i in range(20_000)])
        p = 1.0 / np.arange(1, 20_001)
        p /= p.sum()
        words = vocab[rng.choice(20_000, size=(n, 120), p=p)]
        _CORPUS[n] = [" ".join(row) for row in words.tolist()]
    return _CORPUS[n]


def _queries() -> list[str]:
    rng = np.random.default_rng(1)
    p = 1.0 / np.arange(1, 20_001)
    p /= p.sum()
    return [" ".join(f"term{i}" for i in rng.choice(20_000, size=6, p=p)) for _ in range(200)]


def test_bm25_index_and_query_scaling() -> None:
    bm25s = pytest.importorskip("bm25s")
    stemmer_mod = pytest.importorskip("Stemmer")
    from mlsys.rag import BM25Index

    stemmer = stemmer_mod.Stemmer("english")
    queries = _queries()

    def ref_index(n: int) -> Any:
        docs = _corpus(n)

        def run() -> Any:
            ref = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
            ref.index(
                bm25s.tokenize(docs, stopwords="en", stemmer=stemmer, show_progress=False),
                show_progress=False,
            )
            return ref

        return run

    def ours_index(n: int) -> Any:
        docs = _corpus(n)

        def run() -> Any:
            idx = BM25Index()
            idx.add(np.arange(n), docs)
            return idx

        return run

    def ref_query(n: int) -> Any:
        ref = ref_index(n)()

        def run() -> Any:
            qt = bm25s.tokenize(queries, stopwords="en", stemmer=stemmer, show_progress=False)
            return ref.retrieve(qt, k=10, show_progress=False, n_threads=1)

        return run

    def ours_query(n: int) -> Any:
        idx = ours_index(n)()
        return lambda: idx.search(queries, 10)

    sizes = (
        [200, 400]
        if SMOKE
        else [1000, 3000, 10_000, 30_000] + ([100_000, 300_000, 1_000_000] if LARGE else [])
    )
    CURVES["BM25 index (documents)"] = measure(
        "BM25 index",
        {"bm25s": ref_index, "mlsys BM25Index.add": ours_index},
        sizes,
        anchor="bm25s",
        repeats=1,
    )
    CURVES["BM25 query, 200 queries top 10 (documents)"] = measure(
        "BM25 query",
        {"bm25s": ref_query, "mlsys BM25Index.search": ours_query},
        sizes,
        anchor="bm25s",
        repeats=2,
    )


def test_chunking_scaling() -> None:
    splitters = pytest.importorskip("langchain_text_splitters")
    from mlsys.rag import RecursiveChunker

    ours = RecursiveChunker(size=512)
    lc = splitters.RecursiveCharacterTextSplitter(chunk_size=512, chunk_overlap=0, add_start_index=True)

    def setup_ours(n: int) -> Any:
        text = generated_text(n)
        return lambda: ours.chunk(text)

    def setup_lc(n: int) -> Any:
        text = generated_text(n)
        return lambda: lc.create_documents([text])

    mb = 1_000_000
    sizes = [20_000, 40_000] if SMOKE else [mb, 3 * mb, 10 * mb] + ([30 * mb, 100 * mb] if LARGE else [])
    CURVES["chunking (characters)"] = measure(
        "chunking",
        {"LangChain RecursiveCharacterTextSplitter": setup_lc, "mlsys RecursiveChunker": setup_ours},
        sizes,
        anchor="LangChain RecursiveCharacterTextSplitter",
        repeats=1,
    )


def _documents(n: int) -> list[Any]:
    from mlsys.rag import Document

    rng = np.random.default_rng(2)
    words = [f"w{i}" for i in range(2000)]
    return [
        Document(f"d{i}", ". ".join(" ".join(rng.choice(words, size=12).tolist()) for _ in range(20)) + ".")
        for i in range(n)
    ]


def test_store_upsert_scaling_and_bytes_per_vector() -> None:
    from mlsys.rag import DocumentStore, HashingEmbedder, RecursiveChunker

    chunker = RecursiveChunker(size=128, length="words")

    def store(n: int) -> Any:
        docs = _documents(n)

        def run() -> Any:
            s = DocumentStore(HashingEmbedder(dim=256), chunker=chunker, progress=False)
            s.upsert(docs)
            return s

        return run

    def plain(n: int) -> Any:
        docs = _documents(n)
        emb = HashingEmbedder(dim=256)

        def run() -> Any:
            texts = [c.text for d in docs for c in chunker.chunk(d.text, doc_id=d.doc_id)]
            return emb.embed_documents(texts)

        return run

    base = 50 if SMOKE else 500
    CURVES["store upsert (documents, x1 and x10)"] = measure(
        "store upsert",
        {"chunk + embed, no store": plain, "mlsys DocumentStore.upsert": store},
        [base, 10 * base],
        anchor="chunk + embed, no store",
        repeats=1,
    )
    s = store(base)()
    with tempfile.TemporaryDirectory() as tmp:
        s.save(f"{tmp}/store")
        on_disk = sum(p.stat().st_size for p in Path(f"{tmp}/store").rglob("*") if p.is_file())
    per = on_disk / s.n_chunks
    raw = 256 * 4
    print(
        f"\nstore bytes per stored chunk: {per:.0f} on disk (vectors, ids, chunk text and offsets, BM25, "
        f"manifest) vs {raw} for the raw float32 vector: {per / raw:.2f}x ({s.n_chunks} chunks)"
    )
    assert per > raw  # the vector is inside, plus the text it stands for


def test_write_scaling_report() -> None:
    """Print every table and save the plot (runs last in this module)."""
    if not CURVES:
        pytest.skip("no curve was measured in this session")
    units = {k: k.rsplit("(", 1)[-1].split(")")[0].split(",")[0] for k in CURVES}
    report(CURVES, None if SMOKE else HERE / "scaling.png", "mlsys.rag scaling", units)
