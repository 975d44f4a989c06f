"""Chunkers with exact offsets, strict size budgets and configured overlap.

Every chunker computes character spans ``(start, end)`` from the text's unit boundaries and builds
each chunk as ``text[start:end]``. Guarantees, for every chunker and length function:

- ``document[chunk.start:chunk.end] == chunk.text`` (by construction);
- ``length(chunk.text) <= size`` - overlap included;
- chunks tile the document in order: the first starts at 0, the last ends at ``len(document)``,
  each starts after the previous one starts and no later than it ends, so dropping each chunk's
  overlap with its predecessor and concatenating gives the document back;
- :class:`SlidingWindowChunker` consecutive chunks share exactly ``round(overlap * size)`` units
  (fewer only where a subword tokenizer forces a shorter window).

An empty document has no chunks. Whitespace between chunks belongs to the chunk before it.
"""

from __future__ import annotations

import bisect
import codecs
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from mlsys.common.errors import DatasetNotFoundError, InvalidInputError
from mlsys.rag._chunk import Chunk, LengthFunction, Units, resolve_length
from mlsys.rag._embedders import check_texts

__all__ = [
    "Chunker",
    "FixedSizeChunker",
    "RecursiveChunker",
    "SentenceChunker",
    "SlidingWindowChunker",
]

Span = tuple[int, int]
Fits = Callable[[int, int], bool]


@runtime_checkable
class Chunker(Protocol):
    """What every chunker provides.

    Example:
        >>> isinstance(FixedSizeChunker(size=10), Chunker)
        True
    """

    length: LengthFunction

    def spans(self, text: str) -> list[Span]:
        """The ``(start, end)`` character spans of the chunks of ``text``."""
        ...

    def chunk(
        self, text: str, *, doc_id: str = "doc", metadata: Mapping[str, Any] | None = None
    ) -> list[Chunk]:
        """Split one document."""
        ...


def _check_size(size: Any, name: str = "size") -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise InvalidInputError(f"{name} must be a positive int, got {size!r}")


def _overlap_units(size: int, overlap: Any) -> int:
    if isinstance(overlap, bool) or not isinstance(overlap, (int, float)) or not 0.0 <= overlap < 1.0:
        raise InvalidInputError(
            f"overlap must be a fraction of the chunk size in [0, 1) (0.2-0.3 is typical), got {overlap!r}"
        )
    ov = round(overlap * size)
    if ov >= size:
        raise InvalidInputError(
            f"chunk size {size} is too small for overlap {overlap!r} ({ov} units of overlap would leave "
            "no room for new text); use a larger size or a smaller overlap"
        )
    return ov


