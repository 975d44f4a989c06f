"""The answer pipeline (retrieve -> expand -> re-rank -> gate -> generate or abstain) and generators.

Example:
    >>> from mlsys.rag import DocumentStore, HashingEmbedder
    >>> from mlsys.rag.answer import AnswerPipeline
    >>> store = DocumentStore(HashingEmbedder(dim=64))
    >>> _ = store.upsert({"d1": "Refunds take 14 days."})
    >>> out = AnswerPipeline(store.hybrid_retriever()).answer("refunds")
    >>> doc = store.document(out.citations[0].doc_id).text
    >>> doc[out.citations[0].start:out.citations[0].end] == out.citations[0].quoted
    True
"""

from mlsys.rag.answer._generators import (
    Citation,
    ExtractiveGenerator,
    GeneratedAnswer,
    Generator,
    LLMGenerator,
    contexts_from_hits,
)
from mlsys.rag.answer._pipeline import Abstention, Answer, AnswerPipeline, Outcome

__all__ = [
    "Abstention",
    "Answer",
    "AnswerPipeline",
    "Citation",
    "ExtractiveGenerator",
    "GeneratedAnswer",
    "Generator",
    "LLMGenerator",
    "Outcome",
    "contexts_from_hits",
]
