"""One contract for every retriever: shapes, padding, ordering, filters, bad input, provenance."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def _reference_fusion(
    lists: list[tuple[np.ndarray, np.ndarray]], weights: list[float], fusion: str, rrf_k: float, k: int
) -> list[list[tuple[int, float]]]:
    out = []
    for qi in range(lists[0][0].shape[0]):
        fused: dict[int, float] = {}
        best: dict[int, int] = {}
        for (ids, scores), w in zip(lists, weights):
            valid = ids[qi] >= 0
            row_ids, row_sc = ids[qi][valid].tolist(), scores[qi][valid].astype(np.float64)
            if fusion == "weighted" and row_sc.size:
                lo, hi = row_sc.min(), row_sc.max()
                norm = (row_sc - lo) / (hi - lo) if hi > lo else np.ones_like(row_sc)
            for rank, cid in enumerate(row_ids, start=1):
                c = w / (rrf_k + rank) if fusion == "rrf" else w * float(norm[rank - 1])
                fused[cid] = fused.get(cid, 0.0) + c
                best[cid] = min(best.get(cid, rank), rank)
        top = sorted(fused, key=lambda c: (-fused[c], best[c], c))[:k]
        out.append([(c, fused[c]) for c in top])
    return out


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    fusion=st.sampled_from(["rrf", "weighted"]),
    n_lists=st.integers(1, 3),
    k=st.integers(1, 12),
)
def test_vectorised_fusion_matches_reference(seed: int, fusion: str, n_lists: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    nq, depth = 4, 8
    lists = []
    for _ in range(n_lists):
        ids = np.full((nq, depth), -1, np.int64)
        scores = np.full((nq, depth), -np.inf, np.float32)
        for q in range(nq):
            n = int(rng.integers(0, depth + 1))
            ids[q, :n] = rng.choice(20, size=n, replace=False) * 1000
            scores[q, :n] = np.sort(rng.choice([0.5, 1.0, 2.0, 3.0], size=n))[::-1]
        lists.append((ids, scores))
    weights = [float(w) for w in rng.uniform(0.1, 2.0, size=n_lists)]
    names = [BM25Retriever(name=f"r{i}") for i in range(n_lists)]
    hyb = HybridRetriever(names, fusion=fusion, weights=weights, rrf_k=60)
    got_ids, got_scores, prov = hyb.fuse(lists, nq, k)
    want = _reference_fusion(lists, weights, fusion, 60.0, k)
    for q in range(nq):
        n = len(want[q])
        assert got_ids[q, :n].tolist() == [c for c, _ in want[q]]
        np.testing.assert_allclose(got_scores[q, :n], [s for _, s in want[q]], rtol=1e-6)
        assert (got_ids[q, n:] == -1).all()
        for i, (ids, _scores) in enumerate(lists):
            for pos in range(n):
                cid = int(got_ids[q, pos])
                where = np.flatnonzero(ids[q] == cid)
                assert prov[f"r{i}"][0][q, pos] == (where[0] + 1 if where.size else 0)