@dataclass(frozen=True)
class _BaseChunker(ABC):
    """Shared entry points: validation, :class:`Chunk` building, documents and streams."""

    size: int
    length: Any = "chars"

    def __post_init__(self) -> None:
        _check_size(self.size)
        object.__setattr__(self, "length", resolve_length(self.length))

    # -- the one method subclasses implement -------------------------------------------------
    @abstractmethod
    def _spans(self, units: Units, fits: Fits) -> list[Span]:
        """Chunk spans of a non-empty text with at least one unit."""

    # -- shared machinery ------------------------------------------------------------------------
    def _fits_fn(self, text: str, units: Units) -> Fits:
        size, length = self.size, self.length
        if units.char_mode:
            return lambda a, b: b - a <= size
        if length.additive:
            return lambda a, b: units.count(a, b) <= size
        safe = getattr(length, "boundary_safe", None)
        count = units.count
        if safe is not None:
            return lambda a, b: (
                count(a, b) <= size and ((safe(text, a) and safe(text, b)) or length(text[a:b]) <= size)
            )
        return lambda a, b: count(a, b) <= size and length(text[a:b]) <= size

    def spans(self, text: str) -> list[Span]:
        """The ``(start, end)`` character spans of the chunks of ``text`` (empty text: none).

        Example:
            >>> FixedSizeChunker(size=4).spans("abcdefghij")
            [(0, 4), (4, 8), (8, 10)]
        """
        return self._spans_units(text)[0]

    def _spans_units(self, text: str) -> tuple[list[Span], Units | None]:
        check_texts([text], what="text")
        if not text:
            return [], None
        units = Units(text, self.length)
        if units.n == 0:
            return [(0, len(text))], units  # whitespace only, measured in words/tokens: zero units
        return self._spans(units, self._fits_fn(text, units)), units

    def chunk(
        self, text: str, *, doc_id: str = "doc", metadata: Mapping[str, Any] | None = None
    ) -> list[Chunk]:
        """Split ``text`` into :class:`Chunk` objects (``text[c.start:c.end] == c.text``).

        Example:
            >>> [c.text for c in FixedSizeChunker(size=4).chunk("abcdefghij", doc_id="d")]
            ['abcd', 'efgh', 'ij']
        """
        if not isinstance(doc_id, str):
            raise InvalidInputError(f"doc_id must be a str, got {type(doc_id).__name__}")
        meta = dict(metadata) if metadata else {}
        spans, units = self._spans_units(text)
        return self._build(text, spans, doc_id, meta, offset=0, seq0=0, units=units)

    def _build(
        self,
        text: str,
        spans: Sequence[Span],
        doc_id: str,
        meta: Mapping[str, Any],
        offset: int,
        seq0: int,
        units: Units | None = None,
    ) -> list[Chunk]:
        length = self.length
        safe: Callable[[str, int], bool] | None = getattr(length, "boundary_safe", None)
        out = []
        for k, (a, b) in enumerate(spans):
            piece = text[a:b]
            if units is not None and (
                length.additive or (safe is not None and safe(text, a) and safe(text, b))
            ):
                n = units.count(a, b)  # the exact count without re-tokenising
            else:
                n = length(piece)
            out.append(Chunk(doc_id, seq0 + k, piece, a + offset, b + offset, n, meta))
        return out

    def chunk_documents(
        self, documents: Iterable[tuple[str, str]] | Mapping[str, str], *, progress: bool = False
    ) -> Iterator[Chunk]:
        """Chunk many ``(doc_id, text)`` pairs (or a mapping), lazily, in order.

        Example:
            >>> [c.chunk_id for c in FixedSizeChunker(size=3).chunk_documents({"a": "xyzw", "b": "q"})]
            ['a#0', 'a#1', 'b#0']
        """
        items = documents.items() if isinstance(documents, Mapping) else documents
        if progress:
            from tqdm.auto import tqdm

            items = tqdm(items, desc="chunking", unit="doc")
        for doc_id, text in items:
            yield from self.chunk(text, doc_id=doc_id)

    def chunk_file(
        self,
        path: str | os.PathLike[str],
        *,
        doc_id: str | None = None,
        encoding: str = "utf-8",
        block_size: int = 1 << 20,
        window: int = 1 << 20,
    ) -> Iterator[Chunk]:
        """Chunk a text file of any size in bounded memory (see :meth:`chunk_stream`).

        The file is decoded incrementally; bytes that are not valid ``encoding`` raise
        :class:`InvalidInputError` naming the byte offset (chunks before it have been yielded).
        Offsets are character offsets into the decoded text.

        Example:
            >>> import tempfile, pathlib
            >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
            >>> _ = p.write_text("abcdefghij", encoding="utf-8")
            >>> [c.text for c in FixedSizeChunker(size=4).chunk_file(p)]
            ['abcd', 'efgh', 'ij']
        """
        _check_size(block_size, "block_size")
        p = os.fspath(path)
        if not os.path.isfile(p):
            raise DatasetNotFoundError(f"text file not found: {p}")
        try:
            decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
        except LookupError as exc:
            raise InvalidInputError(f"unknown encoding {encoding!r}") from exc

        def blocks() -> Iterator[str]:
            consumed = 0
            with open(p, "rb") as f:
                while True:
                    raw = f.read(block_size)
                    final = not raw
                    try:
                        text = decoder.decode(raw, final=final)
                    except UnicodeDecodeError as exc:
                        raise InvalidInputError(
                            f"{p}: bytes {exc.object[exc.start : exc.end]!r} at byte offset "
                            f"{consumed + exc.start} are not valid {encoding}; expected {encoding} text"
                        ) from exc
                    consumed += len(raw)
                    if text:
                        yield text
                    if final:
                        return

        return self.chunk_stream(blocks(), doc_id=doc_id if doc_id is not None else p, window=window)

    def chunk_stream(
        self,
        blocks: Iterable[str],
        *,
        doc_id: str = "doc",
        metadata: Mapping[str, Any] | None = None,
        window: int = 1 << 20,
    ) -> Iterator[Chunk]:
        """Chunk one document that arrives in pieces (a file read block by block), in bounded memory.

        Offsets are into the concatenation of ``blocks``. At most about ``2 * window`` characters
        are held at a time. Every guarantee of :meth:`chunk` holds; chunk boundaries far from the
        block edges are the ones :meth:`chunk` would produce, near them they may differ (the
        chunker only sees a window of the text).

        Example:
            >>> ch = FixedSizeChunker(size=4)
            >>> [(c.start, c.text) for c in ch.chunk_stream(["abcde", "fghij"], window=4)]
            [(0, 'abcd'), (4, 'efgh'), (8, 'ij')]
        """
        _check_size(window, "window")
        meta = dict(metadata) if metadata else {}
        buf = ""
        offset = 0  # document position of buf[0]
        seq = 0
        for block in blocks:
            check_texts([block], what="block")
            buf += block
            while len(buf) >= 2 * window:
                spans, units = self._spans_units(buf)
                # Emit the chunks that end inside the first window; keep the rest of the text.
                emit = [s for s in spans if s[1] <= window] or spans[:1]
                if len(emit) == len(spans):
                    emit = spans[:-1]
                    if not emit:
                        break
                nxt = spans[len(emit)][0]
                chunks = self._build(buf, emit, doc_id, meta, offset, seq, units)
                yield from chunks
                seq += len(chunks)
                buf = buf[nxt:]
                offset += nxt
        if buf:
            spans, units = self._spans_units(buf)
            yield from self._build(buf, spans, doc_id, meta, offset, seq, units)


