"""mlsys.rag: exact-offset chunkers, embedders with embedding spaces, retrieval and evaluation.

Example:
    >>> from mlsys.rag import RecursiveChunker
    >>> [c.text for c in RecursiveChunker(size=12).chunk("Short one. Another one.")]
    ["Short one. ", "Another one."]
"""

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
)
from mlsys.rag._embedders import BaseEmbedder, Embedder, HashingEmbedder, MiniLMEmbedder, minilm_model_path

__version__ = "0.1.0"

__all__ = [
    "BaseEmbedder",
    "CharacterLength",
    "Chunk",
    "Chunker",
    "Embedder",
    "EmbeddingCache",
    "FixedSizeChunker",
    "HashingEmbedder",
    "LengthFunction",
    "MiniLMEmbedder",
    "RecursiveChunker",
    "SentenceChunker",
    "SlidingWindowChunker",
    "TokenizerLength",
    "WhitespaceTokenLength",
    "__version__",
    "default_cache_dir",
    "minilm_model_path",
    "minilm_token_length",
    "text_sha256",
]
