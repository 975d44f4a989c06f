"""Command line: ``python -m mlsys.rag evaluate --beir PATH`` (golden-set retrieval evaluation).

Example::

    python -m mlsys.rag evaluate --beir ../shared/data/scifact --embedder minilm --systems bm25,dense,hybrid
    python -m mlsys.rag evaluate --beir ../shared/data/scifact --chunker recursive:200:words
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from mlsys.common.errors import InvalidInputError, UnknownNameError
from mlsys.rag._cache import EmbeddingCache
from mlsys.rag._chunkers import (
    Chunker,
    FixedSizeChunker,
    RecursiveChunker,
    SentenceChunker,
    SlidingWindowChunker,
)
from mlsys.rag._embedders import BaseEmbedder, HashingEmbedder, MiniLMEmbedder
from mlsys.rag._evaluation import DEFAULT_METRICS, evaluate_beir


def parse_chunker(spec: str) -> Chunker | None:
    """``none`` | ``KIND:SIZE[:UNIT[:OVERLAP]]`` with KIND in fixed, sliding, recursive, sentence.

    Example:
        >>> parse_chunker("sliding:128:words:0.25")
        SlidingWindowChunker(size=128, length=WhitespaceTokenLength(), overlap=0.25)
    """
    if spec == "none":
        return None
    parts = spec.split(":")
    kinds = {"fixed": FixedSizeChunker, "sliding": SlidingWindowChunker, "recursive": RecursiveChunker,
             "sentence": SentenceChunker}  # fmt: skip
    if parts[0] not in kinds or len(parts) < 2 or not parts[1].isdigit():
        raise UnknownNameError(
            f"chunker spec {spec!r}; expected none or KIND:SIZE[:UNIT[:OVERLAP]], KIND in {list(kinds)}"
        )
    kw: dict[str, object] = {"size": int(parts[1])}
    if len(parts) > 2:
        kw["length"] = parts[2]
    if len(parts) > 3:
        if parts[0] not in ("sliding", "recursive"):
            raise InvalidInputError(f"{parts[0]} chunker takes no overlap fraction")
        kw["overlap"] = float(parts[3])
    return kinds[parts[0]](**kw)  # type: ignore[no-any-return]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m mlsys.rag", description="mlsys.rag tools")
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("evaluate", help="evaluate BM25 / dense / hybrid retrieval on a BEIR folder")
    ev.add_argument("--beir", required=True, help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/)")
    ev.add_argument("--split", default="test")
    ev.add_argument("--systems", default="bm25,dense,hybrid,weighted")
    ev.add_argument("--embedder", default="minilm", choices=["minilm", "hashing"])
    ev.add_argument("--chunker", default="none", help="none | KIND:SIZE[:UNIT[:OVERLAP]]")
    ev.add_argument("--metrics", default=",".join(DEFAULT_METRICS))
    ev.add_argument("--k", type=int, default=100)
    ev.add_argument("--no-cache", action="store_true", help="do not use the on-disk embedding cache")
    ev.add_argument("--threads", type=int, default=None, help="torch threads for the MiniLM encoder")
    ev.add_argument("--json", default=None, help="also write the mean metrics to this JSON file")
    args = parser.parse_args(argv)
    cache = None if args.no_cache else EmbeddingCache()
    embedder: BaseEmbedder
    if args.embedder == "minilm":
        embedder = MiniLMEmbedder(cache=cache, num_threads=args.threads)
    else:
        embedder = HashingEmbedder(dim=512, cache=cache)
    result = evaluate_beir(
        args.beir,
        embedder,
        split=args.split,
        systems=[s for s in args.systems.split(",") if s],
        chunker=parse_chunker(args.chunker),
        metrics=[m for m in args.metrics.split(",") if m],
        k=args.k,
    )
    print(
        f"{args.beir} [{args.split}]: {result.n_documents} documents, {result.n_chunks} chunks, "
        f"{result.n_queries} queries; index built in {result.build_seconds:.1f} s; embedder {embedder.space}"
    )
    print(result.table())
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({n: r.mean for n, r in result.results.items()}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