def _windows(
    units: Units, fits: Fits, size: int, overlap: int, lo: int = 0, hi: int | None = None
) -> list[Span]:
    """Windows of ``size`` units over units ``[lo, hi)``; consecutive windows share ``overlap`` units.

    The first window starts at the character where unit ``lo`` starts (0 when ``lo`` is 0); each
    window ends where the next unit starts, so whitespace between units stays in the chunk before.
    """
    n = units.n if hi is None else hi
    out: list[Span] = []
    i = lo
    while True:
        j = min(i + size, n)
        a = units.start_of(i)
        while j > i + 1 and not fits(a, units.cut(j)):
            j -= 1  # only for non-additive tokenizers: the exact count of the slice is larger
        b = units.cut(j)
        if not fits(a, b):
            raise InvalidInputError(
                f"one unit at characters [{a}, {b}) already measures more than the chunk size {size}; "
                "use a larger size"
            )
        out.append((a, b))
        if j >= n:
            return out
        i = max(j - overlap, i + 1)


@dataclass(frozen=True)
class FixedSizeChunker(_BaseChunker):
    """Consecutive, non-overlapping chunks of exactly ``size`` units (the last may be shorter).

    Args:
        size: units per chunk.
        length: ``"chars"``, ``"words"``, ``"minilm"`` or a :class:`LengthFunction`.

    Example:
        >>> [c.text for c in FixedSizeChunker(size=2, length="words").chunk("a b c d e")]
        ['a b ', 'c d ', 'e']
    """

    def _spans(self, units: Units, fits: Fits) -> list[Span]:
        spans = _windows(units, fits, self.size, 0)
        end = len(units.text)
        if spans[-1][1] != end:  # trailing whitespace after the last unit
            spans[-1] = (spans[-1][0], end)
        return spans


