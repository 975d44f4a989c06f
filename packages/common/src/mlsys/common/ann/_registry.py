"""The backend registry: ``make_index("hnsw", space, M=32)`` and friends."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from mlsys.common.ann._persist import read_manifest
from mlsys.common.errors import CorruptFileError, UnknownNameError
from mlsys.common.spaces import EmbeddingSpace

__all__ = ["index_class", "list_indexes", "load_index", "make_index", "register_index"]

_REGISTRY: dict[str, type[Any]] = {}
T = TypeVar("T", bound=type[Any])


def register_index(kind: str) -> Callable[[T], T]:
    """Class decorator registering a backend under ``kind`` (also sets ``cls.kind``).

    Example:
        >>> from mlsys.common.ann import ExactIndex, list_indexes, register_index
        >>> from mlsys.common.ann._registry import _REGISTRY
        >>> @register_index("my-exact")
        ... class MyExact(ExactIndex):
        ...     pass
        >>> "my-exact" in list_indexes()
        True
        >>> unregister = _REGISTRY.pop("my-exact")
    """

    def deco(cls: T) -> T:
        old = _REGISTRY.get(kind)
        # a module imported twice (doctest collection, reload) re-registers the same class
        if old is not None and (
            old.__module__.rsplit(".", 1)[-1],
            old.__qualname__,
        ) != (cls.__module__.rsplit(".", 1)[-1], cls.__qualname__):
            raise ValueError(f"index kind {kind!r} is already registered to {_REGISTRY[kind].__name__}")
        cls.kind = kind
        _REGISTRY[kind] = cls
        return cls

    return deco


def list_indexes() -> list[str]:
    """Registered backend kinds, sorted."""
    return sorted(_REGISTRY)


def index_class(kind: str) -> type[Any]:
    """The class registered under ``kind``; :class:`UnknownNameError` lists the valid kinds."""
    try:
        return _REGISTRY[kind]
    except (KeyError, TypeError):  # TypeError: an unhashable kind
        raise UnknownNameError(f"unknown index kind {kind!r}; registered: {list_indexes()}") from None


def make_index(kind: str, space: EmbeddingSpace, **params: Any) -> Any:
    """Build a registered backend: ``"exact"``, ``"faiss"`` or ``"hnsw"`` (or any registered kind).

    Example:
        >>> from mlsys.common.ann import make_index
        >>> from mlsys.common.spaces import EmbeddingSpace
        >>> idx = make_index("exact", EmbeddingSpace("demo", "1", 8))
        >>> type(idx).__name__, len(idx)
        ('ExactIndex', 0)
    """
    return index_class(kind)(space, **params)


def load_index(path: str | os.PathLike[str], *, expected_space: EmbeddingSpace | None = None) -> Any:
    """Load an index of any registered backend from a directory written by ``save``.

    Raises:
        CorruptFileError: bad manifest or payloads, or an unregistered backend.
        EmbeddingSpaceMismatchError: ``expected_space`` given and different.
    """
    manifest = read_manifest(path, expected_space=expected_space)
    kind = manifest["kind"]
    if kind not in _REGISTRY:
        raise CorruptFileError(
            f"{path} holds an index of unregistered kind {kind!r}; known: {list_indexes()}"
        )
    return _REGISTRY[kind].load(path, expected_space=expected_space)
