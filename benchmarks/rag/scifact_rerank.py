"""SciFact setup shared by the re-ranking, gate and answer benchmarks, with on-disk caches.

Everything expensive is cached under ``<cache root>/rag/`` (``~/.cache/mlsys/rag``), keyed by a
sha256 of what it depends on (code feature version, embedding spaces, query texts, candidate ids),
so a stale cache is never reused:

* sentence vectors: ``sentences-minilm-msl128.sqlite`` (an :class:`EmbeddingCache`);
* feature matrices: ``features-<key>.npz``;
* trained re-rankers: ``learned-<key>/``; fine-tuned cross-encoders: ``cross-encoder-<key>/``.

Command line (long jobs, run once)::

    python benchmarks/rag/scifact_rerank.py finetune --budget 540   # cross-encoder, ~10 min
    python benchmarks/rag/scifact_rerank.py features                # sentence vectors + features
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlsys.common.data import load_beir
from mlsys.rag import (
    DocumentStore,
    EmbeddingCache,
    Hit,
    MiniLMEmbedder,
    beir_documents,
    default_cache_dir,
    minilm_model_path,
)

HERE = Path(__file__).resolve().parent
DEPTH = 100  # candidates re-ranked per query (the hybrid's top 100)


def data_dir() -> Path:
    return Path(os.environ.get("MLSYS_DATA", HERE.parents[2] / "shared" / "data")) / "scifact"


def cache_dir() -> Path:
    d = default_cache_dir() / "rag"
    d.mkdir(parents=True, exist_ok=True)
    return d


def sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class SciFact:
    store: DocumentStore
    train_queries: dict[str, str]
    train_qrels: dict[str, dict[str, int]]
    test_queries: dict[str, str]
    test_qrels: dict[str, dict[str, int]]
    sentence_embedder: MiniLMEmbedder


def load(root: Path | None = None) -> SciFact:
    """The SciFact store (MiniLM vectors from the embedding cache) and both qrels splits."""
    root = root or data_dir()
    test = load_beir(root, split="test")
    train = load_beir(root, split="train")
    emb = MiniLMEmbedder(cache=EmbeddingCache(), num_threads=2)
    store = DocumentStore(emb)
    store.upsert(beir_documents(test.corpus))
    store.bm25.refresh()
    sent = MiniLMEmbedder(
        cache=EmbeddingCache(cache_dir() / "sentences-minilm-msl128.sqlite"),
        max_seq_length=128,
        num_threads=2,
    )
    return SciFact(store, dict(train.queries), train.qrels, dict(test.queries), test.qrels, sent)


def hybrid(store: DocumentStore) -> Any:
    """The best first-stage system of the retrieval table: weighted fusion, equal weights, depth 100."""
    return store.hybrid_retriever(fusion="weighted", depth=DEPTH, name="weighted")


def candidates(sf: SciFact, queries: dict[str, str]) -> list[list[Hit]]:
    res = hybrid(sf.store).retrieve([queries[q] for q in queries], DEPTH)
    return [list(r.hits) for r in res]


def finetune(budget: float, max_length: int, n_negatives: int) -> Path:
    from mlsys.rag.rerank import fine_tune_cross_encoder, mine_hard_negatives

    sf = load()
    pairs = mine_hard_negatives(
        hybrid(sf.store), sf.train_queries, sf.train_qrels, n_negatives=n_negatives, depth=30
    )
    key = sha([sf.store.space.space_id, pairs, budget, max_length])
    out = cache_dir() / f"cross-encoder-{key}"
    if (out / "report.json").is_file():
        print(f"cached: {out}", file=sys.stderr)
        return out
    t = time.time()
    rep = fine_tune_cross_encoder(
        minilm_model_path(),
        pairs,
        out,
        time_budget_s=budget,
        max_length=max_length,
        num_threads=2,
        batch_size=16,
    )
    info = {
        "pairs": len(pairs),
        "positives": int(sum(p[2] for p in pairs)),
        "steps": rep.steps,
        "pairs_seen": rep.pairs_seen,
        "epochs_completed": rep.epochs_completed,
        "seconds": rep.seconds,
        "stopped_by_budget": rep.stopped_by_budget,
        "mean_loss_last": rep.mean_loss_last,
        "max_length": max_length,
        "budget_s": budget,
        "load_before": os.getloadavg()[0],
        "wall_s": time.time() - t,
    }
    (out / "report.json").write_text(json.dumps(info, indent=2))
    (cache_dir() / "cross-encoder-latest.txt").write_text(str(out))
    print(json.dumps(info, indent=2))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    ft = sub.add_parser("finetune")
    ft.add_argument("--budget", type=float, default=540.0)
    ft.add_argument("--max-length", type=int, default=192)
    ft.add_argument("--negatives", type=int, default=4)
    args = p.parse_args(argv)
    if args.cmd == "finetune":
        finetune(args.budget, args.max_length, args.negatives)
    return 0


if __name__ == "__main__":
    sys.exit(main())
