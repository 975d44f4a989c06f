"""Issue 24: every public call with a size parameter set to 10**12 returns within a second with a
typed error or a bounded result, for every index backend, recommender, retriever and reader; a
decompression bomb is refused by both image backends in under a second; the limits are
configurable (``mlsys.common.limits``) and the error names the limit and how to raise it."""

from __future__ import annotations

import gzip
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlsys.common import EmbeddingSpace
from mlsys.common.errors import InvalidInputError, LimitExceededError, MlsysError, UnknownNameError
from mlsys.common.limits import DEFAULT_LIMITS, Limits, get_limits, limits, set_limits

HUGE = 10**12
BOUND_BYTES = 64 * 1024**2  # a "bounded result" for these tiny fixtures is far below this


def _nbytes(x: Any) -> int:
    if isinstance(x, np.ndarray):
        return int(x.nbytes)
    if isinstance(x, (tuple, list)):
        return sum(_nbytes(v) for v in x)
    return 0


def _typed_or_bounded(call: Callable[[], Any]) -> str:
    t = time.perf_counter()
    try:
        out = call()
    except MlsysError as exc:
        outcome = type(exc).__name__
        if isinstance(exc, LimitExceededError):
            assert exc.limit in str(exc) and "set_limits" in str(exc) and "limits(" in str(exc)
    else:
        assert _nbytes(out) < BOUND_BYTES
        outcome = "bounded"
    assert time.perf_counter() - t < 1.0
    return outcome


# ---------------------------------------------------------------- indexes
@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)


@pytest.mark.parametrize("kind", ["exact", "faiss", "hnsw"])
@pytest.mark.parametrize("flt", [{}, {"allow": [1, 2, 3]}, {"deny": [1]}])
def test_index_search_huge_k(kind: str, flt: dict[str, Any], vectors: np.ndarray) -> None:
    from mlsys.common.ann import make_index

    idx = make_index(kind, EmbeddingSpace("t", "1", 8, metric="ip"))
    idx.add(np.arange(50), vectors)
    for k in (HUGE, np.int64(HUGE), DEFAULT_LIMITS.max_k + 1):
        with pytest.raises(LimitExceededError, match="max_k"):
            idx.search(vectors[:3], k=k, **flt)  # type: ignore[arg-type]
    # n_queries * k above max_result_size, each within max_k
    with limits(max_result_size=1000), pytest.raises(LimitExceededError, match="max_result_size"):
        idx.search(vectors[:3], k=2000, **flt)
    # raising the limit lets a large k through, padded as documented
    with limits(max_k=300_000):
        ids, scores = idx.search(vectors[:1], k=200_000, **flt)
    assert ids.shape == (1, 200_000) and (ids[0, 50:] == -1).all() and np.isneginf(scores[0, 50:]).all()
    assert len(idx) == 50


def test_ann_helpers_huge_k(vectors: np.ndarray) -> None:
    from mlsys.common.ann import calibrate, exact_topk, make_index

    idx = make_index("hnsw", EmbeddingSpace("t", "1", 8, metric="ip"))
    idx.add(np.arange(50), vectors)
    assert _typed_or_bounded(lambda: calibrate(idx, vectors[:5], k=HUGE)) == "LimitExceededError"
    assert _typed_or_bounded(lambda: exact_topk(vectors[:2], vectors, HUGE, "ip")) == "LimitExceededError"


# ---------------------------------------------------------------- metrics
def test_metrics_huge_cutoffs() -> None:
    from mlsys.common.metrics import catalog_coverage, evaluate, evaluate_ranked, ndcg, novelty

    run = {"q": {"a": 1.0, "b": 0.5}}
    qrels = {"q": {"a": 1}}
    ranked = np.array([[1, 2, -1]])
    for call in (
        lambda: evaluate(run, qrels, [f"ndcg@{HUGE}"]),
        lambda: evaluate_ranked(ranked, {0: {1: 1}}, [f"recall@{HUGE}"]),
        lambda: ndcg(ranked, {0: {1: 1}}, k=HUGE),
        lambda: novelty(ranked, np.ones(3), k=HUGE),
        lambda: catalog_coverage(ranked, n_items=HUGE),
    ):
        _typed_or_bounded(call)


