"""Corpus ingestion on Ray Data (issue 17): same chunk ids, byte-identical vectors, all-or-nothing, resumable."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from mlsys.common.errors import EmbeddingSpaceMismatchError, InvalidInputError, ShardUnavailableError
from mlsys.rag import DocumentStore, EmbeddingCache, HashingEmbedder, RecursiveChunker

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_cluster")]

WORDS = (
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma".split()
)


def corpus(n: int = 60, seed: int = 0) -> dict[str, str]:
    rng = np.random.default_rng(seed)
    docs = {}
    for d in range(n):
        sentences = [
            " ".join(rng.choice(WORDS, rng.integers(4, 12))).capitalize() + "."
            for _ in range(rng.integers(2, 7))
        ]
        docs[f"doc{d:03d}"] = " ".join(sentences)
    return docs


class FlakyEmbedder(HashingEmbedder):
    """Fails (raises) on its ``fail_at``-th model call in each actor: an injected mid-run failure."""

    def __init__(self, *args: Any, fail_at: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fail_at = fail_at

    def _encode(self, texts: list[str]) -> npt.NDArray[np.float32]:
        if self.n_calls + 1 >= self.fail_at:
            raise RuntimeError("injected failure in the middle of the ingestion")
        return super()._encode(texts)


class DyingEmbedder(HashingEmbedder):
    """Kills its actor process (as ``ray.kill`` or a lost node would) on the first call after a marker appears."""

    def __init__(self, *args: Any, marker: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.marker = marker

    def _encode(self, texts: list[str]) -> npt.NDArray[np.float32]:
        if self.n_calls >= 1 and os.path.exists(self.marker):
            os.remove(self.marker)
            os._exit(1)
        return super()._encode(texts)


def chunker() -> RecursiveChunker:
    return RecursiveChunker(size=60)


def reference(docs: dict[str, str]) -> DocumentStore:
    store = DocumentStore(HashingEmbedder(dim=64), chunker=chunker())
    store.upsert(docs)
    return store


def assert_same_store(got: DocumentStore, want: DocumentStore) -> None:
    assert got.space == want.space and got.n_chunks == want.n_chunks and got.doc_ids() == want.doc_ids()
    for doc in want.doc_ids():
        assert got.chunk_ids(doc) == want.chunk_ids(doc)
        assert [c.text for c in got.chunks(doc)] == [c.text for c in want.chunks(doc)]
    ids = want.index.ids()
    assert np.array_equal(got.index.ids(), ids)
    assert got.index.get_vectors(ids).tobytes() == want.index.get_vectors(ids).tobytes()  # byte-identical


def test_ingestion_equals_the_single_process_store(tmp_path: Path) -> None:
    from mlsys.rag.distributed import ingest_ray

    docs = corpus()
    want = reference(docs)
    store = DocumentStore(
        HashingEmbedder(dim=64, cache=EmbeddingCache(tmp_path / "c.sqlite")), chunker=chunker()
    )
    out = ingest_ray(store, docs, batch_size=16, concurrency=2, cpus_per_actor=0.5)
    assert_same_store(store, want)
    distinct = {c.text for d in want.doc_ids() for c in want.chunks(d)}  # the embedder encodes each text once
    assert out.report == want_report(docs) and out.encoded == len(distinct)
    assert out.from_cache == want.n_chunks - len(distinct)
    # an update through Ray re-embeds only the changed chunks, as upsert does
    changed = {"doc001": docs["doc001"] + " Omega appended.", "doc999": "A brand new document here."}
    want.upsert(changed)
    out = ingest_ray(store, changed, batch_size=16, concurrency=2, cpus_per_actor=0.5)
    assert_same_store(store, want)
    assert out.report.chunks_embedded == out.encoded + out.from_cache
    hits = store.hybrid_retriever().retrieve(["brand new document"], k=1)[0].hits
    assert hits[0].doc_id == "doc999"


def want_report(docs: dict[str, str]) -> Any:
    return DocumentStore(HashingEmbedder(dim=64), chunker=chunker()).upsert(docs)


def test_a_failure_mid_run_commits_nothing_and_the_rerun_resumes_from_the_cache(tmp_path: Path) -> None:
    from mlsys.rag.distributed import ingest_ray

    docs = corpus(seed=1)
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    store = DocumentStore(HashingEmbedder(dim=64, cache=cache), chunker=chunker())
    flaky = FlakyEmbedder(dim=64, cache=cache, fail_at=3, batch_size=8)
    assert flaky.space == store.space
    with pytest.raises(ShardUnavailableError, match="nothing was committed"):
        ingest_ray(
            store, docs, embedder_factory=lambda: flaky, batch_size=8, concurrency=2, cpus_per_actor=0.5
        )
    assert store.n_chunks == 0 and store.version == 0 and len(store.index) == 0  # no partial store
    done = cache.count(store.space)
    want = reference(docs)
    assert 0 < done < want.n_chunks  # some batches finished before the failure, not all
    out = ingest_ray(store, docs, batch_size=8, concurrency=2, cpus_per_actor=0.5)
    distinct = {c.text for d in want.doc_ids() for c in want.chunks(d)}
    assert out.encoded == len(distinct) - done  # the model saw only the texts the failed run had not cached
    assert_same_store(store, want)


def test_an_actor_killed_mid_run_is_retried_or_fails_cleanly(tmp_path: Path) -> None:
    from mlsys.rag.distributed import ingest_ray

    docs = corpus(seed=2)
    marker = tmp_path / "die-once"
    marker.write_text("x")
    store = DocumentStore(
        HashingEmbedder(dim=64, cache=EmbeddingCache(tmp_path / "c.sqlite")), chunker=chunker()
    )
    dying = DyingEmbedder(dim=64, marker=str(marker), batch_size=8)
    want = reference(docs)
    try:
        ingest_ray(
            store, docs, embedder_factory=lambda: dying, batch_size=8, concurrency=2, cpus_per_actor=0.5
        )
    except ShardUnavailableError:
        assert store.n_chunks == 0 and store.version == 0  # failed: nothing committed
        ingest_ray(store, docs, batch_size=8, concurrency=2, cpus_per_actor=0.5)
    assert not marker.exists()  # the actor did die
    assert_same_store(store, want)  # retried by Ray Data, or rerun: complete and exact either way


def test_bad_input(tmp_path: Path) -> None:
    from mlsys.rag.distributed import ingest_ray

    store = DocumentStore(HashingEmbedder(dim=64), chunker=chunker())
    with pytest.raises(InvalidInputError):
        ingest_ray(store, {"a": ""})  # empty text, refused before Ray runs
    with pytest.raises(InvalidInputError):
        ingest_ray(store, {"a": "x"}, batch_size=0)
    with pytest.raises(InvalidInputError):
        ingest_ray("not a store", {"a": "x"})  # type: ignore[arg-type]
    with pytest.raises(EmbeddingSpaceMismatchError):
        ingest_ray(
            store,
            {"a": "some text"},
            embedder_factory=lambda: HashingEmbedder(dim=32),
            concurrency=1,
            cpus_per_actor=0.5,
        )
    assert store.n_chunks == 0 and store.version == 0
