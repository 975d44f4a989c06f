"""Library-wide resource limits: what one call may allocate, checked before it allocates.

mlsys is a dependency of services, so a request's parameters (``k``, ``top_k``, a batch size, the
text of a query, an uploaded image) reach its entry points directly. The rule, the same for every
index backend, recommender, retriever, re-ranker and cascade stage, present and future:

* a call allocates memory proportional to what exists (the items, the queries, the bytes given)
  or to a size parameter that is at most the matching limit below;
* a size parameter above its limit is refused *before* anything is allocated, with
  :class:`~mlsys.common.errors.LimitExceededError` (an ``InvalidInputError``, so a ``ValueError``)
  whose message names the limit, its value, and how to raise it.

Results keep their documented shape: ``(n_queries, k)`` padded with ``-1`` / ``-inf`` for any
``k`` up to :attr:`Limits.max_k`.

The limits are process-wide defaults (:func:`set_limits`), overridable for a block of code in the
current thread or task (:func:`limits`, a context manager backed by a ``ContextVar``).

Example:
    >>> from mlsys.common.limits import check_size, get_limits, limits
    >>> get_limits().max_k
    100000
    >>> with limits(max_k=2_000_000):
    ...     check_size(1_500_000, "max_k")
    1500000
    >>> try:
    ...     check_size(10**12, "max_k")
    ... except ValueError as e:
    ...     print(str(e).split(";")[0])
    k=1000000000000 exceeds the limit max_k=100000
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlsys.common.errors import InvalidInputError, LimitExceededError, UnknownNameError

__all__ = [
    "DEFAULT_LIMITS",
    "SMALL_K",
    "Limits",
    "check_image_pixels",
    "check_inflated_size",
    "check_result_size",
    "check_size",
    "check_text_length",
    "get_limits",
    "limits",
    "set_limits",
]

#: ``k`` values up to this are always accepted (every ``max_k`` is at least this), so hot paths
#: can skip the limit lookup for them.
SMALL_K = 1024
"""``k`` values up to this are always accepted (every ``max_k`` is at least this), so hot paths
can skip the limit lookup for them.
"""


@dataclass(frozen=True)
class Limits:
    """The bounds every public call checks before it allocates.

    Attributes:
        max_k: results per query: ``k`` of ``search`` / ``recommend`` / ``retrieve``, ``top_k``,
            ``depth`` and candidate counts of a retriever, re-ranker or cascade stage, metric
            cutoffs. At least :data:`SMALL_K`.
        max_result_size: ``n_queries * k`` cells of one ranked result (ids + scores: 12 bytes a
            cell; the default is 1.2 GB).
        max_batch: ``batch_size`` parameters (rows scored or embedded at once).
        max_query_chars: characters of one query text.
        max_image_pixels: width x height an image may declare before it is decoded (every image
            backend; Pillow's default ``Image.MAX_IMAGE_PIXELS``).
        max_inflated_bytes: bytes any reader may inflate from compressed input (gzip, zip).
        max_dim: width of vectors a block creates from a parameter (e.g. ``HashingEmbedder(dim=)``).
        max_buffer: elements a block preallocates from a parameter (a profiler's sample buffer, a
            hash table of buckets, a number of Monte-Carlo draws).

    Example:
        >>> Limits(max_k=5000).max_k
        5000
    """

    max_k: int = 100_000
    max_result_size: int = 100_000_000
    max_batch: int = 65_536
    max_query_chars: int = 100_000
    max_image_pixels: int = 89_478_485
    max_inflated_bytes: int = 1024**3  # 1 GiB: read_bytes holds it, and its joined copy, at most once
    max_dim: int = 65_536
    max_buffer: int = 100_000_000

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise InvalidInputError(f"Limits.{f.name} must be a positive integer, got {v!r}")
        if self.max_k < SMALL_K:
            raise InvalidInputError(f"Limits.max_k must be at least {SMALL_K}, got {self.max_k}")


DEFAULT_LIMITS = Limits()
"""The library-wide limits a process starts with (see :class:`Limits` for each value)."""

_global: list[Limits] = [DEFAULT_LIMITS]
_override: ContextVar[Limits | None] = ContextVar("mlsys_limits", default=None)

# what each limit bounds, for messages
_WHAT = {
    "max_k": "k",
    "max_result_size": "n_queries * k",
    "max_batch": "batch_size",
    "max_query_chars": "query length (characters)",
    "max_image_pixels": "image pixels (width x height)",
    "max_inflated_bytes": "inflated bytes",
    "max_dim": "dim",
    "max_buffer": "buffer size (elements)",
}


def _check_fields(changes: dict[str, Any]) -> None:
    unknown = sorted(set(changes) - set(_WHAT))
    if unknown:
        raise UnknownNameError(f"unknown limits {unknown}; expected some of {sorted(_WHAT)}")


def get_limits() -> Limits:
    """The limits in force here: the innermost :func:`limits` block, else the process default.

    Example:
        >>> get_limits().max_batch
        65536
    """
    over = _override.get()
    return over if over is not None else _global[0]


def set_limits(new: Limits | None = None, /, **changes: Any) -> Limits:
    """Set the process-wide default limits (``None`` and no changes: back to the defaults).

    Returns the previous default. Threads and tasks inside a :func:`limits` block keep theirs.

    Example:
        >>> old = set_limits(max_k=1_000_000)
        >>> get_limits().max_k
        1000000
        >>> _ = set_limits(old)
    """
    if new is not None and not isinstance(new, Limits):
        raise InvalidInputError(f"set_limits takes a Limits, got {type(new).__name__}")
    _check_fields(changes)
    old = _global[0]
    base = DEFAULT_LIMITS if new is None and not changes else (new or old)
    _global[0] = dataclasses.replace(base, **changes) if changes else base
    return old


@contextlib.contextmanager
def limits(**changes: Any) -> Iterator[Limits]:
    """Override some limits inside a ``with`` block (this thread / asyncio task only).

    Example:
        >>> with limits(max_batch=10) as lim:
        ...     lim.max_batch
        10
    """
    _check_fields(changes)
    new = dataclasses.replace(get_limits(), **changes)
    token = _override.set(new)
    try:
        yield new
    finally:
        _override.reset(token)


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InvalidInputError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def _refuse(limit: str, value: int, bound: int, name: str | None = None) -> LimitExceededError:
    what = name if name is not None else _WHAT[limit]
    return LimitExceededError(
        f"{what}={value} exceeds the limit {limit}={bound}; expected at most {bound}. Raise it with "
        f"mlsys.common.limits.set_limits({limit}=...) or `with mlsys.common.limits.limits({limit}=...)`",
        limit=limit,
        value=value,
        bound=bound,
    )


def check_size(value: int, limit: str, *, name: str | None = None) -> int:
    """Return ``value`` if it is at most the limit called ``limit``, else raise.

    ``value`` must already be an int (see :func:`mlsys.common.validation.check_k`).

    Raises:
        LimitExceededError: ``value`` is above the limit; the message names it and how to raise it.

    Example:
        >>> check_size(64, "max_batch", name="batch_size")
        64
    """
    if not isinstance(limit, str) or limit not in _WHAT:
        raise UnknownNameError(f"unknown limit {limit!r}; expected one of {sorted(_WHAT)}")
    value = _count(value, name or _WHAT[limit])
    bound = getattr(get_limits(), limit)
    if value > bound:
        if name is None and limit == "max_k":
            name = "k"
        raise _refuse(limit, value, bound, name)
    return value


def check_result_size(n_queries: int, k: int) -> None:
    """Refuse a ranked result of more than ``max_result_size`` cells (``n_queries * k``).

    Example:
        >>> check_result_size(1000, 10)
    """
    n_queries, k = _count(n_queries, "n_queries"), _count(k, "k")
    lim = get_limits()
    if n_queries * k > lim.max_result_size:
        raise _refuse(
            "max_result_size", n_queries * k, lim.max_result_size, f"n_queries * k ({n_queries} * {k})"
        )


def check_text_length(text: str, *, name: str = "query") -> str:
    """Return ``text`` if it has at most ``max_query_chars`` characters, else raise.

    Example:
        >>> check_text_length("hello")
        'hello'
    """
    if not isinstance(text, str):
        raise InvalidInputError(f"{name} must be a str, got {type(text).__name__}")
    bound = get_limits().max_query_chars
    if len(text) > bound:
        raise _refuse("max_query_chars", len(text), bound, f"{name} length (characters)")
    return text


def check_image_pixels(width: int, height: int, *, source: str = "image") -> None:
    """Refuse an image whose declared ``width * height`` exceeds ``max_image_pixels``.

    Raises :class:`LimitExceededError`; image decoders wrap it in their own decode error.

    Example:
        >>> check_image_pixels(640, 480)
    """
    width, height = _count(width, "width"), _count(height, "height")
    bound = get_limits().max_image_pixels
    if width * height > bound:
        raise _refuse("max_image_pixels", width * height, bound, f"{source} pixels ({width} x {height})")


def check_inflated_size(n_bytes: int, *, source: str = "compressed input") -> None:
    """Refuse ``n_bytes`` inflated from compressed input when above ``max_inflated_bytes``.

    Readers inflate at most ``max_inflated_bytes + 1`` bytes and call this, so a zip or gzip bomb
    is refused after a bounded allocation.

    Example:
        >>> check_inflated_size(1024)
    """
    n_bytes = _count(n_bytes, "n_bytes")
    bound = get_limits().max_inflated_bytes
    if n_bytes > bound:
        raise _refuse("max_inflated_bytes", n_bytes, bound, f"bytes inflated from {source}")
