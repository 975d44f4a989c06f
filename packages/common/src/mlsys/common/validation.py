"""Input validation at public boundaries, shared by every package.

Validate once where data enters a public API, then trust it inside. Every check raises a typed
:mod:`mlsys.common.errors` error that says what was received and what was expected.

Example:
    >>> import numpy as np
    >>> as_vectors(np.ones((2, 3)), dim=3).dtype
    dtype('float32')
    >>> as_ids([3, 1]).dtype
    dtype('int64')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from mlsys.common.errors import DimensionMismatchError, DuplicateIdError, InvalidInputError
from mlsys.common.limits import check_size

__all__ = ["as_array", "as_ids", "as_vectors", "check_k", "check_unique"]


def as_array(x: Any, *, dtype: Any = None, name: str = "array") -> npt.NDArray[Any]:
    """``numpy.asarray(x, dtype)``, with numpy's conversion errors (ragged lists, strings where
    numbers are expected, ints that overflow the dtype) raised as :class:`InvalidInputError`.

    Example:
        >>> as_array([[1, 2], [3]], dtype=np.float32)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        mlsys.common.errors.InvalidInputError: array cannot be converted to a float32 array: ...
    """
    try:
        return np.asarray(x, dtype=dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        want = f"a {np.dtype(dtype)} array" if dtype is not None else "an array"
        raise InvalidInputError(f"{name} cannot be converted to {want}: {exc}") from exc


def as_vectors(
    x: Any, *, dim: int | None = None, name: str = "vectors", allow_empty: bool = False
) -> npt.NDArray[np.float32]:
    """Return ``x`` as a C-contiguous float32 ``(n, dim)`` array, or raise.

    A 1-D input of length ``dim`` is treated as one vector. Other float or int dtypes are converted
    (a copy); NaN/inf, wrong ndim, wrong width and (unless ``allow_empty``) empty input are refused.
    """
    arr = as_array(x, name=name)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise InvalidInputError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim == 1 and dim is not None and arr.shape[0] == dim:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise InvalidInputError(f"{name} must have shape (n, dim), got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise DimensionMismatchError(f"{name} have dim {arr.shape[1]}, expected {dim}")
    if arr.shape[0] == 0 and not allow_empty:
        raise InvalidInputError(f"{name} is empty (shape {arr.shape}); expected at least one row")
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(out).all():
        bad = int(np.flatnonzero(~np.isfinite(out).all(axis=1))[0])
        raise InvalidInputError(f"{name} contain NaN or inf (first at row {bad}); expected finite values")
    return out


def as_ids(ids: Any, *, name: str = "ids", n: int | None = None) -> npt.NDArray[np.int64]:
    """Return ``ids`` as a contiguous int64 ``(n,)`` array, or raise (non-integer, wrong length)."""
    arr = as_array(ids, name=name)
    if arr.ndim == 0:
        arr = arr[None]
    if arr.ndim != 1:
        raise InvalidInputError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise InvalidInputError(f"{name} must be integers, got dtype {arr.dtype}")
    if n is not None and arr.shape[0] != n:
        raise InvalidInputError(f"got {arr.shape[0]} {name} for {n} vectors; expected one id per vector")
    return np.ascontiguousarray(arr, dtype=np.int64)


def check_unique(ids: npt.NDArray[np.int64] | Sequence[Any], *, name: str = "ids") -> None:
    """Raise :class:`DuplicateIdError` naming the first duplicates if ``ids`` repeats a value."""
    arr = as_array(ids, name=name)
    try:
        uniq, counts = np.unique(arr, return_counts=True)
    except TypeError as exc:  # values that cannot be ordered (None, mixed types)
        raise InvalidInputError(f"{name} cannot be compared for duplicates: {exc}") from exc
    if (counts > 1).any():
        dups = uniq[counts > 1][:5].tolist()
        raise DuplicateIdError(f"duplicate {name} {dups}; expected each id at most once")


def check_k(k: Any, *, name: str = "k", limit: str | None = "max_k") -> int:
    """Return ``k`` as an int if it is a positive integer within ``limit``, else raise.

    ``limit`` names the :class:`mlsys.common.limits.Limits` field that bounds it (``"max_k"`` for
    result counts, ``"max_batch"`` for batch sizes; ``None`` for counts that size no allocation).

    Raises:
        InvalidInputError: not a positive integer.
        LimitExceededError: above the limit (the message names it and how to raise it).

    Example:
        >>> check_k(10)
        10
        >>> check_k(10**12)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        mlsys.common.errors.LimitExceededError: k=1000000000000 exceeds the limit max_k=100000; ...
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise InvalidInputError(f"{name} must be a positive integer, got {k!r}")
    k = int(k)
    if limit is not None:
        check_size(k, limit, name=name)
    return k