@dataclass(frozen=True)
class SlidingWindowChunker(_BaseChunker):
    """Windows of ``size`` units, each starting ``size - round(overlap*size)`` units after the last.

    Args:
        size: units per window, overlap included.
        overlap: shared fraction of the window, in the same unit, in ``[0, 1)``.
        length: ``"chars"``, ``"words"``, ``"minilm"`` or a :class:`LengthFunction`.

    Example:
        >>> [c.text for c in SlidingWindowChunker(size=4, overlap=0.25, length="words").chunk("a b c d e f g")]
        ['a b c d ', 'd e f g']
    """

    overlap: float = 0.25

    def __post_init__(self) -> None:
        super().__post_init__()
        _overlap_units(self.size, self.overlap)

    @property
    def overlap_units(self) -> int:
        """Units shared by consecutive windows."""
        return _overlap_units(self.size, self.overlap)

    def _spans(self, units: Units, fits: Fits) -> list[Span]:
        spans = _windows(units, fits, self.size, self.overlap_units)
        end = len(units.text)
        if spans[-1][1] != end:
            spans[-1] = (spans[-1][0], end)
        return spans


_WS_THEN_WORD = re.compile(r"\s(?=\S)")
_HAS_SPACE = re.compile(r"\s")


def _boundary_ok(units: Units, pos: int) -> bool:
    """True when ``pos`` does not fall strictly inside a unit."""
    if units.char_mode:
        return True
    starts, ends = units._starts, units._ends
    k = bisect.bisect_right(starts, pos) - 1
    return k < 0 or not (starts[k] < pos < ends[k])


def _pack(pieces: Sequence[Span], fits: Fits) -> list[Span]:
    """Greedily merge consecutive pieces while the merged span fits."""
    out: list[Span] = []
    cur_a, cur_b = pieces[0]
    for a, b in pieces[1:]:
        if fits(cur_a, b):
            cur_b = b
        else:
            out.append((cur_a, cur_b))
            cur_a, cur_b = a, b
    out.append((cur_a, cur_b))
    return out


def _add_overlap(units: Units, spans: list[Span], fits: Fits, overlap: int) -> list[Span]:
    """Extend each chunk after the first backwards by at most ``overlap`` units, to a word start."""
    if overlap <= 0 or len(spans) < 2:
        return spans
    text = units.text
    out = [spans[0]]
    for k in range(1, len(spans)):
        a, b = spans[k]
        prev_a = spans[k - 1][0]
        i = units.first_unit_at_or_after(a)
        lo_unit = max(i - overlap, units.first_unit_at_or_after(prev_a) + 1)
        if lo_unit >= i:
            out.append((a, b))
            continue
        lo = units.cut(lo_unit)
        m = _WS_THEN_WORD.search(text, max(lo - 1, prev_a), a)
        if m is not None and m.start() + 1 < a:
            new_a = m.start() + 1  # the earliest word start inside the overlap window
        elif _HAS_SPACE.search(text, prev_a, a) is None:
            new_a = lo  # text without spaces (long tokens, CJK): overlap by units
        else:
            new_a = a  # no word starts in the window: no overlap rather than half a word
        if new_a <= prev_a or not _boundary_ok(units, new_a) or not fits(new_a, b):
            new_a = a
        out.append((new_a, b))
    return out


