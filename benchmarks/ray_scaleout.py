"""mlsys on Ray (issue 17): the figures of the benchmark READMEs' "On Ray" sections, side by side in one run.

    python benchmarks/ray_scaleout.py [--small] [--out benchmarks/ray_scaleout.json]

Starts a local Ray cluster (``ray.init(num_cpus=2)``) and measures, each with the machine's load
average (``os.getloadavg()``) next to it (other processes share the CPUs):

1. ANN: recall@10 vs exact of the sharded HNSW index (2 and 4 shards) next to the single HNSW
   index with the same M/ef, plus search throughput (queries/s) of single and sharded exact and
   HNSW indexes, per shard;
   and single-query latency (p50/p99) through the scatter-gather;
2. ingestion (mlsys.rag): ``DocumentStore.upsert`` in this process vs ``ingest_ray`` with 1 and 2
   embedding actors (MiniLM when its weights are installed, else the hashing embedder);
3. batch inference (mlsys.vision): ``InferencePipeline.predict_batch`` over image files in this
   process vs ``classify_files_ray`` with 1 and 2 actors.

The Ray overhead is the 1-worker Ray run against the plain single-process run; the scaling is the
2-worker run against the 1-worker run. Needs ``mlsys-common[ray]`` etc. (``nox -s ray`` installs them).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _timed(fn: Any) -> tuple[Any, float, float]:
    load = _load()
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0, load


def bench_ann(small: bool) -> dict[str, Any]:
    import ray

    from mlsys.common.ann import ExactIndex, make_index, recall_at_k
    from mlsys.common.spaces import EmbeddingSpace

    n, dim, nq = (5_000, 32, 200) if small else (50_000, 64, 1_000)
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((64, dim)).astype(np.float32)
    x = (centers[rng.integers(0, 64, n)] + 0.5 * rng.standard_normal((n, dim))).astype(np.float32)
    q = (centers[rng.integers(0, 64, nq)] + 0.5 * rng.standard_normal((nq, dim))).astype(np.float32)
    space = EmbeddingSpace("bench", "1", dim, metric="ip")
    ids = np.arange(n, dtype=np.int64)
    exact = ExactIndex(space)
    exact.add(ids, x)
    truth = exact.search(q, 10)[0]
    rows: list[dict[str, Any]] = []

    def measure(name: str, index: Any, shards: int) -> None:
        index.search(q[:10], 10)  # warm
        res, secs, load = _timed(lambda: index.search(q, 10))
        rows.append(
            {
                "index": name,
                "shards": shards,
                "recall@10": round(recall_at_k(res[0], truth), 4),
                "qps": round(nq / secs, 1),
                "qps_per_shard": round(nq / secs / max(shards, 1), 1),
                "load": load,
            }
        )

    measure("exact (single)", exact, 1)
    for shards in (2, 4):
        sh = make_index("sharded", space, backend="exact", shards=shards, cpus_per_shard=2 / shards)
        sh.add(ids, x)
        res = sh.search(q, 10)
        assert np.array_equal(res[0], exact.search(q, 10)[0])  # exact shards: exactly the single index
        measure(f"exact, {shards} shards", sh, shards)
        for actor in sh.actors:
            ray.kill(actor)
    params = {"M": 16, "ef": 32, "ef_construction": 100}
    single = make_index("hnsw", space, **params)
    single.add(ids, x)
    measure("hnsw (single)", single, 1)
    for shards in (2, 4):
        sh = make_index("sharded", space, backend="hnsw", shards=shards, cpus_per_shard=2 / shards, **params)
        sh.add(ids, x)
        measure(f"hnsw, {shards} shards", sh, shards)
        for actor in sh.actors:
            ray.kill(actor)
    return {"n": n, "dim": dim, "queries": nq, "hnsw_params": params, "rows": rows}


def bench_latency(small: bool) -> dict[str, Any]:
    """Single-query latency (p50/p99 of one-query calls): the scatter-gather round trip through Ray."""
    import ray

    from mlsys.common.ann import make_index
    from mlsys.common.spaces import EmbeddingSpace

    n, dim, calls = (5_000, 32, 100) if small else (50_000, 64, 300)
    space = EmbeddingSpace("bench", "1", dim, metric="ip")
    x = np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32)
    q = np.random.default_rng(1).standard_normal((calls, dim)).astype(np.float32)
    rows = []
    for name, shards in (("hnsw (single)", 0), ("hnsw, 2 shards", 2), ("hnsw, 4 shards", 4)):
        params: dict[str, Any] = {"M": 16, "ef": 32}
        if shards:
            index = make_index(
                "sharded", space, backend="hnsw", shards=shards, cpus_per_shard=2 / shards, **params
            )
        else:
            index = make_index("hnsw", space, **params)
        index.add(np.arange(n), x)
        for i in range(20):
            index.search(q[i : i + 1], 10)
        load = _load()
        times = []
        for i in range(calls):
            t0 = time.perf_counter()
            index.search(q[i : i + 1], 10)
            times.append(time.perf_counter() - t0)
        ms = np.asarray(times) * 1e3
        rows.append(
            {
                "index": name,
                "p50_ms": round(float(np.percentile(ms, 50)), 3),
                "p99_ms": round(float(np.percentile(ms, 99)), 3),
                "max_ms": round(float(ms.max()), 3),
                "load": load,
            }
        )
        for actor in getattr(index, "actors", []):
            ray.kill(actor)  # free the CPUs now, not when the garbage collector runs
    return {"n": n, "dim": dim, "calls": calls, "rows": rows}


def _corpus(n_docs: int) -> dict[str, str]:
    words = (
        "protein cell gene tumor receptor signal pathway enzyme patient clinical trial dose response "
        "immune virus infection model mouse expression binding structure membrane"
    ).split()
    rng = np.random.default_rng(0)
    return {
        f"d{i}": " ".join(
            " ".join(rng.choice(words, rng.integers(6, 16))).capitalize() + "."
            for _ in range(rng.integers(3, 8))
        )
        for i in range(n_docs)
    }


def bench_ingest(small: bool) -> dict[str, Any]:
    import torch

    from mlsys.rag import DocumentStore, HashingEmbedder, RecursiveChunker
    from mlsys.rag.distributed import ingest_ray

    try:
        from mlsys.rag import MiniLMEmbedder

        MiniLMEmbedder(num_threads=1).embed_documents(["warm up"])
        make: Any = lambda: MiniLMEmbedder(num_threads=1, batch_size=32)  # noqa: E731
        model = "all-MiniLM-L6-v2 (1 torch thread per worker)"
    except Exception:  # MiniLM weights not installed: the cheap embedder shows the overhead only
        make = lambda: HashingEmbedder(dim=256)  # noqa: E731
        model = "HashingEmbedder(dim=256)"
    docs = _corpus(40 if small else 300)
    torch.set_num_threads(1)
    rows = []
    plain = DocumentStore(make(), chunker=RecursiveChunker(size=200))
    rep, secs, load = _timed(lambda: plain.upsert(docs))
    n = rep.chunks_embedded
    rows.append(
        {
            "run": "plain upsert, 1 process",
            "workers": 0,
            "seconds": round(secs, 2),
            "chunks_per_s": round(n / secs, 1),
            "load": load,
        }
    )
    for workers in (1, 2):
        store = DocumentStore(make(), chunker=RecursiveChunker(size=200))

        def run(store: Any = store, workers: int = workers) -> Any:
            return ingest_ray(
                store, docs, embedder_factory=make, batch_size=32, concurrency=workers, cpus_per_actor=1.0
            )

        _, secs, load = _timed(run)
        ids = plain.index.ids()
        same = np.array_equal(store.index.ids(), ids) and np.allclose(
            store.index.get_vectors(ids), plain.index.get_vectors(ids), atol=1e-5
        )
        rows.append(
            {
                "run": f"ingest_ray, {workers} actor(s)",
                "workers": workers,
                "seconds": round(secs, 2),
                "chunks_per_s": round(n / secs, 1),
                "load": load,
                "same_chunk_ids_and_vectors": bool(same),
            }
        )
    return {"embedder": model, "docs": len(docs), "chunks": n, "rows": rows}


def bench_inference(small: bool, tmp: Path) -> dict[str, Any]:
    import torch
    from PIL import Image

    from mlsys.vision.distributed import classify_files_ray

    n = 64 if small else 1000
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = tmp / f"img{i:04d}.jpg"
        Image.fromarray(rng.integers(0, 255, (160, 200, 3), dtype=np.uint8)).save(p, quality=90)
        paths.append(p)
    torch.set_num_threads(1)
    pipe = _vision_pipeline()
    pipe.predict_batch(paths[:4])
    rows = []
    batch = 32

    def plain() -> Any:
        return [pipe.predict_batch(paths[s : s + batch]) for s in range(0, n, batch)]

    outs, secs, load = _timed(plain)
    want = np.concatenate([o.top_ids for o in outs])
    rows.append(
        {
            "run": "InferencePipeline, 1 process",
            "workers": 0,
            "seconds": round(secs, 2),
            "images_per_s": round(n / secs, 1),
            "load": load,
        }
    )
    for workers in (1, 2):
        out, secs, load = _timed(
            lambda: classify_files_ray(paths, _vision_pipeline, batch_size=batch, concurrency=workers)  # noqa: B023
        )
        rows.append(
            {
                "run": f"classify_files_ray, {workers} actor(s)",
                "workers": workers,
                "seconds": round(secs, 2),
                "images_per_s": round(n / secs, 1),
                "load": load,
                "same_top_ids": bool(np.array_equal(out["top_ids"], want)),
            }
        )
    return {
        "images": n,
        "image_size": "200x160 JPEG",
        "model": "ViT img 64, patch 8, dim 192, depth 6",
        "rows": rows,
    }


def _vision_pipeline() -> Any:
    import torch

    from mlsys.vision import InferencePipeline, PreprocessConfig, ViT, ViTConfig

    torch.set_num_threads(1)
    torch.manual_seed(0)
    vit = ViT(
        ViTConfig(img_size=64, patch_size=8, in_chans=3, num_classes=10, embed_dim=192, depth=6, num_heads=4)
    )
    pre = PreprocessConfig(resize=72, crop=64, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), channels=3)
    return InferencePipeline(pre, vit, top_k=5)


def ratios(rows: list[dict[str, Any]], key: str) -> dict[str, float]:
    by = {r["workers"]: r[key] for r in rows}
    return {"ray_1_worker_vs_plain": round(by[1] / by[0], 3), "ray_2_vs_1_workers": round(by[2] / by[1], 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="reduced sizes (a smoke run)")
    ap.add_argument("--out", default="benchmarks/ray_scaleout.json")
    ap.add_argument("--sections", default="ann,latency,ingest,inference")
    args = ap.parse_args()
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
    result: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "ray": ray.__version__, "ray_cpus": 2}}
    try:
        sections = args.sections.split(",")
        if "ann" in sections:
            result["ann"] = bench_ann(args.small)
            print(json.dumps(result["ann"], indent=1))
        if "latency" in sections:
            result["latency"] = bench_latency(args.small)
            print(json.dumps(result["latency"], indent=1))
        if "ingest" in sections:
            result["ingest"] = bench_ingest(args.small)
            result["ingest"]["ratios"] = ratios(result["ingest"]["rows"], "chunks_per_s")
            print(json.dumps(result["ingest"], indent=1))
        if "inference" in sections:
            with tempfile.TemporaryDirectory() as d:
                result["inference"] = bench_inference(args.small, Path(d))
            result["inference"]["ratios"] = ratios(result["inference"]["rows"], "images_per_s")
            print(json.dumps(result["inference"], indent=1))
    finally:
        ray.shutdown()
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
