"""Tour of mlsys.common.ann: one index API over exact search, faiss and hnswlib.

Shows, with figures: build + recall/QPS per backend, deletes and upserts, the filtered-search
k-guarantee next to the raw library, calibration of ef to a recall target on two data
distributions, the wrapper's overhead over the raw library call, and verified persistence.

Runs on SciFact passage embeddings (all-MiniLM-L6-v2) when they are cached by
``python benchmarks/common/ann_harness.py --datasets scifact``, else on generated low-rank data.
"""

from __future__ import annotations

import glob
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from mlsys.common.ann import ExactIndex, FaissIndex, HNSWIndex, calibrate, load_index, recall_at_k
from mlsys.common.data import cache_root
from mlsys.common.errors import CorruptFileError, EmbeddingSpaceMismatchError
from mlsys.common.spaces import EmbeddingSpace

K = 10


def _lowrank(n: int, d: int, nq: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((16, d)).astype(np.float32) / 4.0
    x = rng.standard_normal((n, 16), dtype=np.float32) @ basis + 0.05 * rng.standard_normal(
        (n, d), dtype=np.float32
    )
    q = rng.standard_normal((nq, 16), dtype=np.float32) @ basis + 0.05 * rng.standard_normal(
        (nq, d), dtype=np.float32
    )
    return x.astype(np.float32), q.astype(np.float32)


def _data() -> tuple[str, np.ndarray, np.ndarray, EmbeddingSpace]:
    cache = cache_root() / "ann"
    found = sorted(glob.glob(str(cache / "scifact-minilm-*.npz")))
    if found:
        with np.load(found[-1], allow_pickle=False) as z:
            x, q = z["passages"], z["queries"][:300]
        space = EmbeddingSpace(
            "all-MiniLM-L6-v2", "scifact-demo", int(x.shape[1]), metric="cosine", normalized=True
        )
        return f"real data: SciFact passages encoded with all-MiniLM-L6-v2 ({found[-1]})", x, q, space
    x, q = _lowrank(20_000, 64, 300)
    space = EmbeddingSpace("demo-lowrank", "1", 64, metric="ip")
    return "generated data: 20,000 x 64 low-rank (SciFact embeddings not cached)", x, q, space


def _qps(index: object, q: np.ndarray) -> float:
    rows = [q[i : i + 1] for i in range(min(200, len(q)))]
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for r in rows:
            index.search(r, K)  # type: ignore[attr-defined]
        best = min(best, time.perf_counter() - t0)
    return len(rows) / best


def _paired(raw: object, wrapped: object, q: np.ndarray, passes: int = 3) -> tuple[float, float]:
    """Microseconds per query of each side: raw on query i and mlsys on query i + n/2 back to back,
    alternating order; per-query minimum over passes (other processes only ever add time)."""
    n = min(300, q.shape[0])
    rows = [q[i : i + 1] for i in range(n)]
    t = np.full((2, passes, n), np.inf)
    for p in range(passes):
        for i in range(n):
            j = (i + n // 2) % n
            for side in (0, 1) if (i + p) % 2 == 0 else (1, 0):
                fn, row = (raw, i) if side == 0 else (wrapped, j)
                t0 = time.perf_counter()
                fn(rows[row])  # type: ignore[operator]
                t[side, p, row] = time.perf_counter() - t0
    best = t.min(axis=1).mean(axis=1) * 1e6
    return float(best[0]), float(best[1])


def main() -> None:
    import faiss

    faiss.omp_set_num_threads(1)
    what, x, q, space = _data()
    n = x.shape[0]
    ids = np.arange(n, dtype=np.int64) * 10 + 7  # arbitrary external ids
    print(f"{what}\nspace {space}\n")

    print("1) build, recall@10 vs exact, single-query QPS (1 thread)")
    exact = ExactIndex(space)
    exact.add(ids, x)
    truth, _ = exact.search(q, K)
    backends = {
        "exact (numpy)": exact,
        "faiss HNSW32": FaissIndex(space, "HNSW32"),
        "hnswlib M16": HNSWIndex(space, M=16),
    }
    for name, index in backends.items():
        t0 = time.perf_counter()
        if index is not exact:
            index.add(ids, x)
        build = time.perf_counter() - t0
        rec = recall_at_k(index.search(q, K)[0], truth)
        print(f"   {name:<14} build {build:5.1f} s   recall@10 {rec:.3f}   {_qps(index, q):8,.0f} QPS")

    print("\n2) deletes and upserts (faiss HNSW cannot remove_ids: tombstones + rebuild)")
    fh = backends["faiss HNSW32"]
    assert isinstance(fh, FaissIndex)
    gone = ids[: n // 10]
    fh.remove(gone)
    print(
        f"   removed {gone.size:,}: len {len(fh):,}, tombstones {fh.n_tombstones:,}, faiss ntotal {fh.faiss_index.ntotal:,}"
    )
    fh.upsert(ids[n // 10 : n // 10 + 5], x[:5])
    hits = fh.search(q, 50)[0]
    print(f"   upserted 5 ids with new vectors; removed ids in any top-50: {int(np.isin(hits, gone).sum())}")
    fh.remove(ids[n // 10 : n // 5 + n // 10])
    print(
        f"   removed {n // 5:,} more: past rebuild_threshold -> tombstones {fh.n_tombstones}, ntotal {fh.faiss_index.ntotal:,}"
    )

    print("\n3) filtered search: k results whenever k items are allowed")
    hn = backends["hnswlib M16"]
    rng = np.random.default_rng(1)
    allowed = rng.choice(ids, size=n // 100, replace=False)
    oracle = ExactIndex(space)
    oracle.add(allowed, exact.get_vectors(allowed))
    allowed_truth, _ = oracle.search(q, K)
    fh16 = FaissIndex(space, "HNSW32", ef_search=16)
    fh16.add(ids, x)
    for name, index in (("faiss HNSW32", fh16), ("hnswlib M16", hn)):
        got, _ = index.search(q, K, allow=allowed)
        print(
            f"   {name:<13} 1% allowed ({allowed.size} ids): k results for {100 * (got >= 0).all(1).mean():.0f}% of "
            f"queries, recall@10 vs exact-over-allowed {recall_at_k(got, allowed_truth):.3f}"
        )
    # the case: 8 allowed ids, efSearch 16, exact shortcut off so the native filter runs
    native_only = FaissIndex(space, "HNSW32", ef_search=16, filter_exact_threshold=0)
    native_only.add(np.arange(n), x)
    eight = np.arange(0, n, n // 8)[:8]
    params = faiss.SearchParametersHNSW(sel=faiss.IDSelectorBatch(eight), efSearch=16)
    _, raw = native_only.faiss_index.search(q, K, params=params)
    got, _ = native_only.search(q, K, allow=eight)
    print(
        f"   8 of {n:,} ids allowed, efSearch 16: raw faiss IDSelector returns {(raw >= 0).sum(1).mean():.1f} results "
        f"per query on average; mlsys returns {(got >= 0).sum(1).mean():.1f} (all 8, then -1 padding)"
    )

    print("\n4) calibrate: the ef that reaches recall@10 = 0.95 depends on the data")
    for label, (xx, qq), sp in (
        ("this data", (x, q), space),
        (
            "gaussian 20k x 64",
            (
                np.random.default_rng(2).standard_normal((20_000, 64), dtype=np.float32),
                np.random.default_rng(3).standard_normal((200, 64), dtype=np.float32),
            ),
            EmbeddingSpace("demo-gauss", "1", 64, metric="l2"),
        ),
    ):
        h = HNSWIndex(sp, M=16)
        h.add(np.arange(xx.shape[0]), xx)
        res = calibrate(h, qq[:200], target_recall=0.95, k=K)
        print(
            f"   {label:<18} -> {res.params}  recall {res.recall:.3f}  {res.qps:,.0f} QPS (batch)  tried {[s.value for s in res.steps]}"
        )

    print("\n5) wrapper overhead vs the raw library call (same index, same ef; paired over distinct queries)")
    for name, index in (("faiss HNSW32", backends["faiss HNSW32"]), ("hnswlib M16", hn)):
        for ef in (16, 64):
            if isinstance(index, FaissIndex):
                index.set_params(ef_search=ef)
                native = index.faiss_index
                raw_fn = lambda r, native=native: native.search(r, K)  # noqa: E731
            else:
                index.set_params(ef=ef)
                native = index.hnswlib_index
                raw_fn = lambda r, native=native: native.knn_query(r, K)  # noqa: E731
            raw_us, wrap_us = _paired(raw_fn, lambda r, index=index: index.search(r, K), q)
            print(
                f"   {name:<13} ef={ef:<3} raw {raw_us:6.1f} us  mlsys {wrap_us:6.1f} us"
                f"  overhead {100 * (wrap_us / raw_us - 1):+.1f}% ({wrap_us - raw_us:+.1f} us)"
            )

    print("\n6) persistence: manifest + checksums, refused when corrupted or from another space")
    tmp = Path(tempfile.mkdtemp(prefix="mlsys-ann-demo-"))
    try:
        hn.save(tmp / "idx")
        loaded = load_index(tmp / "idx", expected_space=space)
        same = (loaded.search(q[:20], K)[0] == hn.search(q[:20], K)[0]).mean()
        print(
            f"   saved + loaded {type(loaded).__name__}: {len(loaded):,} items, identical results {100 * same:.0f}%"
        )
        try:
            load_index(
                tmp / "idx",
                expected_space=EmbeddingSpace(space.name, "other-version", space.dim, metric=space.metric),
            )
        except EmbeddingSpaceMismatchError as exc:
            print(f"   other space refused: {str(exc)[:100]}…")
        payload = tmp / "idx" / "index.hnsw"
        payload.write_bytes(payload.read_bytes()[:-100])
        try:
            load_index(tmp / "idx")
        except CorruptFileError as exc:
            print(f"   truncated file refused: {str(exc)[:100]}…")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
