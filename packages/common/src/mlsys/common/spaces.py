"""Embedding spaces: the identity of a vector space.

Two models of the same width produce vectors of the same shape that mean different things. A
dimension check cannot tell them apart; an :class:`EmbeddingSpace` can. Every index and store is
bound to one space, and vectors or files from another space are refused with
:class:`~mlsys.common.errors.EmbeddingSpaceMismatchError`.

Example:
    >>> a = EmbeddingSpace("all-MiniLM-L6-v2", "sha256:53aa51", 384, metric="cosine", normalized=True)
    >>> b = EmbeddingSpace("all-MiniLM-L6-v2", "sha256:ffff00", 384, metric="cosine", normalized=True)
    >>> a == b
    False
    >>> a.check_same(b)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    mlsys.common.errors.EmbeddingSpaceMismatchError: ... version: 'sha256:ffff00' != expected 'sha256:53aa51'
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from mlsys.common.errors import EmbeddingSpaceMismatchError, InvalidInputError

__all__ = ["METRICS", "EmbeddingSpace", "Metric"]

Metric = Literal["ip", "cosine", "l2"]
"""A similarity metric of an embedding space: inner product, cosine or (negated) L2 distance."""
METRICS: tuple[str, ...] = ("ip", "cosine", "l2")
"""The valid values of :data:`Metric`."""


@dataclass(frozen=True)
class EmbeddingSpace:
    """The identity of a vector space.

    Args:
        name: model id (``"all-MiniLM-L6-v2"``, ``"two-tower-ml100k"``).
        version: model revision or weights hash; a retrained or swapped model gets a new version.
        dim: vector width.
        metric: ``"ip"`` (inner product), ``"cosine"`` or ``"l2"``. Scores are always "higher is
            better": L2 scores are negated squared distances.
        normalized: whether vectors are unit-normalised by the producer.
        pooling: how token vectors were pooled (``"mean"``, ``"cls"``), if it applies.
        query_prefix: text prepended to queries before encoding, if any.
        document_prefix: text prepended to documents before encoding, if any.
    """

    name: str
    version: str
    dim: int
    metric: Metric = "cosine"
    normalized: bool = False
    pooling: str | None = None
    query_prefix: str = ""
    document_prefix: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidInputError(f"EmbeddingSpace.name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.version, str) or not self.version:
            raise InvalidInputError(
                f"EmbeddingSpace.version must be a non-empty string, got {self.version!r}"
            )
        if isinstance(self.dim, bool) or not isinstance(self.dim, int) or self.dim <= 0:
            raise InvalidInputError(f"EmbeddingSpace.dim must be a positive int, got {self.dim!r}")
        if self.metric not in METRICS:
            raise InvalidInputError(f"EmbeddingSpace.metric must be one of {METRICS}, got {self.metric!r}")

    @property
    def space_id(self) -> str:
        """A stable 16-hex-digit id of every field (same fields, same id, across processes)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmbeddingSpace:
        """Rebuild a space from :meth:`to_dict`; unknown keys are refused."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InvalidInputError(
                f"unknown EmbeddingSpace fields {sorted(unknown)}; expected {sorted(known)}"
            )
        return cls(**data)

    def differences(self, other: EmbeddingSpace) -> list[str]:
        """Human-readable list of the fields where ``other`` differs from ``self``."""
        out = []
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if mine != theirs:
                out.append(f"{f.name}: {theirs!r} != expected {mine!r}")
        return out

    def check_same(self, other: EmbeddingSpace, *, what: str = "vectors") -> None:
        """Raise :class:`EmbeddingSpaceMismatchError` unless ``other`` is this space."""
        if not isinstance(other, EmbeddingSpace):
            raise InvalidInputError(f"expected an EmbeddingSpace, got {type(other).__name__}")
        if other != self:
            diff = "; ".join(self.differences(other))
            raise EmbeddingSpaceMismatchError(
                f"{what} come from embedding space {other.name}@{other.version} "
                f"(space_id {other.space_id}) but this object is bound to {self.name}@{self.version} "
                f"(space_id {self.space_id}): {diff}"
            )

    def __str__(self) -> str:
        return f"{self.name}@{self.version}[dim={self.dim},{self.metric}]"