# ---------------------------------------------------------------- recommenders
@pytest.fixture(scope="module")
def recsys_data() -> Any:
    from mlsys.recsys import synthetic_dataset

    return synthetic_dataset(n_users=30, n_items=25, per_user=6)


def _recommenders(ds: Any) -> dict[str, Any]:
    from mlsys.recsys import (
        EASE,
        ContentBased,
        DemographicPrior,
        FallbackChain,
        FallbackStage,
        ItemKNN,
        Popularity,
        RandomRecommender,
    )

    x, items, users = ds.interactions, ds.items, ds.users
    models: dict[str, Any] = {
        "popularity": Popularity().fit(x),
        "itemknn": ItemKNN(neighbors=10).fit(x),
        "ease": EASE().fit(x),
        "content": ContentBased().fit(x, items=items),
        "demographic": DemographicPrior(features=("age",)).fit(x, users=users),
        "random": RandomRecommender().fit(x),
    }
    models["fallback"] = FallbackChain(
        [FallbackStage("ease", models["ease"], min_history=1), FallbackStage("pop", models["popularity"])],
        history=x,
    )
    return models


@pytest.mark.parametrize(
    "name", ["popularity", "itemknn", "ease", "content", "demographic", "random", "fallback"]
)
def test_recommend_huge_k_and_batch(name: str, recsys_data: Any) -> None:
    model = _recommenders(recsys_data)[name]
    users = recsys_data.interactions.users[:3]
    before = model.recommend(users, 5)[0]
    with pytest.raises(LimitExceededError, match="max_k"):
        model.recommend(users, HUGE)
    if name != "fallback":
        with pytest.raises(LimitExceededError, match="max_batch"):
            model.recommend(users, 5, batch_size=HUGE)
        with pytest.raises(InvalidInputError):
            model.recommend(users, 5, batch_size=0)
    with limits(max_result_size=10), pytest.raises(LimitExceededError, match="max_result_size"):
        model.recommend(users, 5)
    np.testing.assert_array_equal(model.recommend(users, 5)[0], before)


def test_two_tower_and_helpers_huge(recsys_data: Any) -> None:
    from mlsys.recsys import (
        Popularity,
        TwoTowerConfig,
        TwoTowerModel,
        TwoTowerRetriever,
        evaluate_recommender,
        random_holdout,
        top_k,
    )

    ds = recsys_data
    tt = TwoTowerModel(TwoTowerConfig(dim=8, hidden=0, epochs=1, batch_size=64)).fit(
        ds.interactions, items=ds.items, progress=False
    )
    r = TwoTowerRetriever(tt, ds.items)
    users = ds.interactions.users[:2]
    assert _typed_or_bounded(lambda: r.recommend(users, HUGE)) == "LimitExceededError"
    assert _typed_or_bounded(lambda: tt.encode_users(users, batch_size=HUGE)) == "LimitExceededError"
    assert _typed_or_bounded(lambda: tt.encode_items(ds.items, batch_size=HUGE)) == "LimitExceededError"
    assert _typed_or_bounded(lambda: top_k(np.zeros((2, 5), np.float32), HUGE)) == "LimitExceededError"
    split = random_holdout(ds.interactions, seed=0)
    pop = Popularity().fit(split.train)
    for kw in ({"ks": (HUGE,)}, {"batch_size": HUGE}):
        assert _typed_or_bounded(lambda kw=kw: evaluate_recommender(pop, split, **kw)) == "LimitExceededError"


# ---------------------------------------------------------------- rag
@pytest.fixture(scope="module")
def store() -> Any:
    from mlsys.rag import DocumentStore, HashingEmbedder, SentenceChunker

    s = DocumentStore(HashingEmbedder(dim=32), chunker=SentenceChunker(size=60), progress=False)
    s.upsert({f"d{i}": f"Topic {i} is about rivers and lakes. Another fact {i}." for i in range(10)})
    return s


