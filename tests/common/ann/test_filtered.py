"""Filtered search returns k results whenever k items are allowed, at recall >= 0.99 vs exact-over-allowed.

With the default configuration a 1%-selective filter is planned as exact search over the allowed
ids (recall 1). The "native-widening" variants switch that shortcut off to test the native filter
path (faiss IDSelector / hnswlib filter, ef / nprobe scaled by selectivity, doubling, exact
fallback): it must still return k results every time, at lower but bounded recall.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mlsys.common.ann import ExactIndex, calibrate, make_index, recall_at_k
from mlsys.common.spaces import EmbeddingSpace

N, DIM, NQ, K = 5000, 32, 40, 10
SPACE = EmbeddingSpace("filter-test", "1", DIM, metric="ip")

APPROX: list[tuple[str, dict[str, Any]]] = [
    ("faiss", {"factory": "HNSW16", "ef_search": 16}),
    ("faiss", {"factory": "IVF32,Flat", "nprobe": 2}),
    ("hnsw", {"M": 16, "ef": 16}),
]
# exact shortcut for small allowed sets (the default), or forced through the native filter + widening
PATHS = {"exact-shortcut": {}, "native-widening": {"filter_exact_threshold": 0, "deny_overfetch_limit": 0}}


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    basis = rng.standard_normal((8, DIM))
    x = (rng.standard_normal((N, 8)) @ basis + 0.1 * rng.standard_normal((N, DIM))).astype(np.float32)
    q = (rng.standard_normal((NQ, 8)) @ basis).astype(np.float32)
    return x, q


@pytest.fixture(scope="module")
def built(data: tuple[np.ndarray, np.ndarray]) -> dict[tuple[int, str], Any]:
    x, _ = data
    out = {}
    for i, (kind, params) in enumerate(APPROX):
        for path, extra in PATHS.items():
            index = make_index(kind, SPACE, **params, **extra)
            if kind == "faiss" and "IVF" in params["factory"]:
                index.train(x)
            index.add(np.arange(N) * 3 + 1, x)  # sparse external ids
            out[(i, path)] = index
    return out


def exact_over(x: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    oracle = ExactIndex(SPACE)
    oracle.add(ids, x[(ids - 1) // 3])
    return oracle.search(q, k)[0]


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("backend", range(len(APPROX)), ids=[f"{k}-{p}" for k, p in APPROX])
def test_one_percent_allowed_returns_k_with_high_recall(
    backend: int, path: str, built: dict[tuple[int, str], Any], data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, q = data
    index = built[(backend, path)]
    rng = np.random.default_rng(1)
    for trial in range(3):
        allowed = rng.choice(N, size=N // 100, replace=False) * 3 + 1
        ids, scores = index.search(q, K, allow=allowed)
        assert (ids >= 0).all(), "k results must come back whenever k items are allowed"
        assert np.isin(ids, allowed).all()
        assert np.isfinite(scores).all()
        truth = exact_over(x, allowed, q, K)
        floor = 0.99 if path == "exact-shortcut" else 0.8
        assert recall_at_k(ids, truth) >= floor, f"trial {trial}"


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("backend", range(len(APPROX)), ids=[f"{k}-{p}" for k, p in APPROX])
def test_large_deny_set_still_returns_k(
    backend: int, path: str, built: dict[tuple[int, str], Any], data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, q = data
    index = built[(backend, path)]
    all_ids = np.arange(N) * 3 + 1
    deny = np.random.default_rng(2).choice(all_ids, size=int(N * 0.98), replace=False)
    ids, _ = index.search(q, K, deny=deny)
    assert (ids >= 0).all() and not np.isin(ids, deny).any()
    truth = exact_over(x, np.setdiff1d(all_ids, deny), q, K)
    assert recall_at_k(ids, truth) >= (0.99 if path == "exact-shortcut" else 0.8)


@pytest.mark.parametrize("backend", range(len(APPROX)), ids=[f"{k}-{p}" for k, p in APPROX])
def test_half_allowed_uses_native_filter_with_high_recall(
    backend: int, built: dict[tuple[int, str], Any], data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, q = data
    index = built[(backend, "exact-shortcut")]
    allowed = np.arange(N // 2) * 6 + 1  # every other id: too many for the exact shortcut
    ids, _ = index.search(q, K, allow=allowed)
    assert (ids >= 0).all() and np.isin(ids, allowed).all()
    # the filter must not cost recall: at least what the same index reaches unfiltered
    unfiltered = recall_at_k(index.search(q, K)[0], exact_over(x, np.arange(N) * 3 + 1, q, K))
    assert recall_at_k(ids, exact_over(x, allowed, q, K)) >= min(0.9, unfiltered - 0.02)


@pytest.mark.parametrize("backend", range(len(APPROX)), ids=[f"{k}-{p}" for k, p in APPROX])
def test_fewer_allowed_than_k_pads_only_the_tail(backend: int, built: dict[tuple[int, str], Any]) -> None:
    index = built[(backend, "native-widening")]
    allowed = np.arange(8) * 3 * 600 + 1  # 8 of 5,000 ids, spread out (the case)
    ids, scores = index.search(np.ones((5, DIM), np.float32), K, allow=allowed)
    assert (ids[:, :8] >= 0).all() and np.isin(ids[:, :8], allowed).all()
    assert (ids[:, 8:] == -1).all() and np.isneginf(scores[:, 8:]).all()


def test_raw_faiss_returns_fewer_than_k_where_the_wrapper_does_not(
    data: tuple[np.ndarray, np.ndarray],
) -> None:
    """The failure the wrapper exists for: a selective IDSelector at efSearch 16 returns -1 padding."""
    import faiss

    x, q = data
    index = make_index("faiss", SPACE, factory="HNSW16", ef_search=16, filter_exact_threshold=0)
    index.add(np.arange(N), x)
    allowed = np.arange(0, N, 625)  # 8 ids
    raw = index.faiss_index
    sel = faiss.IDSelectorBatch(allowed)
    _, raw_labels = raw.search(q, K, params=faiss.SearchParametersHNSW(sel=sel, efSearch=16))
    ids, _ = index.search(q, K, allow=allowed)
    assert ((ids >= 0).sum(1) == 8).all()
    assert (raw_labels >= 0).sum() <= (ids >= 0).sum()


def test_calibrate_then_filtered_search(
    built: dict[tuple[int, str], Any], data: tuple[np.ndarray, np.ndarray]
) -> None:
    _, q = data
    index = built[(2, "exact-shortcut")]
    res = calibrate(index, q, target_recall=0.9, k=K, apply=False)
    assert res.met and res.recall >= 0.9 and index.config.ef == 16  # apply=False restores
