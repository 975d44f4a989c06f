"""Retrievers: dense, BM25 and hybrid (RRF or weighted), one ranked result type with provenance.

Every retriever has an array path, ``search(queries, k) -> (ids, scores)`` (``(n_queries, k)``,
padded ``-1``/``-inf``), and a record path, ``retrieve(queries, k) -> list[RetrievalResult]`` whose
hits carry the chunk text and, per retriever that found the hit, its rank and score. Filters are
applied before ranking, so a filtered search still returns ``k`` results whenever ``k`` allowed
items exist: ``allow``/``deny`` take ids, ``where`` takes metadata (``{"field": value}``,
``{"field": [v1, v2]}`` or a predicate on the metadata dict) and needs a catalog (a
:class:`~mlsys.rag.DocumentStore`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from mlsys.common.errors import InvalidInputError, UnknownNameError
from mlsys.common.spaces import EmbeddingSpace
from mlsys.common.validation import as_ids, check_k
from mlsys.rag._bm25 import BM25Config, BM25Index
from mlsys.rag._embedders import Embedder, check_texts

__all__ = [
    "BM25Retriever",
    "Catalog",
    "DenseRetriever",
    "Hit",
    "HybridRetriever",
    "RetrievalResult",
    "Retriever",
    "Where",
]

I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]
Where = Mapping[str, Any] | Callable[[Mapping[str, Any]], bool]
# name -> (ranks (nq, k) int64, 1-based, 0 = not found by that retriever; scores (nq, k) float32)
Provenance = dict[str, tuple[I64, F32]]


@dataclass(frozen=True)
class Hit:
    """One ranked result.

    Args:
        id: the chunk id (int64 id in the index).
        rank: 1-based position in the result list.
        score: the retriever's (fused) score; higher is better.
        doc_id, seq, text, start, end: the chunk, when the retriever has a catalog.
        provenance: per retriever that found this id: ``(rank, score)`` in its own list.

    Example:
        >>> Hit(7, 1, 0.03, provenance={"bm25": (2, 11.5), "dense": (1, 0.8)}).provenance["dense"]
        (1, 0.8)
    """

    id: int
    rank: int
    score: float
    doc_id: str | None = None
    seq: int | None = None
    text: str | None = None
    start: int | None = None
    end: int | None = None
    provenance: Mapping[str, tuple[int, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class RetrievalResult:
    """The ranked hits of one query.

    Example:
        >>> r = RetrievalResult("q", (Hit(5, 1, 0.9), Hit(2, 2, 0.4)), "bm25")
        >>> r.ids.tolist(), len(r)
        ([5, 2], 2)
    """

    query: str
    hits: tuple[Hit, ...]
    retriever: str

    @property
    def ids(self) -> I64:
        """Hit ids in rank order."""
        return np.array([h.id for h in self.hits], dtype=np.int64)

    @property
    def scores(self) -> F32:
        """Hit scores in rank order."""
        return np.array([h.score for h in self.hits], dtype=np.float32)

    def __len__(self) -> int:
        return len(self.hits)

    def __iter__(self) -> Any:
        return iter(self.hits)


@runtime_checkable
class Catalog(Protocol):
    """What retrievers need from a store: metadata filtering and chunk lookup."""

    def filter_ids(self, where: Where) -> I64:
        """Ids of the chunks whose document metadata matches ``where``."""
        ...

    def chunk_info(self, chunk_id: int) -> tuple[str, int, str, int, int]:
        """``(doc_id, seq, text, start, end)`` of a chunk."""
        ...


@runtime_checkable
class Retriever(Protocol):
    """The surface every retriever has."""

    name: str

    def search(
        self,
        queries: Sequence[str],
        k: int,
        *,
        allow: Any = None,
        deny: Any = None,
        where: Where | None = None,
    ) -> tuple[I64, F32]:
        """Top-``k`` ids and scores per query."""
        ...

    def retrieve(
        self,
        queries: Sequence[str],
        k: int,
        *,
        allow: Any = None,
        deny: Any = None,
        where: Where | None = None,
    ) -> list[RetrievalResult]:
        """Top-``k`` hits per query, with chunk text and provenance."""
        ...


class BaseRetriever(ABC):
    """Shared filter resolution and :class:`RetrievalResult` building."""

    name: str = "retriever"
    catalog: Catalog | None = None

    def _resolve(self, allow: Any, deny: Any, where: Where | None) -> tuple[Any, Any]:
        if where is None:
            return allow, deny
        if self.catalog is None:
            raise InvalidInputError(
                f"{type(self).__name__} has no catalog, so it cannot filter on metadata (where=...); "
                "build it from a DocumentStore or pass allow=/deny= ids"
            )
        matched = self.catalog.filter_ids(where)
        if allow is not None:
            matched = np.intersect1d(matched, as_ids(allow, name="allow"))
        return matched, deny

    @staticmethod
    def _check_queries(queries: Any) -> list[str]:
        return check_texts(queries, what="queries", allow_blank=False, query=True)

    def search(
        self,
        queries: Sequence[str],
        k: int,
        *,
        allow: Any = None,
        deny: Any = None,
        where: Where | None = None,
    ) -> tuple[I64, F32]:
        """Top-``k`` ids and scores per query (``(n_queries, k)``, padded ``-1``/``-inf``)."""
        qs = self._check_queries(queries)
        k = check_k(k)
        allow, deny = self._resolve(allow, deny, where)
        ids, scores, _ = self._search(qs, k, allow, deny)
        return ids, scores

    def retrieve(
        self,
        queries: Sequence[str],
        k: int,
        *,
        allow: Any = None,
        deny: Any = None,
        where: Where | None = None,
    ) -> list[RetrievalResult]:
        """Top-``k`` :class:`Hit` records per query, with text (given a catalog) and provenance."""
        qs = self._check_queries(queries)
        k = check_k(k)
        allow, deny = self._resolve(allow, deny, where)
        ids, scores, prov = self._search(qs, k, allow, deny)
        out = []
        for qi, q in enumerate(qs):
            hits = []
            for r in range(k):
                cid = int(ids[qi, r])
                if cid < 0:
                    break
                p = {
                    name: (int(ranks[qi, r]), float(sc[qi, r]))
                    for name, (ranks, sc) in prov.items()
                    if ranks[qi, r]
                }
                if self.catalog is not None:
                    doc_id, seq, text, start, end = self.catalog.chunk_info(cid)
                    hit = Hit(cid, r + 1, float(scores[qi, r]), doc_id, seq, text, start, end, provenance=p)
                else:
                    hit = Hit(cid, r + 1, float(scores[qi, r]), provenance=p)
                hits.append(hit)
            out.append(RetrievalResult(q, tuple(hits), self.name))
        return out

    @abstractmethod
    def _search(self, queries: list[str], k: int, allow: Any, deny: Any) -> tuple[I64, F32, Provenance]:
        """Validated queries in, ``(ids, scores, provenance)`` out."""

    def _own(self, ids: I64, scores: F32) -> tuple[I64, F32, Provenance]:
        ranks = np.where(ids >= 0, np.arange(1, ids.shape[1] + 1)[None, :], 0).astype(np.int64)
        return ids, scores, {self.name: (ranks, scores)}


class DenseRetriever(BaseRetriever):
    """Embed the queries, search a vector index of the same embedding space.

    A retriever whose embedder is in another space than the index (even a same-width model of
    another revision) is refused at construction with ``EmbeddingSpaceMismatchError``; so are query
    vectors of another space in :meth:`search_vectors`.

    Args:
        index: an :mod:`mlsys.common.ann` index.
        embedder: produces the query vectors; ``embedder.space`` must equal ``index.space``.
        catalog: optional (for ``where=`` filters and hit text).
        name: provenance label.

    Example:
        >>> from mlsys.common.ann import make_index
        >>> from mlsys.rag import HashingEmbedder
        >>> emb = HashingEmbedder(dim=32)
        >>> index = make_index("exact", emb.space)
        >>> index.add([1, 2], emb.embed_documents(["red apples", "blue sky"]))
        >>> DenseRetriever(index, emb).search(["apples"], k=1)[0].tolist()
        [[1]]
    """

    def __init__(
        self, index: Any, embedder: Embedder, *, catalog: Catalog | None = None, name: str = "dense"
    ):
        index.space.check_same(embedder.space, what="query vectors of this embedder")
        self.index = index
        self.embedder = embedder
        self.catalog = catalog
        self.name = name

    def search_vectors(
        self, vectors: Any, k: int, *, space: EmbeddingSpace, allow: Any = None, deny: Any = None
    ) -> tuple[I64, F32]:
        """Search with query vectors that were embedded elsewhere; their ``space`` is checked."""
        return self.index.search(vectors, check_k(k), allow=allow, deny=deny, space=space)  # type: ignore[no-any-return]

    def _search(self, queries: list[str], k: int, allow: Any, deny: Any) -> tuple[I64, F32, Provenance]:
        vecs = self.embedder.embed_queries(queries, progress=False)
        ids, scores = self.index.search(vecs, k, allow=allow, deny=deny, space=self.embedder.space)
        return self._own(ids, scores)


class BM25Retriever(BaseRetriever):
    """Lexical retrieval over a :class:`BM25Index` (incremental ``add``/``upsert``/``remove``).

    Args:
        index: a :class:`BM25Index` (a new empty one by default).
        catalog: optional (for ``where=`` filters and hit text).
        name: provenance label.

    Example:
        >>> r = BM25Retriever()
        >>> r.add([1, 2, 3], ["solar power plant", "wind farm", "solar panels on roofs"])
        >>> r.remove([3])
        >>> r.search(["solar"], k=2)[0].tolist()
        [[1, -1]]
    """

    def __init__(
        self, index: BM25Index | None = None, *, catalog: Catalog | None = None, name: str = "bm25"
    ) -> None:
        self.index = index if index is not None else BM25Index(BM25Config())
        self.catalog = catalog
        self.name = name

    def add(self, ids: Any, texts: Sequence[str]) -> None:
        """Index new texts."""
        self.index.add(ids, texts)

    def upsert(self, ids: Any, texts: Sequence[str]) -> None:
        """Index new texts and replace existing ones."""
        self.index.upsert(ids, texts)

    def remove(self, ids: Any) -> None:
        """Delete texts."""
        self.index.remove(ids)

    def _search(self, queries: list[str], k: int, allow: Any, deny: Any) -> tuple[I64, F32, Provenance]:
        ids, scores = self.index.search(queries, k, allow=allow, deny=deny)
        return self._own(ids, scores)


FUSIONS = ("rrf", "weighted")


class HybridRetriever(BaseRetriever):
    """Fuse several retrievers: reciprocal rank fusion (default) or a weighted sum of scores.

    RRF: ``score(d) = sum_r w_r / (rrf_k + rank_r(d))`` over the retrievers that returned ``d`` in
    their top ``depth``. Weighted: each retriever's scores are min-max normalised per query over
    its top ``depth`` and summed with weights ``w_r`` (absent = 0). Ties are broken by the best
    rank any retriever gave, then by id.

    Args:
        retrievers: the retrievers to fuse (distinct ``name``s).
        fusion: ``"rrf"`` or ``"weighted"``.
        rrf_k: the RRF constant (60, as Cormack et al.).
        weights: one weight per retriever (default all 1).
        depth: how many results each retriever contributes (at least ``k``).
        name: provenance label.

    Example:
        >>> a, b = BM25Retriever(name="a"), BM25Retriever(name="b")
        >>> a.add([1, 2], ["cat food", "dog food"]); b.add([1, 2], ["cat", "dog"])
        >>> h = HybridRetriever([a, b]).retrieve(["cat food"], k=2)[0].hits[0]
        >>> h.id, sorted(h.provenance)
        (1, ['a', 'b'])
    """

    def __init__(
        self,
        retrievers: Sequence[BaseRetriever],
        *,
        fusion: str = "rrf",
        rrf_k: float = 60.0,
        weights: Sequence[float] | None = None,
        depth: int = 100,
        catalog: Catalog | None = None,
        name: str = "hybrid",
    ) -> None:
        rs = list(retrievers)
        if len(rs) < 1:
            raise InvalidInputError("HybridRetriever needs at least one retriever, got none")
        names = [r.name for r in rs]
        if len(set(names)) != len(names):
            raise InvalidInputError(f"retriever names must be distinct for provenance, got {names}")
        if fusion not in FUSIONS:
            raise UnknownNameError(f"unknown fusion {fusion!r}; expected one of {FUSIONS}")
        if not isinstance(rrf_k, (int, float)) or isinstance(rrf_k, bool) or rrf_k < 0:
            raise InvalidInputError(f"rrf_k must be a number >= 0, got {rrf_k!r}")
        w = [1.0] * len(rs) if weights is None else [float(x) for x in weights]
        if len(w) != len(rs) or any(not np.isfinite(x) or x < 0 for x in w):
            raise InvalidInputError(
                f"weights must be {len(rs)} finite non-negative numbers (one per retriever), got {weights!r}"
            )
        self.retrievers = rs
        self.fusion = fusion
        self.rrf_k = float(rrf_k)
        self.weights = w
        self.depth = check_k(depth, name="depth")
        self.catalog = catalog if catalog is not None else next((r.catalog for r in rs if r.catalog), None)
        self.name = name

    def _search(self, queries: list[str], k: int, allow: Any, deny: Any) -> tuple[I64, F32, Provenance]:
        depth = max(k, self.depth)
        lists = [r._search(queries, depth, allow, deny)[:2] for r in self.retrievers]
        return self.fuse(lists, len(queries), k)

    def fuse(self, lists: Sequence[tuple[I64, F32]], n_queries: int, k: int) -> tuple[I64, F32, Provenance]:
        """Fuse per-retriever ``(ids, scores)`` arrays (one pair per retriever, best first).

        Vectorised over all queries: every ``(query, id)`` pair becomes one group, contributions
        are summed with ``bincount`` and each query's top ``k`` is taken after one ``lexsort``.
        """
        nq = n_queries
        rows, ids, contrib, ranks, owner, raw = [], [], [], [], [], []
        for r, ((lid, lsc), w) in enumerate(zip(lists, self.weights)):
            valid = lid >= 0
            rank = np.broadcast_to(np.arange(1, lid.shape[1] + 1), lid.shape)
            if self.fusion == "rrf":
                c = w / (self.rrf_k + rank.astype(np.float64))
            else:
                sc = lsc.astype(np.float64)
                lo = np.where(valid, sc, np.inf).min(axis=1, keepdims=True)
                hi = np.where(valid, sc, -np.inf).max(axis=1, keepdims=True)
                span = hi - lo
                with np.errstate(invalid="ignore", divide="ignore"):
                    c = w * np.where(span > 0, (sc - lo) / np.where(span > 0, span, 1.0), 1.0)
            qrow = np.broadcast_to(np.arange(nq)[:, None], lid.shape)
            rows.append(qrow[valid])
            ids.append(lid[valid])
            contrib.append(c[valid])
            ranks.append(rank[valid])
            owner.append(np.full(int(valid.sum()), r))
            raw.append(lsc[valid])
        out_ids = np.full((nq, k), -1, dtype=np.int64)
        out_scores = np.full((nq, k), -np.inf, dtype=np.float32)
        prov: Provenance = {
            r.name: (np.zeros((nq, k), np.int64), np.full((nq, k), -np.inf, np.float32))
            for r in self.retrievers
        }
        all_ids = np.concatenate(ids)
        if all_ids.size == 0:
            return out_ids, out_scores, prov
        all_rows = np.concatenate(rows).astype(np.int64)
        uniq, code = np.unique(all_ids, return_inverse=True)
        key = all_rows * uniq.shape[0] + code
        groups, inv = np.unique(key, return_inverse=True)
        fused = np.bincount(inv, weights=np.concatenate(contrib), minlength=groups.shape[0])
        best = np.full(groups.shape[0], np.iinfo(np.int64).max, dtype=np.int64)
        all_ranks = np.concatenate(ranks).astype(np.int64)
        np.minimum.at(best, inv, all_ranks)
        g_row = groups // uniq.shape[0]
        g_id = uniq[groups % uniq.shape[0]]
        order = np.lexsort((g_id, best, -fused, g_row))
        srow = g_row[order]
        first = np.searchsorted(srow, np.arange(nq))
        pos = np.arange(order.shape[0]) - first[srow]
        keep = pos < k
        sel, r_sel, p_sel = order[keep], srow[keep], pos[keep]
        out_ids[r_sel, p_sel] = g_id[sel]
        out_scores[r_sel, p_sel] = fused[sel]
        # provenance: each retriever's own rank and score of every returned id
        slot = np.full(groups.shape[0], -1, dtype=np.int64)
        slot[sel] = np.arange(sel.shape[0])
        all_owner = np.concatenate(owner)
        all_raw = np.concatenate(raw)
        for r, retr in enumerate(self.retrievers):
            m = all_owner == r
            s_idx = slot[inv[m]]
            hit = s_idx >= 0
            pr, ps = prov[retr.name]
            pr[r_sel[s_idx[hit]], p_sel[s_idx[hit]]] = all_ranks[m][hit]
            ps[r_sel[s_idx[hit]], p_sel[s_idx[hit]]] = all_raw[m][hit]
        return out_ids, out_scores, prov
