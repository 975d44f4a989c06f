"""Encode the SciFact corpus and queries with all-MiniLM-L6-v2 once, into the embedding cache.

The full-corpus benchmarks and slow tests read vectors from the cache (``~/.cache/mlsys`` or
``$MLSYS_CACHE_DIR``); run this once (5-10 minutes on 2 cores) and every later run is instant.
Interrupting it is safe: each committed batch stays cached and the next run resumes.

    python benchmarks/rag/fill_embedding_cache.py [--data /path/to/scifact] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from mlsys.rag._cache import EmbeddingCache
from mlsys.rag._embedders import MiniLMEmbedder

HERE = Path(__file__).resolve().parent


def scifact_texts(root: Path) -> tuple[list[str], list[str]]:
    """Passages (``title + " " + text``, stripped, as MTEB encodes them) and all query texts."""
    passages = []
    with (root / "corpus.jsonl").open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                d = json.loads(line)
                passages.append((d.get("title", "") + " " + d["text"]).strip())
    queries = []
    with (root / "queries.jsonl").open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                queries.append(json.loads(line)["text"])
    return passages, queries


def main(argv: list[str] | None = None) -> int:
    default = Path(os.environ.get("MLSYS_DATA", HERE.parents[2] / "shared" / "data")) / "scifact"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    passages, queries = scifact_texts(args.data)
    cache = EmbeddingCache()
    emb = MiniLMEmbedder(num_threads=args.threads, batch_size=args.batch_size, cache=cache)
    t0 = time.perf_counter()
    emb.embed_queries(queries, progress=True)
    emb.embed_documents(passages, progress=True)
    print(
        f"encoded {emb.n_encoded} new texts ({len(passages)} passages + {len(queries)} queries) "
        f"in {time.perf_counter() - t0:.0f} s; cache {cache.path} now holds {cache.count(emb.space)} "
        f"vectors for {emb.space}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