@dataclass(frozen=True)
class RecursiveChunker(_BaseChunker):
    """Split at the coarsest separator that occurs, recurse into pieces that are still too big, merge.

    Like LangChain's ``RecursiveCharacterTextSplitter``, but offsets are exact and the budget is
    strict: pieces are found by position (a separator stays at the end of the piece before it) and
    merged greedily while the merged slice fits ``size`` units, overlap included. A piece with none
    of the separators is hard-split at unit boundaries by the ``""`` separator; without ``""`` in
    ``separators`` such a piece raises :class:`InvalidInputError` naming its position.

    Args:
        size: units per chunk, overlap included.
        length: ``"chars"``, ``"words"``, ``"minilm"`` or a :class:`LengthFunction`.
        overlap: fraction of ``size`` that a chunk may repeat from the end of the previous one:
            at most ``round(overlap*size)`` units, starting at the earliest word start in that
            window (none if the window holds no word start; by units in text without spaces).
        separators: literal strings, coarsest first.

    Example:
        >>> ch = RecursiveChunker(size=12)
        >>> [c.text for c in ch.chunk("One. Two two.\\n\\nThree three three.")]
        ['One. ', 'Two two.\\n\\n', 'Three three ', 'three.']
    """

    overlap: float = 0.0
    separators: tuple[str, ...] = ("\n\n", "\n", ". ", " ", "")

    def __post_init__(self) -> None:
        super().__post_init__()
        _overlap_units(self.size, self.overlap)
        seps = tuple(self.separators)
        if not seps or not all(isinstance(s, str) for s in seps):
            raise InvalidInputError(
                f"separators must be a non-empty sequence of str, got {self.separators!r}"
            )
        if "" in seps[:-1]:
            raise InvalidInputError(f'"" (hard split) must be the last separator, got {seps!r}')
        object.__setattr__(self, "separators", seps)

    def _spans(self, units: Units, fits: Fits) -> list[Span]:
        ov = _overlap_units(self.size, self.overlap)
        content = self.size - ov
        fits_content: Fits = fits
        if ov:
            counted = units.count

            def fits_content(a: int, b: int) -> bool:
                return counted(a, b) <= content and fits(a, b)

        # A final merge of neighbours that fit together (a piece that overflowed only by its trailing
        # separator otherwise leaves a tiny chunk behind).
        spans = _pack(self._split(units, fits_content, content, 0, len(units.text), 0), fits_content)
        return _add_overlap(units, spans, fits, ov)

    def _split(self, units: Units, fits: Fits, size: int, a: int, b: int, level: int) -> list[Span]:
        if fits(a, b):
            return [(a, b)]
        text = units.text
        seps = self.separators
        while level < len(seps) and seps[level] and text.find(seps[level], a, b) == -1:
            level += 1
        if level == len(seps):
            raise InvalidInputError(
                f"text[{a}:{b}] is longer than the chunk size {self.size} and contains none of the "
                f'separators {seps!r}; add "" to the separators to allow hard splits'
            )
        sep = seps[level]
        if not sep:
            lo = units.first_unit_at_or_after(a)
            hi = units.first_unit_at_or_after(b) if not units.char_mode else b
            if not units.char_mode:
                # units that end after b belong to the next piece
                while hi > lo and units._ends[hi - 1] > b:
                    hi -= 1
            parts = _windows(units, fits, size, 0, lo, hi)
            parts[0] = (a, parts[0][1])
            parts[-1] = (parts[-1][0], b)
            return parts
        pieces: list[Span] = []
        start = a
        pos = text.find(sep, a, b)
        width = len(sep)
        while pos != -1:
            cut = pos + width
            if cut < b and _boundary_ok(units, cut):
                pieces.append((start, cut))
                start = cut
            pos = text.find(sep, cut, b)
        pieces.append((start, b))
        out: list[Span] = []
        run: list[Span] = []
        for pa, pb in pieces:
            if fits(pa, pb):
                run.append((pa, pb))
                continue
            if run:
                out.extend(_pack(run, fits))
                run = []
            out.extend(self._split(units, fits, size, pa, pb, level + 1))
        if run:
            out.extend(_pack(run, fits))
        return out


