"""Item sampling-frequency estimators for the logQ correction of in-batch softmax.

In-batch negatives are sampled proportionally to item frequency, so popular items are
over-represented as negatives. Yi et al. (RecSys 2019) correct each logit by the log sampling
probability: ``s_c(x, y) = s(x, y) - log p(y)``. Two estimators of ``log p(y)``:

- :class:`StaticFrequencyEstimator`: counts over the whole training set (exact, needs a pass).
- :class:`StreamingFrequencyEstimator`: Yi et al.'s hashing-based streaming estimator (their
  Algorithm 2): per hash bucket, the last step an item was seen (``A``) and a moving average of
  the gap between sightings (``B``); ``p ≈ 1 / B``.

Example:
    >>> import numpy as np
    >>> est = StaticFrequencyEstimator(np.array([3.0, 1.0]))
    >>> np.round(np.exp(est.log_prob(np.array([0, 1]))), 2).tolist()
    [0.75, 0.25]
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from mlsys.common.errors import InvalidInputError
from mlsys.common.validation import as_array, check_k

__all__ = ["StaticFrequencyEstimator", "StreamingFrequencyEstimator"]

_HASH_MULT = np.uint64(0x9E3779B97F4A7C15)


class StaticFrequencyEstimator:
    """``p(item) = count / total`` from training counts, with add-``smoothing`` for unseen items.

    Example:
        >>> import numpy as np
        >>> est = StaticFrequencyEstimator(np.array([1.0, 0.0]), smoothing=1.0)
        >>> np.round(np.exp(est.log_prob(np.array([1]))), 3).tolist()
        [0.333]
    """

    def __init__(self, counts: npt.ArrayLike, smoothing: float = 0.0) -> None:
        c = as_array(counts, dtype=np.float64, name="counts")
        if c.ndim != 1 or c.size == 0 or not np.isfinite(c).all() or (c < 0).any():
            raise InvalidInputError("counts must be a non-empty 1-D array of finite non-negative numbers")
        if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float)) or not smoothing >= 0:
            raise InvalidInputError(f"smoothing must be a number >= 0, got {smoothing!r}")
        c = c + smoothing
        if c.sum() <= 0:
            raise InvalidInputError("counts sum to 0; expected at least one observed item (or smoothing > 0)")
        self._log_p = np.log(np.maximum(c / c.sum(), 1e-12))

    def update(self, items: npt.NDArray[np.int64]) -> None:
        """No-op: the static estimate does not change during training."""

    def log_prob(self, items: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """``log p(item)`` for item positions."""
        return self._log_p[items]


class StreamingFrequencyEstimator:
    """Yi et al. (2019) streaming frequency estimation with hashing (no pass over the data needed).

    Args:
        n_buckets: size of the hash arrays (collisions merge items; use several times the number of
            frequent items).
        alpha: learning rate of the moving average of the gap between sightings.
        seed: salt of the hash function.

    ``update(batch)`` must be called once per training step, before :meth:`log_prob` for that step.

    Example:
        >>> import numpy as np
        >>> est = StreamingFrequencyEstimator(n_buckets=64, alpha=0.5)
        >>> for _ in range(50):
        ...     est.update(np.array([0]))           # item 0 every step
        ...     if _ % 5 == 0:
        ...         est.update(np.array([0, 1]))    # item 1 now and then
        >>> bool(est.log_prob(np.array([0]))[0] > est.log_prob(np.array([1]))[0])
        True
    """

    def __init__(self, n_buckets: int = 1 << 16, alpha: float = 0.01, seed: int = 0) -> None:
        if isinstance(n_buckets, bool) or not isinstance(n_buckets, int) or n_buckets <= 0:
            raise InvalidInputError(f"n_buckets must be a positive int, got {n_buckets!r}")
        check_k(n_buckets, name="n_buckets", limit="max_buffer")
        if not 0.0 < alpha <= 1.0:
            raise InvalidInputError(f"alpha must be in (0, 1], got {alpha!r}")
        self.n_buckets = n_buckets
        self.alpha = float(alpha)
        self._salt = np.uint64(seed * 2 + 1)
        self._last = np.zeros(n_buckets, dtype=np.float64)  # A: step an item was last seen
        self._gap = np.zeros(n_buckets, dtype=np.float64)  # B: moving average of the gap
        self.step = 0

    def _hash(self, items: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        with np.errstate(over="ignore"):
            h = (items.astype(np.uint64) * self._salt) * _HASH_MULT
        return (h >> np.uint64(20)).astype(np.int64) % self.n_buckets

    def update(self, items: npt.NDArray[np.int64]) -> None:
        """Record one training step's batch of item positions."""
        self.step += 1
        h = np.unique(self._hash(np.asarray(items, dtype=np.int64)))
        self._gap[h] = (1.0 - self.alpha) * self._gap[h] + self.alpha * (self.step - self._last[h])
        self._last[h] = self.step

    def log_prob(self, items: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """``log p(item) ≈ -log B[h(item)]`` (items never seen get the rarest estimate, ``-log(step)``)."""
        gap = self._gap[self._hash(np.asarray(items, dtype=np.int64))]
        gap = np.where(gap > 0, gap, max(self.step, 1))
        return -np.log(np.maximum(gap, 1e-12))
