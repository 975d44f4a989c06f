"""Chunk expansion: properties of the windows and the boundary failure it exists for."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlsys.common.errors import InvalidInputError
from mlsys.rag import (
    ChunkExpander,
    ChunkTable,
    DocumentStore,
    FixedSizeChunker,
    HashingEmbedder,
    SentenceChunker,
    SlidingWindowChunker,
)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def corpus(n_docs: int, seed: int) -> tuple[dict[str, str], ChunkTable]:
    rng = np.random.default_rng(seed)
    docs = {
        f"d{i}": "".join(rng.choice(list("abcde "), size=int(rng.integers(5, 120)))) for i in range(n_docs)
    }
    chunker = SlidingWindowChunker(size=10, overlap=0.3) if seed % 2 else FixedSizeChunker(size=8)
    chunks = [c for d, t in docs.items() for c in chunker.chunk(t, doc_id=d)]
    return docs, ChunkTable(chunks)


@SETTINGS
@given(
    seed=st.integers(0, 10_000),
    picks=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 20)), min_size=1, max_size=12),
    before=st.integers(0, 2),
    after=st.integers(0, 2),
    budget=st.one_of(st.none(), st.integers(1, 200)),
)
def test_expansion_windows_ordered_disjoint_within_budget(
    seed: int, picks: list[tuple[int, int]], before: int, after: int, budget: int | None
) -> None:
    docs, table = corpus(4, seed)
    hits = []
    for d, s in picks:
        n = len(table.chunks(f"d{d}"))
        hits.append((f"d{d}", s % n, 1.0))
    ctx = ChunkExpander(before=before, after=after, max_size=budget).expand(hits, table)
    # exact text, rank order, budget
    for c in ctx:
        assert docs[c.doc_id][c.start : c.end] == c.text
        assert c.length == len(c.text)
        assert c.first_seq <= min(c.hit_seqs) <= max(c.hit_seqs) <= c.last_seq
    assert [c.rank for c in ctx] == sorted(c.rank for c in ctx)
    assert len({c.rank for c in ctx}) == len(ctx)
    if budget is not None:
        assert sum(c.length for c in ctx) <= budget
    # windows of one document are disjoint and do not touch (touching ones were merged)
    for a, b in itertools.combinations(ctx, 2):
        if a.doc_id == b.doc_id:
            assert a.end < b.start or b.end < a.start
    # without a budget, every hit is covered by exactly one window with its neighbours
    if budget is None:
        for d, s, _ in hits:
            n = len(table.chunks(d))
            cover = [c for c in ctx if c.doc_id == d and c.first_seq <= s <= c.last_seq]
            assert len(cover) == 1
            assert cover[0].first_seq <= max(0, s - before) and cover[0].last_seq >= min(n - 1, s + after)
            assert s in cover[0].hit_seqs


def test_budget_trims_neighbours_before_dropping_hits() -> None:
    table = ChunkTable(FixedSizeChunker(size=4).chunk("aaaabbbbccccddddeeee", doc_id="d"))
    (c,) = ChunkExpander(before=2, after=2, max_size=8).expand([("d", 2)], table)
    assert c.hit_seqs == (2,) and c.length <= 8 and "cccc" in c.text
    assert ChunkExpander(max_size=3).expand([("d", 2)], table) == []


def test_bad_expander_config_and_hits() -> None:
    with pytest.raises(InvalidInputError):
        ChunkExpander(before=-1)
    with pytest.raises(InvalidInputError):
        ChunkExpander(max_size=0)
    table = ChunkTable(FixedSizeChunker(size=4).chunk("aaaabbbb", doc_id="d"))
    with pytest.raises(InvalidInputError, match="has 2 chunks"):
        ChunkExpander().expand([("d", 5)], table)


FILLER = [
    "The cafeteria menu changes every Monday and lists vegetarian options first.",
    "Parking permits are renewed in January through the facilities portal.",
    "The library extends opening hours during the examination period.",
    "Printer toner is ordered by the office manager once a month.",
]


def test_answer_spanning_two_chunks_needs_expansion() -> None:
    policy = (
        "Several internal documents were revised this year. The procurement policy was updated in Q3 "
        "after the audit. The new approval threshold is 500 units for every single purchase."
    )
    store = DocumentStore(HashingEmbedder(dim=256), chunker=SentenceChunker(size=100), progress=False)
    store.upsert({"policy": policy, **{f"filler{i}": t for i, t in enumerate(FILLER)}})
    chunks = store.chunks("policy")
    assert len(chunks) == 3
    assert "updated in Q3" in chunks[1].text and "500 units" in chunks[2].text
    question = "how was the procurement policy updated after the audit"
    for retriever in (store.bm25_retriever(), store.dense_retriever(), store.hybrid_retriever()):
        top = retriever.retrieve([question], k=1)[0]
        assert top.hits[0].doc_id == "policy" and top.hits[0].seq == 1
        plain = top.hits[0].text or ""
        assert "updated in Q3" in plain and "500 units" not in plain  # half an answer
        (ctx,) = ChunkExpander(before=0, after=1).expand(top, store)
        assert "updated in Q3" in ctx.text and "500 units" in ctx.text  # both halves
        assert ctx.text == policy[ctx.start : ctx.end]
