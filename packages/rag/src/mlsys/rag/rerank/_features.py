"""Features of (query, candidate chunk) pairs for the learned re-ranker and the relevance gate.

Per candidate (one row), in :data:`FEATURE_NAMES` order plus, for each retriever name the
extractor was configured with, ``<name>_score``, ``<name>_rank``, ``<name>_score_rel`` (score /
the list's best score of that retriever) and ``<name>_found``:

* the fused list's own view: ``fused_rank``, ``fused_score``, ``fused_score_rel``;
* dense cosine of query and chunk, computed for *every* candidate from the store's vectors (a
  candidate only BM25 found still gets its dense score), and its gap to the list's best;
* BM25 of the whole chunk (every candidate, not only those BM25 returned), and BM25 of the title
  and of the body separately (two small indexes the extractor keeps over the store's chunks);
* query-term overlap (analysed, stemmed terms) with the title and with the body, and the
  coverage of the query's rarest terms (:func:`~mlsys.rag.rerank.term_coverage`: idf-weighted
  share, the rarest term, the three rarest, the largest idf missing; idf from the store's BM25);
* sentence similarity: the chunk is split into sentences (the document title, when the chunk
  starts with it, is its own segment); cosine of the query and each sentence under a sentence
  embedder: max, mean, second best, the title's, and the max's gap to the list's best;
* length (words, sentences), position in the document (``seq`` and relative start), the number
  of candidates from the same document and the best fused score of the chunk's neighbours
  (``seq - 1``, ``seq + 1``) among the candidates (NaN when none: LightGBM handles missing values).

Sentence vectors are computed once per distinct sentence and kept in memory (and in the
embedder's :class:`~mlsys.rag.EmbeddingCache` if it has one), so a corpus is encoded once across
runs. The title/body indexes follow the store's ``version`` and are rebuilt when it changes.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from mlsys.common.errors import InvalidInputError
from mlsys.common.spaces import EmbeddingSpace
from mlsys.rag._bm25 import BM25Index
from mlsys.rag._chunkers import sentence_spans
from mlsys.rag._embedders import Embedder
from mlsys.rag._retrievers import Hit
from mlsys.rag._store import DocumentStore
from mlsys.rag.rerank._lexical import COVERAGE_FEATURES, term_coverage

__all__ = ["FEATURE_NAMES", "FEATURE_VERSION", "SENTENCE_FEATURES", "RerankFeatures", "segments_of"]

F32 = npt.NDArray[np.float32]

#: bump when the meaning of any feature changes (saved re-rankers and feature caches check it)
FEATURE_VERSION = 2
"""Bumped when the meaning of any feature changes; saved re-rankers and feature caches check it."""

FEATURE_NAMES: tuple[str, ...] = (
    "fused_rank",
    "fused_score",
    "fused_score_rel",
    "dense_cos",
    "dense_cos_gap",
    "bm25_full",
    "bm25_full_rel",
    "bm25_title",
    "bm25_body",
    "overlap_title",
    "overlap_body",
    *COVERAGE_FEATURES,
    "sent_max",
    "sent_mean",
    "sent_second",
    "sent_title",
    "sent_max_gap",
    "n_words",
    "n_sentences",
    "query_words",
    "seq",
    "rel_position",
    "same_doc_hits",
    "neighbour_best",
)
"""Names of the (query, candidate) features of :class:`RerankFeatures`, in column order."""

#: the features that need a sentence embedder (absent when ``sentence_embedder=None``)
SENTENCE_FEATURES: tuple[str, ...] = ("sent_max", "sent_mean", "sent_second", "sent_title", "sent_max_gap")
"""The features that need a sentence embedder (absent when ``sentence_embedder=None``)."""


def segments_of(text: str, title: str | None) -> tuple[str | None, list[str]]:
    """Split a chunk into its title (when it starts with it) and stripped sentences.

    Example:
        >>> segments_of("Aspirin. It thins blood. It helps.", "Aspirin.")
        ('Aspirin.', ['It thins blood.', 'It helps.'])
    """
    if not isinstance(text, str):
        raise InvalidInputError(f"text must be a str, got {type(text).__name__}")
    t = title.strip() if isinstance(title, str) else ""
    body = text
    head: str | None = None
    if t and text.startswith(t):
        head, body = t, text[len(t) :]
    sents = [body[a:b].strip() for a, b in sentence_spans(body)]
    return head, [s for s in sents if s]


class RerankFeatures:
    """Compute the feature matrix of a query's candidates from a :class:`~mlsys.rag.DocumentStore`.

    Args:
        store: where the candidates live (text, titles from ``metadata["title"]``, dense vectors,
            BM25 index).
        sentence_embedder: embeds queries and sentences for the sentence features (e.g. a
            :class:`~mlsys.rag.MiniLMEmbedder` with an :class:`~mlsys.rag.EmbeddingCache`);
            ``None`` leaves the sentence features out (:data:`SENTENCE_FEATURES`).
        retrievers: retriever names whose provenance becomes features (``("dense", "bm25")`` for
            the store's hybrid retriever).

    Example:
        >>> from mlsys.rag import HashingEmbedder
        >>> store = DocumentStore(HashingEmbedder(dim=64))
        >>> _ = store.upsert({"a": "Cats purr. They sleep.", "b": "Dogs bark."})
        >>> feats = RerankFeatures(store, HashingEmbedder(dim=64, seed=1))
        >>> hits = store.hybrid_retriever().retrieve(["cats sleep"], k=2)[0].hits
        >>> x = feats.matrix("cats sleep", hits)
        >>> col = feats.names.index("sent_max")
        >>> x.shape == (2, len(feats.names)), round(float(x[0, col]), 3), float(x[0, feats.names.index("idf_coverage")])
        (True, 0.5, 1.0)
    """

    def __init__(
        self,
        store: DocumentStore,
        sentence_embedder: Embedder | None,
        *,
        retrievers: Sequence[str] = ("dense", "bm25"),
    ) -> None:
        if not isinstance(store, DocumentStore):
            raise InvalidInputError(f"store must be a DocumentStore, got {type(store).__name__}")
        if sentence_embedder is not None and not isinstance(sentence_embedder, Embedder):
            raise InvalidInputError(
                f"sentence_embedder must implement the Embedder protocol, got {type(sentence_embedder).__name__}"
            )
        names = list(retrievers)
        if not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
            raise InvalidInputError(f"retrievers must be distinct non-empty names, got {retrievers!r}")
        self.store = store
        self.sentence_embedder = sentence_embedder
        self.retrievers = tuple(names)
        base = (
            FEATURE_NAMES
            if sentence_embedder is not None
            else tuple(n for n in FEATURE_NAMES if n not in SENTENCE_FEATURES)
        )
        self.names: tuple[str, ...] = base + tuple(
            f"{r}_{f}" for r in names for f in ("score", "rank", "score_rel", "found")
        )
        self._lock = threading.Lock()
        self._seg: dict[str, tuple[F32 | None, F32]] = {}
        self._lexical: tuple[int, BM25Index, BM25Index] | None = None

    @property
    def sentence_space(self) -> EmbeddingSpace | None:
        """The space of the sentence embedder (saved with a trained re-ranker and checked on load)."""
        return None if self.sentence_embedder is None else self.sentence_embedder.space

    # -- cached pieces ----------------------------------------------------------------------------
    def _title(self, h: Hit) -> str | None:
        if h.doc_id is None:
            return None
        title = self.store.document(h.doc_id).metadata.get("title")
        return title if isinstance(title, str) and title.strip() else None

    def _indexes(self) -> tuple[BM25Index, BM25Index]:
        with self._lock:
            if self._lexical is None or self._lexical[0] != self.store.version:
                cfg = self.store.bm25.config
                title_ix, body_ix = BM25Index(cfg), BM25Index(cfg)
                ids, titles, bodies = [], [], []
                for doc_id in self.store.doc_ids():
                    doc = self.store.document(doc_id)
                    t = doc.metadata.get("title")
                    t = t.strip() if isinstance(t, str) else ""
                    for cid, c in zip(self.store.chunk_ids(doc_id), self.store.chunks(doc_id)):
                        ids.append(cid)
                        starts = bool(t) and c.text.startswith(t)
                        titles.append(t)
                        bodies.append(c.text[len(t) :] if starts else c.text)
                title_ix.add(ids, titles)
                body_ix.add(ids, bodies)
                title_ix.refresh()
                body_ix.refresh()
                self._lexical = (self.store.version, title_ix, body_ix)
            return self._lexical[1], self._lexical[2]

    def warm(self, hits: Sequence[Hit]) -> None:
        """Embed the sentences of these candidates now (batched), so later calls only look them up."""
        if self.sentence_embedder is None:
            return
        todo: dict[str, tuple[str | None, list[str]]] = {}
        for h in hits:
            if h.text is not None and h.text not in self._seg and h.text not in todo:
                todo[h.text] = segments_of(h.text, self._title(h))
        if not todo:
            return
        flat: list[str] = []
        for head, sents in todo.values():
            flat += ([head] if head else []) + sents
        vecs = self.sentence_embedder.embed_documents(flat, progress=False) if flat else np.zeros((0, 1))
        pos = 0
        with self._lock:
            for text, (head, sents) in todo.items():
                tv = None
                if head:
                    tv = vecs[pos]
                    pos += 1
                sv = vecs[pos : pos + len(sents)]
                pos += len(sents)
                self._seg[text] = (tv, np.ascontiguousarray(sv, dtype=np.float32))

    # -- the matrix -------------------------------------------------------------------------------
    def matrix(self, query: str, hits: Sequence[Hit], *, query_vector: F32 | None = None) -> F32:
        """Feature rows ``(len(hits), len(names))`` float32 (NaN = missing) of one query's candidates."""
        n = len(hits)
        x = np.full((n, len(self.names)), np.nan, dtype=np.float32)
        if n == 0:
            return x
        col = {name: i for i, name in enumerate(self.names)}
        ids = np.array([h.id for h in hits], dtype=np.int64)
        # fused list
        fused = np.array([h.score for h in hits], dtype=np.float64)
        x[:, col["fused_rank"]] = [h.rank for h in hits]
        x[:, col["fused_score"]] = fused
        top = np.nanmax(np.where(np.isfinite(fused), fused, np.nan)) if np.isfinite(fused).any() else np.nan
        if np.isfinite(top) and top != 0:
            x[:, col["fused_score_rel"]] = fused / top
        # dense cosine from the store's own vectors
        store = self.store
        qv_store = store.embedder.embed_queries([query], progress=False)[0]
        dv = store.index.get_vectors(ids)
        dense = dv @ qv_store
        x[:, col["dense_cos"]] = dense
        x[:, col["dense_cos_gap"]] = dense - dense.max()
        # BM25: full chunk, title, body
        analyzer = store.bm25.analyzer
        qterms = analyzer.terms(query)
        if qterms:
            full = _scores_for(store.bm25, qterms, ids)
            x[:, col["bm25_full"]] = full
            x[:, col["bm25_full_rel"]] = full / full.max() if full.max() > 0 else 0.0
            title_ix, body_ix = self._indexes()
            x[:, col["bm25_title"]] = _scores_for(title_ix, qterms, ids)
            x[:, col["bm25_body"]] = _scores_for(body_ix, qterms, ids)
        else:
            for c in ("bm25_full", "bm25_full_rel", "bm25_title", "bm25_body"):
                x[:, col[c]] = 0.0
        qset = set(qterms)
        q_idf = store.bm25.idf(qterms)
        cov_cols = [col[c] for c in COVERAGE_FEATURES]
        x[:, col["query_words"]] = len(query.split())
        # sentences
        self.warm(hits)
        qv: F32 | None = None
        if self.sentence_embedder is not None:
            qv = (
                query_vector
                if query_vector is not None
                else self.sentence_embedder.embed_queries([query], progress=False)[0]
            )
        for i, h in enumerate(hits):
            text = h.text or ""
            title = self._title(h)
            head, sents = segments_of(text, title)
            tset = set(analyzer.terms(head)) if head else set()
            bset = set(analyzer.terms(text[len(head) :] if head else text))
            if qset:
                x[i, col["overlap_title"]] = len(qset & tset) / len(qset)
                x[i, col["overlap_body"]] = len(qset & bset) / len(qset)
                x[i, cov_cols] = term_coverage(qterms, q_idf, tset | bset)
            if qv is not None:
                tv, sv = self._seg[text]
                if sv.shape[0]:
                    sims = np.sort(sv @ qv)[::-1]
                    x[i, col["sent_max"]] = sims[0]
                    x[i, col["sent_mean"]] = sims.mean()
                    if sims.shape[0] > 1:
                        x[i, col["sent_second"]] = sims[1]
                if tv is not None:
                    x[i, col["sent_title"]] = float(tv @ qv)
            x[i, col["n_words"]] = len(text.split())
            x[i, col["n_sentences"]] = len(sents)
            if h.seq is not None:
                x[i, col["seq"]] = h.seq
            if h.doc_id is not None and h.start is not None:
                doc_len = len(store.document(h.doc_id).text)
                x[i, col["rel_position"]] = h.start / doc_len if doc_len else 0.0
        if qv is not None:
            smax = x[:, col["sent_max"]]
            if np.isfinite(smax).any():
                x[:, col["sent_max_gap"]] = smax - np.nanmax(smax)
        # same-document hits and neighbours
        by_doc: dict[tuple[str | None, int | None], float] = {}
        count: dict[str | None, int] = {}
        for h in hits:
            by_doc[(h.doc_id, h.seq)] = max(by_doc.get((h.doc_id, h.seq), -np.inf), h.score)
            count[h.doc_id] = count.get(h.doc_id, 0) + 1
        for i, h in enumerate(hits):
            x[i, col["same_doc_hits"]] = count[h.doc_id] - 1
            if h.seq is not None:
                nb = [by_doc.get((h.doc_id, h.seq + d)) for d in (-1, 1)]
                vals = [v for v in nb if v is not None]
                if vals:
                    x[i, col["neighbour_best"]] = max(vals)
        # per-retriever provenance
        for r in self.retrievers:
            sc = np.full(n, np.nan)
            rk = np.full(n, np.nan)
            for i, h in enumerate(hits):
                p = h.provenance.get(r)
                if p is not None:
                    rk[i], sc[i] = p
            found = np.isfinite(sc)
            x[:, col[f"{r}_score"]] = sc
            x[:, col[f"{r}_rank"]] = rk
            x[:, col[f"{r}_found"]] = found
            if found.any():
                best = np.nanmax(sc)
                if best != 0:
                    x[:, col[f"{r}_score_rel"]] = sc / best
        return x

    def matrices(
        self, queries: Sequence[str], candidates: Sequence[Sequence[Hit]], *, progress: bool = False
    ) -> list[F32]:
        """:meth:`matrix` for several queries (their sentences embedded in one batch first)."""
        if len(queries) != len(candidates):
            raise InvalidInputError(
                f"got {len(candidates)} candidate lists for {len(queries)} queries; expected one per query"
            )
        self.warm([h for c in candidates for h in c])
        qvecs = (
            self.sentence_embedder.embed_queries(list(queries), progress=False)
            if queries and self.sentence_embedder is not None
            else None
        )
        it: Any = range(len(queries))
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(it, desc="features", unit="query")
        return [
            self.matrix(queries[i], candidates[i], query_vector=None if qvecs is None else qvecs[i])
            for i in it
        ]


def _scores_for(index: BM25Index, terms: list[str], ids: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """BM25 scores of exactly these ids (0 for ids sharing no term with the query)."""
    got_ids, got = index.search([terms], k=ids.shape[0], allow=ids)
    m = {int(i): float(s) for i, s in zip(got_ids[0], got[0]) if i >= 0}
    return np.array([m.get(int(i), 0.0) for i in ids], dtype=np.float64)
