"""One contract for every retriever: shapes, padding, ordering, filters, bad input, provenance."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from mlsys.common.errors import InvalidInputError, UnknownNameError
from mlsys.rag import (
    BM25Retriever,
    DocumentStore,
    HashingEmbedder,
    HybridRetriever,
    RetrievalResult,
    Retriever,
    SentenceChunker,
)

DOCS = {
    f"doc{i}": f"Topic {t} sentence about {t} things number {i}. Another {t} fact follows here."
    for i, t in enumerate(["rivers", "mountains", "oceans", "deserts", "forests", "glaciers"] * 3)
}
DOCS |= {f"meta{i}": f"Metadata document {i} about rivers." for i in range(3)}


@pytest.fixture(scope="module")
def store() -> DocumentStore:
    s = DocumentStore(HashingEmbedder(dim=128), chunker=SentenceChunker(size=60), progress=False)
    s.upsert([(d, t, {"even": int(d[-1]) % 2 == 0}) for d, t in DOCS.items()])
    return s


FACTORIES: dict[str, Callable[[DocumentStore], Retriever]] = {
    "dense": lambda s: s.dense_retriever(),
    "bm25": lambda s: s.bm25_retriever(),
    "rrf": lambda s: s.hybrid_retriever(),
    "weighted": lambda s: s.hybrid_retriever(fusion="weighted", weights=[0.4, 0.6]),
}


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_retriever_contract(kind: str, store: DocumentStore) -> None:
    r = FACTORIES[kind](store)
    assert isinstance(r, Retriever)
    ids, scores = r.search(["rivers things", "glaciers topic"], k=7)
    assert ids.shape == scores.shape == (2, 7) and ids.dtype == np.int64 and scores.dtype == np.float32
    assert (ids >= 0).all() and np.all(np.diff(scores, axis=1) <= 1e-7)
    assert all(len(set(row.tolist())) == 7 for row in ids)
    # more results asked than chunks exist: padded with -1 / -inf
    big, big_scores = r.search(["rivers"], k=store.n_chunks + 5)
    if kind != "bm25":  # BM25 returns only matching chunks, padding the rest
        assert (big[0, : store.n_chunks] >= 0).all()
    assert (big[0, store.n_chunks :] == -1).all() and np.isneginf(big_scores[0, store.n_chunks :]).all()
    # the record path agrees with the array path and carries provenance and text
    (res,) = r.retrieve(["rivers things"], k=7)
    assert isinstance(res, RetrievalResult) and res.ids.tolist() == ids[0].tolist()
    for h in res.hits:
        assert h.doc_id is not None and h.text == store.chunk(h.id).text and h.provenance
    # filters: never leak, still fill k
    ids_f, _ = r.search(["rivers things"], k=5, where={"even": True})
    allowed = set(store.filter_ids({"even": True}).tolist())
    assert (ids_f >= 0).all() and set(ids_f.ravel().tolist()) <= allowed
    # bad input is refused
    for bad in (["  "], "a bare string", [b"bytes"]):
        with pytest.raises(InvalidInputError):
            r.search(bad, k=3)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        r.search(["x"], k=0)


def test_where_needs_a_catalog_and_hybrid_validation() -> None:
    r = BM25Retriever()
    r.add([1], ["rivers"])
    with pytest.raises(InvalidInputError, match="catalog"):
        r.search(["rivers"], k=1, where={"a": 1})
    with pytest.raises(UnknownNameError):
        HybridRetriever([r], fusion="max")
    with pytest.raises(InvalidInputError, match="distinct"):
        HybridRetriever([r, r])
    with pytest.raises(InvalidInputError, match="weights"):
        HybridRetriever([r], weights=[1.0, 2.0])
