"""Chunk expansion: give the reader each hit together with its neighbouring chunks.

A fact split across a chunk boundary ("the policy was updated in Q3" | "the new threshold is 500
units") is only answerable from both halves. For every hit, :class:`ChunkExpander` takes the
chunks ``seq - before .. seq + after`` of the same document, merges windows of one document that
overlap or touch, de-duplicates, keeps the order of the best-ranked hit in each window, and caps the
total size with a budget.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from mlsys.common.errors import InvalidInputError, UnknownIdError
from mlsys.rag._chunk import Chunk, LengthFunction, resolve_length
from mlsys.rag._retrievers import Hit, RetrievalResult

__all__ = ["ChunkExpander", "ChunkTable", "ExpandedContext", "ExpansionSource"]


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
        for c in chunks:
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
        hit_seqs: the retrieved chunks merged into it.
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


@dataclass
class _Window:
    doc_id: str
    lo: int
    hi: int
    hits: list[int]
    rank: int
    score: float


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
        return str(h[0]), int(h[1]), float(h[2]) if len(h) == 3 else 0.0
    raise InvalidInputError(
        f"a hit must be a Hit, a Chunk or a (doc_id, seq[, score]) tuple, got {type(h).__name__}"
    )


@dataclass(frozen=True)
class ChunkExpander:
    """Expand hits to their neighbours, merge, de-duplicate, keep rank order, cap by size.

    Args:
        before: chunks to add before each hit (N-1, N-2, ...).
        after: chunks to add after each hit.
        max_size: budget for all contexts together, in ``length`` units (``None``: no cap). A window
            that does not fit is trimmed, dropping the neighbours farthest from its hits first; if
            even its hits do not fit, it is skipped and smaller later windows may still be used.
        length: ``"chars"``, ``"words"``, ``"minilm"`` or a :class:`LengthFunction`.

    Example:
        >>> from mlsys.rag import FixedSizeChunker
        >>> table = ChunkTable(FixedSizeChunker(size=4).chunk("aaaabbbbccccdddd", doc_id="d"))
        >>> ctx = ChunkExpander(before=1, after=1).expand([("d", 1), ("d", 3)], table)
        >>> [(c.text, c.hit_seqs) for c in ctx]
        [('aaaabbbbccccdddd', (1, 3))]
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
        """Expanded, merged, budgeted contexts for ``hits`` (given best first)."""
        items = list(hits.hits if isinstance(hits, RetrievalResult) else hits)
        cache: dict[str, list[Chunk]] = {}
        windows: list[_Window] = []
        by_doc: dict[str, list[_Window]] = {}
        seen: set[tuple[str, int]] = set()
        for rank, h in enumerate(items, start=1):
            doc_id, seq, score = _hit_key(h)
            if (doc_id, seq) in seen:
                continue
            seen.add((doc_id, seq))
            if doc_id not in cache:
                cache[doc_id] = source.chunks(doc_id)
            chunks = cache[doc_id]
            if not 0 <= seq < len(chunks):
                raise InvalidInputError(
                    f"hit ({doc_id!r}, seq {seq}) but the document has {len(chunks)} chunks"
                )
            w = _Window(
                doc_id, max(0, seq - self.before), min(len(chunks) - 1, seq + self.after), [seq], rank, score
            )
            # merge with every window of the same document whose characters overlap or touch
            merged = True
            while merged:
                merged = False
                for other in by_doc.get(doc_id, []):
                    if (
                        chunks[w.lo].start <= chunks[other.hi].end
                        and chunks[other.lo].start <= chunks[w.hi].end
                    ):
                        by_doc[doc_id].remove(other)
                        windows.remove(other)
                        if other.rank < w.rank:
                            w.rank, w.score = other.rank, other.score
                        w.lo, w.hi = min(w.lo, other.lo), max(w.hi, other.hi)
                        w.hits = sorted(set(w.hits) | set(other.hits))
                        merged = True
                        break
            by_doc.setdefault(doc_id, []).append(w)
            windows.append(w)
        windows.sort(key=lambda w: w.rank)
        out: list[ExpandedContext] = []
        used = 0
        length: LengthFunction = self.length
        for w in windows:
            chunks = cache[w.doc_id]
            lo, hi = w.lo, w.hi
            hit_lo, hit_hi = min(w.hits), max(w.hits)
            doc_text = self._doc_text(chunks)
            while True:
                start, end = chunks[lo].start, chunks[hi].end
                text = doc_text[start:end]
                size = length(text)
                if self.max_size is None or used + size <= self.max_size:
                    break
                if lo == hit_lo and hi == hit_hi:
                    size = -1
                    break
                # drop the neighbour farthest from the hits
                if hi - hit_hi >= hit_lo - lo and hi > hit_hi:
                    hi -= 1
                else:
                    lo += 1
            if size < 0:
                continue
            used += size
            hs = tuple(s for s in w.hits if lo <= s <= hi)
            out.append(ExpandedContext(w.doc_id, start, end, text, lo, hi, hs, w.rank, w.score, size))
        return out

    @staticmethod
    def _doc_text(chunks: Sequence[Chunk]) -> _Spliced:
        return _Spliced(chunks)


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
