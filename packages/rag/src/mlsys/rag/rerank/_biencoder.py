"""A bi-encoder's view of the candidates, and fine-tuning a bi-encoder on the store's own hard negatives.

A general-purpose embedder places an abstract on the claim's topic close to the claim whether or
not it is the evidence. Fine-tuned on (query, relevant passage, passage the store's retrievers
confuse with it) triples, it learns the difference - and its cosine becomes one more view of each
candidate (:class:`EmbedderReranker`, kept in provenance for the relevance gate), or a new
embedding space for the store itself (load the folder with :class:`~mlsys.rag.MiniLMEmbedder`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlsys.common.errors import CorruptFileError, InvalidInputError
from mlsys.common.validation import check_k
from mlsys.rag._embedders import Embedder, offline_sentence_transformers
from mlsys.rag._retrievers import Hit
from mlsys.rag.rerank._cross import (
    FineTuneReport,
    _check_training_args,
    check_pairs,
    train_loop,
)
from mlsys.rag.rerank._protocol import F32, BaseReranker

__all__ = ["EmbedderReranker", "fine_tune_bi_encoder"]


class EmbedderReranker(BaseReranker):
    """Score = cosine of the query and the passage under an :class:`~mlsys.rag.Embedder`.

    Passage vectors go through the embedder's cache (if it has one), so a corpus is encoded once.
    Chained before another re-ranker (:class:`~mlsys.rag.rerank.RerankChain`), it leaves its
    ``(rank, cosine)`` in every hit's provenance under ``name``, where the relevance gate reads it
    (``RelevanceGate(retrievers=(..., name))``).

    Args:
        embedder: e.g. ``MiniLMEmbedder(fine_tuned_folder)``.
        top_n, name: see :class:`~mlsys.rag.rerank.BaseReranker` (default name ``"bi_encoder"``).

    Example:
        >>> from mlsys.rag import HashingEmbedder
        >>> rr = EmbedderReranker(HashingEmbedder(dim=64), name="hashing")
        >>> hits = [Hit(1, 1, 0.0, text="blue sky"), Hit(2, 2, 0.0, text="red apples")]
        >>> [(h.id, h.provenance["hashing"][0]) for h in rr.rerank("red apples", hits)]
        [(2, 1), (1, 2)]
    """

    name = "bi_encoder"

    def __init__(self, embedder: Embedder, *, top_n: int | None = None, name: str | None = None) -> None:
        super().__init__(top_n=top_n, name=name)
        if not isinstance(embedder, Embedder):
            raise InvalidInputError(
                f"embedder must implement the Embedder protocol, got {type(embedder).__name__}"
            )
        self.embedder = embedder

    def __repr__(self) -> str:
        return f"EmbedderReranker({self.embedder!r}, name={self.name!r})"

    def _score_batch(self, queries: list[str], candidates: list[list[Hit]]) -> list[F32]:
        qv = self.embedder.embed_queries(queries, progress=False)
        flat = [h.text or "" for c in candidates for h in c]
        dv = self.embedder.embed_documents(flat, progress=False) if flat else np.zeros((0, qv.shape[1]))
        out, pos = [], 0
        for q, c in zip(qv, candidates):
            d = dv[pos : pos + len(c)]
            pos += len(c)
            norms = np.linalg.norm(d, axis=1) * max(float(np.linalg.norm(q)), 1e-12)
            out.append((d @ q / np.maximum(norms, 1e-12)).astype(np.float32))
        return out


def _not_negatives(queries: Sequence[str], docs: Sequence[str], positives: dict[str, list[str]]) -> Any:
    """``mask[i, j]``: passage ``j`` of a step is relevant to query ``i`` but is not its own target
    (``j != i``), so it must not count as a negative: another positive of the same query in the
    batch, or a hard negative drawn for another query that happens to be relevant to this one."""
    return np.array(
        [[j != i and d in positives.get(q, ()) for j, d in enumerate(docs)] for i, q in enumerate(queries)],
        dtype=bool,
    ).reshape(len(queries), len(docs))


def fine_tune_bi_encoder(
    base_model: str | os.PathLike[str],
    pairs: Sequence[tuple[str, str, float]],
    out_dir: str | os.PathLike[str],
    *,
    epochs: int = 2,
    batch_size: int = 16,
    learning_rate: float = 2e-5,
    warmup_fraction: float = 0.1,
    max_length: int = 256,
    negatives_per_example: int = 1,
    scale: float = 20.0,
    time_budget_s: float | None = None,
    seed: int = 0,
    num_threads: int | None = None,
    progress: bool = False,
) -> FineTuneReport:
    """Fine-tune a sentence-transformers bi-encoder on labelled (query, passage) pairs.

    The pairs are those of :func:`~mlsys.rag.rerank.mine_hard_negatives`: every query's relevant
    passages (label >= 0.5) and the passages its retrievers confuse with them (label < 0.5). One
    example per (query, relevant passage); each step scores every query of a batch against every
    relevant passage of the batch and ``negatives_per_example`` of each query's hard negatives
    (drawn anew each epoch, seeded), and minimises the softmax cross-entropy of the right passage
    at temperature ``1/scale`` (the multiple-negatives ranking loss). Another relevant passage of
    the same query is never used as its negative. AdamW with linear warm-up and decay; stops after
    ``epochs`` or when ``time_budget_s`` is spent. The model is written to ``out_dir`` as a
    sentence-transformers folder: ``MiniLMEmbedder(out_dir)`` loads it as a new embedding space
    (its version is the hash of the new weights).

    Example:
        >>> pairs = mine_hard_negatives(store.hybrid_retriever(), train_queries, train_qrels)  # doctest: +SKIP
        >>> fine_tune_bi_encoder(minilm_model_path(), pairs, "bi-out", epochs=2)  # doctest: +SKIP
    """
    import torch

    sentence_transformers = offline_sentence_transformers()
    data = check_pairs(pairs)
    base = _check_training_args(base_model, epochs, batch_size, time_budget_s, num_threads)
    negatives_per_example = check_k(negatives_per_example, name="negatives_per_example", limit=None)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
        raise InvalidInputError(f"scale must be a positive number, got {scale!r}")
    positives: dict[str, list[str]] = {}
    negatives: dict[str, list[str]] = {}
    for q, p, y in data:
        (positives if y >= 0.5 else negatives).setdefault(q, []).append(p)
    examples = [(q, p) for q, ps in positives.items() for p in ps]
    if not examples:
        raise InvalidInputError(
            "no relevant pairs (label >= 0.5); a bi-encoder needs positives to learn from"
        )
    torch.manual_seed(seed)
    try:
        model = sentence_transformers.SentenceTransformer(str(base), device="cpu", local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise CorruptFileError(
            f"{base}: could not load the bi-encoder ({type(exc).__name__}: {exc})"
        ) from exc
    model.max_seq_length = max_length
    prep = getattr(model, "preprocess", None) or model.tokenize
    rng = np.random.default_rng(seed + 1)

    def embed(texts: list[str]) -> Any:
        return torch.nn.functional.normalize(model(prep(texts))["sentence_embedding"], dim=-1)

    def batch_loss(batch: list[tuple[str, str]]) -> Any:
        queries = [q for q, _ in batch]
        docs = [p for _, p in batch]
        for q in queries:
            pool = negatives.get(q, [])
            if pool:
                pick = rng.choice(len(pool), size=min(negatives_per_example, len(pool)), replace=False)
                docs += [pool[i] for i in pick]
        logits = embed(queries) @ embed(docs).T * float(scale)
        logits = logits.masked_fill(torch.from_numpy(_not_negatives(queries, docs, positives)), float("-inf"))
        return torch.nn.functional.cross_entropy(logits, torch.arange(len(batch)))

    run = train_loop(model, examples, batch_loss, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                     warmup_fraction=warmup_fraction, time_budget_s=time_budget_s, seed=seed,
                     progress="fine-tune bi-encoder" if progress else None)  # fmt: skip
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save(str(out))
    return run.report(out)
