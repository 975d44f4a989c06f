"""Golden-set retrieval evaluation (layer 1): BEIR folder in, :mod:`mlsys.common.metrics` out.

For chunked corpora the run is reported at document level: a document's score is the maximum over
its chunks, and enough chunks are retrieved to rank ``k`` distinct documents.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlsys.common._display import DisplayTable, TabularDisplay
from mlsys.common.errors import InvalidInputError, UnknownNameError
from mlsys.common.validation import check_k
from mlsys.rag._chunkers import Chunker
from mlsys.rag._embedders import Embedder
from mlsys.rag._retrievers import Retriever
from mlsys.rag._store import Document, DocumentStore

if TYPE_CHECKING:
    from mlsys.common.metrics import EvalResult

__all__ = [
    "DEFAULT_METRICS",
    "BeirEvaluation",
    "beir_documents",
    "compare_retrievers",
    "evaluate_beir",
    "evaluate_retriever",
    "retrieval_run",
]

DEFAULT_METRICS: tuple[str, ...] = ("ndcg@10", "recall@10", "recall@100", "mrr@10")
"""Metrics that the retrieval evaluations compute unless told otherwise."""


def retrieval_run(
    retriever: Retriever,
    queries: Mapping[str, str],
    *,
    k: int = 100,
    doc_of: Callable[[Any], Sequence[str | None]] | None = None,
    chunk_depth: int | None = None,
    batch_size: int = 256,
) -> dict[str, dict[str, float]]:
    """Run ``retriever`` over ``queries`` into a TREC-shaped run ``{query_id: {doc_id: score}}``.

    Args:
        retriever: any retriever (its ``search`` is used).
        queries: ``{query_id: text}``.
        k: documents per query in the run.
        doc_of: maps an array of chunk ids to document ids (``DocumentStore.doc_of``); when given,
            chunks are folded into documents (score = max over the document's chunks). When
            ``None``, ids are reported as strings of the chunk ids.
        chunk_depth: chunks retrieved per query before folding (default ``4 * k`` with
            ``doc_of``, else ``k``).
        batch_size: queries per ``search`` call.

    Example:
        >>> from mlsys.rag import HashingEmbedder
        >>> store = DocumentStore(HashingEmbedder(dim=32))
        >>> _ = store.upsert({"d1": "apples are red", "d2": "the sky is blue"})
        >>> retrieval_run(store.bm25_retriever(), {"q1": "red apples"}, k=2, doc_of=store.doc_of)  # doctest: +ELLIPSIS
        {'q1': {'d1': 0.5545...}}
    """
    k = check_k(k)
    depth = chunk_depth if chunk_depth is not None else (4 * k if doc_of is not None else k)
    depth = check_k(depth, name="chunk_depth")
    batch_size = check_k(batch_size, name="batch_size", limit="max_batch")
    qids = list(queries)
    run: dict[str, dict[str, float]] = {}
    for s in range(0, len(qids), batch_size):
        part = qids[s : s + batch_size]
        ids, scores = retriever.search([queries[q] for q in part], depth)
        docs = (
            doc_of(ids) if doc_of is not None else [str(i) if i >= 0 else None for i in ids.ravel().tolist()]
        )
        docs = list(docs)
        for qi, qid in enumerate(part):
            row: dict[str, float] = {}
            for r in range(depth):
                d = docs[qi * depth + r]
                if d is None or d in row:
                    continue
                row[d] = float(scores[qi, r])
                if len(row) == k:
                    break
            run[qid] = row
    return run


def evaluate_retriever(
    retriever: Retriever,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    k: int = 100,
    doc_of: Callable[[Any], Sequence[str | None]] | None = None,
    chunk_depth: int | None = None,
) -> EvalResult:
    """Evaluate a retriever on a golden set (queries that have judgements are evaluated).

    A query for which nothing is retrieved counts as an empty ranking (scores 0), never dropped.

    Example:
        >>> from mlsys.rag import HashingEmbedder
        >>> store = DocumentStore(HashingEmbedder(dim=32))
        >>> _ = store.upsert({"d1": "apples are red", "d2": "the sky is blue"})
        >>> res = evaluate_retriever(store.bm25_retriever(), {"q": "blue sky"}, {"q": {"d2": 1}},
        ...                          metrics=["ndcg@10"], doc_of=store.doc_of)
        >>> res["ndcg@10"]
        1.0
    """
    judged = {q: t for q, t in queries.items() if q in qrels}
    if not judged:
        raise InvalidInputError(
            f"none of the {len(queries)} queries has judgements in the qrels ({len(qrels)} queries); "
            "expected overlapping query ids"
        )
    from mlsys.common.metrics import evaluate  # imported here: mlsys.rag imports without it

    run = retrieval_run(retriever, judged, k=k, doc_of=doc_of, chunk_depth=chunk_depth)
    qrels_judged = {q: dict(qrels[q]) for q in judged}
    return evaluate(run, qrels_judged, list(metrics), missing_queries="zero", empty_queries="zero")


def compare_retrievers(
    retrievers: Mapping[str, Retriever],
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    **kwargs: Any,
) -> dict[str, EvalResult]:
    """:func:`evaluate_retriever` for several retrievers on the same golden set, side by side.

    Used to judge a :class:`~mlsys.rag.Migration` before committing it::

        compare_retrievers({"current": store.dense_retriever(), "shadow": m.dense_retriever()}, q, qrels,
                           doc_of=store.doc_of)
    """
    return {name: evaluate_retriever(r, queries, qrels, **kwargs) for name, r in retrievers.items()}


def beir_documents(corpus: Mapping[str, Mapping[str, str]]) -> list[Document]:
    """BEIR corpus entries as :class:`Document` s: text ``(title + " " + text).strip()``, title in metadata.

    Example:
        >>> beir_documents({"d1": {"title": "T", "text": "body"}})[0].text
        'T body'
    """
    out = []
    for doc_id, d in corpus.items():
        title, text = d.get("title", "") or "", d.get("text", "") or ""
        out.append(Document(doc_id, (title + " " + text).strip(), {"title": title}))
    return out


@dataclass
class BeirEvaluation(TabularDisplay):
    """Result of :func:`evaluate_beir`: per system, the metrics and the query throughput.

    In a notebook it displays as one row per system (mean metrics and queries/s; the corpus sizes
    folded away); :meth:`to_pandas` gives that table with the means exactly as in :attr:`results`.
    """

    results: dict[str, EvalResult]
    queries_per_second: dict[str, float]
    n_documents: int
    n_chunks: int
    n_queries: int
    build_seconds: float
    store: DocumentStore

    _pandas_extra = "mlsys-rag[pandas]"

    def _metric_names(self) -> list[str]:
        return list(next(iter(self.results.values())).mean) if self.results else []

    def _display_table(self) -> DisplayTable:
        metrics = self._metric_names()
        return DisplayTable(
            f"BEIR evaluation: {self.n_queries} queries over {self.n_documents} documents",
            ("system", *metrics, "queries_per_second"),
            tuple(
                (name, *(res.mean[m] for m in metrics), self.queries_per_second[name])
                for name, res in self.results.items()
            ),
            index="system",
            details=(
                ("n_documents", self.n_documents),
                ("n_chunks", self.n_chunks),
                ("n_queries", self.n_queries),
                ("build_seconds", self.build_seconds),
                ("store", repr(self.store)),
            ),
        )

    def __repr__(self) -> str:
        metrics = self._metric_names()
        scores = ""
        if metrics:
            m = metrics[0]
            scores = f", {m}: " + ", ".join(f"{n}={r.mean[m]:.4f}" for n, r in self.results.items())
        return f"BeirEvaluation(n_queries={self.n_queries}, n_documents={self.n_documents}{scores})"

    def table(self) -> str:
        """A plain-text table of the mean metrics."""
        names = list(self.results)
        metrics = list(next(iter(self.results.values())).mean) if names else []
        head = f"{'system':<10}" + "".join(f"{m:>12}" for m in metrics) + f"{'queries/s':>12}"
        lines = [head, "-" * len(head)]
        for n in names:
            res = self.results[n]
            cells = "".join(f"{res.mean[m]:>12.4f}" for m in metrics)
            lines.append(f"{n:<10}{cells}{self.queries_per_second[n]:>12.1f}")
        return "\n".join(lines)


SYSTEMS = ("bm25", "dense", "hybrid", "weighted")


def evaluate_beir(
    root: str | os.PathLike[str],
    embedder: Embedder,
    *,
    split: str = "test",
    systems: Sequence[str] = ("bm25", "dense", "hybrid"),
    chunker: Chunker | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    k: int = 100,
    rrf_k: float = 60.0,
    progress: bool | None = None,
) -> BeirEvaluation:
    """Index a BEIR folder in a :class:`DocumentStore` and evaluate BM25, dense and hybrid retrieval.

    Args:
        root: the BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``).
        embedder: the dense model (use an :class:`~mlsys.rag.EmbeddingCache` to avoid re-encoding).
        split: qrels split.
        systems: any of ``"bm25"``, ``"dense"``, ``"hybrid"`` (RRF of the two) and ``"weighted"``
            (min-max normalised score fusion, equal weights).
        chunker: ``None`` indexes each document whole (BEIR convention); otherwise results are
            folded to documents (max over chunks).
        metrics, k: what to compute, run depth.
        rrf_k: RRF constant of the hybrid.

    Example:
        >>> ev = evaluate_beir("/data/scifact", MiniLMEmbedder())  # doctest: +SKIP
        >>> print(ev.table())  # doctest: +SKIP
    """
    import mlsys.common.metrics  # noqa: F401 - imported before timing the systems
    from mlsys.common.data import load_beir

    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        raise UnknownNameError(f"unknown systems {unknown}; expected some of {SYSTEMS}")
    ds = load_beir(root, split=split)
    t0 = time.perf_counter()
    store = DocumentStore(embedder, chunker=chunker, progress=progress)
    store.upsert(beir_documents(ds.corpus))
    store.bm25.refresh()
    build = time.perf_counter() - t0
    factories: dict[str, Callable[[], Retriever]] = {
        "bm25": store.bm25_retriever,
        "dense": store.dense_retriever,
        "hybrid": lambda: store.hybrid_retriever(rrf_k=rrf_k, depth=max(k, 100)),
        "weighted": lambda: store.hybrid_retriever(fusion="weighted", depth=max(k, 100), name="weighted"),
    }
    results: dict[str, EvalResult] = {}
    qps: dict[str, float] = {}
    queries = {q: t for q, t in ds.queries.items() if q in ds.qrels}
    for name in systems:
        retriever = factories[name]()
        t = time.perf_counter()
        results[name] = evaluate_retriever(
            retriever,
            queries,
            ds.qrels,
            metrics=metrics,
            k=k,
            doc_of=store.doc_of,
            chunk_depth=k if chunker is None else None,
        )
        qps[name] = len(queries) / max(time.perf_counter() - t, 1e-9)
    return BeirEvaluation(results, qps, len(store), store.n_chunks, len(queries), build, store)
