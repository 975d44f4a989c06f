"""Merge per-thread snapshots of one stage into :class:`StageStats`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from mlsys.common.profiling._recorder import Snapshot
from mlsys.common.profiling._stats import StageStats

__all__ = ["merge_samples", "merge_stats"]

_QS = np.array([50.0, 95.0, 99.0])


def _weighted_percentiles(
    values: npt.NDArray[np.float64], weights: npt.NDArray[np.float64], qs: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Percentiles of a weighted sample (each stored value stands for ``weight`` recorded ones).

    Uses the midpoint plotting position, which reduces to the linear interpolation of
    ``numpy.percentile`` up to O(1/n) when all weights are equal.
    """
    order = np.argsort(values, kind="stable")
    v = values[order]
    w = weights[order]
    cum = np.cumsum(w)
    pos = (cum - 0.5 * w) / cum[-1]
    return np.interp(qs / 100.0, pos, v)


def merge_samples(
    snaps: Sequence[Snapshot],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64] | None]:
    """All stored samples and, when any thread's buffer is a reservoir, each sample's weight."""
    values = np.concatenate([s[0] for s in snaps]) if snaps else np.empty(0)
    if all(s[1] == s[0].shape[0] for s in snaps):
        return values, None
    weights = np.concatenate([np.full(s[0].shape[0], s[1] / max(s[0].shape[0], 1)) for s in snaps])
    return values, weights


def merge_stats(snaps: Sequence[Snapshot]) -> StageStats:
    """Exact count/total/min/max over every thread; percentiles over the stored samples.

    With no reservoir in play the percentiles are exactly ``numpy.percentile`` of every sample.
    """
    snaps = [s for s in snaps if s[1] > 0]
    if not snaps:
        return StageStats.from_samples(np.empty(0))
    values, weights = merge_samples(snaps)
    count = sum(s[1] for s in snaps)
    total = float(sum(s[2] for s in snaps))
    lo = min(s[3] for s in snaps)
    hi = max(s[4] for s in snaps)
    if weights is None or bool(np.all(weights == weights[0])):
        # Every sample, or one reservoir: plain numpy.percentile of what is stored.
        return StageStats.from_samples(values, count=count, total=total, minimum=lo, maximum=hi)
    p50, p95, p99 = (float(x) for x in _weighted_percentiles(values, weights, _QS))
    return StageStats(
        count=count,
        total=total,
        mean=total / count,
        min=lo,
        p50=p50,
        p95=p95,
        p99=p99,
        max=hi,
        n_stored=int(values.shape[0]),
    )
