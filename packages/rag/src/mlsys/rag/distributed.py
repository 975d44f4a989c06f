"""Corpus ingestion on Ray Data (the optional extra ``mlsys-rag[ray]``).

:func:`ingest_ray` is :meth:`DocumentStore.upsert` with the embedding step — the expensive one —
run as a Ray Data pipeline: the store plans the write in this process (chunking, chunk ids,
content hashes: exactly what ``upsert`` would assign), the chunks that need a vector go through
``map_batches`` over a pool of actors each holding one embedder (batch size and concurrency
settable), and the store commits the write with those vectors only once every chunk has one.

- Same result as one process: same chunk ids, the same embedding space, and the vectors the same
  embedder produces for the same texts (byte-identical for embedders whose output does not depend
  on the batch, as :class:`~mlsys.rag.HashingEmbedder`; a transformer's padding may change the last
  bits, as it does between two batch sizes in one process).
- All or nothing: a failed or killed job commits nothing (the store keeps its version).
- Resumable: with an :class:`~mlsys.rag.EmbeddingCache` on the embedder, every batch an actor
  finished is in the cache (SQLite, shared by the processes of one machine, or a shared file),
  so a rerun sends only the missing chunks to the model. :class:`RayIngestReport` counts both.

Example:
    >>> import ray  # doctest: +SKIP
    >>> ray.init(num_cpus=2)  # doctest: +SKIP
    >>> store = DocumentStore(HashingEmbedder(dim=64, cache=EmbeddingCache()), chunker=RecursiveChunker(size=400))  # doctest: +SKIP
    >>> ingest_ray(store, corpus, batch_size=256, concurrency=2).encoded  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from mlsys.common.distributed import ensure_ray
from mlsys.common.errors import (
    EmbeddingSpaceMismatchError,
    InvalidInputError,
    MlsysError,
    ShardUnavailableError,
)
from mlsys.common.spaces import EmbeddingSpace
from mlsys.common.validation import check_k
from mlsys.rag._embedders import Embedder
from mlsys.rag._store import DocumentStore, UpsertReport, _as_documents

__all__ = ["RayEmbedder", "RayIngestReport", "ingest_ray"]

RAY_EXTRA = "mlsys-rag[ray]"


@dataclass(frozen=True)
class RayIngestReport:
    """What :func:`ingest_ray` did.

    Attributes:
        report: the store's :class:`~mlsys.rag.UpsertReport` (documents and chunks).
        encoded: distinct texts the actors sent to the model (cache misses).
        from_cache: new chunks whose vector did not come from the model in this run: cache hits,
            and repeats of a text already encoded in the same batch.
        seconds: wall time of the whole call.

    Example:
        >>> RayIngestReport(UpsertReport(added=1, chunks_embedded=2), encoded=2, from_cache=0, seconds=0.1).encoded
        2
    """

    report: UpsertReport
    encoded: int
    from_cache: int
    seconds: float


class RayEmbedder:
    """A Ray Data callable class: ``{"i", "text"}`` batches in, ``{"i", "vector", "encoded", "space_id"}`` out.

    Args:
        embedder_factory: a picklable zero-argument callable returning the embedder (called once
            per actor: one model per actor), or an embedder itself (pickled to each actor).

    ``encoded`` is, on the first row of each batch, how many texts of the batch the model encoded
    (the others came from the embedder's cache), 0 on the other rows.

    Example:
        >>> from mlsys.rag import HashingEmbedder
        >>> out = RayEmbedder(HashingEmbedder(dim=8))({"i": np.arange(2), "text": np.array(["a", "b"])})
        >>> out["vector"].shape, int(out["encoded"].sum())
        ((2, 8), 2)
    """

    def __init__(self, embedder_factory: Callable[[], Embedder] | Embedder) -> None:
        emb = embedder_factory if isinstance(embedder_factory, Embedder) else embedder_factory()
        if not isinstance(emb, Embedder):
            raise InvalidInputError(f"embedder_factory must give an Embedder, got {type(emb).__name__}")
        self.embedder = emb

    def __call__(self, batch: dict[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        texts = [str(t) for t in batch["text"].tolist()]
        before = int(getattr(self.embedder, "n_encoded", 0))
        vecs = self.embedder.embed_documents(texts, progress=False)
        encoded = np.zeros(len(texts), dtype=np.int64)
        if len(texts):
            encoded[0] = int(getattr(self.embedder, "n_encoded", len(texts))) - before
        space_id = np.full(len(texts), self.embedder.space.space_id, dtype=object)
        return {
            "i": np.asarray(batch["i"], dtype=np.int64),
            "vector": vecs,
            "encoded": encoded,
            "space_id": space_id,
        }


class _Precomputed:
    """The store's embedder for one commit: answers ``embed_documents`` with the vectors from Ray."""

    def __init__(self, embedder: Embedder, texts: list[str], vectors: npt.NDArray[np.float32]) -> None:
        self._embedder, self._texts, self._vectors = embedder, texts, vectors

    @property
    def space(self) -> EmbeddingSpace:
        return self._embedder.space

    def embed_documents(
        self, texts: Sequence[str], *, progress: bool | None = None
    ) -> npt.NDArray[np.float32]:
        if list(texts) != self._texts:  # the plan changed under us: refuse rather than mismatch
            raise InvalidInputError("the store changed during ingest_ray; nothing was committed, rerun it")
        return self._vectors

    def embed_queries(self, texts: Sequence[str], *, progress: bool | None = None) -> npt.NDArray[np.float32]:
        return self._embedder.embed_queries(texts, progress=progress)


def ingest_ray(
    store: DocumentStore,
    documents: Any,
    *,
    embedder_factory: Callable[[], Embedder] | None = None,
    batch_size: int = 64,
    concurrency: int = 2,
    cpus_per_actor: float = 1.0,
) -> RayIngestReport:
    """Chunk, embed (on Ray Data) and index ``documents`` into ``store``, as ``store.upsert`` would.

    Args:
        store: the :class:`~mlsys.rag.DocumentStore` to write into (its chunker and space are used).
        documents: what :meth:`DocumentStore.upsert` takes.
        embedder_factory: builds the embedder in each actor (for models that should be loaded
            there); default: the store's embedder, pickled to each actor (its cache comes along).
            It must produce the store's embedding space.
        batch_size: chunk texts per ``map_batches`` batch (one model call per batch).
        concurrency: number of embedding actors.
        cpus_per_actor: Ray CPUs each actor reserves.

    Raises:
        MissingDependencyError: Ray is not installed (``pip install 'mlsys-rag[ray]'``).
        ShardUnavailableError: the Ray job failed (an actor died for good, the embedder raised);
            nothing was committed, and a rerun takes the finished batches from the cache.
        EmbeddingSpaceMismatchError: the factory's embedder is from another space than the store.
        InvalidInputError: bad documents or parameters (nothing is written).

    Example:
        >>> report = ingest_ray(store, {"a": "alpha beta", "b": "gamma"}, concurrency=2)  # doctest: +SKIP
        >>> report.report.chunks_embedded, store.n_chunks  # doctest: +SKIP
        (2, 2)
    """
    t0 = time.perf_counter()
    if not isinstance(store, DocumentStore):
        raise InvalidInputError(f"store must be a DocumentStore, got {type(store).__name__}")
    batch_size = check_k(batch_size, name="batch_size", limit="max_batch")
    concurrency = check_k(concurrency, name="concurrency")
    if (
        isinstance(cpus_per_actor, bool)
        or not isinstance(cpus_per_actor, (int, float))
        or cpus_per_actor <= 0
    ):
        raise InvalidInputError(f"cpus_per_actor must be a number > 0, got {cpus_per_actor!r}")
    docs = _as_documents(documents)
    ray = ensure_ray(RAY_EXTRA)
    source: Callable[[], Embedder] | Embedder = embedder_factory or store.embedder
    with store._lock:  # the plan stays valid until the commit below
        plan = store._plan(docs, [])
        texts = list(plan.new_texts)
        vectors = np.zeros((len(texts), store.space.dim), dtype=np.float32)
        encoded = 0
        if texts:
            ds = ray.data.from_items([{"i": i, "text": t} for i, t in enumerate(texts)])
            ds = ds.map_batches(
                RayEmbedder,
                fn_constructor_args=(source,),
                batch_size=batch_size,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=concurrency),
                num_cpus=cpus_per_actor,
            )
            try:
                parts = list(ds.iter_batches(batch_size=None, batch_format="numpy"))
            except MlsysError:
                raise
            except Exception as exc:
                raise ShardUnavailableError(
                    f"the Ray ingestion job failed ({type(exc).__name__}: {_first_line(exc)}); nothing was "
                    "committed to the store; rerun it: chunks already embedded come from the embedding cache"
                ) from exc
            spaces = {str(s) for p in parts for s in p["space_id"].tolist()}
            if spaces != {store.space.space_id}:
                raise EmbeddingSpaceMismatchError(
                    f"the actors' embedder produced space(s) {sorted(spaces)}, the store is bound to "
                    f"{store.space.space_id} ({store.space}); nothing was committed"
                )
            idx = np.concatenate([p["i"] for p in parts])
            got = np.concatenate([p["vector"] for p in parts]).astype(np.float32, copy=False)
            if got.shape[1] != store.space.dim or np.sort(idx).tolist() != list(range(len(texts))):
                raise ShardUnavailableError(
                    f"the Ray ingestion job returned {idx.shape[0]} vectors of width {got.shape[1]} for "
                    f"{len(texts)} chunks of dim {store.space.dim}; nothing was committed"
                )
            vectors[idx] = got
            encoded = int(sum(int(p["encoded"].sum()) for p in parts))
        embedder, index = store._dense
        store._dense = (_Precomputed(embedder, texts, vectors), index)  # type: ignore[assignment]
        try:
            report = store._commit(docs, [])
        finally:
            store._dense = (embedder, index)
    return RayIngestReport(report, encoded, len(texts) - encoded, time.perf_counter() - t0)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1][:300] if text else ""
