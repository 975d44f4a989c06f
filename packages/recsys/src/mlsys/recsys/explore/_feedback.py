"""Logged bandit feedback: the arrays every off-policy estimator reads, validated once.

One row is one impression: the action shown at one slate position in one round, the probability
with which the logging policy showed it there (its marginal, position-wise propensity), and the
reward observed. This is the shape of Open Bandit Pipeline's ``bandit_feedback`` (``action``,
``position``, ``pscore``, ``reward``, ``context``), so logs and estimates move between the two.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from mlsys.common.errors import InvalidInputError
from mlsys.common.validation import as_array

__all__ = ["BanditFeedback", "as_action_dist", "as_row_action_position"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def _is_int(x: Any) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool | np.bool_)


def _real(x: Any, name: str, lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> float:
    """``x`` as a float inside the interval, or a typed error (bools and strings refused)."""
    if isinstance(x, bool | np.bool_) or not isinstance(x, int | float | np.integer | np.floating):
        raise InvalidInputError(f"{name} must be a number, got {x!r}")
    v = float(x)
    ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok or v != v:
        lb, rb = "(" if lo_open else "[", ")" if hi_open else "]"
        raise InvalidInputError(f"{name} must be in {lb}{lo}, {hi}{rb}, got {x!r}")
    return v


def _check_seed(seed: Any) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and not _is_int(seed):
        raise InvalidInputError(f"seed must be an int, a numpy Generator or None, got {seed!r}")
    return np.random.default_rng(seed)


def _int_array(x: Any, name: str, n: int | None) -> IntArray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise InvalidInputError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if (
            not np.issubdtype(arr.dtype, np.floating)
            or not np.isfinite(arr).all()
            or not np.all(np.mod(arr, 1) == 0)
            or np.abs(arr).max() >= 2**62
        ):
            raise InvalidInputError(f"{name} must hold integers, got dtype {arr.dtype}")
    if n is not None and arr.shape[0] != n:
        raise InvalidInputError(f"{name} has length {arr.shape[0]}, expected {n} (one per logged row)")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _float_array(x: Any, name: str, n: int) -> FloatArray:
    arr = np.asarray(x)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise InvalidInputError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise InvalidInputError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise InvalidInputError(f"{name} has length {arr.shape[0]}, expected {n} (one per logged row)")
    out = np.ascontiguousarray(arr, dtype=np.float64)
    if not np.isfinite(out).all():
        bad = int(np.flatnonzero(~np.isfinite(out))[0])
        raise InvalidInputError(f"{name} holds NaN or inf (first at row {bad}); expected finite values")
    return out


@dataclass(frozen=True, eq=False)
class BanditFeedback:
    """Validated logged feedback for off-policy evaluation.

    Args:
        action: ``(n,)`` int, the action (item position ``0..n_actions-1``) shown in each row.
        reward: ``(n,)`` observed reward, inside ``reward_range``.
        propensity: ``(n,)`` the logging policy's probability of showing ``action`` at ``position``
            in that round, in ``(0, 1]``.
        position: ``(n,)`` slate position ``0..slate_size-1`` (zeros when omitted: one action per round).
        n_actions: size of the action set (default: ``max(action) + 1``).
        slate_size: positions per slate (default: ``max(position) + 1``).
        context: optional ``(n, d)`` context features of each row.
        reward_range: the declared ``(low, high)`` range of rewards; a reward outside it is refused.

    Example:
        >>> fb = BanditFeedback(action=[0, 1], reward=[1.0, 0.0], propensity=[0.5, 0.5])
        >>> fb.n_rows, fb.n_actions, fb.slate_size
        (2, 2, 1)
    """

    action: IntArray
    reward: FloatArray
    propensity: FloatArray
    position: IntArray = field(default=None)  # type: ignore[arg-type,assignment]
    n_actions: int = field(default=None)  # type: ignore[arg-type,assignment]
    slate_size: int = field(default=None)  # type: ignore[arg-type,assignment]
    context: FloatArray | None = None
    reward_range: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        action = _int_array(self.action, "action", None)
        n = action.shape[0]
        if n == 0:
            raise InvalidInputError("bandit feedback is empty (0 logged rows); expected at least one")
        reward = _float_array(self.reward, "reward", n)
        propensity = _float_array(self.propensity, "propensity", n)
        position = (
            np.zeros(n, np.int64) if self.position is None else _int_array(self.position, "position", n)
        )
        if (action < 0).any():
            raise InvalidInputError(
                f"action holds negative values (first at row {int(np.argmax(action < 0))})"
            )
        if (position < 0).any():
            raise InvalidInputError(
                f"position holds negative values (first at row {int(np.argmax(position < 0))})"
            )
        for label, v in (("n_actions", self.n_actions), ("slate_size", self.slate_size)):
            if v is not None and (not _is_int(v) or v <= 0):
                raise InvalidInputError(f"{label} must be a positive int or None, got {v!r}")
        n_actions = int(action.max()) + 1 if self.n_actions is None else int(self.n_actions)
        slate_size = int(position.max()) + 1 if self.slate_size is None else int(self.slate_size)
        if n_actions <= 0 or int(action.max()) >= n_actions:
            raise InvalidInputError(f"action holds {int(action.max())}, expected values in [0, {n_actions})")
        if slate_size <= 0 or int(position.max()) >= slate_size:
            raise InvalidInputError(
                f"position holds {int(position.max())}, expected values in [0, {slate_size})"
            )
        bad = (propensity <= 0) | (propensity > 1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InvalidInputError(
                f"propensity must be in (0, 1], got {propensity[i]!r} at row {i} "
                f"({int(bad.sum())} rows out of range); a logged action always had a positive probability"
            )
        rr = self.reward_range
        if (
            not isinstance(rr, tuple | list)
            or len(rr) != 2
            or not all(isinstance(v, int | float | np.number) and not isinstance(v, bool) for v in rr)
        ):
            raise InvalidInputError(f"reward_range must be a (low, high) pair of numbers, got {rr!r}")
        lo, hi = float(rr[0]), float(rr[1])
        if not lo <= hi:
            raise InvalidInputError(
                f"reward_range must be (low, high) with low <= high, got {self.reward_range}"
            )
        out = (reward < lo) | (reward > hi)
        if out.any():
            i = int(np.flatnonzero(out)[0])
            raise InvalidInputError(
                f"reward {reward[i]!r} at row {i} is outside the declared reward_range [{lo}, {hi}] "
                f"({int(out.sum())} rows outside)"
            )
        context = None
        if self.context is not None:
            c = as_array(self.context, dtype=np.float64, name="context")
            if c.ndim == 1:
                c = c[:, None]
            if c.ndim != 2 or c.shape[0] != n:
                raise InvalidInputError(
                    f"context must have shape ({n}, d), got {np.asarray(self.context).shape}"
                )
            if not np.isfinite(c).all():
                raise InvalidInputError("context holds NaN or inf; expected finite values")
            context = np.ascontiguousarray(c)
        for name, value in (
            ("action", action),
            ("reward", reward),
            ("propensity", propensity),
            ("position", position),
            ("n_actions", n_actions),
            ("slate_size", slate_size),
            ("context", context),
            ("reward_range", (lo, hi)),
        ):
            object.__setattr__(self, name, value)

    @property
    def n_rows(self) -> int:
        """Number of logged rows (impressions)."""
        return int(self.action.shape[0])

    def subset(self, rows: npt.ArrayLike) -> BanditFeedback:
        """The feedback restricted to ``rows`` (indices or a boolean mask), same action set."""
        idx = np.asarray(rows)
        return BanditFeedback(
            action=self.action[idx],
            reward=self.reward[idx],
            propensity=self.propensity[idx],
            position=self.position[idx],
            n_actions=self.n_actions,
            slate_size=self.slate_size,
            context=None if self.context is None else self.context[idx],
            reward_range=self.reward_range,
        )

    def __repr__(self) -> str:
        return (
            f"BanditFeedback(n_rows={self.n_rows}, n_actions={self.n_actions}, slate_size={self.slate_size}, "
            f"mean_reward={self.reward.mean():.4g}, context={'none' if self.context is None else self.context.shape})"
        )


def as_row_action_position(values: Any, feedback: BanditFeedback, name: str) -> FloatArray:
    """``values`` as a finite float64 ``(n_rows, n_actions, slate_size)`` array aligned with ``feedback``
    (a 2-D ``(n_rows, n_actions)`` array is accepted for one-position feedback)."""
    if not isinstance(feedback, BanditFeedback):
        raise InvalidInputError(f"feedback must be a BanditFeedback, got {type(feedback).__name__}")
    arr = as_array(values, dtype=np.float64, name=name)
    if arr.ndim == 2 and feedback.slate_size == 1:
        arr = arr[:, :, None]
    expected = (feedback.n_rows, feedback.n_actions, feedback.slate_size)
    if arr.shape != expected:
        raise InvalidInputError(
            f"{name} has shape {arr.shape}, expected {expected} (rows, actions, positions)"
        )
    if not np.isfinite(arr).all():
        raise InvalidInputError(f"{name} holds NaN or inf")
    return arr


def as_action_dist(action_dist: Any, feedback: BanditFeedback, name: str = "action_dist") -> FloatArray:
    """Validate a policy's action distribution against ``feedback``: ``(n_rows, n_actions, slate_size)``.

    A 2-D ``(n_rows, n_actions)`` array is accepted for one-position feedback. Each position's
    probabilities must be in [0, 1] and sum to 1 (within 1e-6).
    """
    arr = as_row_action_position(action_dist, feedback, name)
    if (arr < -1e-12).any() or (arr > 1 + 1e-12).any():
        raise InvalidInputError(f"{name} holds values outside [0, 1] (min {arr.min()}, max {arr.max()})")
    sums = arr.sum(axis=1)
    if not np.allclose(sums, 1.0, atol=1e-6):
        worst = float(np.abs(sums - 1).max())
        raise InvalidInputError(
            f"{name} must sum to 1 over actions at every row and position (worst |sum-1| {worst:.3g})"
        )
    return arr
