"""Generators: ``generate(question, contexts) -> GeneratedAnswer``, with verifiable citations.

:class:`ExtractiveGenerator` (the offline default) answers with the context sentences that best
support the question, each cited by document id and exact character offsets:
``document[citation.start:citation.end] == citation.quoted`` always holds, because offsets are
computed from the context's own offsets (``context.text == document[context.start:context.end]``)
and the sentence spans inside it. :class:`LLMGenerator` is the adapter shape for any LLM client:
a ``complete(prompt) -> str`` callable, a prompt with numbered contexts, ``[n]`` markers in the
reply turned into citations of whole contexts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mlsys.common.errors import InvalidInputError
from mlsys.common.validation import check_k
from mlsys.rag._bm25 import Analyzer, AnalyzerConfig
from mlsys.rag._chunkers import sentence_spans
from mlsys.rag._embedders import Embedder, check_texts
from mlsys.rag._expansion import ExpandedContext
from mlsys.rag._retrievers import Hit
from mlsys.rag.rerank._protocol import check_candidates

__all__ = [
    "Citation",
    "ExtractiveGenerator",
    "GeneratedAnswer",
    "Generator",
    "LLMGenerator",
    "contexts_from_hits",
]


@dataclass(frozen=True)
class Citation:
    """A quoted span of a document: ``document[start:end] == quoted``.

    Example:
        >>> doc = "Aspirin thins blood. It is old."
        >>> c = Citation("d1", 0, 20, "Aspirin thins blood.")
        >>> doc[c.start:c.end] == c.quoted
        True
    """

    doc_id: str
    start: int
    end: int
    quoted: str


@dataclass(frozen=True)
class GeneratedAnswer:
    """A generator's output: the answer text, its citations, and notes (e.g. unknown ``[n]`` markers)."""

    text: str
    citations: tuple[Citation, ...] = ()
    notes: tuple[str, ...] = field(default=())


@runtime_checkable
class Generator(Protocol):
    """What every generator provides."""

    def generate(self, question: str, contexts: Sequence[ExpandedContext]) -> GeneratedAnswer:
        """An answer to ``question`` from ``contexts`` (best first)."""
        ...


def contexts_from_hits(hits: Sequence[Hit]) -> list[ExpandedContext]:
    """One context per hit (no expansion), in the hits' order; hits need text, document and offsets.

    Example:
        >>> contexts_from_hits([Hit(3, 1, 0.9, "d", 0, "Some text.", 10, 20)])[0].start
        10
    """
    out = []
    for i, h in enumerate(check_candidates(hits, what="hits")):
        if h.doc_id is None or h.text is None or h.start is None or h.end is None or h.seq is None:
            raise InvalidInputError(
                f"hits[{i}] (id {h.id}) lacks its document, text or offsets; expected hits from a retriever "
                "with a catalog (a DocumentStore)"
            )
        out.append(
            ExpandedContext(
                h.doc_id, h.start, h.end, h.text, h.seq, h.seq, (h.seq,), h.rank, h.score, len(h.text)
            )
        )
    return out


def _check_contexts(contexts: Any) -> list[ExpandedContext]:
    if isinstance(contexts, (str, bytes)) or not isinstance(contexts, Sequence):
        raise InvalidInputError(
            f"contexts must be a sequence of ExpandedContext, got {type(contexts).__name__}"
        )
    out = list(contexts)
    for i, c in enumerate(out):
        if not isinstance(c, ExpandedContext):
            raise InvalidInputError(f"contexts[{i}] is {type(c).__name__}, expected an ExpandedContext")
        if c.end - c.start != len(c.text):
            raise InvalidInputError(
                f"contexts[{i}]: offsets [{c.start}, {c.end}) span {c.end - c.start} characters but the text has "
                f"{len(c.text)}; expected text == document[start:end]"
            )
    return out


