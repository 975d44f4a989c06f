"""The gate's figures: gate-sized, seeded workloads shared by the gate benchmarks and their tests.

Every function returns ``{figure name: record}`` (see :mod:`gate.core`). Quality figures are
deterministic given their seed (their tolerance says where BLAS, SIMD kernels or torch can still
move them); a figure whose data set or checkpoint is absent is a ``skipped`` record with the reason.
Speed figures are *ratios* of two timings taken in the same run, interleaved ABBA (candidate,
reference, reference, candidate; the order flips every quad), and the gate keeps the median
over quads (see :func:`abba`).
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
Record = dict[str, Any]
Figures = dict[str, Record]

# tolerances, stated once
EXACT = 1e-9  # float64 sums in a fixed order
BLAS = 1e-4  # matrix products / inverses: the BLAS build and thread count change the last bits, and a near-tie can flip
SIMD = (
    0.005  # ANN graphs: distance kernels differ across CPUs (AVX2 vs AVX-512), so a few neighbours can flip
)
TORCH = 0.02  # torch training (one thread, seeded): bit-stable on one build, moves across builds
ALS = 0.01  # implicit ALS runs on every core: the summation order varies


def quality(value: float, tol: float, better: str = "higher", note: str = "") -> Record:
    rec: Record = {"kind": "quality", "value": float(value), "tolerance": tol, "better": better}
    if note:
        rec["note"] = note
    return rec


def digest(value: Any) -> Record:
    return {"kind": "hash", "value": value, "tolerance": "exact", "better": "equal"}


def ratio(value: float, reference: str, detail: dict[str, Any] | None = None) -> Record:
    rec: Record = {"kind": "ratio", "value": float(value), "tolerance": 0.25, "better": "lower"}
    rec["reference"] = reference
    if detail:
        rec["detail"] = detail
    return rec


def skipped(reason: str, kind: str = "quality") -> Record:
    return {"kind": kind, "skipped": reason}


def sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, separators=(",", ":")).encode()).hexdigest()


# ----------------------------------------------------------------------------- timing
def abba(
    candidate: Callable[[], Any], reference: Callable[[], Any], quads: int, inner: int = 1
) -> tuple[float, dict[str, Any]]:
    """Median over ``quads`` interleaved ABBA quads of ``time(candidate) / time(reference)``.

    A quad runs candidate, reference, reference, candidate (the order flips every quad) and
    compares the sums, which cancels a linear drift inside it; the median drops the quads that a
    load spike split. On this shared 2-core machine the median of per-quad ratios varied less
    across runs than the ratio of each side's minimum for 8 of the 12 ratios (and had the smaller
    worst case: 33% vs 58%); the detail keeps that ratio of minima and the interquartile range.
    """
    pc = time.perf_counter
    candidate(), reference()  # warm-up
    ratios = []
    best = {id(candidate): math.inf, id(reference): math.inf}
    for r in range(quads):
        order = (
            (candidate, reference, reference, candidate)
            if r % 2 == 0
            else (reference, candidate, candidate, reference)
        )
        spent = {id(candidate): 0.0, id(reference): 0.0}
        for fn in order:
            t0 = pc()
            for _ in range(inner):
                fn()
            dt = pc() - t0
            spent[id(fn)] += dt
            best[id(fn)] = min(best[id(fn)], dt)
        ratios.append(spent[id(candidate)] / spent[id(reference)])
    q = np.percentile(ratios, [25, 50, 75])
    detail = {
        "quads": quads,
        "inner": inner,
        "min_candidate_s": best[id(candidate)] / inner,
        "min_reference_s": best[id(reference)] / inner,
        "ratio_of_minima": best[id(candidate)] / best[id(reference)],
        "iqr_quad_ratio": [float(q[0]), float(q[2])],
    }
    return float(q[1]), detail


ATTEMPTS = 3


def speed(
    name: str,
    candidate: Callable[[], Any],
    reference: Callable[[], Any],
    what: str,
    quads: int,
    inner: int = 1,
    attempts: int = ATTEMPTS,
) -> Figures:
    """The best (lowest) of ``attempts`` independent :func:`abba` medians.

    The gate is one-sided (only a slower candidate fails), and a load burst on a shared machine
    can push one attempt's ratio either way; a real slowdown moves every attempt. Taking the best
    attempt in the baseline and in every run keeps the two comparable.
    """
    tries = [abba(candidate, reference, quads, inner) for _ in range(attempts)]
    r, detail = min(tries, key=lambda t: t[0])
    detail = dict(detail, attempts=[t[0] for t in tries])
    return {name: ratio(r, what, detail)}


def paired_single_query_times(
    raw: Callable[[np.ndarray], Any], wrap: Callable[[np.ndarray], Any], q: np.ndarray, passes: int
) -> tuple[float, float]:
    """Mean seconds per single query of each side, paired and interleaved over distinct queries.

    Call ``i`` of a pass runs raw on query ``i`` and mlsys on query ``i + n/2`` back to back
    (alternating which goes first), so neither side searches a query whose graph path the other
    just pulled into cache. Each query's time is its minimum over ``passes``; both sides see every
    query equally often. Shared by the gate and ``benchmarks/common/test_ann_bench.py``.
    """
    n = q.shape[0]
    rows = [q[i : i + 1] for i in range(n)]
    t_raw = np.full((passes, n), np.inf)
    t_wrap = np.full((passes, n), np.inf)
    pc = time.perf_counter
    for p in range(passes):
        for i in range(n):
            j = (i + n // 2) % n
            if (i + p) % 2 == 0:
                t0 = pc()
                raw(rows[i])
                t1 = pc()
                wrap(rows[j])
                t2 = pc()
                t_raw[p, i], t_wrap[p, j] = t1 - t0, t2 - t1
            else:
                t0 = pc()
                wrap(rows[j])
                t1 = pc()
                raw(rows[i])
                t2 = pc()
                t_wrap[p, j], t_raw[p, i] = t1 - t0, t2 - t1
    return float(t_raw.min(axis=0).mean()), float(t_wrap.min(axis=0).mean())


def per_query_ratio(
    raw: Callable[[np.ndarray], Any], wrap: Callable[[np.ndarray], Any], q: np.ndarray, passes: int
) -> float:
    """mlsys / raw mean seconds per single query (:func:`paired_single_query_times`)."""
    t_raw, t_wrap = paired_single_query_times(raw, wrap, q, passes)
    return t_wrap / t_raw


# ----------------------------------------------------------------------------- recsys
def tiny_two_tower_config() -> Any:
    from mlsys.recsys.evaluate import WARM_CONFIG

    return replace(WARM_CONFIG, epochs=1, batch_size=128, dim=16, hidden=32)


def _recsys_rows(prefix: str, results: Sequence[Any], tols: dict[str, float]) -> Figures:
    out: Figures = {}
    for r in results:
        tol = tols.get(r.model, BLAS)
        for m in ("ndcg@10", "recall@10"):
            out[f"{prefix}.{r.model}.{m}"] = quality(r.metrics[m], tol)
    return out


def recsys_synthetic() -> Figures:
    """Every recsys model, two-tower included (tiny seeded config), on the smoke-sized synthetic data."""
    import torch

    from mlsys.recsys import synthetic_dataset
    from mlsys.recsys.evaluate import _implicit_available, run_warm

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ds = synthetic_dataset(n_users=120, n_items=80, per_user=10)
        res = run_warm(ds, config=tiny_two_tower_config(), progress=False)
    finally:
        torch.set_num_threads(threads)
    out = _recsys_rows("recsys.synthetic", res, {"two_tower": TORCH, "implicit_als_64": ALS})
    if not _implicit_available():
        for m in ("ndcg@10", "recall@10"):
            out[f"recsys.synthetic.implicit_als_64.{m}"] = skipped("the implicit package is not installed")
    return out


def recsys_movielens(root: Path | None) -> Figures:
    """The full MovieLens-100K protocol (per-user random 80/20) for every model but the two-tower."""
    from mlsys.recsys import load_movielens
    from mlsys.recsys.evaluate import _implicit_available, run_warm

    models = (
        "random",
        "popularity",
        "popularity_decayed",
        "itemknn",
        "ease",
        "content",
        "demographic",
        "implicit_als_64",
        "two_tower",
    )
    names = [f"recsys.movielens.{m}.{k}" for m in models for k in ("ndcg@10", "recall@10")]
    if root is None or not root.is_dir():
        return {n: skipped(f"data set movielens-100k not found at {root}") for n in names}
    res = run_warm(load_movielens(root), two_tower=False, progress=False)
    out = _recsys_rows("recsys.movielens", res, {"implicit_als_64": ALS})
    for m in ("ndcg@10", "recall@10"):
        out[f"recsys.movielens.two_tower.{m}"] = skipped(
            "two-tower training on MovieLens takes ~100 s on 2 cores: gated at smoke size (recsys.synthetic.two_tower)"
        )
        if not _implicit_available():
            out[f"recsys.movielens.implicit_als_64.{m}"] = skipped("the implicit package is not installed")
    return out


# ----------------------------------------------------------------------------- rag
def generated_beir(root: Path) -> Path:
    sys.path.insert(0, str(HERE.parent / "rag"))
    from test_scifact_bench import _generated_beir

    return Path(_generated_beir(root))


def rag_generated(tmp: Path) -> Figures:
    """BM25, dense (hashing embedder), hybrid on a generated BEIR folder: always available."""
    from mlsys.rag import HashingEmbedder, evaluate_beir

    ev = evaluate_beir(
        generated_beir(tmp / "beir"),
        HashingEmbedder(dim=256),
        systems=["bm25", "dense", "hybrid"],
        metrics=["ndcg@10", "recall@100"],
        progress=False,
    )
    return {
        f"rag.generated.{s}.{m}": quality(ev.results[s].mean[m], EXACT if s == "bm25" else BLAS)
        for s in ev.results
        for m in ("ndcg@10", "recall@100")
    }


def _scifact_cache_status(root: Path) -> tuple[Any, str | None]:
    """The MiniLM embedder when the cache holds every SciFact passage and test query, else the reason."""
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        return None, "sentence-transformers is not installed (mlsys-rag[minilm])"
    from mlsys.common.data import load_beir
    from mlsys.rag import EmbeddingCache, MiniLMEmbedder

    cache = EmbeddingCache()
    try:
        emb = MiniLMEmbedder(cache=cache)
        space = emb.space
    except Exception as exc:  # the model files are absent offline
        return None, f"all-MiniLM-L6-v2 unavailable ({type(exc).__name__})"
    ds = load_beir(root)
    texts = [(d["title"] + " " + d["text"]).strip() for d in ds.corpus.values()]
    texts += [ds.queries[q] for q in ds.qrels if q in ds.queries]
    _, found = cache.get(space, texts)
    if not found.all():
        return None, (
            f"embedding cache {cache.path} holds {int(found.sum())} of {len(texts)} SciFact texts "
            "(fill it with benchmarks/rag/fill_embedding_cache.py)"
        )
    return emb, None


def rag_scifact(root: Path | None) -> Figures:
    """SciFact test: BM25 always; dense and hybrid when the embedding cache is complete."""
    from mlsys.rag import HashingEmbedder, evaluate_beir

    names = [f"rag.scifact.{s}.{m}" for s in ("bm25", "dense", "hybrid") for m in ("ndcg@10", "recall@100")]
    if root is None or not root.is_dir():
        return {n: skipped(f"data set scifact not found at {root}") for n in names}
    emb, reason = _scifact_cache_status(root)
    systems = ["bm25"] if emb is None else ["bm25", "dense", "hybrid"]
    ev = evaluate_beir(
        root,
        emb if emb is not None else HashingEmbedder(dim=64),
        systems=systems,
        metrics=["ndcg@10", "recall@100"],
        progress=False,
    )
    out: Figures = {}
    for s in ("bm25", "dense", "hybrid"):
        for m in ("ndcg@10", "recall@100"):
            name = f"rag.scifact.{s}.{m}"
            if s in ev.results:
                out[name] = quality(
                    ev.results[s].mean[m],
                    EXACT if s == "bm25" else BLAS,
                    note="dense vectors from the embedding cache" if s != "bm25" else "",
                )
            else:
                out[name] = skipped(reason or "not run")
    return out


def generated_text(n_chars: int = 300_000, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(3000)]
    docs, total = [], 0
    while total < n_chars:
        sents = [
            " ".join(rng.choice(words, size=int(rng.integers(4, 30))).tolist()) + "."
            for _ in range(int(rng.integers(3, 14)))
        ]
        paras = [" ".join(sents[i : i + 4]) for i in range(0, len(sents), 4)]
        doc = f"Title {len(docs)}\n" + "\n".join(paras)
        docs.append(doc)
        total += len(doc) + 2
    return "\n\n".join(docs)


def chunker_configs() -> dict[str, Any]:
    from mlsys.rag import FixedSizeChunker, RecursiveChunker, SentenceChunker, SlidingWindowChunker

    return {
        "recursive512": RecursiveChunker(size=512),
        "recursive128w_overlap": RecursiveChunker(size=128, length="words", overlap=0.1),
        "sentence512": SentenceChunker(size=512),
        "sliding512_25": SlidingWindowChunker(size=512, overlap=0.25),
        "fixed64w": FixedSizeChunker(size=64, length="words"),
    }


def chunk_hashes(text: str, label: str) -> Figures:
    """sha256 of every chunker's (start, end) spans: any moved boundary changes it."""
    out: Figures = {}
    for name, ch in chunker_configs().items():
        chunks = ch.chunk(text)
        out[f"rag.chunks.{label}.{name}.sha256"] = digest(sha([[c.start, c.end] for c in chunks]))
        out[f"rag.chunks.{label}.{name}.count"] = quality(len(chunks), 0, better="equal")
    return out


