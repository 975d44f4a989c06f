"""Shared helpers of the ann tests (imported as ``ann_testlib``; conftest puts this folder on sys.path).

Backends under test: every registered kind, with the parameter sets that exercise its code paths.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from mlsys.common.spaces import EmbeddingSpace

# (kind, params, min_recall, score_atol) -- backends with min_recall 1.0 must agree with exact search
# to float tolerance; the others are checked against that recall@10 floor. score_atol is how far a
# returned score may be from the true score of the returned id (quantised storage is lossy). Parameters keep the tiny test indexes (n <= ~300) exact or
# near-exact so that conformance failures point at the wrapper, not at approximation.
BACKENDS: list[tuple[str, dict[str, Any], float, float]] = [
    ("exact", {}, 1.0, 1e-4),
    ("exact", {"chunk_rows": 7, "query_block": 3, "initial_capacity": 1}, 1.0, 1e-4),
    ("faiss", {"factory": "Flat"}, 1.0, 1e-4),
    ("faiss", {"factory": "HNSW16"}, 0.9, 1e-4),
    # forced onto the native filtered path (no exact shortcut) with a tiny beam, so widening runs
    (
        "faiss",
        {"factory": "HNSW8", "ef_search": 4, "filter_exact_threshold": 0, "deny_overfetch_limit": 0},
        0.3,
        1e-4,
    ),
    ("faiss", {"factory": "IVF4,Flat", "nprobe": 4, "train_size": 100}, 1.0, 1e-4),
    (
        "faiss",
        {"factory": "IVF8,Flat", "nprobe": 1, "train_size": 100, "filter_exact_threshold": 0},
        0.3,
        1e-4,
    ),
    ("faiss", {"factory": "IVF4,SQ8", "nprobe": 4, "train_size": 100}, 0.9, 0.1),
    ("hnsw", {}, 0.9, 1e-4),
    ("hnsw", {"native": False}, 0.9, 1e-4),  # the pure-Python fast path (fallback without a compiler)
    (
        "hnsw",
        {"M": 4, "ef": 2, "initial_capacity": 8, "filter_exact_threshold": 0, "deny_overfetch_limit": 0},
        0.3,
        1e-4,
    ),
]


def backend_id(case: tuple[str, dict[str, Any], float, float]) -> str:
    kind, params = case[0], case[1]
    return kind + ("-" + ",".join(f"{k}={v}" for k, v in params.items()) if params else "")


def space(dim: int = 8, metric: str = "ip", version: str = "1") -> EmbeddingSpace:
    return EmbeddingSpace("test-model", version, dim, metric=metric)  # type: ignore[arg-type]


def vectors(n: int, dim: int = 8, seed: int = 0) -> npt.NDArray[np.float32]:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def true_scores(
    q: npt.NDArray[np.float32], x: npt.NDArray[np.float32], metric: str
) -> npt.NDArray[np.float64]:
    q64, x64 = q.astype(np.float64), x.astype(np.float64)
    if metric == "cosine":
        q64 = q64 / np.linalg.norm(q64, axis=1, keepdims=True)
        x64 = x64 / np.linalg.norm(x64, axis=1, keepdims=True)
    if metric == "l2":
        return -((q64[:, None, :] - x64[None, :, :]) ** 2).sum(-1)
    return q64 @ x64.T
