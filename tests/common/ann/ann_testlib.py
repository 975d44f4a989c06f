"""Shared helpers of the ann tests (imported as ``ann_testlib``; conftest puts this folder on sys.path).

Backends under test: every registered kind, with the parameter sets that exercise its code paths.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from mlsys.common.spaces import EmbeddingSpace

# (kind, params, exact?) -- exact backends must agree with ExactIndex to float tolerance; the others
# are checked against a recall threshold. Parameters keep the tiny test indexes (n <= ~300) exact or
# near-exact so that conformance failures point at the wrapper, not at approximation.
BACKENDS: list[tuple[str, dict[str, Any], bool]] = [
    ("exact", {}, True),
    ("exact", {"chunk_rows": 7, "query_block": 3, "initial_capacity": 1}, True),
]


def backend_id(case: tuple[str, dict[str, Any], bool]) -> str:
    kind, params, _ = case
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