class ExtractiveGenerator:
    """Answer with the best supporting sentences of the contexts, each cited with exact offsets.

    Sentences (rule-based spans, whitespace trimmed) are scored by cosine similarity to the
    question under ``embedder`` when one is given, else by the share of the question's analysed
    terms they contain; the ``max_sentences`` best with a score of at least ``min_score`` are
    returned in document order of their context ranks.

    Args:
        max_sentences: sentences in the answer.
        min_score: sentences below it are never quoted (an empty answer says nothing supports it).
        embedder: optional sentence embedder (e.g. MiniLM with a cache).
        analyzer: term analysis for the lexical score.

    Example:
        >>> ctx = contexts_from_hits([Hit(0, 1, 1.0, "d", 0, "Cats purr. Aspirin thins blood. Dogs bark.", 0, 42)])
        >>> ans = ExtractiveGenerator(max_sentences=1).generate("does aspirin thin blood?", ctx)
        >>> ans.text, ans.citations[0]
        ('Aspirin thins blood.', Citation(doc_id='d', start=11, end=31, quoted='Aspirin thins blood.'))
    """

    def __init__(
        self,
        *,
        max_sentences: int = 2,
        min_score: float = 0.1,
        embedder: Embedder | None = None,
        analyzer: AnalyzerConfig | None = None,
    ) -> None:
        self.max_sentences = check_k(max_sentences, name="max_sentences", limit=None)
        if (
            isinstance(min_score, bool)
            or not isinstance(min_score, (int, float))
            or not np.isfinite(min_score)
        ):
            raise InvalidInputError(f"min_score must be a finite number, got {min_score!r}")
        if embedder is not None and not isinstance(embedder, Embedder):
            raise InvalidInputError(
                f"embedder must implement the Embedder protocol, got {type(embedder).__name__}"
            )
        self.min_score = float(min_score)
        self.embedder = embedder
        self.analyzer = Analyzer(analyzer or AnalyzerConfig())

    def __repr__(self) -> str:
        return f"ExtractiveGenerator(max_sentences={self.max_sentences}, min_score={self.min_score})"

    def candidates(self, contexts: Sequence[ExpandedContext]) -> list[tuple[int, Citation]]:
        """Every non-blank sentence of the contexts as ``(context index, citation)``."""
        out = []
        for ci, c in enumerate(_check_contexts(contexts)):
            for a, b in sentence_spans(c.text):
                seg = c.text[a:b]
                lead = len(seg) - len(seg.lstrip())
                quoted = seg.strip()
                if quoted:
                    s = c.start + a + lead
                    out.append((ci, Citation(c.doc_id, s, s + len(quoted), quoted)))
        return out

    def generate(self, question: str, contexts: Sequence[ExpandedContext]) -> GeneratedAnswer:
        """The best supporting sentences, cited; an empty answer when none reaches ``min_score``."""
        q = check_texts([question], what="question", allow_blank=False, query=True)[0]
        cands = self.candidates(contexts)
        if not cands:
            return GeneratedAnswer("", (), ("no sentences in the contexts",))
        if self.embedder is not None:
            qv = self.embedder.embed_queries([q], progress=False)[0]
            sv = self.embedder.embed_documents([c.quoted for _, c in cands], progress=False)
            scores = sv @ qv
        else:
            terms = set(self.analyzer.terms(q))
            scores = np.array(
                [
                    len(terms & set(self.analyzer.terms(c.quoted))) / len(terms) if terms else 0.0
                    for _, c in cands
                ]
            )
        order = np.argsort(-scores, kind="stable")
        picked = [int(j) for j in order[: self.max_sentences] if scores[j] >= self.min_score]
        if not picked:
            return GeneratedAnswer("", (), (f"no sentence scored >= {self.min_score}",))
        picked.sort(key=lambda j: (cands[j][0], cands[j][1].start))
        cites = tuple(cands[j][1] for j in picked)
        return GeneratedAnswer(" ".join(c.quoted for c in cites), cites)


_MARKER = re.compile(r"\[(\d+)\]")

DEFAULT_PROMPT = (
    "Answer the question using only the numbered contexts. Cite every statement with the number of "
    "its context in brackets, e.g. [1]. If the contexts do not contain the answer, say so.\n\n"
    "{contexts}\n\nQuestion: {question}\nAnswer:"
)


class LLMGenerator:
    """Adapter for any LLM client: ``complete(prompt) -> str``.

    The prompt lists the contexts as ``[1] (doc_id) text``; every ``[n]`` marker in the reply becomes
    a citation of context ``n`` (whole-context offsets, so ``document[start:end] == quoted`` holds
    too); markers that name no context are reported in ``notes``, not trusted.

    Args:
        complete: the client call (e.g. ``lambda p: client.chat(p).text``).
        template: a format string with ``{contexts}`` and ``{question}``.

    Example:
        >>> gen = LLMGenerator(lambda prompt: "Aspirin thins blood [1] [7].")
        >>> ctx = contexts_from_hits([Hit(0, 1, 1.0, "d", 0, "Aspirin thins blood.", 0, 20)])
        >>> ans = gen.generate("aspirin?", ctx)
        >>> ans.citations[0].quoted, ans.notes
        ('Aspirin thins blood.', ('marker [7] names no context (1 given)',))
    """

    def __init__(self, complete: Callable[[str], str], *, template: str = DEFAULT_PROMPT) -> None:
        if not callable(complete):
            raise InvalidInputError(f"complete must be callable, got {type(complete).__name__}")
        if "{contexts}" not in template or "{question}" not in template:
            raise InvalidInputError("template must contain {contexts} and {question}")
        self.complete = complete
        self.template = template

    def prompt(self, question: str, contexts: Sequence[ExpandedContext]) -> str:
        """The prompt sent to the client."""
        ctx = _check_contexts(contexts)
        body = "\n".join(f"[{i}] ({c.doc_id}) {c.text}" for i, c in enumerate(ctx, start=1))
        return self.template.format(contexts=body, question=question)

    def generate(self, question: str, contexts: Sequence[ExpandedContext]) -> GeneratedAnswer:
        """Call the client; a reply that is not a string raises :class:`InvalidInputError`."""
        q = check_texts([question], what="question", allow_blank=False, query=True)[0]
        ctx = _check_contexts(contexts)
        reply = self.complete(self.prompt(q, ctx))
        if not isinstance(reply, str):
            raise InvalidInputError(f"the LLM client returned {type(reply).__name__}, expected str")
        cites: list[Citation] = []
        notes: list[str] = []
        seen: set[int] = set()
        for m in _MARKER.finditer(reply):
            n = int(m.group(1))
            if not 1 <= n <= len(ctx):
                notes.append(f"marker [{n}] names no context ({len(ctx)} given)")
            elif n not in seen:
                seen.add(n)
                c = ctx[n - 1]
                cites.append(Citation(c.doc_id, c.start, c.end, c.text))
        return GeneratedAnswer(reply.strip(), tuple(cites), tuple(notes))
