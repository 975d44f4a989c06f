"""Interaction data: implicit feedback, typed feature tables and the id maps between them.

Everything crossing the public boundary is numpy: ids are external ``int64`` (MovieLens ids stay
1-based), positions inside a model are dense ``0..n-1`` indices obtained through :class:`IdIndex`.

Example:
    >>> import numpy as np
    >>> x = Interactions(users=[1, 1, 2], items=[10, 11, 10])
    >>> len(x), x.n_users, x.n_items
    (3, 2, 2)
    >>> items = FeatureTable(
    ...     ids=[10, 11],
    ...     columns={"genres": np.array([[1, 0], [0, 1]], dtype=np.float32)},
    ...     specs=[FeatureSpec("genres", "multi_hot", 2)],
    ... )
    >>> items.n, items.column("genres").shape
    (2, (2, 2))
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from mlsys.common.errors import DuplicateIdError, EmptyIndexError, InvalidInputError, UnknownIdError
from mlsys.common.validation import as_ids, check_unique

__all__ = ["FEATURE_KINDS", "FeatureKind", "FeatureSpec", "FeatureTable", "IdIndex", "Interactions"]

FeatureKind = Literal["categorical", "multi_hot", "numeric", "tokens"]
FEATURE_KINDS: tuple[str, ...] = ("categorical", "multi_hot", "numeric", "tokens")
"""The kinds of feature column a :class:`FeatureSpec` may declare."""


class IdIndex:
    """A fixed map from external int64 ids to dense positions ``0..n-1`` (in the given order).

    Example:
        >>> idx = IdIndex([30, 10, 20])
        >>> idx.positions([10, 30]).tolist()
        [1, 0]
        >>> idx.positions([99], missing="mask").tolist()
        [-1]
    """

    def __init__(self, ids: Any) -> None:
        arr = as_ids(ids)
        check_unique(arr)
        self.ids: npt.NDArray[np.int64] = arr
        self._order = np.argsort(arr, kind="stable")
        self._sorted = arr[self._order]

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, (int, np.integer)):
            return False
        return bool(self.contains(np.array([item], dtype=np.int64))[0])

    def contains(self, ids: Any) -> npt.NDArray[np.bool_]:
        """Boolean mask: which of ``ids`` are known."""
        return self.positions(ids, missing="mask") >= 0

    def positions(self, ids: Any, *, missing: Literal["raise", "mask"] = "raise") -> npt.NDArray[np.int64]:
        """Positions of ``ids``; unknown ids raise :class:`UnknownIdError` or map to ``-1`` (``"mask"``)."""
        q = as_ids(ids)
        if self._sorted.size == 0:
            pos = np.full(q.shape, -1, dtype=np.int64)
        else:
            j = np.searchsorted(self._sorted, q)
            j_clip = np.minimum(j, self._sorted.size - 1)
            found = self._sorted[j_clip] == q
            pos = np.where(found, self._order[j_clip], -1).astype(np.int64)
        if missing == "raise" and (pos < 0).any():
            bad = q[pos < 0][:5].tolist()
            raise UnknownIdError(
                f"unknown ids {bad} ({int((pos < 0).sum())} in all); expected ids seen at fit"
            )
        return pos


class Interactions:
    """Implicit feedback: one row per (user, item) event, with optional timestamp and weight.

    Args:
        users: external user ids, int ``(n,)``.
        items: external item ids, int ``(n,)``.
        timestamps: int ``(n,)`` (Unix seconds); zeros when omitted.
        weights: positive finite float ``(n,)``; ones when omitted.

    Rows keep the order they were given in (splits depend on it). Duplicate (user, item) pairs are
    allowed; matrices built from them (:meth:`to_csr`) are binarised unless asked otherwise.

    Example:
        >>> x = Interactions(users=[1, 2], items=[5, 5], timestamps=[100, 50])
        >>> x.item_counts()
        {5: 2}
    """

    users: npt.NDArray[np.int64]
    items: npt.NDArray[np.int64]
    timestamps: npt.NDArray[np.int64]
    weights: npt.NDArray[np.float32]

    def __init__(
        self,
        users: npt.ArrayLike,
        items: npt.ArrayLike,
        timestamps: npt.ArrayLike | None = None,
        weights: npt.ArrayLike | None = None,
    ) -> None:
        u = as_ids(users, name="users")
        i = as_ids(items, name="items", n=u.shape[0])
        n = u.shape[0]
        if timestamps is None:
            ts = np.zeros(n, dtype=np.int64)
        else:
            ts = as_ids(timestamps, name="timestamps", n=n)
        if weights is None:
            w = np.ones(n, dtype=np.float32)
        else:
            w_raw = np.asarray(weights)
            if w_raw.ndim != 1 or w_raw.shape[0] != n:
                raise InvalidInputError(f"weights must have shape ({n},), got {w_raw.shape}")
            if not (np.issubdtype(w_raw.dtype, np.floating) or np.issubdtype(w_raw.dtype, np.integer)):
                raise InvalidInputError(f"weights must be numeric, got dtype {w_raw.dtype}")
            w = np.ascontiguousarray(w_raw, dtype=np.float32)
            if not np.isfinite(w).all() or (w <= 0).any():
                raise InvalidInputError(
                    "weights must be finite and > 0 (an implicit event has positive weight)"
                )
        for value in (u, i, ts, w):
            value.setflags(write=False)  # shared by selections and models: never mutated
        self.users, self.items, self.timestamps, self.weights = u, i, ts, w

    def __repr__(self) -> str:
        return f"Interactions({len(self)} events, {self.n_users} users, {self.n_items} items)"

    def __len__(self) -> int:
        return int(self.users.shape[0])

    @property
    def n_users(self) -> int:
        """Number of distinct users."""
        return int(np.unique(self.users).shape[0])

    @property
    def n_items(self) -> int:
        """Number of distinct items."""
        return int(np.unique(self.items).shape[0])

    def require_nonempty(self, what: str = "interactions") -> None:
        """Raise :class:`EmptyIndexError` when there is no row."""
        if len(self) == 0:
            raise EmptyIndexError(f"{what} are empty (0 rows); expected at least one (user, item) event")

    def select(self, mask_or_rows: Any) -> Interactions:
        """A new :class:`Interactions` with the rows selected by a boolean mask or row indices."""
        sel = np.asarray(mask_or_rows)
        return Interactions(
            users=self.users[sel],
            items=self.items[sel],
            timestamps=self.timestamps[sel],
            weights=self.weights[sel],
        )

    def concat(self, other: Interactions) -> Interactions:
        """Rows of ``self`` followed by rows of ``other``."""
        return Interactions(
            users=np.concatenate([self.users, other.users]),
            items=np.concatenate([self.items, other.items]),
            timestamps=np.concatenate([self.timestamps, other.timestamps]),
            weights=np.concatenate([self.weights, other.weights]),
        )

    def item_counts(self) -> dict[int, int]:
        """``{item id: number of rows}``."""
        ids, counts = np.unique(self.items, return_counts=True)
        return {int(i): int(c) for i, c in zip(ids, counts)}

    def to_csr(
        self, user_index: IdIndex, item_index: IdIndex, *, binary: bool = True, strict: bool = False
    ) -> sp.csr_matrix:
        """The ``(len(user_index), len(item_index))`` user-item matrix (float32).

        Rows whose user or item is not in the indexes are dropped, or raise with ``strict=True``.
        ``binary=True`` sets every stored entry to 1 (repeated events count once); otherwise weights
        of repeated events are summed.
        """
        mode: Literal["raise", "mask"] = "raise" if strict else "mask"
        u = user_index.positions(self.users, missing=mode)
        i = item_index.positions(self.items, missing=mode)
        keep = (u >= 0) & (i >= 0)
        m = sp.csr_matrix(
            (self.weights[keep].astype(np.float32), (u[keep], i[keep])),
            shape=(len(user_index), len(item_index)),
            dtype=np.float32,
        )
        m.sum_duplicates()
        if binary:
            m.data[:] = 1.0
        m.sort_indices()
        return m


@dataclass(frozen=True)
class FeatureSpec:
    """One declared feature column.

    Args:
        name: column name.
        kind: ``"categorical"`` (int ``(n,)`` in ``0..size-1``), ``"multi_hot"`` (``(n, size)`` of
            0/1, e.g. genres), ``"numeric"`` (finite float ``(n, size)``) or ``"tokens"`` (int
            ``(n, L)`` token ids in ``0..size-1`` where ``0`` is padding, e.g. title words).
        size: cardinality, width or vocabulary size (including the padding token 0).

    Example:
        >>> FeatureSpec("age_bucket", "categorical", 7).kind
        'categorical'
    """

    name: str
    kind: FeatureKind
    size: int

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidInputError(f"FeatureSpec.name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.kind, str) or self.kind not in FEATURE_KINDS:
            raise InvalidInputError(f"FeatureSpec.kind must be one of {FEATURE_KINDS}, got {self.kind!r}")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size <= 0:
            raise InvalidInputError(f"FeatureSpec.size must be a positive int, got {self.size!r}")
        if self.kind == "tokens" and self.size < 2:
            raise InvalidInputError(
                f"tokens feature {self.name!r} needs size >= 2 (0 is padding), got {self.size}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {"name": self.name, "kind": self.kind, "size": self.size}


def _check_column(spec: FeatureSpec, value: Any, n: int) -> np.ndarray:
    arr = np.asarray(value)
    where = f"feature {spec.name!r} ({spec.kind}, size {spec.size})"
    if arr.dtype == object or arr.dtype.kind in "USV":
        raise InvalidInputError(f"{where}: got dtype {arr.dtype}, expected a numeric array")
    if arr.shape[:1] != (n,):
        raise InvalidInputError(
            f"{where}: got {arr.shape[0] if arr.ndim else 0} rows, expected {n} (one per id)"
        )
    if spec.kind == "categorical":
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise InvalidInputError(f"{where}: got shape {arr.shape} dtype {arr.dtype}, expected int ({n},)")
        if arr.size and (arr.min() < 0 or arr.max() >= spec.size):
            raise InvalidInputError(
                f"{where}: values in [{arr.min()}, {arr.max()}], expected 0..{spec.size - 1}"
            )
        return np.ascontiguousarray(arr, dtype=np.int64)
    if spec.kind == "tokens":
        if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
            raise InvalidInputError(f"{where}: got shape {arr.shape} dtype {arr.dtype}, expected int (n, L)")
        if arr.size and (arr.min() < 0 or arr.max() >= spec.size):
            raise InvalidInputError(
                f"{where}: token ids in [{arr.min()}, {arr.max()}], expected 0..{spec.size - 1} (0 = padding)"
            )
        return np.ascontiguousarray(arr, dtype=np.int64)
    if arr.ndim != 2 or arr.shape[1] != spec.size:
        raise InvalidInputError(f"{where}: got shape {arr.shape}, expected ({n}, {spec.size})")
    if not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool
    ):
        raise InvalidInputError(f"{where}: got dtype {arr.dtype}, expected a numeric array")
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(out).all():
        bad = int(np.flatnonzero(~np.isfinite(out).all(axis=1))[0])
        raise InvalidInputError(f"{where}: NaN or inf (first at row {bad}); expected finite values")
    if spec.kind == "multi_hot" and not np.isin(out, (0.0, 1.0)).all():
        raise InvalidInputError(f"{where}: values other than 0/1; expected a multi-hot 0/1 matrix")
    return out


class FeatureTable:
    """Rows of declared features keyed by external ids (users or items).

    Columns are validated against their :class:`FeatureSpec` once, here: missing or extra columns,
    wrong dtype or shape, out-of-range categories or tokens and NaN/inf all raise
    :class:`~mlsys.common.errors.InvalidInputError`; duplicate ids raise
    :class:`~mlsys.common.errors.DuplicateIdError`.

    Example:
        >>> import numpy as np
        >>> t = FeatureTable([7, 8], {"age": np.array([0, 2])}, [FeatureSpec("age", "categorical", 3)])
        >>> t.rows([8]).column("age").tolist()
        [2]
    """

    def __init__(self, ids: Any, columns: Mapping[str, Any], specs: Sequence[FeatureSpec]) -> None:
        id_arr = as_ids(ids)
        check_unique(id_arr)
        if not isinstance(columns, Mapping):
            raise InvalidInputError(f"columns must be a mapping name -> array, got {type(columns).__name__}")
        if isinstance(specs, (str, bytes)) or not isinstance(specs, Iterable):
            raise InvalidInputError(f"specs must be a sequence of FeatureSpec, got {type(specs).__name__}")
        specs = tuple(specs)
        if not all(isinstance(s, FeatureSpec) for s in specs):
            raise InvalidInputError(
                f"specs must hold FeatureSpec objects, got {[type(s).__name__ for s in specs]}"
            )
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise DuplicateIdError(f"duplicate feature names in specs {names}")
        missing = sorted(set(names) - set(columns))
        extra = sorted(set(columns) - set(names))
        if missing or extra:
            raise InvalidInputError(
                f"feature columns do not match the declared specs: missing {missing}, unexpected {extra}; "
                f"expected exactly {names}"
            )
        n = int(id_arr.shape[0])
        self.ids: npt.NDArray[np.int64] = id_arr
        self.specs: tuple[FeatureSpec, ...] = specs
        self._columns = {s.name: _check_column(s, columns[s.name], n) for s in specs}
        self.index = IdIndex(id_arr)

    @property
    def n(self) -> int:
        """Number of rows."""
        return int(self.ids.shape[0])

    def __len__(self) -> int:
        return self.n

    @property
    def columns(self) -> dict[str, np.ndarray]:
        """The validated columns (a shallow copy of the mapping)."""
        return dict(self._columns)

    def column(self, name: str) -> np.ndarray:
        """One validated column."""
        if name not in self._columns:
            raise InvalidInputError(f"no feature column {name!r}; columns are {list(self._columns)}")
        return self._columns[name]

    def schema(self) -> list[dict[str, Any]]:
        """The specs as JSON-serialisable dicts."""
        return [s.to_dict() for s in self.specs]

    def check_schema(self, specs: Sequence[FeatureSpec], *, what: str = "features") -> None:
        """Raise :class:`InvalidInputError` unless this table has exactly ``specs``."""
        if tuple(specs) != self.specs:
            raise InvalidInputError(
                f"{what} have schema {self.schema()}, expected {[s.to_dict() for s in specs]}"
            )

    def select(self, names: Sequence[str]) -> FeatureTable:
        """A table with only the columns ``names`` (in that order); unknown names raise.

        Example:
            >>> import numpy as np
            >>> t = FeatureTable([1], {"a": [0], "b": [1]}, [FeatureSpec("a", "categorical", 2), FeatureSpec("b", "categorical", 2)])
            >>> [s.name for s in t.select(["b"]).specs]
            ['b']
        """
        by_name = {s.name: s for s in self.specs}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise InvalidInputError(f"no feature columns {unknown}; columns are {list(by_name)}")
        return FeatureTable(self.ids, {n: self._columns[n] for n in names}, [by_name[n] for n in names])

    def take(self, positions: Any) -> FeatureTable:
        """Rows at ``positions`` (dense indices) as a new table."""
        pos = np.asarray(positions, dtype=np.int64)
        return FeatureTable(self.ids[pos], {k: v[pos] for k, v in self._columns.items()}, self.specs)

    def rows(self, ids: Any) -> FeatureTable:
        """Rows of ``ids`` (raises :class:`UnknownIdError` for unknown ids)."""
        return self.take(self.index.positions(ids))

    def concat(self, other: FeatureTable) -> FeatureTable:
        """Rows of ``self`` then ``other`` (same schema; token columns are padded to the longer width)."""
        other.check_schema(self.specs, what="the appended table")
        cols: dict[str, np.ndarray] = {}
        for s in self.specs:
            a, b = self._columns[s.name], other._columns[s.name]
            if s.kind == "tokens" and a.shape[1] != b.shape[1]:
                width = max(a.shape[1], b.shape[1])
                a = np.pad(a, ((0, 0), (0, width - a.shape[1])))
                b = np.pad(b, ((0, 0), (0, width - b.shape[1])))
            cols[s.name] = np.concatenate([a, b])
        return FeatureTable(np.concatenate([self.ids, other.ids]), cols, self.specs)

    def dense(self, names: Sequence[str] | None = None) -> sp.csr_matrix:
        """A sparse float32 design matrix: one-hot categoricals, multi-hot, numeric, token counts.

        Example:
            >>> import numpy as np
            >>> t = FeatureTable([1], {"g": np.array([[1, 0, 1]])}, [FeatureSpec("g", "multi_hot", 3)])
            >>> t.dense().toarray().tolist()
            [[1.0, 0.0, 1.0]]
        """
        blocks = []
        wanted = list(names) if names is not None else [s.name for s in self.specs]
        by_name = {s.name: s for s in self.specs}
        for name in wanted:
            if name not in by_name:
                raise InvalidInputError(f"no feature column {name!r}; columns are {list(by_name)}")
            s, col = by_name[name], self._columns[name]
            if s.kind == "categorical":
                blocks.append(
                    sp.csr_matrix(
                        (np.ones(self.n, np.float32), (np.arange(self.n), col)), shape=(self.n, s.size)
                    )
                )
            elif s.kind == "tokens":
                rr, cc = np.nonzero(col)
                m = sp.csr_matrix((np.ones(rr.size, np.float32), (rr, col[rr, cc])), shape=(self.n, s.size))
                m.sum_duplicates()
                blocks.append(m)
            else:
                blocks.append(sp.csr_matrix(col))
        return sp.hstack(blocks, format="csr", dtype=np.float32)
