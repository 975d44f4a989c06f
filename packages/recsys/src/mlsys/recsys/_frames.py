"""Loaders from the formats users have: pandas / Polars data frames, Arrow tables, CSV and Parquet.

Every source goes through one Arrow table (pyarrow, the ``mlsys-recsys[frames]`` extra), so a
pandas frame, a Polars frame, a CSV file and a Parquet file with the same content give the same
:class:`Interactions`. Ids of any integer or string type are accepted: with ``ids="auto"``
(default) integer ids that fit ``int64`` are kept as they are (MovieLens' 1-based ids stay), any
other type (strings, ``uint64`` beyond ``int64``, categoricals of strings) is mapped to dense codes
``0..n-1`` in sorted label order; ``ids="dense"`` maps every id type to dense codes. The
:class:`IdCodes` of the result turn codes back into labels.

Bad rows are refused with the row named (0-based row of the table; for CSV also the 1-based line
of the file when no field spans lines): missing ids, NaN/null timestamps, non-positive or NaN
weights, fractional or sub-second timestamps; duplicate column names are refused before anything
is read. Nothing half-built is returned.

Example:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"user": ["ann", "bob", "ann"], "item": [10, 10, 11]})
    >>> t = interactions_from_frame(df, user="user", item="item")
    >>> t.interactions.users.tolist(), t.users.decode(t.interactions.users).tolist()
    ([0, 1, 0], ['ann', 'bob', 'ann'])
    >>> t.to_pandas().equals(df)
    True
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from mlsys.common._optional import import_optional
from mlsys.common.errors import (
    CorruptFileError,
    DatasetNotFoundError,
    DuplicateIdError,
    InvalidInputError,
    ParseError,
)
from mlsys.recsys._data import FeatureSpec, FeatureTable, Interactions

__all__ = [
    "FeatureFrame",
    "IdCodes",
    "InteractionTable",
    "feature_table_from_frame",
    "interactions_from_frame",
    "read_feature_table",
    "read_interactions",
]

IdMode = Literal["auto", "dense"]
_INT64_MAX = np.iinfo(np.int64).max


def _pa() -> Any:
    return import_optional("pyarrow", package="pyarrow", extra="mlsys-recsys[frames]")


@dataclass(frozen=True, eq=False)
class IdCodes:
    """The map between id labels (integers or strings) and the ``int64`` ids mlsys works with.

    Attributes:
        labels: the distinct labels in code order when ``dense``; ``None`` when integer labels are
            kept as ids (identity).
        dense: whether labels were replaced by codes ``0..n-1``.

    Example:
        >>> c = IdCodes.fit(np.array(["b", "a", "b"], dtype=object), mode="auto")
        >>> c.encode(np.array(["a", "b"], dtype=object)).tolist(), c.decode(np.array([1])).tolist()
        ([0, 1], ['b'])
    """

    labels: npt.NDArray[Any] | None
    dense: bool

    @classmethod
    def fit(cls, values: npt.NDArray[Any], *, mode: IdMode = "auto") -> IdCodes:
        """Codes for ``values`` (integers kept in ``"auto"`` mode when they fit int64)."""
        if mode not in ("auto", "dense"):
            raise InvalidInputError(f"ids must be 'auto' or 'dense', got {mode!r}")
        if mode == "auto" and values.dtype.kind in "iu":
            if values.dtype.kind == "i" or values.size == 0 or int(values.max()) <= _INT64_MAX:
                return cls(None, False)
        return cls(np.unique(values), True)

    def __len__(self) -> int:
        return 0 if self.labels is None else int(self.labels.shape[0])

    def encode(self, values: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """``int64`` ids of ``values``; unknown labels raise :class:`InvalidInputError`."""
        v = np.asarray(values)
        if self.labels is None:
            if v.dtype.kind not in "iu":
                raise InvalidInputError(f"ids are integers here, got dtype {v.dtype}")
            return v.astype(np.int64)
        pos = np.searchsorted(self.labels, v)
        pos_c = np.minimum(pos, max(len(self.labels) - 1, 0))
        ok = (
            (pos < len(self.labels)) & (self.labels[pos_c] == v)
            if len(self.labels)
            else np.zeros(v.shape, bool)
        )
        if not np.all(ok):
            bad = v[~ok][:5].tolist()
            raise InvalidInputError(f"unknown id labels {bad}; expected labels seen when loading")
        return pos.astype(np.int64)

    def decode(self, ids: npt.ArrayLike) -> npt.NDArray[Any]:
        """Labels of ``int64`` ids (the inverse of :meth:`encode`)."""
        a = np.asarray(ids, dtype=np.int64)
        if self.labels is None:
            return a
        if a.size and (a.min() < 0 or a.max() >= len(self.labels)):
            raise InvalidInputError(f"ids outside 0..{len(self.labels) - 1} cannot be decoded")
        return self.labels[a]


@dataclass(frozen=True, eq=False)
class InteractionTable:
    """Interactions read from a frame or file, with what is needed to write the frame back exactly.

    Attributes:
        interactions: the events (rows in the order of the source).
        users: :class:`IdCodes` of the user column.
        items: :class:`IdCodes` of the item column.
        columns: ``{"user": name, "item": name, "timestamp": name or None, "weight": name or None}``.
    """

    interactions: Interactions
    users: IdCodes
    items: IdCodes
    columns: dict[str, str | None]
    _schema: Any = field(repr=False)
    _originals: dict[str, Any] = field(repr=False, default_factory=dict)

    def to_arrow(self) -> Any:
        """The source's columns as a ``pyarrow.Table`` with the source's types."""
        pa = _pa()
        x = self.interactions
        arrays = []
        for f in self._schema:
            role = next(r for r, c in self.columns.items() if c == f.name)
            if role in self._originals:
                arrays.append(self._originals[role])
                continue
            dictionary = self._originals.get(f"{role}_dictionary")
            if role == "user":
                values: Any = self.users.decode(x.users)
            elif role == "item":
                values = self.items.decode(x.items)
            elif role == "timestamp":
                values = _timestamps_back(x.timestamps, f.type, pa)
            else:
                values = x.weights
            if dictionary is not None:  # a categorical: same categories, same order
                where = {v: j for j, v in enumerate(dictionary.to_pylist())}
                idx = pa.array([where[v] for v in values.tolist()], type=f.type.index_type)
                arrays.append(pa.DictionaryArray.from_arrays(idx, dictionary, ordered=f.type.ordered))
            else:
                arrays.append(_array_of(values, f.type, pa))
        return pa.Table.from_arrays(arrays, schema=self._schema)

    def to_pandas(self) -> Any:
        """The source's columns as a pandas ``DataFrame`` (dtypes restored from the source's metadata)."""
        return self.to_arrow().to_pandas()

    def to_polars(self) -> Any:
        """The source's columns as a Polars ``DataFrame``."""
        pl = import_optional("polars")
        return pl.from_arrow(self.to_arrow())


