"""Normalising ``allow`` / ``deny`` filters and post-filtering result rows."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from mlsys.common.errors import InvalidInputError
from mlsys.common.validation import as_ids

__all__ = ["as_id_filter", "drop_denied", "padding"]

I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]


def as_id_filter(ids: Any, *, name: str) -> I64:
    """Return a filter (array, list, set, range, ...) as sorted unique int64 ids, or raise.

    Example:
        >>> as_id_filter({3, 1, 3}, name="allow").tolist()
        [1, 3]
    """
    if isinstance(ids, (set, frozenset, dict)) or (
        isinstance(ids, Iterable) and not isinstance(ids, (np.ndarray, list, tuple, range))
    ):
        try:
            arr = np.fromiter(ids, dtype=np.int64)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidInputError(
                f"{name} must contain integer ids, got {type(ids).__name__}: {exc}"
            ) from exc
    else:
        arr = as_ids(ids, name=name)
    return np.unique(arr)


def padding(nq: int, k: int) -> tuple[I64, F32]:
    """All-padding results: ids ``-1``, scores ``-inf``."""
    return np.full((nq, k), -1, dtype=np.int64), np.full((nq, k), -np.inf, dtype=np.float32)


def drop_denied(ids: I64, scores: F32, deny: I64, k: int) -> tuple[I64, F32]:
    """Remove denied ids from each (sorted) row and keep the first ``k`` survivors, padding the rest.

    Example:
        >>> ids = np.array([[5, 6, 7]]); scores = np.array([[3.0, 2.0, 1.0]], dtype=np.float32)
        >>> drop_denied(ids, scores, np.array([6]), 2)[0].tolist()
        [[5, 7]]
    """
    bad = np.isin(ids, deny) | (ids < 0)
    order = np.argsort(bad, axis=1, kind="stable")[:, :k]
    out_i = np.take_along_axis(ids, order, axis=1)
    out_s = np.take_along_axis(scores, order, axis=1)
    dropped = np.take_along_axis(bad, order, axis=1)
    out_i[dropped] = -1
    out_s[dropped] = -np.inf
    if out_i.shape[1] < k:
        pi, ps = padding(ids.shape[0], k - out_i.shape[1])
        out_i = np.concatenate([out_i, pi], axis=1)
        out_s = np.concatenate([out_s, ps], axis=1)
    return out_i, out_s
