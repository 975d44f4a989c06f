"""The answer pipeline: retrieve -> expand -> re-rank -> gate -> generate, or abstain and say why."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from mlsys.common.errors import InvalidInputError
from mlsys.common.validation import check_k
from mlsys.rag._embedders import check_texts
from mlsys.rag._expansion import ChunkExpander, ExpandedContext, ExpansionSource
from mlsys.rag._retrievers import Hit, Retriever
from mlsys.rag.answer._generators import Citation, ExtractiveGenerator, Generator, contexts_from_hits
from mlsys.rag.rerank._gate import GateDecision, RelevanceGate

__all__ = ["Abstention", "Answer", "AnswerPipeline", "Outcome"]

AbstentionReason = Literal["no_candidates", "low_relevance", "ambiguous", "no_supporting_sentence"]


@dataclass(frozen=True)
class Answer:
    """An answer with its citations and the evidence it was built from."""

    question: str
    text: str
    citations: tuple[Citation, ...]
    contexts: tuple[ExpandedContext, ...]
    hits: tuple[Hit, ...]
    gate: GateDecision | None
    notes: tuple[str, ...] = ()

    @property
    def abstained(self) -> bool:
        """False: this is an answer."""
        return False


@dataclass(frozen=True)
class Abstention:
    """A typed refusal to answer.

    Args:
        reason: ``"no_candidates"`` (nothing retrieved), ``"low_relevance"`` (the gate abstained),
            ``"ambiguous"`` (the gate was unsure and the pipeline does not answer on ambiguity),
            ``"no_supporting_sentence"`` (the generator found nothing to say).
        message: what to show the user.
    """

    question: str
    reason: AbstentionReason
    message: str
    hits: tuple[Hit, ...]
    gate: GateDecision | None

    @property
    def abstained(self) -> bool:
        """True: no answer was given."""
        return True


Outcome = Answer | Abstention
"""What :meth:`AnswerPipeline.answer` returns: an :class:`Answer` or an :class:`Abstention`."""


class AnswerPipeline:
    """Retrieve, re-rank, gate, expand and generate - or abstain with a reason.

    Args:
        retriever: first stage (e.g. ``store.hybrid_retriever()``); must return hits with text.
        reranker: optional re-ranker (``rerank_batch``); a
            :class:`~mlsys.rag.rerank.CalibratedReranker` when a gate reads its scores.
        gate: optional :class:`~mlsys.rag.rerank.RelevanceGate`; without one every non-empty
            retrieval is answered.
        generator: default :class:`ExtractiveGenerator`.
        expander, source: optional :class:`~mlsys.rag.ChunkExpander` and where neighbours come
            from (the store); without them each hit is its own context.
        k: candidates retrieved; top_k: hits handed to the generator.
        answer_on_ambiguous: answer when the gate says ``"ambiguous"`` (default: abstain).

    Example:
        >>> from mlsys.rag import DocumentStore, HashingEmbedder
        >>> store = DocumentStore(HashingEmbedder(dim=64))
        >>> _ = store.upsert({"d1": "The policy changed in 2021. Refunds now take 14 days."})
        >>> out = AnswerPipeline(store.hybrid_retriever(), top_k=1).answer("how long do refunds take")
        >>> out.text, out.citations[0].start
        ('Refunds now take 14 days.', 28)
    """

    def __init__(
        self,
        retriever: Retriever,
        *,
        reranker: Any = None,
        gate: RelevanceGate | None = None,
        generator: Generator | None = None,
        expander: ChunkExpander | None = None,
        source: ExpansionSource | None = None,
        k: int = 100,
        top_k: int = 5,
        answer_on_ambiguous: bool = False,
    ) -> None:
        if not isinstance(retriever, Retriever):
            raise InvalidInputError(
                f"retriever must implement the Retriever protocol, got {type(retriever).__name__}"
            )
        if reranker is not None and not callable(getattr(reranker, "rerank_batch", None)):
            raise InvalidInputError(f"reranker must have rerank_batch, got {type(reranker).__name__}")
        if gate is not None and not isinstance(gate, RelevanceGate):
            raise InvalidInputError(f"gate must be a RelevanceGate, got {type(gate).__name__}")
        gen = generator if generator is not None else ExtractiveGenerator()
        if not isinstance(gen, Generator):
            raise InvalidInputError(
                f"generator must implement generate(question, contexts), got {type(gen).__name__}"
            )
        if (expander is None) != (source is None):
            raise InvalidInputError("expander and source go together: give both or neither")
        self.retriever = retriever
        self.reranker = reranker
        self.gate = gate
        self.generator = gen
        self.expander = expander
        self.source = source
        self.k = check_k(k)
        self.top_k = check_k(top_k, name="top_k")
        self.answer_on_ambiguous = bool(answer_on_ambiguous)

    def answer(self, question: str) -> Outcome:
        """One question in, an :class:`Answer` or an :class:`Abstention` out."""
        return self.answer_batch([question])[0]

    def answer_batch(self, questions: Sequence[str]) -> list[Outcome]:
        """Several questions (retrieval and re-ranking batched)."""
        qs = check_texts(questions, what="questions", allow_blank=False, query=True)
        results = self.retriever.retrieve(qs, self.k)
        lists = [list(r.hits) for r in results]
        if self.reranker is not None:
            nonempty = [i for i, h in enumerate(lists) if h]
            if nonempty:
                ranked = self.reranker.rerank_batch([qs[i] for i in nonempty], [lists[i] for i in nonempty])
                for i, r in zip(nonempty, ranked):
                    lists[i] = list(r)
        return [self._finish(q, hits) for q, hits in zip(qs, lists)]

    def _finish(self, question: str, hits: list[Hit]) -> Outcome:
        if not hits:
            return Abstention(question, "no_candidates", "I found nothing about this question.", (), None)
        decision = self.gate.decide(hits, question) if self.gate is not None else None
        if decision is not None and decision.decision == "abstain":
            return Abstention(question, "low_relevance", decision.reason, tuple(hits), decision)
        if decision is not None and decision.decision == "ambiguous" and not self.answer_on_ambiguous:
            return Abstention(question, "ambiguous", decision.reason, tuple(hits), decision)
        top = hits[: self.top_k]
        if self.expander is not None and self.source is not None:
            contexts = self.expander.expand(top, self.source)
        else:
            contexts = contexts_from_hits(top)
        gen = self.generator.generate(question, contexts)
        if not gen.text:
            return Abstention(
                question, "no_supporting_sentence",
                "The retrieved context does not contain a sentence that answers this question.",
                tuple(hits), decision,
            )  # fmt: skip
        return Answer(question, gen.text, gen.citations, tuple(contexts), tuple(hits), decision, gen.notes)
