"""mlsys.rag: exact-offset chunkers, embedders bound to embedding spaces, a versioned document store
with incremental re-embedding, BM25 / dense / hybrid retrieval, chunk expansion and golden-set
evaluation.

Example:
    >>> from mlsys.rag import DocumentStore, HashingEmbedder, RecursiveChunker
    >>> store = DocumentStore(HashingEmbedder(dim=64), chunker=RecursiveChunker(size=40))
    >>> _ = store.upsert({"d1": "The policy was updated in Q3. The new threshold is 500 units."})
    >>> [h.text for h in store.bm25_retriever().retrieve(["threshold"], k=1)[0]]
    ['The new threshold is 500 units.']
"""

from mlsys.rag._bm25 import ENGLISH_STOPWORDS, Analyzer, AnalyzerConfig, BM25Config, BM25Index
from mlsys.rag._cache import EmbeddingCache, default_cache_dir, text_sha256
from mlsys.rag._chunk import (
    CharacterLength,
    Chunk,
    LengthFunction,
    TokenizerLength,
    WhitespaceTokenLength,
    minilm_token_length,
)
from mlsys.rag._chunkers import (
    Chunker,
    FixedSizeChunker,
    RecursiveChunker,
    SentenceChunker,
    SlidingWindowChunker,
    sentence_spans,
)
from mlsys.rag._embedders import BaseEmbedder, Embedder, HashingEmbedder, MiniLMEmbedder, minilm_model_path
from mlsys.rag._evaluation import (
    DEFAULT_METRICS,
    BeirEvaluation,
    beir_documents,
    compare_retrievers,
    evaluate_beir,
    evaluate_retriever,
    retrieval_run,
)
from mlsys.rag._expansion import (
    ChunkExpander,
    ChunkTable,
    ExpandedContext,
    ExpansionReport,
    ExpansionSource,
    HitOutcome,
)
from mlsys.rag._retrievers import (
    BM25Retriever,
    Catalog,
    DenseRetriever,
    Hit,
    HybridRetriever,
    RetrievalResult,
    Retriever,
)
from mlsys.rag._store import ChangeEvent, Document, DocumentStore, Migration, UpsertReport

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_METRICS",
    "ENGLISH_STOPWORDS",
    "Analyzer",
    "AnalyzerConfig",
    "BM25Config",
    "BM25Index",
    "BM25Retriever",
    "BaseEmbedder",
    "BeirEvaluation",
    "Catalog",
    "ChangeEvent",
    "CharacterLength",
    "Chunk",
    "ChunkExpander",
    "ChunkTable",
    "Chunker",
    "DenseRetriever",
    "Document",
    "DocumentStore",
    "Embedder",
    "EmbeddingCache",
    "ExpandedContext",
    "ExpansionReport",
    "ExpansionSource",
    "FixedSizeChunker",
    "HashingEmbedder",
    "Hit",
    "HitOutcome",
    "HybridRetriever",
    "LengthFunction",
    "MiniLMEmbedder",
    "Migration",
    "RecursiveChunker",
    "RetrievalResult",
    "Retriever",
    "SentenceChunker",
    "SlidingWindowChunker",
    "TokenizerLength",
    "UpsertReport",
    "WhitespaceTokenLength",
    "__version__",
    "beir_documents",
    "compare_retrievers",
    "default_cache_dir",
    "evaluate_beir",
    "evaluate_retriever",
    "minilm_model_path",
    "minilm_token_length",
    "retrieval_run",
    "sentence_spans",
    "text_sha256",
]
