"""Helpers for running mlsys blocks on Ray (the optional extra ``mlsys-common[ray]``).

Nothing here imports Ray at module import time: :func:`require_ray` imports it on first use and
raises :class:`~mlsys.common.errors.MissingDependencyError` naming the extra when it is absent.
:func:`ray_get` is ``ray.get`` with mlsys's error contract: an error raised on purpose inside a
task or actor (a :class:`~mlsys.common.errors.MlsysError`) comes back as the same typed error,
and a dead, unreachable or timed-out worker becomes
:class:`~mlsys.common.errors.ShardUnavailableError` naming what was lost, never a partial result.

Example:
    >>> from mlsys.common.distributed import ray_available
    >>> isinstance(ray_available(), bool)
    True
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from mlsys.common._optional import import_optional
from mlsys.common.errors import MlsysError, ShardUnavailableError

__all__ = ["RAY_EXTRA", "ensure_ray", "ray_available", "ray_get", "require_ray"]

RAY_EXTRA = "mlsys-common[ray]"
"""The extra that installs Ray, named in the :class:`MissingDependencyError` when it is absent."""


def ray_available() -> bool:
    """Whether Ray can be imported (without importing it).

    Example:
        >>> ray_available() in (True, False)
        True
    """
    return importlib.util.find_spec("ray") is not None


def require_ray(extra: str = RAY_EXTRA) -> ModuleType:
    """Import and return the ``ray`` module, or raise ``MissingDependencyError`` naming ``extra``.

    Args:
        extra: the mlsys extra that installs Ray for the caller (``"mlsys-rag[ray]"``, ...).

    Example:
        >>> try:
        ...     ray = require_ray()
        ... except ImportError as e:  # MissingDependencyError without Ray
        ...     assert "mlsys-common[ray]" in str(e)
    """
    return import_optional("ray", package="ray", extra=extra)


def ensure_ray(extra: str = RAY_EXTRA) -> ModuleType:
    """:func:`require_ray`, then connect to a cluster if this process has not (``ray.init()``).

    ``ray.init()`` joins the cluster named by ``RAY_ADDRESS`` or starts a local one, as Ray does
    on its first remote call; call ``ray.init(...)`` yourself first to choose.

    Example:
        >>> callable(ensure_ray)
        True
    """
    ray = require_ray(extra)
    if not ray.is_initialized():
        ray.init()
    return ray


def _typed(cause: BaseException, where: str) -> BaseException:
    """The typed mlsys error ``cause``, its message prefixed with ``where`` when the type allows."""
    try:
        return type(cause)(f"{where}: {cause}")
    except TypeError:  # an error class with a richer constructor: keep it as raised
        return cause


def ray_get(refs: Any, *, what: Sequence[str] | str, timeout: float | None = None) -> Any:
    """``ray.get(refs)`` that raises typed mlsys errors.

    Args:
        refs: one ``ObjectRef`` or a list of them.
        what: a description per ref (``"shard 3 of 8"``) or one for all, used in messages.
        timeout: seconds to wait in all; ``None`` waits forever.

    Raises:
        MlsysError: the error a task raised on purpose, same type, message prefixed with ``what``.
        ShardUnavailableError: a worker or actor died, was killed, or did not answer in time.

    Example:
        >>> callable(ray_get)
        True
    """
    ray = require_ray()
    single = not isinstance(refs, list)
    ref_list = [refs] if single else refs
    names = [what] * len(ref_list) if isinstance(what, str) else list(what)
    try:
        out = ray.get(ref_list, timeout=timeout)
    except ray.exceptions.GetTimeoutError as exc:
        raise ShardUnavailableError(
            f"{', '.join(dict.fromkeys(names))}: no answer within {timeout} s (worker busy, hung or "
            "lost); nothing was returned"
        ) from exc
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        where = _which(ray, ref_list, names)
        if isinstance(cause, MlsysError):
            raise _typed(cause, where) from exc
        raise ShardUnavailableError(f"{where} failed: {type(cause).__name__}: {cause}") from exc
    except ray.exceptions.RayError as exc:  # actor died / killed / node lost / object lost
        where = _which(ray, ref_list, names)
        raise ShardUnavailableError(
            f"{where} is unavailable ({type(exc).__name__}); no partial result is returned. "
            "Reload the index from its last save or rerun the job."
        ) from exc
    return out[0] if single else out


def _which(ray: Any, refs: list[Any], names: list[str]) -> str:
    """Name the first ref that failed (the others may still be running)."""
    for ref, name in zip(refs, names):
        ready, _ = ray.wait([ref], timeout=0)
        if ready:
            try:
                ray.get(ref)
            except Exception:  # only locating which one failed
                return name
    return ", ".join(dict.fromkeys(names))
