"""Chunk expansion: give the reader each hit together with its neighbouring chunks.

A fact split across a chunk boundary ("the policy was updated in Q3" | "the new threshold is 500
units") is only answerable from both halves. For every hit, :class:`ChunkExpander` takes the
chunks ``seq - before .. seq + after`` of the same document, merges windows of one document that
overlap or touch, de-duplicates, keeps the order of the best-ranked hit in each window, and caps the
total size with a budget.

The budget is spent by rank, never all-or-nothing per window: the hits are admitted best first
while they fit, then their neighbours are added nearest first, so the best-ranked hit is in the
result whenever it fits the budget on its own. :meth:`ChunkExpander.expand_with_report` says what
the budget cost (which hits were dropped, whose neighbours were cut, and why).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from mlsys.common._display import DisplayTable, TabularDisplay
from mlsys.common.errors import InvalidInputError, UnknownIdError
from mlsys.rag._chunk import Chunk, LengthFunction, resolve_length
from mlsys.rag._retrievers import Hit, RetrievalResult

__all__ = [
    "ChunkExpander",
    "ChunkTable",
    "ExpandedContext",
    "ExpansionReport",
    "ExpansionSource",
    "HitOutcome",
]


@runtime_checkable
class ExpansionSource(Protocol):
    """Where neighbours come from (a :class:`~mlsys.rag.DocumentStore` or a :class:`ChunkTable`)."""

    def chunks(self, doc_id: str) -> list[Chunk]:
        """The chunks of one document, in order."""
        ...


class ChunkTable:
    """An in-memory :class:`ExpansionSource` from chunks (e.g. a chunker's output).

    Example:
        >>> from mlsys.rag import FixedSizeChunker
        >>> table = ChunkTable(FixedSizeChunker(size=3).chunk("abcdefg", doc_id="d"))
        >>> [c.text for c in table.chunks("d")]
        ['abc', 'def', 'g']
    """

    def __init__(self, chunks: Iterable[Chunk]) -> None:
        self._by_doc: dict[str, list[Chunk]] = {}
        try:
            if isinstance(chunks, (str, bytes)):
                raise TypeError("a single string")
            items = list(chunks)
        except TypeError as exc:
            raise InvalidInputError(
                f"chunks must be an iterable of Chunk, got {type(chunks).__name__}"
            ) from exc
        for c in items:
            if not isinstance(c, Chunk):
                raise InvalidInputError(f"chunks must hold Chunk objects, got a {type(c).__name__}")
            self._by_doc.setdefault(c.doc_id, []).append(c)
        for doc_id, cs in self._by_doc.items():
            cs.sort(key=lambda c: c.seq)
            if [c.seq for c in cs] != list(range(len(cs))):
                raise InvalidInputError(f"chunks of document {doc_id!r} must have seq 0..n-1 exactly once")

    def chunks(self, doc_id: str) -> list[Chunk]:
        """The chunks of one document, in order."""
        if doc_id not in self._by_doc:
            raise UnknownIdError(f"unknown document id {doc_id!r}")
        return self._by_doc[doc_id]


@dataclass(frozen=True)
class ExpandedContext:
    """A contiguous span of one document handed to the reader.

    Args:
        doc_id: the document.
        start, end: character offsets; ``text == document[start:end]``.
        text: the span's text.
        first_seq, last_seq: the chunks it covers.
        hit_seqs: the hits (distinct retrieved chunks) inside it.
        rank: best (1-based) rank among those hits; contexts are returned in this order.
        score: the best-ranked hit's score.
        length: size in the expander's unit.
    """

    doc_id: str
    start: int
    end: int
    text: str
    first_seq: int
    last_seq: int
    hit_seqs: tuple[int, ...]
    rank: int
    score: float
    length: int


HitStatus = Literal["kept", "trimmed", "dropped"]
OutcomeReason = Literal["budget", "too_large", "budget_spent"]


@dataclass(frozen=True)
class HitOutcome:
    """What the budget did to one distinct hit (a repeated ``(doc_id, seq)`` counts once, best rank).

    Args:
        doc_id, seq: the hit's chunk.
        rank: its (1-based) position in the hits given to the expander.
        score: its score.
        size: the chunk's own size in the expander's unit.
        status: ``"kept"`` (in a context with all its requested neighbours), ``"trimmed"`` (in a
            context, but the budget cut some of its neighbours) or ``"dropped"`` (in no context).
        reason: ``None`` when kept; ``"budget"`` when trimmed; when dropped, ``"too_large"`` (the
            chunk alone is larger than ``max_size``) or ``"budget_spent"`` (it fits alone, but not
            next to the better-ranked hits already admitted).
        context: index of its context in :attr:`ExpansionReport.contexts` (``None`` when dropped).
        missing_before, missing_after: requested neighbours (within the document) that the budget
            left out on each side.

    Example:
        >>> HitOutcome("d", 3, 2, 0.5, 120, "dropped", "budget_spent", None, 0, 0).chunk_id
        'd#3'
    """

    doc_id: str
    seq: int
    rank: int
    score: float
    size: int
    status: HitStatus
    reason: OutcomeReason | None
    context: int | None
    missing_before: int
    missing_after: int

    @property
    def chunk_id(self) -> str:
        """``"<doc_id>#<seq>"``."""
        return f"{self.doc_id}#{self.seq}"


@dataclass(frozen=True)
class ExpansionReport(TabularDisplay):
    """The contexts of :meth:`ChunkExpander.expand_with_report` and what the budget cost.

    An empty :attr:`contexts` with an empty :attr:`dropped` means there was nothing to expand
    (no hits); with a non-empty :attr:`dropped` it means nothing fitted the budget.

    Args:
        contexts: the contexts, best-ranked first (what :meth:`ChunkExpander.expand` returns).
        hits: one outcome per distinct hit, in rank order.
        max_size: the budget (``None``: no cap).
        used: total size of the contexts, in ``unit``.
        unit: the name of the expander's length unit (``"chars"``, ``"words"``, ...).

    In a notebook it displays as one row per hit (status, reason, the neighbours cut) under the
    :meth:`summary` line; :meth:`to_pandas` gives that table.

    Example:
        >>> from mlsys.rag import FixedSizeChunker
        >>> table = ChunkTable(FixedSizeChunker(size=4).chunk("aaaabbbbcccc", doc_id="d"))
        >>> report = ChunkExpander(max_size=6).expand_with_report([("d", 1), ("d", 2)], table)
        >>> [c.text for c in report.contexts], report.used
        (['bbbb'], 4)
        >>> [(h.chunk_id, h.status, h.reason) for h in report.hits]
        [('d#1', 'trimmed', 'budget'), ('d#2', 'dropped', 'budget_spent')]
        >>> print(report.summary())
        1 of 2 hits in 1 context, 4 of 6 chars; trimmed: d#1 (...); dropped: d#2 (rank 2, budget spent)
    """

    contexts: tuple[ExpandedContext, ...]
    hits: tuple[HitOutcome, ...]
    max_size: int | None
    used: int
    unit: str

    _pandas_extra = "mlsys-rag[pandas]"

    def __repr__(self) -> str:
        n_in = sum(h.status != "dropped" for h in self.hits)
        cap = "no cap" if self.max_size is None else f"of {self.max_size}"
        return (
            f"ExpansionReport({n_in} of {len(self.hits)} hits in {len(self.contexts)} contexts, "
            f"{self.used} {cap} {self.unit}, trimmed={len(self.trimmed)}, dropped={len(self.dropped)})"
        )

    def _display_table(self) -> DisplayTable:
        cols = (
            "chunk_id",
            "rank",
            "score",
            "size",
            "status",
            "reason",
            "context",
            "missing_before",
            "missing_after",
        )
        return DisplayTable(
            self.summary(),
            cols,
            tuple(tuple(getattr(h, c) for c in cols) for h in self.hits),
            index="chunk_id",
            details=(("max_size", self.max_size), ("used", self.used), ("unit", self.unit)),
        )

    @property
    def dropped(self) -> tuple[HitOutcome, ...]:
        """Hits in no context, best-ranked first."""
        return tuple(h for h in self.hits if h.status == "dropped")

    @property
    def trimmed(self) -> tuple[HitOutcome, ...]:
        """Hits in a context whose neighbours the budget cut, best-ranked first."""
        return tuple(h for h in self.hits if h.status == "trimmed")

    @property
    def budget_limited(self) -> bool:
        """Whether the budget changed anything (a hit dropped or a neighbour cut)."""
        return any(h.status != "kept" for h in self.hits)

    def summary(self) -> str:
        """One line for logs: how many hits made it, the budget used, and each cut with its reason."""
        n_in = sum(h.status != "dropped" for h in self.hits)
        n_ctx = len(self.contexts)
        used = (
            f"{self.used} {self.unit} (no cap)"
            if self.max_size is None
            else f"{self.used} of {self.max_size} {self.unit}"
        )
        parts = [f"{n_in} of {len(self.hits)} hits in {n_ctx} context{'' if n_ctx == 1 else 's'}, {used}"]
        if self.trimmed:
            cuts = ", ".join(
                f"{h.chunk_id} (rank {h.rank}, {h.missing_before} before, {h.missing_after} after cut)"
                for h in self.trimmed
            )
            parts.append(f"trimmed: {cuts}")
        if self.dropped:
            why = {"too_large": "larger than the budget alone", "budget_spent": "budget spent"}
            drops = ", ".join(f"{h.chunk_id} (rank {h.rank}, {why[str(h.reason)]})" for h in self.dropped)
            parts.append(f"dropped: {drops}")
        return "; ".join(parts)


def _hit_key(h: Any) -> tuple[str, int, float]:
    if isinstance(h, Hit):
        if h.doc_id is None or h.seq is None:
            raise InvalidInputError(
                f"hit {h.id} has no doc_id/seq; expand hits of a retriever built on a DocumentStore"
            )
        return h.doc_id, h.seq, h.score
    if isinstance(h, Chunk):
        return h.doc_id, h.seq, 0.0
    if isinstance(h, tuple) and len(h) in (2, 3):
        seq = h[1]
        if isinstance(seq, bool | np.bool_) or not isinstance(seq, int | np.integer):
            raise InvalidInputError(f"a hit's seq must be an int chunk position, got {seq!r} in {h!r}")
        score = h[2] if len(h) == 3 else 0.0
        if isinstance(score, bool | np.bool_) or not isinstance(
            score, int | float | np.integer | np.floating
        ):
            raise InvalidInputError(f"a hit's score must be a number, got {score!r} in {h!r}")
        if not isinstance(h[0], str):
            raise InvalidInputError(f"a hit's doc_id must be a str, got {h[0]!r}")
        return h[0], int(seq), float(score)
    raise InvalidInputError(
        f"a hit must be a Hit, a Chunk or a (doc_id, seq[, score]) tuple, got {type(h).__name__}"
    )


@dataclass(frozen=True)
class _HitRef:
    doc_id: str
    seq: int
    rank: int
    score: float


class _DocState:
    """The selected chunks of one document: disjoint ranges ``(lo, hi)`` of seqs whose character
    spans neither overlap nor touch (those are merged into one range), each with its size cached."""

    def __init__(self, chunks: Sequence[Chunk], length: LengthFunction) -> None:
        self.chunks = chunks
        self.text = _Spliced(chunks)
        self.length = length
        self.ranges: list[tuple[int, int]] = []
        self.cost = 0
        self._sizes: dict[tuple[int, int], int] = {}

    def span(self, lo: int, hi: int) -> tuple[int, int]:
        return self.chunks[lo].start, self.chunks[hi].end

    def size(self, lo: int, hi: int) -> int:
        key = (lo, hi)
        if key not in self._sizes:
            start, end = self.span(lo, hi)
            self._sizes[key] = int(self.length(self.text[start:end]))
        return self._sizes[key]

    def covering(self, seq: int) -> tuple[int, int] | None:
        for lo, hi in self.ranges:
            if lo <= seq <= hi:
                return lo, hi
        return None

    def with_seq(self, seq: int) -> list[tuple[int, int]]:
        """The ranges after selecting ``seq``: merged where seqs are adjacent or characters touch."""
        rs = sorted([*self.ranges, (seq, seq)])
        out = [rs[0]]
        for lo, hi in rs[1:]:
            plo, phi = out[-1]
            if lo <= phi + 1 or self.chunks[lo].start <= self.chunks[phi].end:
                out[-1] = (plo, max(phi, hi))
            else:
                out.append((lo, hi))
        return out


@dataclass(frozen=True)
class ChunkExpander:
    """Expand hits to their neighbours, merge, de-duplicate, keep rank order, cap by size.

    Args:
        before: chunks to add before each hit (N-1, N-2, ...).
        after: chunks to add after each hit.
        max_size: budget for all contexts together, in ``length`` units, each context measured on
            its merged text (``None``: no cap). The budget is spent by rank: first the hits, best
            first, each admitted if it fits next to those already admitted (a hit that does not
            fit is dropped and later hits may still be admitted); then the neighbours, nearest
            first (distance 1 for every admitted hit in rank order, then distance 2, ...), each
            added if it fits, ``before`` side first. A window whose hits do not all fit is thereby
            trimmed by rank and split where the kept hits are no longer contiguous; the
            best-ranked hit is in the result whenever it fits on its own.
            :meth:`expand_with_report` says which hits were dropped or trimmed and why.
        length: ``"chars"``, ``"words"``, ``"minilm"`` or a :class:`LengthFunction`.

    Example:
        >>> from mlsys.rag import FixedSizeChunker
        >>> table = ChunkTable(FixedSizeChunker(size=4).chunk("aaaabbbbccccdddd", doc_id="d"))
        >>> ctx = ChunkExpander(before=1, after=1).expand([("d", 1), ("d", 3)], table)
        >>> [(c.text, c.hit_seqs) for c in ctx]
        [('aaaabbbbccccdddd', (1, 3))]
        >>> ctx = ChunkExpander(before=1, after=1, max_size=10).expand([("d", 1), ("d", 2)], table)
        >>> [(c.text, c.hit_seqs) for c in ctx]  # both hits fit, their neighbours do not
        [('bbbbcccc', (1, 2))]
    """

    before: int = 1
    after: int = 1
    max_size: int | None = None
    length: Any = "chars"

    def __post_init__(self) -> None:
        for name in ("before", "after"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise InvalidInputError(f"{name} must be a non-negative int, got {v!r}")
        if self.max_size is not None and (
            isinstance(self.max_size, bool) or not isinstance(self.max_size, int) or self.max_size <= 0
        ):
            raise InvalidInputError(f"max_size must be a positive int or None, got {self.max_size!r}")
        object.__setattr__(self, "length", resolve_length(self.length))

    def expand(
        self, hits: RetrievalResult | Sequence[Hit | Chunk | tuple[Any, ...]], source: ExpansionSource
    ) -> list[ExpandedContext]:
        """Expanded, merged, budgeted contexts for ``hits`` (given best first).

        The contexts of :meth:`expand_with_report`; use that to learn what the budget left out.
        """
        return list(self.expand_with_report(hits, source).contexts)

    def expand_with_report(
        self, hits: RetrievalResult | Sequence[Hit | Chunk | tuple[Any, ...]], source: ExpansionSource
    ) -> ExpansionReport:
        """The contexts for ``hits`` (given best first) and what the budget cost each hit.

        Example:
            >>> from mlsys.rag import FixedSizeChunker
            >>> table = ChunkTable(FixedSizeChunker(size=4).chunk("aaaabbbbcccc", doc_id="d"))
            >>> report = ChunkExpander(max_size=3).expand_with_report([("d", 1)], table)
            >>> report.contexts, [(h.status, h.reason, h.size) for h in report.hits]
            ((), [('dropped', 'too_large', 4)])
        """
        try:
            if isinstance(hits, (str, bytes)):
                raise TypeError("a single string")
            items = list(hits.hits if isinstance(hits, RetrievalResult) else hits)
        except TypeError as exc:
            raise InvalidInputError(
                f"hits must be a RetrievalResult or a sequence of hits, got {type(hits).__name__}"
            ) from exc
        length: LengthFunction = self.length
        docs: dict[str, _DocState] = {}
        refs: list[_HitRef] = []
        seen: set[tuple[str, int]] = set()
        for rank, h in enumerate(items, start=1):
            doc_id, seq, score = _hit_key(h)
            if (doc_id, seq) in seen:
                continue
            seen.add((doc_id, seq))
            if doc_id not in docs:
                docs[doc_id] = _DocState(source.chunks(doc_id), length)
            n = len(docs[doc_id].chunks)
            if not 0 <= seq < n:
                raise InvalidInputError(f"hit ({doc_id!r}, seq {seq}) but the document has {n} chunks")
            refs.append(_HitRef(doc_id, seq, rank, score))

        total = 0

        def select(doc: _DocState, seq: int) -> bool:
            """Select chunk ``seq`` if the contexts then still fit the budget."""
            nonlocal total
            if doc.covering(seq) is not None:
                return True
            ranges = doc.with_seq(seq)
            if self.max_size is None:
                doc.ranges = ranges
                return True
            cost = sum(doc.size(lo, hi) for lo, hi in ranges)
            if total - doc.cost + cost > self.max_size:
                return False
            doc.ranges, total, doc.cost = ranges, total - doc.cost + cost, cost
            return True

        # 1. the hits, best first, each if it fits next to those already admitted
        admitted = [r for r in refs if select(docs[r.doc_id], r.seq)]
        # 2. their neighbours, nearest first; a side stops growing at its first neighbour that does
        #    not fit, so every context stays one contiguous span around its hits
        open_sides = {(i, side) for i in range(len(admitted)) for side in (-1, 1)}
        # no neighbour lies further than the longest document: the loop is bounded by what exists,
        # not by the requested window (before/after of 10**12 must not spin)
        longest = max((len(d.chunks) for d in docs.values()), default=0)
        for dist in range(1, min(max(self.before, self.after), longest) + 1):
            if not open_sides:
                break
            for i, r in enumerate(admitted):
                doc = docs[r.doc_id]
                for side, reach in ((-1, self.before), (1, self.after)):
                    if (i, side) not in open_sides:
                        continue
                    if dist > reach:
                        open_sides.discard((i, side))
                        continue
                    seq = r.seq + side * dist
                    if not 0 <= seq < len(doc.chunks) or not select(doc, seq):
                        open_sides.discard((i, side))

        return self._report(refs, docs)

    def _report(self, refs: list[_HitRef], docs: dict[str, _DocState]) -> ExpansionReport:
        by_range: dict[tuple[str, int, int], list[_HitRef]] = {}
        for r in refs:
            cover = docs[r.doc_id].covering(r.seq)
            if cover is not None:
                by_range.setdefault((r.doc_id, *cover), []).append(r)
        contexts: list[ExpandedContext] = []
        for (doc_id, lo, hi), rs in sorted(by_range.items(), key=lambda kv: kv[1][0].rank):
            doc = docs[doc_id]
            start, end = doc.span(lo, hi)
            best = rs[0]  # refs are in rank order
            contexts.append(
                ExpandedContext(
                    doc_id=doc_id,
                    start=start,
                    end=end,
                    text=doc.text[start:end],
                    first_seq=lo,
                    last_seq=hi,
                    hit_seqs=tuple(sorted(r.seq for r in rs)),
                    rank=best.rank,
                    score=best.score,
                    length=doc.size(lo, hi),
                )
            )
        index = {(c.doc_id, c.first_seq): i for i, c in enumerate(contexts)}
        outcomes: list[HitOutcome] = []
        for r in refs:
            doc = docs[r.doc_id]
            size = doc.size(r.seq, r.seq)
            cover = doc.covering(r.seq)
            status: HitStatus = "dropped"
            reason: OutcomeReason | None = "budget_spent"
            context, miss_lo, miss_hi = None, 0, 0
            if cover is None:
                if self.max_size is not None and size > self.max_size:
                    reason = "too_large"
            else:
                want_lo, want_hi = max(0, r.seq - self.before), min(len(doc.chunks) - 1, r.seq + self.after)
                miss_lo, miss_hi = max(0, cover[0] - want_lo), max(0, want_hi - cover[1])
                status, reason = ("trimmed", "budget") if miss_lo or miss_hi else ("kept", None)
                context = index[(r.doc_id, cover[0])]
            outcomes.append(
                HitOutcome(r.doc_id, r.seq, r.rank, r.score, size, status, reason, context, miss_lo, miss_hi)
            )
        return ExpansionReport(
            tuple(contexts),
            tuple(outcomes),
            self.max_size,
            sum(c.length for c in contexts),
            str(getattr(self.length, "name", "units")),
        )


class _Spliced:
    """Document text rebuilt from its tiling chunks, sliceable by document offsets."""

    def __init__(self, chunks: Sequence[Chunk]) -> None:
        parts, pos = [], chunks[0].start
        base = chunks[0].start
        for c in chunks:
            if c.start > pos:
                raise InvalidInputError(f"chunks of {c.doc_id!r} leave a gap at [{pos}, {c.start})")
            parts.append(c.text[pos - c.start :])
            pos = max(pos, c.end)
        self._text = "".join(parts)
        self._base = base

    def __getitem__(self, s: slice) -> str:
        return self._text[s.start - self._base : s.stop - self._base]