def scifact_text(root: Path | None) -> str | None:
    if root is None or not root.is_dir():
        return None
    from mlsys.common.data import load_beir

    ds = load_beir(root)
    return "\n\n".join(d["title"] + "\n" + d["text"] for d in list(ds.corpus.values())[:1000])


# ----------------------------------------------------------------------------- metrics
def metrics_data(n: int = 2000, depth: int = 100) -> dict[str, Any]:
    sys.path.insert(0, str(HERE.parent / "common"))
    from test_metrics_bench import make_data

    return dict(make_data(n, depth, seed=0))


def metrics_parity(n: int = 2000, depth: int = 100) -> Figures:
    """mlsys vs pytrec_eval on graded generated qrels: the largest per-query difference, and the means."""
    sys.path.insert(0, str(HERE.parent / "common"))
    from test_metrics_bench import to_dicts

    from mlsys.common.metrics import evaluate

    data = metrics_data(n, depth)
    run, qrels = to_dicts(data)
    ours = ["ndcg@10", "recall@100", "map", "precision@10", "ndcg"]
    theirs = ["ndcg_cut_10", "recall_100", "map", "P_10", "ndcg"]
    res = evaluate(run, qrels, ours, missing_queries="ignore", extra_queries="ignore", empty_queries="zero")
    out: Figures = {f"metrics.generated.{m}": quality(res.mean[m], EXACT) for m in ours}
    try:
        import pytrec_eval
    except ImportError:
        for m in ours:
            out[f"metrics.parity_pytrec_eval.{m}.max_abs_diff"] = skipped("pytrec_eval is not installed")
        return out
    ref = pytrec_eval.RelevanceEvaluator(
        qrels, {"ndcg_cut.10", "recall.100", "map", "P.10", "ndcg"}
    ).evaluate(run)
    for m, t in zip(ours, theirs, strict=True):
        mine = np.asarray(res.per_query[m], dtype=np.float64)
        theirs_arr = np.array([ref[q][t] for q in res.query_ids])
        diff = float(np.max(np.abs(mine - theirs_arr)))
        out[f"metrics.parity_pytrec_eval.{m}.max_abs_diff"] = quality(
            diff, EXACT, better="lower", note="0 = equal to trec_eval"
        )
    return out