_SENTENCE_END = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*\s+|\n[ \t\r]*\n\s*")
_ABBREVIATIONS = frozenset(
    "e.g i.e et al al etc vs fig figs eq eqs ref refs no nos dr mr mrs ms prof st approx resp cf ca vol pp "
    "inc ltd jr sr dept univ jan feb mar apr jun jul aug sep sept oct nov dec".split()
)


def sentence_spans(text: str) -> list[Span]:
    """Rule-based sentence spans tiling ``text`` (trailing whitespace stays with its sentence).

    A boundary is sentence-final punctuation (optionally closed by quotes/brackets) followed by
    whitespace, or a blank line. Known abbreviations (``e.g.``, ``et al.``, ``Fig.``), single
    initials and a following lower-case word do not end a sentence.

    Example:
        >>> text = "See Fig. 2 here. Next one! ok"
        >>> [text[a:b] for a, b in sentence_spans(text)]
        ['See Fig. 2 here. ', 'Next one! ok']
    """
    if not isinstance(text, str):
        raise InvalidInputError(f"text must be a str, got {type(text).__name__}")
    spans: list[Span] = []
    start = 0
    n = len(text)
    for m in _SENTENCE_END.finditer(text):
        end = m.end()
        if end >= n:
            break
        if text[m.start()] in ".!?\u2026":
            if text[end].islower():
                continue
            j = m.start()
            k = j
            while k > start and not text[k - 1].isspace():
                k -= 1
            word = text[k:j].lower().rstrip(".")
            if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
                continue
        spans.append((start, end))
        start = end
    spans.append((start, n))
    return spans


@dataclass(frozen=True)
class SentenceChunker(_BaseChunker):
    """Pack whole sentences into chunks of at most ``size`` units.

    A sentence longer than the budget is split at spaces, then hard-split at unit boundaries.
    ``overlap_sentences`` trailing sentences of a chunk are repeated at the start of the next one
    when the budget allows (overlap included in the budget).

    Args:
        size: units per chunk.
        length: ``"chars"``, ``"words"``, ``"minilm"`` or a :class:`LengthFunction`.
        overlap_sentences: sentences repeated from the previous chunk (0 = none).

    Example:
        >>> ch = SentenceChunker(size=30)
        >>> [c.text for c in ch.chunk("First one here. Second one here. Third.")]
        ['First one here. ', 'Second one here. Third.']
    """

    overlap_sentences: int = 0
    _fallback: RecursiveChunker | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        ov = self.overlap_sentences
        if isinstance(ov, bool) or not isinstance(ov, int) or ov < 0:
            raise InvalidInputError(f"overlap_sentences must be a non-negative int, got {ov!r}")
        object.__setattr__(
            self, "_fallback", RecursiveChunker(size=self.size, length=self.length, separators=(" ", ""))
        )

    def _spans(self, units: Units, fits: Fits) -> list[Span]:
        assert self._fallback is not None
        pieces: list[Span] = []
        for a, b in sentence_spans(units.text):
            if fits(a, b):
                pieces.append((a, b))
            else:
                pieces.extend(self._fallback._split(units, fits, self.size, a, b, 0))
        pieces = [p for p in pieces if p[0] < p[1]]
        if self.overlap_sentences == 0:
            return _pack(pieces, fits)
        out: list[Span] = []
        p, q = 0, 0  # current chunk = pieces[p:q]
        n = len(pieces)
        while q < n:
            if out:
                p = max(q - self.overlap_sentences, p + 1)
                while p < q and not fits(pieces[p][0], pieces[q][1]):
                    p += 1
            else:
                p = q
            q += 1
            while q < n and fits(pieces[p][0], pieces[q][1]):
                q += 1
            out.append((pieces[p][0], pieces[q - 1][1]))
        return out
