"""Boundary validation cost: `as_vectors` vs the bare numpy conversion it wraps.

Every public call validates its input once; this keeps that cost visible. Printed: the ratio of
`as_vectors` to `np.ascontiguousarray(x, dtype=float32)` + `np.isfinite(x).all()` on the same input.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import size
from mlsys.common.spaces import EmbeddingSpace
from mlsys.common.validation import as_vectors

N = size(20_000, 200)
DIM = 128


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((N, DIM)).astype(np.float32)


def _bare(x: np.ndarray) -> np.ndarray:
    out = np.ascontiguousarray(x, dtype=np.float32)
    assert np.isfinite(out).all()
    return out


def test_as_vectors(benchmark, vectors: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    out = benchmark(as_vectors, vectors, dim=DIM)
    assert out.shape == (N, DIM)


def test_bare_numpy_conversion(benchmark, vectors: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    out = benchmark(_bare, vectors)
    assert out.shape == (N, DIM)


def test_space_id(benchmark) -> None:  # type: ignore[no-untyped-def]
    space = EmbeddingSpace("all-MiniLM-L6-v2", "sha256:53aa51", 384, metric="cosine", normalized=True)
    assert len(benchmark(lambda: space.space_id)) == 16
