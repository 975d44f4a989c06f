"""Property tests of ChunkExpander's budget (issue 23) over random documents, chunkings, hits, budgets.

Every test runs ``EXAMPLES`` hypothesis examples. Sizes are characters unless a test says otherwise;
characters are additive, so "would not fit" can be checked independently of the expander: the
size of a set of contexts is the number of document characters they cover.
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlsys.rag import (
    Chunk,
    ChunkExpander,
    ChunkTable,
    ExpandedContext,
    ExpansionReport,
    FixedSizeChunker,
    RecursiveChunker,
    SentenceChunker,
    SlidingWindowChunker,
    WhitespaceTokenLength,
)

EXAMPLES = 300
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Hits = list[tuple[str, int, float]]


@st.composite
def corpora(draw: Any) -> tuple[dict[str, str], ChunkTable]:
    """1-3 documents, each chunked by random cut points (no overlap) or by a library chunker
    (sliding windows overlap their neighbours)."""
    docs: dict[str, str] = {}
    chunks: list[Chunk] = []
    for i in range(draw(st.integers(1, 3))):
        doc_id = f"d{i}"
        n = draw(st.integers(1, 240))  # drawn first: st.text alone favours very short texts
        text = draw(st.text(alphabet="ab .\n", min_size=n, max_size=n))
        kind = draw(st.sampled_from(["cuts", "fixed", "sliding", "recursive", "sentence"]))
        size = draw(st.integers(3, 30))
        if kind == "cuts":
            cuts = sorted(draw(st.sets(st.integers(1, max(1, len(text) - 1)), max_size=12)) - {len(text)})
            bounds = [0, *cuts, len(text)]
            chunks += [
                Chunk(doc_id, k, text[a:b], a, b, b - a)
                for k, (a, b) in enumerate(itertools.pairwise(bounds))
            ]
        else:
            chunker = {
                "fixed": FixedSizeChunker(size=size),
                "sliding": SlidingWindowChunker(size=size, overlap=draw(st.sampled_from([0.0, 0.3, 0.5]))),
                "recursive": RecursiveChunker(size=size),
                "sentence": SentenceChunker(size=size),
            }[kind]
            chunks += chunker.chunk(text, doc_id=doc_id)
        docs[doc_id] = text
    return docs, ChunkTable(chunks)


def all_chunks(docs: dict[str, str], table: ChunkTable) -> list[Chunk]:
    return [c for d in docs for c in table.chunks(d)]


def draw_hits(data: Any, chunks: list[Chunk], min_size: int = 1, max_size: int = 10) -> Hits:
    """Hits given best first, with repeats; scores decrease with rank."""
    picks = data.draw(st.lists(st.sampled_from(chunks), min_size=min_size, max_size=max_size))
    return [(c.doc_id, c.seq, 1.0 / (i + 1)) for i, c in enumerate(picks)]


def covered(contexts: list[ExpandedContext] | tuple[ExpandedContext, ...], doc_id: str, seq: int) -> bool:
    return any(c.doc_id == doc_id and c.first_seq <= seq <= c.last_seq for c in contexts)


def chars_with(contexts: tuple[ExpandedContext, ...], extra: Chunk) -> int:
    """Characters covered by the contexts together with one more chunk (a chunk that touches or
    overlaps a context would be merged into it, so overlapping characters count once)."""
    spans = sorted(
        [(c.start, c.end) for c in contexts if c.doc_id == extra.doc_id] + [(extra.start, extra.end)]
    )
    total, reach = 0, -1
    for a, b in spans:
        total += max(0, b - max(a, reach))
        reach = max(reach, b)
    return total + sum(c.length for c in contexts if c.doc_id != extra.doc_id)


def check_report(
    report: ExpansionReport, docs: dict[str, str], table: ChunkTable, hits: Hits, ex: ChunkExpander
) -> None:
    """What every result must satisfy, whatever the budget and the unit."""
    ctx = report.contexts
    # every context's text is the document slice at its offsets, which are its chunks' offsets
    for c in ctx:
        chunks = table.chunks(c.doc_id)
        assert docs[c.doc_id][c.start : c.end] == c.text
        assert (c.start, c.end) == (chunks[c.first_seq].start, chunks[c.last_seq].end)
        assert c.length == ex.length(c.text)
    # the budget holds; contexts keep rank order (each context ranked by its best hit)
    assert report.used == sum(c.length for c in ctx)
    if ex.max_size is not None:
        assert report.used <= ex.max_size
    assert [c.rank for c in ctx] == sorted({c.rank for c in ctx})
    # contexts of one document neither overlap nor touch (those are merged)
    for i, a in enumerate(ctx):
        for b in ctx[i + 1 :]:
            assert a.doc_id != b.doc_id or a.end < b.start or b.end < a.start
    # one outcome per distinct hit at its first rank; hit_seqs / rank / score agree with the outcomes
    first: dict[tuple[str, int], tuple[int, float]] = {}
    for rank, (d, s, score) in enumerate(hits, start=1):
        first.setdefault((d, s), (rank, score))
    assert [(h.doc_id, h.seq, h.rank, h.score) for h in report.hits] == [(*k, *v) for k, v in first.items()]
    for i, c in enumerate(ctx):
        inside = [h for h in report.hits if h.context == i]
        assert inside and c.hit_seqs == tuple(sorted(h.seq for h in inside))
        assert (c.rank, c.score) == (inside[0].rank, inside[0].score)
    for h in report.hits:
        assert h.size == ex.length(table.chunks(h.doc_id)[h.seq].text)
        if h.status == "dropped":
            assert h.context is None and not covered(ctx, h.doc_id, h.seq)
            assert ex.max_size is not None
            assert h.reason == ("too_large" if h.size > ex.max_size else "budget_spent")
        else:
            c = ctx[h.context] if h.context is not None else None
            assert c is not None and c.doc_id == h.doc_id and c.first_seq <= h.seq <= c.last_seq
            n = len(table.chunks(h.doc_id))
            assert h.missing_before == max(0, c.first_seq - max(0, h.seq - ex.before))
            assert h.missing_after == max(0, min(n - 1, h.seq + ex.after) - c.last_seq)
            cut = h.missing_before or h.missing_after
            assert (h.status, h.reason) == (("trimmed", "budget") if cut else ("kept", None))
    assert report.budget_limited == bool(report.dropped or report.trimmed)
    assert ex.max_size is not None or not report.budget_limited


@SETTINGS
@given(
    corpus=corpora(),
    data=st.data(),
    before=st.integers(0, 3),
    after=st.integers(0, 3),
    budget=st.one_of(st.none(), st.integers(1, 150)),
    unit=st.sampled_from(["chars", "words"]),
)
def test_budget_rank_order_offsets_and_the_best_hit(
    corpus: tuple[dict[str, str], ChunkTable],
    data: Any,
    before: int,
    after: int,
    budget: int | None,
    unit: str,
) -> None:
    """Budget never exceeded, rank order, exact offsets, a consistent report; and whenever the
    best-ranked hit fits the budget on its own, it is in the first context (words are not additive:
    a merged text may count fewer words than its parts, so this also runs on them)."""
    docs, table = corpus
    hits = draw_hits(data, all_chunks(docs, table))
    ex = ChunkExpander(before=before, after=after, max_size=budget, length=unit)
    report = ex.expand_with_report(hits, table)
    assert ex.expand(hits, table) == list(report.contexts)
    check_report(report, docs, table, hits, ex)
    d, s, _ = hits[0]
    size = (
        (WhitespaceTokenLength()(table.chunks(d)[s].text))
        if unit == "words"
        else len(table.chunks(d)[s].text)
    )
    if budget is None or size <= budget:
        best = report.contexts[0]
        assert (best.doc_id, best.rank) == (d, 1) and s in best.hit_seqs
        assert report.hits[0].status != "dropped"


@SETTINGS
@given(
    corpus=corpora(),
    data=st.data(),
    before=st.integers(0, 3),
    after=st.integers(0, 3),
    budget=st.integers(1, 150),
)
def test_every_cut_is_forced_by_the_budget(
    corpus: tuple[dict[str, str], ChunkTable], data: Any, before: int, after: int, budget: int
) -> None:
    """Nothing is left out that would have fitted: a dropped hit, or the next neighbour on a cut side
    of a trimmed hit, would not fit next to the contexts returned."""
    docs, table = corpus
    hits = draw_hits(data, all_chunks(docs, table))
    ex = ChunkExpander(before=before, after=after, max_size=budget)
    report = ex.expand_with_report(hits, table)
    check_report(report, docs, table, hits, ex)
    for h in report.hits:
        chunks = table.chunks(h.doc_id)
        if h.status == "dropped":
            assert chars_with(report.contexts, chunks[h.seq]) > budget
        elif h.status == "trimmed":
            assert h.context is not None
            c = report.contexts[h.context]
            if h.missing_before:
                assert chars_with(report.contexts, chunks[c.first_seq - 1]) > budget
            if h.missing_after:
                assert chars_with(report.contexts, chunks[c.last_seq + 1]) > budget


def reference_expand(
    docs: dict[str, str],
    table: ChunkTable,
    hits: Hits,
    before: int,
    after: int,
    budget: int | None,
    unit: str,
) -> list[tuple[str, int, int, tuple[int, ...], int]]:
    """The documented greedy, written naively (selected chunk sets, everything recomputed):
    ``(doc_id, first_seq, last_seq, hit_seqs, rank)`` per context, best-ranked first."""
    length: Any = WhitespaceTokenLength() if unit == "words" else len
    refs: list[tuple[str, int, int]] = []
    for rank, (d, s, _) in enumerate(hits, start=1):
        if all((d, s) != (rd, rs) for rd, rs, _ in refs):
            refs.append((d, s, rank))
    selected: dict[str, set[int]] = {d: set() for d, _, _ in refs}

    def spans(sel: dict[str, set[int]]) -> list[tuple[str, int, int]]:
        out = []
        for d, seqs in sel.items():
            chunks = table.chunks(d)
            for s in sorted(seqs):
                if out and out[-1][0] == d and chunks[s].start <= chunks[out[-1][2]].end:
                    out[-1] = (d, out[-1][1], s)
                else:
                    out.append((d, s, s))
        return out

    def fits(sel: dict[str, set[int]]) -> bool:
        sizes = [
            length(docs[d][table.chunks(d)[lo].start : table.chunks(d)[hi].end]) for d, lo, hi in spans(sel)
        ]
        return budget is None or sum(sizes) <= budget

    def cover(sel: dict[str, set[int]], d: str, s: int) -> bool:
        return any(sd == d and lo <= s <= hi for sd, lo, hi in spans(sel))

    def add(d: str, s: int) -> bool:
        if cover(selected, d, s):
            return True
        trial = {k: set(v) for k, v in selected.items()}
        trial[d].add(s)
        if fits(trial):
            selected[d].add(s)
            return True
        return False

    admitted = [(d, s) for d, s, _ in refs if add(d, s)]
    blocked: set[tuple[int, int]] = set()
    for dist in range(1, max(before, after) + 1):
        for i, (d, s) in enumerate(admitted):
            for side, reach in ((-1, before), (1, after)):
                if dist <= reach and (i, side) not in blocked:
                    t = s + side * dist
                    if not 0 <= t < len(table.chunks(d)) or not add(d, t):
                        blocked.add((i, side))
    out = []
    for d, lo, hi in spans(selected):
        inside = [(s, r) for rd, s, r in refs if rd == d and lo <= s <= hi]
        out.append((d, lo, hi, tuple(sorted(s for s, _ in inside)), min(r for _, r in inside)))
    return sorted(out, key=lambda c: c[4])


@SETTINGS
@given(
    corpus=corpora(),
    data=st.data(),
    before=st.integers(0, 3),
    after=st.integers(0, 3),
    budget=st.one_of(st.none(), st.integers(1, 150)),
    unit=st.sampled_from(["chars", "words"]),
)
def test_matches_the_documented_greedy(
    corpus: tuple[dict[str, str], ChunkTable],
    data: Any,
    before: int,
    after: int,
    budget: int | None,
    unit: str,
) -> None:
    """Hits best first while they fit, then neighbours nearest first (hits in rank order, the
    ``before`` side first), a side stopping at its first neighbour that does not fit."""
    docs, table = corpus
    hits = draw_hits(data, all_chunks(docs, table))
    ctx = ChunkExpander(before=before, after=after, max_size=budget, length=unit).expand(hits, table)
    got = [(c.doc_id, c.first_seq, c.last_seq, c.hit_seqs, c.rank) for c in ctx]
    assert got == reference_expand(docs, table, hits, before, after, budget, unit)


def fills_the_budget(hits: Hits, docs: dict[str, str], table: ChunkTable, budget: int) -> bool:
    """``hits`` fill the budget: the hits alone (no neighbours) leave room for no further chunk.

    Every chunk of every document is either inside a hits-only context or would not fit next to
    them, so no hit appended later can be admitted, nor can any neighbour be added.
    """
    alone = ChunkExpander(before=0, after=0, max_size=budget).expand_with_report(hits, table).contexts
    return all(
        covered(alone, c.doc_id, c.seq) or chars_with(alone, c) > budget for c in all_chunks(docs, table)
    )


@SETTINGS
@given(
    corpus=corpora(),
    data=st.data(),
    before=st.integers(0, 3),
    after=st.integers(0, 3),
    budget=st.integers(1, 150),
)
def test_appended_lower_ranked_hits_do_not_change_a_filled_budget(
    corpus: tuple[dict[str, str], ChunkTable], data: Any, before: int, after: int, budget: int
) -> None:
    """After a budget-filling set of hits (:func:`fills_the_budget`), appending any number of
    lower-ranked hits leaves every context as it was: same span, text, rank and score. An appended
    hit that lies inside a context is listed in its ``hit_seqs``; nothing else changes."""
    docs, table = corpus
    chunks = all_chunks(docs, table)
    head = draw_hits(data, chunks, max_size=6)
    # extend the head by every chunk in a random order (that set fills any budget) and keep the
    # shortest prefix that fills it (filling is monotone in the prefix: binary search)
    order = data.draw(st.permutations(chunks))
    candidates = head + [(c.doc_id, c.seq, 0.01 / (i + 1)) for i, c in enumerate(order)]
    lo, hi = len(head), len(candidates)
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fills_the_budget(candidates[:mid], docs, table, budget) else (mid + 1, hi)
    filled = candidates[:lo]
    assert fills_the_budget(filled, docs, table, budget)

    ex = ChunkExpander(before=before, after=after, max_size=budget)
    base = ex.expand_with_report(filled, table)
    appended = [(d, s, score * 1e-3) for d, s, score in draw_hits(data, chunks, min_size=0, max_size=12)]
    for n in sorted({0, len(appended) // 2, len(appended)}):
        more = ex.expand_with_report(filled + appended[:n], table)
        check_report(more, docs, table, filled + appended[:n], ex)
        assert len(more.contexts) == len(base.contexts)
        for a, b in zip(base.contexts, more.contexts):
            assert (a.doc_id, a.start, a.end, a.text, a.first_seq, a.last_seq, a.rank, a.score, a.length) == (
                b.doc_id,
                b.start,
                b.end,
                b.text,
                b.first_seq,
                b.last_seq,
                b.rank,
                b.score,
                b.length,
            )
            extra = set(b.hit_seqs) - set(a.hit_seqs)
            assert set(a.hit_seqs) <= set(b.hit_seqs)
            assert extra <= {s for d, s, _ in appended[:n] if d == a.doc_id}
        # the outcomes of the filled set are unchanged too
        assert more.hits[: len(base.hits)] == base.hits
