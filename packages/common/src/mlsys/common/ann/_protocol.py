"""The ``VectorIndex`` protocol every backend implements (DESIGN.md §3)."""

from __future__ import annotations

import os
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from mlsys.common.spaces import EmbeddingSpace

__all__ = ["SearchResult", "VectorIndex"]

SearchResult = tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]
"""``(ids, scores)`` of a search: ``(n_queries, k)`` int64 ids and float32 scores, padded with
``-1`` / ``-inf`` when fewer than ``k`` items pass the filter.
"""


@runtime_checkable
class VectorIndex(Protocol):
    """A mutable set of ``(id, vector)`` pairs of one :class:`EmbeddingSpace`, searchable by similarity.

    Contract (checked for every registered backend by ``tests/common/ann/test_conformance.py``):

    - ids are non-negative int64 (``-1`` is the padding id); vectors are ``(n, space.dim)``.
    - ``add`` refuses ids already present; ``upsert`` replaces them; ``remove`` refuses unknown ids.
    - ``search`` returns ``(ids, scores)`` of shape ``(n_queries, k)``, best first, scores
      "higher is better" (inner product, cosine, or negative squared L2 distance), padded with
      ``-1`` / ``-inf`` only when fewer than ``k`` live items pass the filter.
    - ``allow`` restricts results to the given ids, ``deny`` excludes ids; both may be combined.
    - every rejected call raises a typed :mod:`mlsys.common.errors` error and leaves the index
      unchanged.
    - ``save(path)`` writes a directory with a verified manifest; ``load(path)`` restores it.

    Example:
        >>> from mlsys.common.ann import ExactIndex, VectorIndex
        >>> from mlsys.common.spaces import EmbeddingSpace
        >>> isinstance(ExactIndex(EmbeddingSpace("demo", "1", 4)), VectorIndex)
        True
    """

    @property
    def space(self) -> EmbeddingSpace:
        """The embedding space this index is bound to."""
        ...

    def add(self, ids: Any, vectors: Any, *, space: EmbeddingSpace | None = None) -> None:
        """Insert new items; raises ``DuplicateIdError`` if an id is already present."""
        ...

    def upsert(self, ids: Any, vectors: Any, *, space: EmbeddingSpace | None = None) -> None:
        """Insert new items and replace the vectors of existing ones."""
        ...

    def remove(self, ids: Any) -> None:
        """Delete items; raises ``UnknownIdError`` if an id is not present."""
        ...

    def search(
        self,
        queries: Any,
        k: int,
        *,
        allow: Any = None,
        deny: Any = None,
        space: EmbeddingSpace | None = None,
    ) -> SearchResult:
        """Top-``k`` ids and scores per query."""
        ...

    def get_vectors(self, ids: Any) -> npt.NDArray[np.float32]:
        """The stored vectors of ``ids`` (normalised for cosine spaces)."""
        ...

    def ids(self) -> npt.NDArray[np.int64]:
        """All live ids, ascending."""
        ...

    def __len__(self) -> int: ...

    def __contains__(self, item: object) -> bool: ...

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to a directory (manifest + payloads)."""
        ...

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, expected_space: EmbeddingSpace | None = None) -> Any:
        """Read an index written by :meth:`save`, verifying its manifest."""
        ...