# ----------------------------------------------------------------------------- ann
def ann_setup(n: int = 20_000, dim: int = 32, nq: int = 400) -> dict[str, Any]:
    import faiss

    sys.path.insert(0, str(HERE.parent / "common"))
    from ann_harness import lowrank

    from mlsys.common.ann import ExactIndex, FaissIndex, HNSWIndex

    faiss.omp_set_num_threads(1)
    ds = lowrank(n, dim, nq, seed=0)
    ids = np.arange(n, dtype=np.int64) * 7 + 3
    out: dict[str, Any] = {"x": ds.x, "q": ds.q, "space": ds.space, "ids": ids}
    out["exact"] = ExactIndex(ds.space)
    out["exact"].add(ids, ds.x)
    out["hnswlib"] = HNSWIndex(ds.space, M=16, num_threads=1)
    out["hnswlib"].add(ids, ds.x)
    out["faiss-hnsw"] = FaissIndex(ds.space, "HNSW32")
    out["faiss-hnsw"].add(ids, ds.x)
    return out


def ann_recall(s: dict[str, Any], k: int = 10) -> Figures:
    """recall@10 against exact search at the documented defaults (ef 64), and with a 1% allow-list."""
    from threadpoolctl import threadpool_limits

    from mlsys.common.ann import ExactIndex, recall_at_k

    q = s["q"]
    with threadpool_limits(1):
        truth, _ = s["exact"].search(q, k)
        rng = np.random.default_rng(3)
        n = s["x"].shape[0]
        rows = np.sort(rng.choice(n, size=n // 100, replace=False))
        allowed = s["ids"][rows]
        oracle = ExactIndex(s["space"])
        oracle.add(allowed, s["x"][rows])
        ftruth, _ = oracle.search(q, k)
    out: Figures = {}
    for lib, knob in (("hnswlib", "ef"), ("faiss-hnsw", "ef_search")):
        idx = s[lib]
        idx.set_params(**{knob: 64})
        found, _ = idx.search(q, k)
        out[f"ann.{lib}.ef64.recall@10"] = quality(recall_at_k(found, truth), SIMD)
        ffound, _ = idx.search(q, k, allow=allowed)
        out[f"ann.{lib}.ef64.filtered1pct.recall@10"] = quality(recall_at_k(ffound, ftruth), SIMD)
    return out


def ann_speed(s: dict[str, Any], quick: bool = False) -> Figures:
    """mlsys search vs the raw library call (single query and batch), ExactIndex vs faiss IndexFlatIP."""
    import faiss
    from threadpoolctl import threadpool_limits

    q = s["q"]
    k = 10
    out: Figures = {}
    passes = 2 if quick else 5
    nq_single = 100 if quick else 400
    quads = 2 if quick else 5
    hl = s["hnswlib"]
    hl.set_params(ef=64)
    native = hl.hnswlib_index
    out["ann.hnswlib.single_query.ratio"] = ratio(
        per_query_ratio(lambda x: native.knn_query(x, k), lambda x: hl.search(x, k), q[:nq_single], passes),
        "raw hnswlib knn_query, per query (min over passes, mean over queries)",
    )
    out.update(
        speed(
            "ann.hnswlib.batch.ratio",
            lambda: hl.search(q, k),
            lambda: native.knn_query(q, k),
            "raw hnswlib knn_query, batch",
            quads,
        )
    )
    fh = s["faiss-hnsw"]
    fh.set_params(ef_search=64)
    fnative = fh.faiss_index
    out["ann.faiss_hnsw.single_query.ratio"] = ratio(
        per_query_ratio(lambda x: fnative.search(x, k), lambda x: fh.search(x, k), q[:nq_single], passes),
        "raw faiss IndexHNSWFlat.search, per query",
    )
    flat = faiss.IndexFlatIP(s["x"].shape[1])
    flat.add(s["x"])
    exact = s["exact"]
    with threadpool_limits(1):
        out.update(
            speed(
                "ann.exact_vs_faiss_flat.ratio",
                lambda: exact.search(q, k),
                lambda: flat.search(q, k),
                "faiss IndexFlatIP, batch, 1 thread",
                quads,
            )
        )
    return out


# ----------------------------------------------------------------------------- vision
def vision_accuracy(data_root: Path | None, n_eval: int = 2000) -> Figures:
    """Test accuracy of the cached trained Fashion-MNIST models (written by train_fmnist.py)."""
    from mlsys.common.data import cache_root

    cache = cache_root() / "vision"
    names = {"plain": "fmnist_vit", "pruned_rho0.7": "fmnist_vit_prune0.7"}
    fig = {k: f"vision.fmnist.{k}.accuracy" for k in (*names, "merged_r8")}
    root = (data_root / "fashion-mnist") if data_root is not None else None
    if root is None or not root.is_dir():
        return {f: skipped(f"data set fashion-mnist not found at {root}") for f in fig.values()}
    if not (cache / "fmnist_vit" / "manifest.json").exists():
        return {
            f: skipped(f"no trained checkpoint at {cache / 'fmnist_vit'} (benchmarks/vision/train_fmnist.py)")
            for f in fig.values()
        }
    import torch

    from mlsys.common.data import load_fashion_mnist
    from mlsys.vision import TokenMerging, ViT, evaluate, images_to_tensor, load_model

    d = load_fashion_mnist(root)
    x = images_to_tensor(d.x_test[:n_eval], 0.2860, 0.3530)
    y = torch.from_numpy(d.y_test[:n_eval])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out: Figures = {}
        vit = load_model(cache / "fmnist_vit")
        assert isinstance(vit, ViT)
        out[fig["plain"]] = quality(evaluate(vit, x, y).accuracy, 0.002, note="torch kernels; 1 thread")
        sd = cache / names["pruned_rho0.7"]
        if (sd / "manifest.json").exists():
            out[fig["pruned_rho0.7"]] = quality(evaluate(load_model(sd), x, y).accuracy, 0.002)
        else:
            out[fig["pruned_rho0.7"]] = skipped(f"no trained checkpoint at {sd}")
        out[fig["merged_r8"]] = quality(evaluate(TokenMerging(vit, 8).eval(), x, y).accuracy, 0.002)
    finally:
        torch.set_num_threads(threads)
    return out


# ----------------------------------------------------------------------------- other speed ratios
def metrics_speed(quick: bool = False) -> Figures:
    """evaluate_ranked (arrays) vs pytrec_eval (its dicts prebuilt) and vs a plain numpy loop."""
    sys.path.insert(0, str(HERE.parent / "common"))
    from test_metrics_bench import mlsys_array, numpy_reference, pytrec, to_dicts

    data = metrics_data(500 if quick else 2000, 100)
    run, qrels = to_dicts(data)
    out: Figures = {}
    quads = 2 if quick else 5
    out.update(
        speed(
            "metrics.evaluate_ranked_vs_numpy_loop.ratio",
            lambda: mlsys_array(data),
            lambda: numpy_reference(data),
            "plain numpy, one query at a time",
            quads,
        )
    )
    try:
        import pytrec_eval  # noqa: F401
    except ImportError:
        out["metrics.evaluate_ranked_vs_pytrec_eval.ratio"] = skipped("pytrec_eval is not installed", "ratio")
        return out
    out.update(
        speed(
            "metrics.evaluate_ranked_vs_pytrec_eval.ratio",
            lambda: mlsys_array(data),
            lambda: pytrec(run, qrels),
            "pytrec_eval RelevanceEvaluator.evaluate (dicts prebuilt)",
            quads,
        )
    )
    return out


def bm25_speed(quick: bool = False) -> Figures:
    """mlsys BM25Index vs bm25s, end to end (query strings in, top 100 out), one thread, generated corpus."""
    try:
        import bm25s
        import Stemmer
    except ImportError:
        return {"rag.bm25_vs_bm25s.ratio": skipped("bm25s / PyStemmer not installed", "ratio")}
    from mlsys.rag import BM25Index

    rng = np.random.default_rng(0)
    vocab = [f"term{i}" for i in range(3000)]
    p = 1.0 / np.arange(1, 3001)
    p /= p.sum()
    docs = [" ".join(rng.choice(vocab, size=120, p=p).tolist()) for _ in range(1000 if quick else 3000)]
    queries = [" ".join(rng.choice(vocab, size=8, p=p).tolist()) for _ in range(100 if quick else 500)]
    stemmer = Stemmer.Stemmer("english")
    ours = BM25Index()
    ours.add(np.arange(len(docs)), docs)
    ref = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
    ref.index(bm25s.tokenize(docs, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)

    def ref_e2e() -> Any:
        qt = bm25s.tokenize(queries, stopwords="en", stemmer=stemmer, show_progress=False)
        return ref.retrieve(qt, k=100, show_progress=False, n_threads=1)

    return speed(
        "rag.bm25_vs_bm25s.ratio",
        lambda: ours.search(queries, 100),
        ref_e2e,
        "bm25s end to end (tokenize + retrieve), 1 thread",
        3 if quick else 7,
    )


def chunker_speed(quick: bool = False) -> Figures:
    """RecursiveChunker(512) vs LangChain's and chonkie's recursive splitters on generated text."""
    from mlsys.rag import RecursiveChunker

    text = generated_text(200_000 if quick else 600_000, seed=1)
    ours = RecursiveChunker(size=512)
    out: Figures = {}
    quads = 2 if quick else 5
    try:
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        lc = RecursiveCharacterTextSplitter(chunk_size=512, chunk_overlap=0, add_start_index=True)
        out.update(
            speed(
                "rag.chunker_vs_langchain.ratio",
                lambda: ours.chunk(text),
                lambda: lc.create_documents([text]),
                "LangChain RecursiveCharacterTextSplitter(512)",
                quads,
            )
        )
    except ImportError:
        out["rag.chunker_vs_langchain.ratio"] = skipped("langchain-text-splitters not installed", "ratio")
    try:
        import chonkie

        ck = chonkie.RecursiveChunker(tokenizer="character", chunk_size=512)
        out.update(
            speed(
                "rag.chunker_vs_chonkie.ratio",
                lambda: ours.chunk(text),
                lambda: ck(text),
                "chonkie RecursiveChunker(character, 512)",
                quads,
            )
        )
    except ImportError:
        out["rag.chunker_vs_chonkie.ratio"] = skipped("chonkie not installed", "ratio")
    return out


def store_speed(quick: bool = False) -> Figures:
    """Upserting 1% edited documents into a DocumentStore vs rebuilding it (hashing embedder)."""
    from mlsys.rag import Document, DocumentStore, HashingEmbedder, RecursiveChunker

    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(2000)]
    docs = [
        Document(f"d{i}", ". ".join(" ".join(rng.choice(words, size=12).tolist()) for _ in range(20)) + ".")
        for i in range(300 if quick else 800)
    ]
    chunker = RecursiveChunker(size=128, length="words")

    def build() -> DocumentStore:
        st = DocumentStore(HashingEmbedder(dim=256), chunker=chunker, progress=False)
        st.upsert(docs)
        return st

    store = build()
    picks = rng.choice(len(docs), size=len(docs) // 100, replace=False)
    edits = [0]

    def upsert() -> None:
        edits[0] += 1
        store.upsert([Document(docs[i].doc_id, docs[i].text + f" Erratum {edits[0]}.") for i in picks])

    return speed(
        "rag.store_upsert1pct_vs_rebuild.ratio", upsert, build, "full rebuild of the store", 2 if quick else 3
    )


def profiling_speed(quick: bool = False) -> Figures:
    """One LatencyProfiler stage enter/exit vs a minimal __slots__ with-timer (the floor of any timer)."""
    sys.path.insert(0, str(HERE.parent / "common"))
    from test_profiling_bench import _MinimalTimer

    from mlsys.common.profiling import LatencyProfiler

    n = 20_000 if quick else 50_000
    prof = LatencyProfiler(capacity=n * 40 + 10)
    stage = prof.stage("x")
    timer = _MinimalTimer()

    def with_stage() -> None:
        with prof.request():
            for _ in range(n):
                with stage:
                    pass

    def with_minimal() -> None:
        for _ in range(n):
            with timer:
                pass

    return speed(
        "profiling.stage_vs_minimal_timer.ratio",
        with_stage,
        with_minimal,
        "minimal __slots__ with-timer (loop included)",
        3 if quick else 5,
    )


def vision_speed(quick: bool = False) -> Figures:
    """OpenCV vs PIL preprocessing of JPEG bytes; pruned / merged ViT vs the plain one (batch 32, 1 thread)."""
    import io

    import torch
    from PIL import Image

    from mlsys.vision import DynamicTokenPruning, PreprocessConfig, Preprocessor, TokenMerging, ViT, ViTConfig

    out: Figures = {}
    rng = np.random.default_rng(0)
    blobs = []
    for c in rng.integers(0, 256, (16 if quick else 48, 7, 7), dtype=np.uint8):
        img = Image.fromarray(c).resize((112, 112), Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)
        blobs.append(buf.getvalue())

    def cfg(backend: str) -> PreprocessConfig:
        return PreprocessConfig(resize=28, crop=28, mean=(0.286,), std=(0.353,), channels=1, backend=backend)  # type: ignore[arg-type]

    try:
        cv = Preprocessor(cfg("opencv"))
        pil = Preprocessor(cfg("pil"))
        out.update(
            speed(
                "vision.preprocess_opencv_vs_pil.ratio",
                lambda: [cv.image(b) for b in blobs],
                lambda: [pil.image(b) for b in blobs],
                "PIL backend, same JPEG bytes",
                3 if quick else 5,
            )
        )
    except ImportError:
        out["vision.preprocess_opencv_vs_pil.ratio"] = skipped(
            "opencv not installed (mlsys-vision[opencv])", "ratio"
        )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        vit = ViT(ViTConfig.fashion_mnist()).eval()
        pruned = DynamicTokenPruning.from_vit(vit, keep_ratio=0.7).eval()
        merged = TokenMerging(vit, 16).eval()
        x = torch.randn(8 if quick else 32, 1, 28, 28, generator=torch.Generator().manual_seed(0))
        quads = 2 if quick else 4
        with torch.inference_mode():
            out.update(
                speed(
                    "vision.pruned_rho0.7_vs_plain.ratio",
                    lambda: pruned(x),
                    lambda: vit(x),
                    "plain Fashion-MNIST ViT, batch 32, 1 thread",
                    quads,
                )
            )
            out.update(
                speed(
                    "vision.merged_r16_vs_plain.ratio",
                    lambda: merged(x),
                    lambda: vit(x),
                    "plain Fashion-MNIST ViT, batch 32, 1 thread",
                    quads,
                )
            )
    finally:
        torch.set_num_threads(threads)
    return out


def tied_trec_dicts(
    n: int, depth: int, seed: int = 0
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, int]]]:
    """TREC-shaped run and graded qrels as toolkits hand them over: 1-14 relevant documents per
    query (some never retrieved), judged non-relevant ones, scores rounded to 3 decimals (ties)."""
    rng = np.random.default_rng(seed)
    run: dict[str, dict[str, float]] = {}
    qrels: dict[str, dict[str, int]] = {}
    for i in range(n):
        docs = [f"d{x}" for x in rng.choice(5_000_000, size=depth, replace=False).tolist()]
        run[f"q{i}"] = dict(zip(docs, np.round(rng.random(depth), 3).tolist(), strict=True))
        m = int(rng.integers(1, 15))
        judged = {docs[j]: int(rng.integers(1, 4)) for j in rng.choice(depth, size=m, replace=False).tolist()}
        judged.update({f"x{i}_{j}": int(rng.integers(0, 3)) for j in range(2)})
        judged.update({docs[j]: 0 for j in rng.choice(depth, size=3).tolist() if docs[j] not in judged})
        qrels[f"q{i}"] = judged
    return run, qrels


def fast_paths_speed(quick: bool = False, parts: Sequence[str] = ("hnsw", "metrics")) -> Figures:
    """Issue 22's fast paths against their raw references, at default settings on every core.

    HNSW: ``HNSWIndex`` with its defaults (every core) vs raw hnswlib with its defaults, for the
    build and for a batch search. Metrics: ``evaluate`` on TREC dicts with full-depth MAP in the
    set vs pytrec_eval on the same dicts.
    """
    out: Figures = {}
    if "hnsw" in parts:
        out.update(_hnsw_default_threads(quick))
    if "metrics" in parts:
        out.update(_metrics_dict_full_depth(quick))
    return out


def _hnsw_default_threads(quick: bool) -> Figures:
    import hnswlib

    from mlsys.common.ann import HNSWIndex
    from mlsys.common.spaces import EmbeddingSpace

    rng = np.random.default_rng(0)
    n, dim, nq = (3000, 32, 500) if quick else (8000, 32, 2000)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = rng.standard_normal((nq, dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    ids = np.arange(n, dtype=np.int64)
    space = EmbeddingSpace("gate-hnsw", "1", dim, metric="ip", normalized=True)
    params = {"M": 16, "ef_construction": 100}

    def build_ours() -> Any:
        idx = HNSWIndex(space, initial_capacity=n, ef=64, **params)
        idx.add(ids, x)
        return idx

    def build_raw() -> Any:
        idx = hnswlib.Index(space="ip", dim=dim)
        idx.init_index(max_elements=n, random_seed=100, **params)
        idx.add_items(x, ids)
        idx.set_ef(64)
        return idx

    out: Figures = {}
    quads = 2 if quick else 3
    out.update(
        speed(
            "ann.hnswlib.build_default_threads.ratio",
            build_ours,
            build_raw,
            "raw hnswlib add_items, default threads (all cores)",
            quads,
            attempts=2,
        )
    )
    ours, raw = build_ours(), build_raw()
    out.update(
        speed(
            "ann.hnswlib.batch_default_threads.ratio",
            lambda: ours.search(q, 10),
            lambda: raw.knn_query(q, 10),
            "raw hnswlib knn_query, batch, default threads (all cores)",
            quads + 2,
        )
    )
    return out


def _metrics_dict_full_depth(quick: bool) -> Figures:
    out: Figures = {}
    quads = 2 if quick else 3
    try:
        import pytrec_eval
    except ImportError:
        out["metrics.evaluate_dict_full_depth_vs_pytrec_eval.ratio"] = skipped(
            "pytrec_eval is not installed", "ratio"
        )
        return out
    from mlsys.common.metrics import evaluate

    run, qrels = tied_trec_dicts(2000, 300)  # quick runs fewer quads, never a smaller (cheaper) size
    names = ["ndcg@10", "recall@100", "map"]

    def ref() -> Any:
        return pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100", "map"}).evaluate(run)

    out.update(
        speed(
            "metrics.evaluate_dict_full_depth_vs_pytrec_eval.ratio",
            lambda: evaluate(run, qrels, names, empty_queries="zero"),
            ref,
            "pytrec_eval RelevanceEvaluator (built and evaluated) on the same dicts: ndcg@10, recall@100, map",
            quads,
            attempts=2 if quick else ATTEMPTS,
        )
    )
    return out