@pytest.mark.parametrize("kind", ["dense", "bm25", "hybrid"])
def test_retrievers_huge(kind: str, store: Any) -> None:
    r = {
        "dense": store.dense_retriever,
        "bm25": store.bm25_retriever,
        "hybrid": store.hybrid_retriever,
    }[kind]()
    n = store.n_chunks
    for call in (lambda: r.search(["rivers"], k=HUGE), lambda: r.retrieve(["rivers"], k=HUGE)):
        assert _typed_or_bounded(call) == "LimitExceededError"
    long_query = "rivers " * (get_limits().max_query_chars // 7 + 1)
    with pytest.raises(LimitExceededError, match="max_query_chars"):
        r.search([long_query], k=3)
    with limits(max_query_chars=len(long_query)):
        assert r.search([long_query], k=3)[0].shape == (1, 3)
    assert store.n_chunks == n


def test_rag_other_sizes_huge(store: Any) -> None:
    from mlsys.rag import (
        BM25Index,
        ChunkExpander,
        FixedSizeChunker,
        HashingEmbedder,
        HybridRetriever,
        RecursiveChunker,
        SentenceChunker,
        SlidingWindowChunker,
        retrieval_run,
    )

    bm = BM25Index()
    bm.add([1, 2], ["rivers and lakes", "mountains"])
    assert _typed_or_bounded(lambda: bm.search(["rivers"], k=HUGE)) == "LimitExceededError"
    assert _typed_or_bounded(lambda: bm.search(["rivers"], k=2, batch_size=HUGE)) == "LimitExceededError"
    assert _typed_or_bounded(lambda: HashingEmbedder(dim=8, batch_size=HUGE)) == "LimitExceededError"
    assert _typed_or_bounded(lambda: HashingEmbedder(dim=HUGE)) == "LimitExceededError"
    assert (
        _typed_or_bounded(lambda: HybridRetriever([store.dense_retriever()], depth=HUGE))
        == "LimitExceededError"
    )
    run = lambda **kw: retrieval_run(store.bm25_retriever(), {"q": "rivers"}, **kw)  # noqa: E731
    for kw in ({"k": HUGE}, {"k": 2, "batch_size": HUGE}, {"k": 2, "chunk_depth": HUGE}):
        assert _typed_or_bounded(lambda kw=kw: run(**kw)) == "LimitExceededError"
    # chunk sizes and the expansion budget only bound what exists: a bounded result
    text = "Rivers flow. Lakes stay. " * 20
    for chunker in (
        lambda: FixedSizeChunker(size=HUGE),
        lambda: SlidingWindowChunker(size=HUGE, overlap=0),
        lambda: RecursiveChunker(size=HUGE),
        lambda: SentenceChunker(size=HUGE),
    ):
        assert _typed_or_bounded(lambda chunker=chunker: chunker().chunk(text, doc_id="d")) in {
            "bounded",
            "InvalidInputError",
            "LimitExceededError",
        }
    hits = store.dense_retriever().retrieve(["rivers"], k=3)[0].hits
    for before, after in ((HUGE, HUGE), (0, HUGE), (HUGE, 0), (1, 2**63)):  # (0, HUGE) used to spin
        ex = ChunkExpander(before=before, after=after, max_size=HUGE)
        assert _typed_or_bounded(lambda ex=ex: ex.expand(hits, store)) == "bounded"


# ---------------------------------------------------------------- vision
def test_vision_sizes_huge() -> None:
    import torch

    from mlsys.vision import ViT, ViTConfig, evaluate, top_k

    ids, _ = top_k(np.array([[0.1, 0.7, 0.2]], np.float32), HUGE)  # bounded: min(k, classes)
    assert ids.shape == (1, 3)
    m = ViT(ViTConfig(img_size=8, patch_size=4, in_chans=1, num_classes=2, embed_dim=8, depth=1, num_heads=2))
    x, y = torch.zeros(3, 1, 8, 8), torch.zeros(3, dtype=torch.int64)
    assert _typed_or_bounded(lambda: evaluate(m, x, y, batch_size=HUGE)) == "LimitExceededError"


def _png_bomb(width: int, height: int) -> bytes:
    """A valid grayscale PNG of ``width x height`` zero pixels, a few hundred KB compressed."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        )

    comp = zlib.compressobj(9)
    block = b"\x00" * ((width + 1) * 256)
    rows = [comp.compress(block) for _ in range(height // 256)]
    rows.append(comp.compress(b"\x00" * ((width + 1) * (height % 256))) + comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(rows)) + chunk(b"IEND", b"")


def _jpeg_declaring(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header is patched to declare ``width x height``."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (16, 16)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return _png_bomb(10_000, 10_000)  # 100 M pixels > Pillow's 89.5 M


@pytest.mark.parametrize("backend", ["pil", "opencv"])
def test_decompression_bomb_refused(backend: str, bomb: bytes, tmp_path: Path) -> None:
    pytest.importorskip("cv2") if backend == "opencv" else None
    from mlsys.vision import ImageDecodeError, PreprocessConfig, Preprocessor

    assert len(bomb) < 500_000
    pre = Preprocessor(PreprocessConfig(backend=backend))  # type: ignore[arg-type]
    (tmp_path / "bomb.png").write_bytes(bomb)
    for image in (bomb, tmp_path / "bomb.png", _jpeg_declaring(20_000, 20_000)):
        t = time.perf_counter()
        with pytest.raises(ImageDecodeError, match="max_image_pixels") as info:
            pre.decode(image)
        assert time.perf_counter() - t < 1.0
        assert isinstance(info.value.__cause__, LimitExceededError)
    # the limit is configurable: a lower one refuses a normal image, which decodes at the default
    small = _png_bomb(64, 48)
    assert pre.decode(small).shape == (48, 64, 3)
    with limits(max_image_pixels=1000), pytest.raises(ImageDecodeError, match="64 x 48"):
        pre.decode(small)


def test_gzip_bomb_refused(tmp_path: Path) -> None:
    from mlsys.common.data import read_idx, read_trec_run

    arr = np.zeros((1000, 1000), np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, 2) + struct.pack(">II", 1000, 1000)
    p = tmp_path / "x.idx.gz"
    p.write_bytes(gzip.compress(header + arr.tobytes()))
    assert read_idx(p).shape == (1000, 1000)
    with limits(max_inflated_bytes=100_000), pytest.raises(LimitExceededError, match="max_inflated_bytes"):
        read_idx(p)
    run = tmp_path / "run.gz"
    run.write_bytes(gzip.compress(b"".join(b"q1 Q0 d%d 1 1.0 sys\n" % i for i in range(10_000))))
    assert len(read_trec_run(run)["q1"]) == 10_000
    with limits(max_inflated_bytes=1000), pytest.raises(LimitExceededError, match="max_inflated_bytes"):
        read_trec_run(run)
    one_line = tmp_path / "one_line.gz"  # no newline: a line reader must not inflate it all
    one_line.write_bytes(gzip.compress(b"x" * 1_000_000))
    with limits(max_inflated_bytes=1000), pytest.raises(LimitExceededError):
        read_trec_run(one_line)


# ---------------------------------------------------------------- the limits module
def test_constructor_sizes_huge() -> None:
    from mlsys.common.profiling import LatencyProfiler
    from mlsys.recsys import StreamingFrequencyEstimator

    for make in (lambda: LatencyProfiler(capacity=HUGE), lambda: StreamingFrequencyEstimator(n_buckets=HUGE)):
        assert _typed_or_bounded(make) == "LimitExceededError"


def test_limits_api() -> None:
    assert get_limits() == DEFAULT_LIMITS == Limits()
    assert DEFAULT_LIMITS.max_image_pixels == 89_478_485  # Pillow's default
    with limits(max_k=5000) as lim:
        assert get_limits() is lim and lim.max_k == 5000
        with limits(max_batch=3):
            assert get_limits().max_k == 5000 and get_limits().max_batch == 3
    assert get_limits() == DEFAULT_LIMITS
    old = set_limits(max_k=2_000_000)
    try:
        assert get_limits().max_k == 2_000_000 and old == DEFAULT_LIMITS
    finally:
        set_limits(old)
    assert get_limits() == DEFAULT_LIMITS
    with pytest.raises(InvalidInputError):
        Limits(max_k=10)  # below SMALL_K
    with pytest.raises(InvalidInputError):
        Limits(max_batch=0)
    with pytest.raises(UnknownNameError):
        set_limits(max_kk=3)
    with pytest.raises(UnknownNameError), limits(nope=1):
        pass
    try:
        from mlsys.common.validation import check_k

        check_k(HUGE)
    except LimitExceededError as exc:
        assert (exc.limit, exc.value, exc.bound) == ("max_k", HUGE, DEFAULT_LIMITS.max_k)
        assert isinstance(exc, ValueError)
