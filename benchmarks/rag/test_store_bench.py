"""Incremental re-embedding: editing 1% of a chunked corpus vs re-indexing it, side by side.

Corpus: SciFact (5,183 abstracts) when present, else generated; ``RecursiveChunker(size=128,
length="words")``; the hashing embedder (so the figure measures the store, not a model: with
MiniLM the embedding share of the time only grows). A content edit is appended to 1% of the
documents; the store re-chunks them and embeds only chunks whose content hash changed. Reported:
chunks embedded vs total, and the time of the incremental upsert vs a full rebuild of a fresh store
(interleaved, medians). Smoke mode: 300 generated documents, one round.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from conftest import SMOKE, size
from mlsys.rag import Document, DocumentStore, HashingEmbedder, RecursiveChunker, beir_documents

ROUNDS = size(3, 1)


def _docs(dataset: Callable[[str], Any]) -> tuple[list[Document], str]:
    if not SMOKE:
        try:
            from mlsys.common.data import load_beir

            return beir_documents(load_beir(dataset("scifact")).corpus), "SciFact (5,183 abstracts)"
        except pytest.skip.Exception:
            pass
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(2000)]
    docs = [
        Document(f"d{i}", ". ".join(" ".join(rng.choice(words, size=12).tolist()) for _ in range(20)) + ".")
        for i in range(size(5000, 300))
    ]
    return docs, f"generated corpus ({len(docs)} documents)"


def test_incremental_upsert_vs_rebuild(benchmark: Any, dataset: Callable[[str], Any]) -> None:
    docs, what = _docs(dataset)
    chunker = RecursiveChunker(size=128, length="words")
    rng = np.random.default_rng(1)
    n_edit = max(1, len(docs) // 100)

    def build() -> DocumentStore:
        store = DocumentStore(HashingEmbedder(dim=256), chunker=chunker, progress=False)
        store.upsert(docs)
        return store

    store = build()
    t_inc, t_full, embedded = [], [], []
    for r in range(ROUNDS):
        picks = rng.choice(len(docs), size=n_edit, replace=False)
        edited = [Document(docs[i].doc_id, docs[i].text + f" Erratum {r}.", docs[i].metadata) for i in picks]
        emb = store.embedder
        assert isinstance(emb, HashingEmbedder)
        before = emb.n_encoded
        t = time.perf_counter()
        report = store.upsert(edited)
        t_inc.append(time.perf_counter() - t)
        embedded.append(report.chunks_embedded)
        # the model saw each distinct new text once (identical new chunks are encoded once)
        assert emb.n_encoded - before <= report.chunks_embedded and report.updated == n_edit
        t = time.perf_counter()
        build()
        t_full.append(time.perf_counter() - t)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    inc, full = statistics.median(t_inc), statistics.median(t_full)
    benchmark.extra_info["ratios"] = {"upsert_1pct_vs_rebuild": inc / full}
    benchmark.extra_info["chunks_embedded"] = float(statistics.median(embedded))
    print(
        f"\nIncremental upsert on {what}: {store.n_chunks} chunks of <= 128 words; "
        f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.2f}\n"
        f"  edit {n_edit} documents (1%): {statistics.median(embedded):.0f} chunks embedded of {store.n_chunks} "
        f"({100 * statistics.median(embedded) / store.n_chunks:.2f}%)\n"
        f"  incremental upsert {inc * 1e3:.0f} ms vs full rebuild {full * 1e3:.0f} ms: {full / inc:.0f}x faster"
    )
    # only the edited documents' last chunks change (the erratum is appended)
    assert max(embedded) <= 2 * n_edit
    if not SMOKE:
        assert full / inc >= 5
