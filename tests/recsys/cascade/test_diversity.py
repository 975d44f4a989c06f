"""MMR and greedy DPP: identical picks to brute-force greedy references, trade-off ends, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys.common.errors import InvalidInputError
from mlsys.recsys.cascade import dpp_greedy, dpp_greedy_kernel, mmr


def _kernel(rel: np.ndarray, emb: np.ndarray, theta: float) -> np.ndarray:
    span = rel.max() - rel.min()
    r01 = (rel - rel.min()) / span if span > 0 else np.zeros_like(rel)
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    r = np.exp(theta / (2 * (1 - theta)) * r01)
    return r[:, None] * (e @ e.T) * r[None, :]


def _brute_force_greedy(
    kernel: np.ndarray, k: int, window: int | None = None, eps: float = 1e-10
) -> list[int]:
    """Greedy log-det maximisation by evaluating every candidate's determinant (no incremental tricks)."""
    picks: list[int] = []
    eps = eps * float(np.diag(kernel).max())  # relative, as the implementation
    for _ in range(k):
        base = picks if window is None else picks[-(window - 1) :]
        base_det = np.linalg.det(kernel[np.ix_(base, base)]) if base else 1.0
        gains = np.full(kernel.shape[0], -np.inf)
        for i in range(kernel.shape[0]):
            if i not in picks:
                s = [*base, i]
                gains[i] = np.linalg.det(kernel[np.ix_(s, s)]) / base_det
        top = gains.max()
        best = int(np.flatnonzero(gains >= top - 1e-9 * max(1.0, abs(top)))[0])  # ties: lower index
        best_gain = gains[best]
        if best_gain < eps:
            break
        picks.append(best)
    return picks


problems = st.tuples(
    st.integers(2, 12),  # n
    st.integers(2, 6),  # d
    st.integers(1, 8),  # k
    st.floats(0.0, 0.95),  # theta
    st.integers(0, 2**31 - 1),  # seed
)


@settings(max_examples=150, deadline=None)
@given(problems)
def test_dpp_picks_equal_brute_force_log_det_greedy(p: tuple[int, int, int, float, int]) -> None:
    n, d, k, theta, seed = p
    rng = np.random.default_rng(seed)
    rel, emb = rng.random(n), rng.normal(size=(n, d))
    kernel = _kernel(rel, emb, theta)
    expected = _brute_force_greedy(kernel, min(k, n))
    got = dpp_greedy(rel, emb, k, theta=theta, fill=False, dtype=np.float64).tolist()
    assert got == expected
    assert dpp_greedy_kernel(kernel, k).tolist() == expected
    filled = dpp_greedy(rel, emb, k, theta=theta, dtype=np.float64)
    assert filled.tolist()[: len(expected)] == expected and len(filled) == min(k, n)
    assert len(set(filled.tolist())) == len(filled)


@settings(max_examples=60, deadline=None)
@given(problems, st.integers(2, 4))
def test_windowed_dpp_equals_brute_force_within_the_window(
    p: tuple[int, int, int, float, int], w: int
) -> None:
    n, d, k, theta, seed = p
    rng = np.random.default_rng(seed)
    rel, emb = rng.random(n), rng.normal(size=(n, d))
    expected = _brute_force_greedy(_kernel(rel, emb, theta), min(k, n), window=w)
    assert dpp_greedy(rel, emb, k, theta=theta, window=w, fill=False, dtype=np.float64).tolist() == expected


def _naive_mmr(rel: np.ndarray, emb: np.ndarray, k: int, lam: float) -> list[int]:
    span = rel.max() - rel.min()
    r = (rel - rel.min()) / span if span > 0 else np.zeros_like(rel)
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    picks: list[int] = []
    for _ in range(min(k, len(rel))):
        best, best_v = -1, -np.inf
        for i in range(len(rel)):
            if i in picks:
                continue
            penalty = max((float(e[i] @ e[s]) for s in picks), default=0.0) if picks else None
            v = r[i] if penalty is None else lam * r[i] - (1 - lam) * penalty
            if v > best_v + 1e-6:
                best, best_v = i, v
        picks.append(best)
    return picks


@settings(max_examples=150, deadline=None)
@given(problems)
def test_mmr_equals_naive(p: tuple[int, int, int, float, int]) -> None:
    n, d, k, lam, seed = p
    rng = np.random.default_rng(seed)
    rel, emb = rng.random(n), rng.normal(size=(n, d))
    assert mmr(rel, emb, k, lambda_=lam).tolist() == _naive_mmr(rel, emb, k, lam)


def test_trade_off_ends() -> None:
    rng = np.random.default_rng(0)
    rel, emb = rng.random(50), rng.normal(size=(50, 8))
    order = np.argsort(-rel, kind="stable")[:10].tolist()
    assert mmr(rel, emb, 10, lambda_=1.0).tolist() == order
    # a strong relevance weight follows relevance closely; more diversity lowers the mean similarity
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)

    def mean_sim(idx: np.ndarray) -> float:
        s = e[idx] @ e[idx].T
        return float(s[np.triu_indices(len(idx), 1)].mean())

    assert mean_sim(dpp_greedy(rel, emb, 10, theta=0.0)) < mean_sim(np.array(order))
    assert mean_sim(mmr(rel, emb, 10, lambda_=0.3)) < mean_sim(np.array(order))


def test_duplicates_and_rank_limit_stop_the_dpp_and_fill_by_relevance() -> None:
    emb = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    rel = np.array([0.9, 0.8, 0.7, 0.6, 0.1])
    picks = dpp_greedy(rel, emb, 4, theta=0.5, fill=False)
    assert len(picks) == 2  # rank 2: a third item adds no volume
    assert dpp_greedy(rel, emb, 4, theta=0.5).tolist()[2:] == [1, 3]  # filled by relevance
    assert len(dpp_greedy(rel, emb, 99)) == 5  # k beyond the list: every candidate


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: dpp_greedy([], np.zeros((0, 2)), 3), "non-empty"),
        (lambda: dpp_greedy([1.0, np.nan], np.eye(2), 1), "NaN"),
        (lambda: dpp_greedy([1.0, 0.5], np.array([[1.0, np.inf], [0.0, 1.0]]), 1), "NaN or inf"),
        (lambda: dpp_greedy([1.0, 0.5], np.eye(3), 1), "shape"),
        (lambda: dpp_greedy([1.0, 0.5], np.array([[0.0, 0.0], [1.0, 0.0]]), 1), "all zeros"),
        (lambda: dpp_greedy([1.0], np.eye(1), 0), "positive int"),
        (lambda: dpp_greedy([1.0], np.eye(1), 1, theta=1.0), "theta"),
        (lambda: dpp_greedy([1.0], np.eye(1), 1, window=1), "window"),
        (lambda: mmr([1.0], np.eye(1), 1, lambda_=2.0), "lambda_"),
        (lambda: dpp_greedy_kernel(np.array([[1.0, 2.0], [2.0, 1.0]]), 2), "positive semi-definite"),
        (lambda: dpp_greedy_kernel(np.array([[1.0, 0.5], [0.2, 1.0]]), 2), "symmetric"),
        (lambda: dpp_greedy_kernel(np.array([[-1.0]]), 1), "negative diagonal"),
        (lambda: dpp_greedy_kernel(np.array([[np.nan]]), 1), "NaN"),
    ],
)
def test_bad_input_is_a_typed_error(call, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInputError, match=match):
        call()


def test_zero_kernel_stops_after_the_first_pick() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division by zero
        assert dpp_greedy_kernel(np.zeros((3, 3)), 3).tolist() == [0]
