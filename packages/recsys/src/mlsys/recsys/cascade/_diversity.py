"""Diversity re-ranking of one candidate list: maximal marginal relevance and greedy DPP MAP.

Both take a candidate list's relevance ``(n,)`` and embeddings ``(n, d)`` (cosine similarity:
rows are normalised here) and return the positions of the chosen candidates, in pick order.
Relevance is min-max scaled to [0, 1] per call, so the trade-off parameter means the same thing
whatever the upstream model's score scale.

:func:`dpp_greedy` is the fast greedy MAP inference of Chen, Zhang & Zhou (NeurIPS 2018) for the
kernel ``L = diag(r) S diag(r)`` with ``S`` the cosine similarities and ``r = exp(alpha * rel)``,
``alpha = theta / (2 (1 - theta))``. Each step picks the candidate with the largest conditional
variance ``d_i^2 = L_ii - ||c_i||^2`` (the log-det gain); the incremental Cholesky rows are kept
in the embedding space (Gram-Schmidt on ``diag(r) E``), so one step costs one ``(n, d)`` matrix-
vector product and the kernel is never built. ``d_i^2`` that rounding pushes below zero is clamped
(the reference implementation takes a square root of it), and the loop stops early when no
candidate adds volume (``max d_i^2 < epsilon * max L_ii``); the rest of the slate is then filled by relevance.
Gains within a relative 1e-9 (float64; 1e-5 in float32) of the best count as ties and go to the
lower position, so rounding noise never decides the order.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from mlsys.common.errors import InvalidInputError
from mlsys.common.validation import as_array

__all__ = ["dpp_greedy", "dpp_greedy_kernel", "mmr"]

IntArray = npt.NDArray[np.int64]


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k <= 0:
        raise InvalidInputError(f"k must be a positive int, got {k!r}")
    return int(k)


def _inputs(
    relevance: Any, embeddings: Any, dtype: Any
) -> tuple[npt.NDArray[np.float64], npt.NDArray[Any], npt.NDArray[Any]]:
    """Validated ``(relevance scaled to [0, 1], embeddings as dtype, 1 / row norms)``."""
    rel = as_array(relevance, dtype=np.float64, name="relevance")
    emb = as_array(embeddings, dtype=dtype, name="embeddings")
    if rel.ndim != 1 or rel.shape[0] == 0:
        raise InvalidInputError(f"relevance must be a non-empty 1-D array, got shape {rel.shape}")
    if emb.ndim != 2 or emb.shape[0] != rel.shape[0] or emb.shape[1] == 0:
        raise InvalidInputError(
            f"embeddings must have shape ({rel.shape[0]}, d) to match relevance, got {emb.shape}"
        )
    if not np.isfinite(rel).all():
        raise InvalidInputError("relevance holds NaN or inf; expected finite scores")
    e = np.asarray(emb, dtype=dtype)
    if not np.isfinite(e).all():
        raise InvalidInputError("embeddings hold NaN or inf; expected finite vectors")
    norms = np.sqrt(np.einsum("ij,ij->i", e, e))
    if (norms == 0).any():
        raise InvalidInputError(f"embedding row {int(np.argmax(norms == 0))} is all zeros (no direction)")
    span = rel.max() - rel.min()
    rel01 = (rel - rel.min()) / span if span > 0 else np.zeros_like(rel)
    return rel01, e, 1.0 / norms


def _argmax(x: npt.NDArray[np.float64], rtol: float) -> int:
    """The lowest index whose value is within ``rtol`` (relative) of the maximum: explicit tie-breaking,
    so that rounding noise between equal gains never decides the order."""
    j = int(np.argmax(x))
    m = float(x[j])
    if j == 0 or not math.isfinite(m):
        return j
    head = x[:j]  # only a lower position can take a tie
    thr = m - rtol * max(1.0, abs(m))
    return int(np.argmax(head >= thr)) if head.max() >= thr else j


def _rtol(dtype: Any) -> float:
    return 1e-9 if np.dtype(dtype) == np.float64 else 1e-5


def _fill(picks: list[int], rel: npt.NDArray[np.float64], k: int) -> IntArray:
    if len(picks) < k:
        taken = np.zeros(rel.shape[0], dtype=bool)
        taken[picks] = True
        rest = np.flatnonzero(~taken)
        rest = rest[np.argsort(-rel[rest], kind="stable")]
        picks = picks + rest[: k - len(picks)].tolist()
    return np.asarray(picks, dtype=np.int64)


def mmr(relevance: Any, embeddings: Any, k: int, *, lambda_: float = 0.7) -> IntArray:
    """Maximal marginal relevance: pick ``argmax lambda * rel_i - (1 - lambda) * max_{s picked} cos(i, s)``.

    ``lambda_=1`` is the relevance order; ``0`` ignores relevance after the first pick. ``k``
    larger than the candidate list returns every candidate. Ties keep the lower position.

    Example:
        >>> import numpy as np
        >>> emb = np.array([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0]])
        >>> mmr([1.0, 0.95, 0.5], emb, 2, lambda_=0.5).tolist()  # the near-duplicate is skipped
        [0, 2]
    """
    k = _check_k(k)
    if not 0.0 <= float(lambda_) <= 1.0:
        raise InvalidInputError(f"lambda_ must be in [0, 1], got {lambda_!r}")
    rel, emb, inv = _inputs(relevance, embeddings, np.float32)
    e = emb * inv[:, None]
    n = rel.shape[0]
    k = min(k, n)
    max_sim = np.full(n, -np.inf)
    gain = rel.copy()  # no similarity penalty before the first pick
    picks: list[int] = []
    lam = float(lambda_)
    for _ in range(k):
        j = _argmax(gain, 1e-6)
        picks.append(j)
        np.maximum(max_sim, e @ e[j], out=max_sim)
        gain = lam * rel - (1.0 - lam) * max_sim
        gain[picks] = -np.inf
    return np.asarray(picks, dtype=np.int64)


def dpp_greedy(
    relevance: Any,
    embeddings: Any,
    k: int,
    *,
    theta: float = 0.7,
    window: int | None = None,
    epsilon: float = 1e-10,
    fill: bool = True,
    dtype: Any = np.float32,
) -> IntArray:
    """Greedy DPP MAP inference (Chen et al. 2018) over a candidate list.

    Args:
        relevance: ``(n,)`` candidate scores (any scale; min-max scaled here).
        embeddings: ``(n, d)`` candidate vectors (cosine similarity).
        k: slate length (a larger ``k`` than ``n`` returns every candidate).
        theta: relevance/diversity trade-off in [0, 1): 0 ignores relevance, towards 1 the
            relevance order.
        window: diversify only within a sliding window of the last ``window`` picks (long lists);
            ``None`` for the whole slate.
        epsilon: stop the DPP when no candidate's conditional variance exceeds ``epsilon`` times the
            largest ``L_ii`` (relative, so the scale of the kernel does not matter; floored at 1e-6
            in float32, whose rounding noise is larger).
        fill: after an early stop, fill the slate by relevance (else return fewer than ``k``).
        dtype: float32 (fast) or float64 (for exact comparisons with a brute-force greedy).

    Example:
        >>> import numpy as np
        >>> emb = np.array([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0]])
        >>> dpp_greedy([1.0, 0.95, 0.5], emb, 2, theta=0.5).tolist()
        [0, 2]
    """
    k = _check_k(k)
    if not 0.0 <= float(theta) < 1.0:
        raise InvalidInputError(f"theta must be in [0, 1), got {theta!r}")
    if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 2):
        raise InvalidInputError(f"window must be an int >= 2 or None, got {window!r}")
    if not epsilon > 0:
        raise InvalidInputError(f"epsilon must be > 0, got {epsilon!r}")
    rel, emb, inv = _inputs(relevance, embeddings, dtype)
    n = rel.shape[0]
    k = min(k, n)
    alpha = theta / (2.0 * (1.0 - theta))
    r = np.exp(alpha * rel)
    v = emb * (r * inv).astype(emb.dtype)[:, None]  # L = V V^T with rows of norm r_i
    di2 = r * r  # L_ii
    rel_eps = epsilon if np.dtype(dtype) == np.float64 else max(epsilon, 1e-6)
    stop = rel_eps * float(di2.max())
    if window is None:
        picks = _dpp_full(v, di2, k, stop)
    else:
        picks = _dpp_window(v, di2, k, stop, window)
    return _fill(picks, rel, k) if fill else np.asarray(picks, dtype=np.int64)


def _dpp_full(v: npt.NDArray[Any], di2_in: npt.NDArray[np.float64], k: int, epsilon: float) -> list[int]:
    """Chen et al.'s incremental greedy in feature space: ``L = V V^T`` is never formed.

    Each step orthonormalises the new pick against the picked basis (Gram-Schmidt, reading the
    pick's coordinates on the basis from the stored projections ``c``), projects every candidate on
    the new direction (one ``n x d`` matrix-vector product) and lowers the conditional variances.
    Buffers are preallocated and every update is in place: at ``n = 1000, d = 128`` the loop is a few
    numpy calls per pick. In float64 near-ties (within rounding) go to the lowest position, so the
    picks equal a brute-force log-det greedy's; float32 takes ``argmax`` as is (its first maximum).
    """
    n, d = v.shape
    steps = min(k, d)
    exact = v.dtype == np.float64
    rtol = _rtol(v.dtype)
    di2 = di2_in.astype(v.dtype)  # a copy, in the vectors' dtype (no mixed-precision updates)
    basis = np.zeros((steps, d), dtype=v.dtype)  # orthonormal rows spanning the picked vectors
    c = np.zeros((steps, n), dtype=v.dtype)  # c[s] = V @ basis[s]: every candidate's coordinates
    sq = np.empty(n, dtype=v.dtype)
    minus_inf = v.dtype.type(-np.inf)
    dot, sub, mul, square = np.dot, np.subtract, np.multiply, np.square
    j = _argmax(di2, rtol) if exact else int(di2.argmax())
    picks = [j]
    for s in range(steps - 1):
        q = basis[s]
        scale = 1.0 / math.sqrt(max(float(di2[j]), 1e-300))
        if s:
            sub(v[j], dot(c[:s, j], basis[:s]), out=q)
            mul(q, scale, out=q)
        else:
            mul(v[j], scale, out=q)
        dot(v, q, out=c[s])
        sub(di2, square(c[s], out=sq), out=di2)  # a residual rounded below zero is never picked
        di2[j] = minus_inf
        j = _argmax(di2, rtol) if exact else int(di2.argmax())
        if di2[j] < epsilon:
            break
        picks.append(j)
    return picks


def _dpp_window(
    v: npt.NDArray[Any], di2_full: npt.NDArray[np.float64], k: int, epsilon: float, window: int
) -> list[int]:
    rtol = _rtol(v.dtype)
    taken = np.zeros(v.shape[0], dtype=bool)
    j = _argmax(di2_full, rtol)
    picks = [j]
    taken[j] = True
    while len(picks) < k:
        recent = v[picks[-(window - 1) :]]
        q, _ = np.linalg.qr(recent.T.astype(np.float64))  # orthonormal basis of the window
        proj = v.astype(np.float64) @ q
        di2 = np.maximum(di2_full - np.einsum("ij,ij->i", proj, proj), 0.0)
        di2[taken] = -np.inf
        j = _argmax(di2, rtol)
        if di2[j] < epsilon:
            break
        picks.append(j)
        taken[j] = True
    return picks


def dpp_greedy_kernel(kernel: Any, k: int, *, epsilon: float = 1e-10) -> IntArray:
    """Greedy DPP MAP inference on an explicit ``(n, n)`` kernel (the reference algorithm's form).

    The kernel must be symmetric positive semi-definite: a conditional variance clearly below zero
    (beyond rounding) raises :class:`InvalidInputError`. Stops early (returns fewer than ``k``)
    when no candidate's conditional variance exceeds ``epsilon`` times the largest diagonal entry.

    Example:
        >>> import numpy as np
        >>> dpp_greedy_kernel(np.array([[2.0, 1.9, 0.0], [1.9, 2.0, 0.0], [0.0, 0.0, 1.0]]), 2).tolist()
        [0, 2]
    """
    k = _check_k(k)
    m = as_array(kernel, dtype=np.float64, name="kernel")
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise InvalidInputError(f"kernel must be a non-empty square matrix, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise InvalidInputError("kernel holds NaN or inf")
    scale = float(np.abs(m).max()) or 1.0
    if not np.allclose(m, m.T, atol=1e-9 * scale):
        raise InvalidInputError("kernel is not symmetric")
    n = m.shape[0]
    k = min(k, n)
    tol = 1e-9 * scale
    di2 = np.diag(m).copy()
    if (di2 < -tol).any():
        raise InvalidInputError("kernel has a negative diagonal entry: not positive semi-definite")
    cis = np.zeros((k, n))
    stop = epsilon * float(di2.max())
    j = _argmax(di2, 1e-9)
    picks = [j]
    if not di2[j] > 0:  # an all-zero kernel: no candidate has any volume
        return np.asarray(picks, dtype=np.int64)
    for s in range(k - 1):
        dj = math.sqrt(max(di2[j], 0.0))
        eis = (m[j] - cis[:s, j] @ cis[:s]) / dj
        cis[s] = eis
        di2 -= eis * eis
        di2[picks] = 0.0
        if (di2 < -tol).any():
            raise InvalidInputError(
                "kernel is not positive semi-definite (a conditional variance is negative)"
            )
        di2[picks] = -np.inf
        j = _argmax(di2, 1e-9)
        if di2[j] <= stop:
            break
        picks.append(j)
    return np.asarray(picks, dtype=np.int64)
