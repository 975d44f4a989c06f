"""DocumentStore: incremental re-embedding, atomic writes, space safety, migration, persistence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlsys.common.errors import (
    CorruptFileError,
    DuplicateIdError,
    EmbeddingSpaceMismatchError,
    InvalidInputError,
    UnknownIdError,
)
from mlsys.rag import (
    ChangeEvent,
    Document,
    DocumentStore,
    HashingEmbedder,
    RecursiveChunker,
    SentenceChunker,
    compare_retrievers,
)

WORDS = (
    "alpha beta gamma delta epsilon zeta theta kappa lambda sigma omega river mountain forest ocean "
    "desert valley canyon glacier island prairie tundra meadow volcano harbor"
).split()


def make_docs(n: int, seed: int = 0, sentences: int = 6) -> list[Document]:
    rng = np.random.default_rng(seed)
    docs = []
    for i in range(n):
        sents = [
            " ".join(rng.choice(WORDS, size=rng.integers(4, 9)).tolist()).capitalize() + f" n{i}s{j}."
            for j in range(sentences)
        ]
        docs.append(Document(f"doc{i}", " ".join(sents), {"group": i % 3, "lang": "en" if i % 2 else "fr"}))
    return docs


def snapshot(store: DocumentStore) -> tuple[object, ...]:
    docs = {
        d: (store.document(d).text, dict(store.document(d).metadata), store.chunk_ids(d))
        for d in store.doc_ids()
    }
    ids = store.index.ids().tolist()
    vecs = store.index.get_vectors(np.array(ids, np.int64)).tolist() if ids else []
    return docs, ids, vecs, sorted(store.bm25.ids().tolist()), store.version, store._next_id


@pytest.fixture
def store() -> DocumentStore:
    s = DocumentStore(HashingEmbedder(dim=128), chunker=SentenceChunker(size=80), progress=False)
    s.upsert(make_docs(20))
    return s


def test_editing_one_document_embeds_exactly_the_changed_chunks(store: DocumentStore) -> None:
    emb = store.embedder
    assert isinstance(emb, HashingEmbedder)
    before = emb.n_encoded
    doc = store.document("doc7")
    chunks = store.chunks("doc7")
    assert len(chunks) >= 3
    # change the text of the second chunk only
    target = chunks[1]
    new_text = doc.text[: target.start] + target.text.replace(".", " edited.", 1) + doc.text[target.end :]
    report = store.upsert([Document("doc7", new_text, doc.metadata)])
    assert emb.n_encoded - before == 1
    assert (report.updated, report.chunks_embedded, report.chunks_removed) == (1, 1, 1)
    assert report.chunks_reused == len(chunks) - 1
    # an unchanged re-upsert embeds nothing
    before = emb.n_encoded
    report = store.upsert(make_docs(20)[:7] + make_docs(20)[8:])
    assert emb.n_encoded == before
    assert report.unchanged == 19
    # every chunk's stored vector is the embedding of its current text
    for d in ("doc7", "doc3"):
        for c in store.chunks(d):
            (cid,) = [i for i in store.chunk_ids(d) if store.chunk(i).seq == c.seq]
            np.testing.assert_allclose(
                store.index.get_vectors(np.array([cid]))[0], emb.embed_documents([c.text])[0], atol=1e-6
            )
            assert store.document(d).text[c.start : c.end] == c.text


def test_inserting_a_sentence_reuses_moved_chunks(store: DocumentStore) -> None:
    doc = store.document("doc2")
    n_before = len(store.chunks("doc2"))
    emb = store.embedder
    assert isinstance(emb, HashingEmbedder)
    before = emb.n_encoded
    report = store.upsert([Document("doc2", "Brand new opening sentence here. " + doc.text, doc.metadata)])
    assert report.chunks_reused >= n_before - 2  # chunks after the edit moved but kept their vectors
    assert emb.n_encoded - before == report.chunks_embedded <= 2


def test_metadata_only_change_reembeds_nothing(store: DocumentStore) -> None:
    emb = store.embedder
    assert isinstance(emb, HashingEmbedder)
    before = emb.n_encoded
    doc = store.document("doc1")
    report = store.upsert([Document("doc1", doc.text, {"group": 99})])
    assert report.updated == 1 and report.chunks_embedded == 0 and emb.n_encoded == before
    assert store.document("doc1").metadata == {"group": 99}


class ExplodingEmbedder(HashingEmbedder):
    """Fails on its second batch."""

    def __init__(self) -> None:
        super().__init__(dim=128, batch_size=2)
        self.fail_after = 10**9

    def _encode(self, texts: list[str]) -> np.ndarray:
        if self.n_calls >= self.fail_after:
            raise RuntimeError("model crashed")
        return super()._encode(texts)


def test_failed_upsert_leaves_store_exactly_as_it_was() -> None:
    emb = ExplodingEmbedder()
    store = DocumentStore(emb, chunker=SentenceChunker(size=80), progress=False)
    store.upsert(make_docs(5))
    snap = snapshot(store)
    emb.fail_after = emb.n_calls + 1
    with pytest.raises(RuntimeError, match="model crashed"):
        store.upsert(make_docs(8, seed=1))
    assert snapshot(store) == snap
    # bad documents anywhere in the batch: refused before anything is written
    for bad, err in [
        ([("doc0", "new text for doc0"), ("x", "   ")], InvalidInputError),
        ([("a", "text"), ("a", "other")], DuplicateIdError),
        ([("a", b"bytes")], InvalidInputError),
        ([("a", "caf\udce9")], InvalidInputError),
        ([("a", "ok", {"bad": object()})], InvalidInputError),
    ]:
        with pytest.raises(err):
            store.upsert(bad)
        assert snapshot(store) == snap
    with pytest.raises(UnknownIdError):
        store.delete(["doc0", "nope"])
    assert snapshot(store) == snap
    with pytest.raises(UnknownIdError):
        store.apply([ChangeEvent("upsert", "z", "zzz"), ChangeEvent("delete", "nope")])
    assert snapshot(store) == snap


def test_delete_and_events(store: DocumentStore) -> None:
    n_chunks = store.n_chunks
    gone = len(store.chunks("doc0")) + len(store.chunks("doc1"))
    report = store.delete(["doc0", "doc1"])
    assert report.deleted == 2 and store.n_chunks == n_chunks - gone
    assert "doc0" not in store and len(store.index) == len(store.bm25) == store.n_chunks
    report = store.apply(
        [
            ChangeEvent("upsert", "e1", "Event one text. Second sentence."),
            ChangeEvent("upsert", "e2", "Event two."),
            ChangeEvent("delete", "e2"),
            ChangeEvent("delete", "doc5"),
            ChangeEvent("upsert", "e1", "Event one text, final version."),
        ]
    )
    assert "e1" in store and "e2" not in store and "doc5" not in store
    assert store.document("e1").text == "Event one text, final version."
    meta = store.document("doc6").metadata
    store.apply([ChangeEvent("upsert", "doc6", "Rewritten text only.")])
    assert store.document("doc6").metadata == meta and store.document("doc6").text == "Rewritten text only."
    assert report.added == 1 and report.deleted == 1
    hits = store.bm25_retriever().retrieve(["final version"], k=1)[0].hits
    assert hits[0].doc_id == "e1"


def test_query_from_another_space_is_refused(store: DocumentStore) -> None:
    from mlsys.rag import DenseRetriever

    same_width_other_revision = HashingEmbedder(dim=128, seed=1)
    assert same_width_other_revision.space.dim == store.space.dim
    with pytest.raises(EmbeddingSpaceMismatchError):
        DenseRetriever(store.index, same_width_other_revision)
    vecs = same_width_other_revision.embed_queries(["alpha"])
    with pytest.raises(EmbeddingSpaceMismatchError):
        store.dense_retriever().search_vectors(vecs, 3, space=same_width_other_revision.space)
    ok = store.embedder.embed_queries(["alpha"])
    ids, _ = store.dense_retriever().search_vectors(ok, 3, space=store.space)
    assert (ids >= 0).all()


def test_filters_still_return_k(store: DocumentStore) -> None:
    for retriever in (store.dense_retriever(), store.bm25_retriever(), store.hybrid_retriever()):
        res = retriever.retrieve(["alpha river"], k=5, where={"group": 1})[0]
        assert len(res) == 5
        assert all(store.document(h.doc_id).metadata["group"] == 1 for h in res.hits)  # type: ignore[arg-type]
        res = retriever.retrieve(["alpha river"], k=4, where=lambda m: m["lang"] == "fr")[0]
        assert len(res) == 4 and all(h.doc_id is not None and int(h.doc_id[3:]) % 2 == 0 for h in res.hits)
        denied = store.chunk_ids("doc4")
        ids, _ = retriever.search(["alpha river"], k=50, deny=denied)
        assert not set(ids.ravel().tolist()) & set(denied)


def test_hybrid_provenance_and_rrf(store: DocumentStore) -> None:
    dense, bm25 = store.dense_retriever(), store.bm25_retriever()
    hyb = store.hybrid_retriever(depth=50)
    q = ["gamma glacier volcano"]
    d_ids = dense.search(q, 50)[0][0].tolist()
    b_ids = bm25.search(q, 50)[0][0].tolist()
    res = hyb.retrieve(q, k=10)[0]
    for h in res.hits:
        expected = sum(1.0 / (60 + lst.index(h.id) + 1) for lst in (d_ids, b_ids) if h.id in lst)
        assert h.score == pytest.approx(expected, rel=1e-6)
        for name, lst in (("dense", d_ids), ("bm25", b_ids)):
            if h.id in lst:
                assert h.provenance[name][0] == lst.index(h.id) + 1
            else:
                assert name not in h.provenance
    assert [h.rank for h in res.hits] == list(range(1, 11))
    assert all(a.score >= b.score for a, b in zip(res.hits, res.hits[1:]))
    weighted = store.hybrid_retriever(fusion="weighted", weights=[0.3, 0.7]).retrieve(q, k=5)[0]
    assert len(weighted) == 5 and weighted.hits[0].score <= 1.0 + 1e-6


def test_persistence_round_trip(store: DocumentStore, tmp_path: Path) -> None:
    path = tmp_path / "store"
    store.save(path)
    store.save(path)  # overwriting is atomic and works
    loaded = DocumentStore.load(path, HashingEmbedder(dim=128))
    assert snapshot(loaded)[:4] == snapshot(store)[:4]
    q = ["delta canyon harbor"]
    for make in ("dense_retriever", "bm25_retriever", "hybrid_retriever"):
        a = getattr(store, make)().search(q, 10)
        b = getattr(loaded, make)().search(q, 10)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_allclose(a[1], b[1], rtol=1e-6)
    # the loaded store keeps working incrementally
    emb = loaded.embedder
    assert isinstance(emb, HashingEmbedder)
    before = emb.n_encoded
    loaded.upsert([Document("new", "A fresh document. With two sentences.")])
    assert emb.n_encoded - before == 1
    with pytest.raises(EmbeddingSpaceMismatchError):
        DocumentStore.load(path, HashingEmbedder(dim=128, seed=3))
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["class"] == "DocumentStore" and manifest["space"]["dim"] == 128
    docs = path / "documents.json"
    docs.write_text(docs.read_text().replace("Alpha", "Alphx", 1))
    with pytest.raises(CorruptFileError, match="sha256"):
        DocumentStore.load(path, HashingEmbedder(dim=128))


def test_migrate_builds_shadow_and_swaps_atomically(store: DocumentStore) -> None:
    old_space = store.space
    new = HashingEmbedder(dim=256, ngrams=2)
    migration = store.migrate(new)
    assert store.space == old_space  # nothing changed yet
    assert len(migration.index) == store.n_chunks
    # side-by-side evaluation on a small golden set built from the corpus
    queries = {f"q{i}": store.chunks(f"doc{i}")[0].text for i in range(5, 10)}
    qrels = {f"q{i}": {f"doc{i}": 1} for i in range(5, 10)}
    side = compare_retrievers(
        {"current": store.dense_retriever(), "shadow": migration.dense_retriever()},
        queries,
        qrels,
        metrics=["ndcg@10"],
        doc_of=store.doc_of,
    )
    assert set(side) == {"current", "shadow"} and side["shadow"]["ndcg@10"] > 0.5
    # a write during the migration is caught up at commit
    store.upsert([Document("late", "Late arrival sentence. Another one.")])
    dense = store.dense_retriever()
    migration.commit()
    assert store.space == new.space
    assert sorted(store.index.ids().tolist()) == sorted(store.bm25.ids().tolist())
    assert dense.search(["late arrival"], 1)[0][0, 0] in store.chunk_ids("late")
    with pytest.raises(InvalidInputError):
        migration.commit()


def test_store_rejects_bad_construction() -> None:
    with pytest.raises(InvalidInputError):
        DocumentStore("not an embedder")  # type: ignore[arg-type]
    store = DocumentStore(HashingEmbedder(dim=16), chunker=RecursiveChunker(size=10, separators=(" ",)))
    with pytest.raises(InvalidInputError, match="none of the separators"):
        store.upsert({"a": "x" * 50})
    assert len(store) == 0 and len(store.index) == 0


OPS = st.lists(
    st.tuples(
        st.sampled_from(["upsert", "delete", "events"]),
        st.lists(st.tuples(st.integers(0, 6), st.integers(0, 40)), min_size=1, max_size=4),
    ),
    min_size=1,
    max_size=8,
)


def _text(variant: int) -> str:
    rng = np.random.default_rng(variant)
    return " ".join(
        " ".join(rng.choice(WORDS, size=5).tolist()).capitalize() + f" v{variant % 5}s{j}." for j in range(4)
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS)
def test_store_matches_a_model_under_random_writes(ops: list[tuple[str, list[tuple[int, int]]]]) -> None:
    emb = HashingEmbedder(dim=64)
    store = DocumentStore(emb, chunker=SentenceChunker(size=60), progress=False)
    model: dict[str, str] = {}
    for op, items in ops:
        pairs = {f"d{i}": _text(v) for i, v in items}
        if op == "upsert":
            store.upsert(pairs)
            model.update(pairs)
        elif op == "delete":
            ids = sorted(pairs)
            if all(d in model for d in ids):
                store.delete(ids)
                for d in ids:
                    del model[d]
            else:
                before = snapshot(store)
                with pytest.raises(UnknownIdError):
                    store.delete(ids)
                assert snapshot(store) == before
        else:
            events = [
                ChangeEvent("delete", d)
                if (d in model and v % 3 == 0)
                else ChangeEvent("upsert", d, _text(v))
                for (i, v), d in ((iv, f"d{iv[0]}") for iv in items)
            ]
            store.apply(events)
            for ev in events:
                if ev.op == "delete":
                    model.pop(ev.doc_id, None)
                else:
                    assert ev.text is not None
                    model[ev.doc_id] = ev.text
        # invariants: same documents, same chunks everywhere, every vector embeds its chunk's text
        assert {d: store.document(d).text for d in store.doc_ids()} == model
        all_ids = sorted(c for d in model for c in store.chunk_ids(d))
        assert sorted(store.index.ids().tolist()) == all_ids == sorted(store.bm25.ids().tolist())
        for d, text in model.items():
            chunks = store.chunks(d)
            assert [(c.start, c.end) for c in chunks] == store.chunker.spans(text)  # type: ignore[union-attr]
            vecs = store.index.get_vectors(np.array(store.chunk_ids(d), np.int64))
            np.testing.assert_allclose(vecs, emb.embed_documents([c.text for c in chunks]), atol=1e-6)


@pytest.mark.parametrize(("kind", "params"), [("hnsw", {}), ("faiss", {"factory": "Flat"})])
def test_store_on_other_ann_backends(kind: str, params: dict[str, object], tmp_path: Path) -> None:
    pytest.importorskip("hnswlib" if kind == "hnsw" else "faiss")
    try:
        store = DocumentStore(
            HashingEmbedder(dim=64), chunker=SentenceChunker(size=80), index_kind=kind, index_params=params
        )
    except InvalidInputError:  # parameter names differ between backends: fall back to defaults
        store = DocumentStore(HashingEmbedder(dim=64), chunker=SentenceChunker(size=80), index_kind=kind)
    exact = DocumentStore(HashingEmbedder(dim=64), chunker=SentenceChunker(size=80))
    for s in (store, exact):
        s.upsert(make_docs(15))
        s.delete(["doc3"])
    q = ["alpha river canyon"]
    got = store.dense_retriever().search(q, 5)[0]
    want = exact.dense_retriever().search(q, 5)[0]
    assert len(set(got[0].tolist()) & set(want[0].tolist())) >= 4
    store.save(tmp_path / "s")
    loaded = DocumentStore.load(tmp_path / "s", HashingEmbedder(dim=64))
    assert loaded.index_kind == kind
    np.testing.assert_array_equal(loaded.dense_retriever().search(q, 5)[0], got)