def _array_of(values: Any, typ: Any, pa: Any) -> Any:
    pat = pa.types
    if pat.is_dictionary(typ):
        return pa.array(values, type=typ.value_type).dictionary_encode().cast(typ)
    return pa.array(values, type=typ)


def _timestamps_back(ts: npt.NDArray[np.int64], typ: Any, pa: Any) -> Any:
    pat = pa.types
    if pat.is_timestamp(typ):
        per = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[typ.unit]
        return pa.array(ts * per, type=pa.int64()).cast(typ)
    if pat.is_date32(typ):
        return pa.array((ts // 86400).astype(np.int32), type=pa.int32()).cast(typ)
    return ts


# ------------------------------------------------------------------------------------------ input


def _to_table(source: Any, pa: Any) -> Any:
    """An Arrow table from pandas / Polars / Arrow, refusing duplicate column names first."""
    if isinstance(source, pa.Table):
        table = source
    elif hasattr(source, "to_arrow") and hasattr(source, "schema") and not hasattr(source, "iloc"):
        table = source.to_arrow()  # polars.DataFrame
    elif hasattr(source, "columns") and hasattr(source, "iloc"):  # pandas.DataFrame
        names = [str(c) for c in source.columns]
        _check_unique_names(names)
        try:
            table = pa.Table.from_pandas(source, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"cannot read the data frame's columns: {exc}") from exc
    else:
        raise InvalidInputError(
            f"expected a pandas or Polars DataFrame or a pyarrow Table, got {type(source).__name__}"
        )
    _check_unique_names(list(table.column_names))
    return table


def _check_unique_names(names: list[str]) -> None:
    seen: dict[str, int] = {}
    for pos, name in enumerate(names):
        if name in seen:
            raise InvalidInputError(
                f"duplicate column name {name!r} (columns {seen[name]} and {pos} of {names}); "
                "expected unique column names"
            )
        seen[name] = pos


def _where(row: int, lines: npt.NDArray[np.int64] | None) -> str:
    return f"row {row}" + (f" (line {int(lines[row])} of the file)" if lines is not None else "")


def _column(table: Any, name: str, role: str, pa: Any, lines: npt.NDArray[np.int64] | None) -> Any:
    if name not in table.column_names:
        raise InvalidInputError(f"no column {name!r} for the {role}; columns are {table.column_names}")
    col = table.column(name).combine_chunks()
    if col.null_count:
        row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        raise InvalidInputError(
            f"{role} column {name!r} is missing a value at {_where(row, lines)}; expected every row to have one"
        )
    return col


def _id_values(col: Any, name: str, role: str, pa: Any, lines: npt.NDArray[np.int64] | None) -> np.ndarray:
    pat = pa.types
    typ = col.type
    if pat.is_dictionary(typ):
        col, typ = col.dictionary_decode(), typ.value_type
    if pat.is_integer(typ):
        return np.asarray(col.to_numpy())
    if pat.is_string(typ) or pat.is_large_string(typ) or getattr(pat, "is_string_view", lambda t: False)(typ):
        values = np.asarray(col.to_numpy(zero_copy_only=False), dtype=object)
        empty = np.flatnonzero(values == "")
        if empty.size:
            raise InvalidInputError(
                f"{role} column {name!r} has an empty id at {_where(int(empty[0]), lines)}; expected a non-empty id"
            )
        return values
    raise InvalidInputError(f"{role} column {name!r} has type {typ}; expected integer or string ids")


def _timestamp_values(col: Any, name: str, pa: Any, lines: npt.NDArray[np.int64] | None) -> np.ndarray:
    pat = pa.types
    typ = col.type
    if pat.is_integer(typ):
        v = np.asarray(col.to_numpy())
        if v.dtype.kind == "u" and v.size and int(v.max()) > _INT64_MAX:
            row = int(np.argmax(v))
            raise InvalidInputError(f"timestamp {int(v[row])} at {_where(row, lines)} exceeds int64")
        return v.astype(np.int64)
    if pat.is_floating(typ):
        v = np.asarray(col.to_numpy(), dtype=np.float64)
        bad = ~np.isfinite(v) | (v != np.round(v)) | (np.abs(v) > 2.0**62)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InvalidInputError(
                f"timestamp column {name!r} has {float(v[row])!r} at {_where(row, lines)}; expected whole "
                "Unix seconds (no NaN, no fraction)"
            )
        return v.astype(np.int64)
    if pat.is_timestamp(typ) or pat.is_date32(typ):
        unit = "s" if pat.is_date32(typ) else typ.unit
        raw = col.cast(pa.int32() if pat.is_date32(typ) else pa.int64()).to_numpy().astype(np.int64)
        if pat.is_date32(typ):
            return raw * 86400
        per = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[unit]
        frac = raw % per != 0
        if frac.any():
            row = int(np.flatnonzero(frac)[0])
            raise InvalidInputError(
                f"timestamp column {name!r} has a sub-second time at {_where(row, lines)}; "
                "expected whole seconds (Interactions stores Unix seconds)"
            )
        return raw // per
    raise InvalidInputError(
        f"timestamp column {name!r} has type {typ}; expected integers, floats or datetimes"
    )


def _weight_values(
    col: Any, name: str, pa: Any, lines: npt.NDArray[np.int64] | None
) -> tuple[np.ndarray, bool]:
    pat = pa.types
    if not (pat.is_integer(col.type) or pat.is_floating(col.type)):
        raise InvalidInputError(f"weight column {name!r} has type {col.type}; expected numbers")
    v = np.asarray(col.to_numpy(), dtype=np.float64)
    bad = ~np.isfinite(v) | (v <= 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InvalidInputError(
            f"weight column {name!r} has {float(v[row])!r} at {_where(row, lines)}; expected a finite weight > 0"
        )
    w = v.astype(np.float32)
    lossy = bool(pat.is_floating(col.type) and not np.array_equal(w.astype(np.float64), v))
    return w, lossy


def _from_table(
    table: Any,
    *,
    user: str,
    item: str,
    timestamp: str | None,
    weight: str | None,
    ids: IdMode,
    lines: npt.NDArray[np.int64] | None,
) -> InteractionTable:
    pa = _pa()
    names = {"user": user, "item": item, "timestamp": timestamp, "weight": weight}
    for role, name in names.items():
        if name is not None and not isinstance(name, str):
            raise InvalidInputError(f"{role} must be a column name (str), got {name!r}")
    chosen = [n for n in names.values() if n is not None]
    if len(set(chosen)) != len(chosen):
        raise InvalidInputError(f"one column named for two roles: {names}; expected distinct columns")
    originals: dict[str, Any] = {}
    u_col = _column(table, user, "user", pa, lines)
    i_col = _column(table, item, "item", pa, lines)
    for role, col in (("user", u_col), ("item", i_col)):
        if pa.types.is_dictionary(col.type):
            originals[f"{role}_dictionary"] = col.dictionary
    u_raw = _id_values(u_col, user, "user", pa, lines)
    i_raw = _id_values(i_col, item, "item", pa, lines)
    u_codes, i_codes = IdCodes.fit(u_raw, mode=ids), IdCodes.fit(i_raw, mode=ids)
    ts = w = None
    if timestamp is not None:
        t_col = _column(table, timestamp, "timestamp", pa, lines)
        ts = _timestamp_values(t_col, timestamp, pa, lines)
    if weight is not None:
        w_col = _column(table, weight, "weight", pa, lines)
        w, lossy = _weight_values(w_col, weight, pa, lines)
        if lossy:  # float64 weights Interactions stores as float32: keep the exact values for writing back
            originals["weight"] = w_col
    x = Interactions(users=u_codes.encode(u_raw), items=i_codes.encode(i_raw), timestamps=ts, weights=w)
    schema = pa.schema([table.schema.field(n) for n in chosen], metadata=_pandas_metadata(table, chosen))
    return InteractionTable(x, u_codes, i_codes, dict(names), schema, originals)


def _pandas_metadata(table: Any, keep: Sequence[str]) -> dict[bytes, bytes] | None:
    """The source's pandas metadata restricted to ``keep`` (so ``to_pandas`` restores its dtypes)."""
    import json

    meta = table.schema.metadata or {}
    raw = meta.get(b"pandas")
    if raw is None:
        return None
    doc = json.loads(raw)
    doc["columns"] = [c for c in doc.get("columns", []) if c.get("name") in keep]
    doc["index_columns"] = []
    doc["column_indexes"] = doc.get("column_indexes", [])
    return {b"pandas": json.dumps(doc).encode()}


def interactions_from_frame(
    frame: Any,
    *,
    user: str = "user",
    item: str = "item",
    timestamp: str | None = None,
    weight: str | None = None,
    ids: IdMode = "auto",
) -> InteractionTable:
    """:class:`Interactions` from a pandas or Polars data frame (or a ``pyarrow.Table``).

    Args:
        frame: the data frame; other columns are ignored.
        user, item: id columns (integer or string types; categoricals are decoded).
        timestamp: optional column of Unix seconds (integers, whole floats) or datetimes / dates
            (converted to Unix seconds; sub-second times refused).
        weight: optional column of positive finite numbers (ones when omitted).
        ids: ``"auto"`` keeps integer ids, ``"dense"`` maps every id type to codes ``0..n-1``.

    Returns:
        An :class:`InteractionTable`; its :meth:`~InteractionTable.to_pandas` /
        :meth:`~InteractionTable.to_polars` give the named columns back exactly.

    Raises:
        InvalidInputError: duplicate column names, a missing column, a missing id, a NaN timestamp
            or bad weight (the row is named), an unsupported column type.

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"u": [1, 2], "i": ["x", "y"], "t": [100, 200]})
        >>> interactions_from_frame(df, user="u", item="i", timestamp="t").interactions
        Interactions(2 events, 2 users, 2 items)
    """
    pa = _pa()
    return _from_table(
        _to_table(frame, pa), user=user, item=item, timestamp=timestamp, weight=weight, ids=ids, lines=None
    )


# ------------------------------------------------------------------------------------------ files


def _read_file(
    path: str | os.PathLike[str], columns: Sequence[str], fmt: str | None, **csv_kw: Any
) -> tuple[Any, Any]:
    """``(arrow table, per-row file line numbers or None)`` for a CSV or Parquet file."""
    pa = _pa()
    if not isinstance(path, (str, os.PathLike)) or "\x00" in os.fspath(path):
        raise InvalidInputError(f"path must be a file path (str or os.PathLike), got {path!r:.80}")
    p = Path(path)
    if not p.is_file():
        raise DatasetNotFoundError(f"no file at {p}")
    kind = fmt or ("parquet" if p.suffix.lower() in (".parquet", ".pq") else "csv")
    if kind == "parquet":
        pq = import_optional("pyarrow.parquet", package="pyarrow", extra="mlsys-recsys[frames]")
        try:
            schema_names = pq.read_schema(p).names
            _check_unique_names(list(schema_names))
            wanted = [c for c in columns if c in schema_names]
            return pq.read_table(p, columns=wanted), None
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
            raise CorruptFileError(f"{p} is not a readable Parquet file: {exc}") from exc
    if kind != "csv":
        raise InvalidInputError(f"format must be 'csv' or 'parquet', got {fmt!r}")
    csv = import_optional("pyarrow.csv", package="pyarrow", extra="mlsys-recsys[frames]")
    delimiter = csv_kw.pop("delimiter", ",")
    column_types = csv_kw.pop("column_types", None) or {}
    header = _csv_header(p, delimiter)
    _check_unique_names(header)
    try:
        table = csv.read_csv(
            p,
            parse_options=csv.ParseOptions(delimiter=delimiter),
            convert_options=csv.ConvertOptions(
                include_columns=[c for c in columns if c in header],
                column_types={k: v for k, v in column_types.items() if k in header},
                strings_can_be_null=True,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ParseError(
            f"not a readable CSV file ({exc}); expected a header line then rows", path=p
        ) from exc
    return table, _csv_lines(p, table.num_rows)


def _csv_header(p: Path, delimiter: str) -> list[str]:
    import csv as pycsv

    try:
        with p.open(encoding="utf-8", newline="") as f:
            first = next(pycsv.reader(f, delimiter=delimiter), None)
    except UnicodeDecodeError as exc:
        raise ParseError(
            f"not UTF-8 text (byte {exc.start}); expected a UTF-8 CSV file", path=p, line=1
        ) from exc
    except pycsv.Error as exc:
        raise ParseError(f"unreadable header ({exc}); expected column names", path=p, line=1) from exc
    if not first:
        raise ParseError("empty file; expected a header line with column names", path=p, line=1)
    return first


def _csv_lines(p: Path, n_rows: int) -> npt.NDArray[np.int64] | None:
    """1-based file line of each data row, when every row is one line (else None: rows only)."""
    with p.open("rb") as f:
        n_lines = sum(1 for line in f if line.strip())
    if n_lines - 1 != n_rows:
        return None
    lines = np.zeros(n_rows, dtype=np.int64)
    with p.open("rb") as f:
        row = -1
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            if row >= 0:
                lines[row] = lineno
            row += 1
    return lines


def read_interactions(
    path: str | os.PathLike[str],
    *,
    user: str = "user",
    item: str = "item",
    timestamp: str | None = None,
    weight: str | None = None,
    ids: IdMode = "auto",
    format: str | None = None,
    delimiter: str = ",",
    column_types: Mapping[str, Any] | None = None,
) -> InteractionTable:
    """:class:`Interactions` from a CSV (header line first) or Parquet file.

    ``format`` is ``"csv"`` or ``"parquet"`` (default: from the suffix, ``.parquet``/``.pq`` or CSV).
    ``column_types`` (CSV only) forces Arrow types, e.g. ``{"user": pyarrow.string()}`` to keep
    numeric-looking ids as strings. Errors name the row and, for CSV, the line. See
    :func:`interactions_from_frame` for the columns and :class:`InteractionTable` for writing back.

    Raises:
        DatasetNotFoundError: no file at ``path``.
        ParseError: a CSV that is not UTF-8 text or not CSV (file and line named).
        CorruptFileError: a Parquet file that cannot be read.
        InvalidInputError: the bad-row cases of :func:`interactions_from_frame`.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "ratings.csv"
        >>> _ = p.write_text("userId,movieId,timestamp\\n1,31,1260759144\\n1,1029,1260759179\\n")
        >>> read_interactions(p, user="userId", item="movieId", timestamp="timestamp").interactions
        Interactions(2 events, 1 users, 2 items)
    """
    wanted = [c for c in (user, item, timestamp, weight) if c is not None]
    table, lines = _read_file(path, wanted, format, delimiter=delimiter, column_types=column_types)
    return _from_table(table, user=user, item=item, timestamp=timestamp, weight=weight, ids=ids, lines=lines)


# ------------------------------------------------------------------------------------------ features


@dataclass(frozen=True, eq=False)
class FeatureFrame:
    """A :class:`FeatureTable` read from a frame or file, with its id codes and vocabularies.

    Attributes:
        table: the validated feature table (ids are the codes of ``ids``).
        ids: :class:`IdCodes` of the id column.
        vocabularies: per categorical / multi-hot feature, the labels of its codes / columns.
    """

    table: FeatureTable
    ids: IdCodes
    vocabularies: dict[str, npt.NDArray[Any]]


def _vocab_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    vocab, codes = np.unique(values, return_inverse=True)
    return vocab, codes.astype(np.int64)


def _features_from_table(
    table: Any,
    *,
    id: str,
    categorical: Sequence[str],
    numeric: Sequence[str] | Mapping[str, Sequence[str]],
    multi_hot: Mapping[str, str],
    ids: IdMode,
    lines: npt.NDArray[np.int64] | None,
) -> FeatureFrame:
    pa = _pa()
    id_col = _column(table, id, "id", pa, lines)
    raw = _id_values(id_col, id, "id", pa, lines)
    codes = IdCodes.fit(raw, mode=ids)
    enc = codes.encode(raw)
    order = np.argsort(enc, kind="stable")
    dup = np.flatnonzero(enc[order][1:] == enc[order][:-1])
    if dup.size:
        a, b = sorted((int(order[dup[0]]), int(order[dup[0] + 1])))
        raise DuplicateIdError(
            f"id {raw[a]!r} appears at {_where(a, lines)} and {_where(b, lines)}; expected one row per id"
        )
    cols: dict[str, np.ndarray] = {}
    specs: list[FeatureSpec] = []
    vocabularies: dict[str, np.ndarray] = {}
    for name in categorical:
        col = _column(table, name, "categorical feature", pa, lines)
        vocab, c = _vocab_codes(_id_values(col, name, "categorical feature", pa, lines))
        cols[name], vocabularies[name] = c, vocab
        specs.append(FeatureSpec(name, "categorical", max(1, len(vocab))))
    groups = dict(numeric) if isinstance(numeric, Mapping) else {n: (n,) for n in numeric}
    for fname, members in groups.items():
        block = []
        for name in members:
            col = _column(table, name, "numeric feature", pa, lines)
            if not (
                pa.types.is_integer(col.type)
                or pa.types.is_floating(col.type)
                or pa.types.is_boolean(col.type)
            ):
                raise InvalidInputError(
                    f"numeric feature column {name!r} has type {col.type}; expected numbers"
                )
            v = np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)
            bad = ~np.isfinite(v)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise InvalidInputError(
                    f"numeric feature column {name!r} has {float(v[row])!r} at {_where(row, lines)}; expected finite numbers"
                )
            block.append(v)
        cols[fname] = np.stack(block, axis=1).astype(np.float32)
        specs.append(FeatureSpec(fname, "numeric", len(members)))
    for name, sep in multi_hot.items():
        if name not in table.column_names:
            raise InvalidInputError(
                f"no column {name!r} for a multi-hot feature; columns are {table.column_names}"
            )
        col = table.column(name).combine_chunks()
        if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
            sets = [set(v) if v is not None else set() for v in col.to_pylist()]
        elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            sets = [set(filter(None, v.split(sep))) if v is not None else set() for v in col.to_pylist()]
        else:
            raise InvalidInputError(
                f"multi-hot column {name!r} has type {col.type}; expected strings joined by {sep!r} or lists"
            )
        vocab = np.array(sorted(set().union(*sets)) if sets else [], dtype=object)
        where = {v: j for j, v in enumerate(vocab.tolist())}
        m = np.zeros((len(sets), max(1, len(vocab))), dtype=np.float32)
        for r, s in enumerate(sets):
            for v in s:
                m[r, where[v]] = 1.0
        cols[name], vocabularies[name] = m, vocab
        specs.append(FeatureSpec(name, "multi_hot", m.shape[1]))
    if not specs:
        raise InvalidInputError("no feature columns named; pass categorical=, numeric= or multi_hot=")
    return FeatureFrame(FeatureTable(enc, cols, specs), codes, vocabularies)


def feature_table_from_frame(
    frame: Any,
    *,
    id: str,
    categorical: Sequence[str] = (),
    numeric: Sequence[str] | Mapping[str, Sequence[str]] = (),
    multi_hot: Mapping[str, str] | None = None,
    ids: IdMode = "auto",
) -> FeatureFrame:
    """A :class:`FeatureTable` from a pandas or Polars data frame (or a ``pyarrow.Table``).

    Args:
        frame: one row per id.
        id: the id column (integer or string; ``ids`` as in :func:`interactions_from_frame`).
        categorical: columns of labels (integers or strings) -> categorical features, codes in
            sorted label order (``vocabularies`` holds the labels).
        numeric: column names (one width-1 feature each) or ``{feature: [columns]}`` for wider ones.
        multi_hot: ``{column: separator}`` for columns like MovieLens genres ``"Action|Comedy"`` (or
            list-typed columns); a null cell is an empty set.
        ids: ``"auto"`` or ``"dense"``.

    Raises:
        DuplicateIdError: an id on two rows (both rows named).
        InvalidInputError: duplicate column names, a missing id or category, a NaN number.

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"movie": [1, 2], "genres": ["Drama|War", "Comedy"], "year": [1995, 2001]})
        >>> f = feature_table_from_frame(df, id="movie", multi_hot={"genres": "|"}, categorical=["year"])
        >>> f.table.column("genres").tolist(), f.vocabularies["genres"].tolist()
        ([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]], ['Comedy', 'Drama', 'War'])
    """
    pa = _pa()
    return _features_from_table(
        _to_table(frame, pa),
        id=id,
        categorical=categorical,
        numeric=numeric,
        multi_hot=multi_hot or {},
        ids=ids,
        lines=None,
    )


def read_feature_table(
    path: str | os.PathLike[str],
    *,
    id: str,
    categorical: Sequence[str] = (),
    numeric: Sequence[str] | Mapping[str, Sequence[str]] = (),
    multi_hot: Mapping[str, str] | None = None,
    ids: IdMode = "auto",
    format: str | None = None,
    delimiter: str = ",",
    column_types: Mapping[str, Any] | None = None,
) -> FeatureFrame:
    """A :class:`FeatureTable` from a CSV or Parquet file (arguments as :func:`feature_table_from_frame`).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "movies.csv"
        >>> _ = p.write_text('movieId,title,genres\\n1,"Toy Story (1995)",Animation|Comedy\\n2,Jumanji,Adventure\\n')
        >>> read_feature_table(p, id="movieId", multi_hot={"genres": "|"}).table.column("genres").shape
        (2, 3)
    """
    mh = multi_hot or {}
    groups = dict(numeric) if isinstance(numeric, Mapping) else {n: (n,) for n in numeric}
    wanted = [id, *categorical, *[c for cs in groups.values() for c in cs], *mh]
    table, lines = _read_file(path, wanted, format, delimiter=delimiter, column_types=column_types)
    return _features_from_table(
        table, id=id, categorical=categorical, numeric=numeric, multi_hot=mh, ids=ids, lines=lines
    )
