"""Loaders from data frames, CSV and Parquet: exact round trips, id codes, bad rows named, garbage refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlsys.common.errors import CorruptFileError, DuplicateIdError, InvalidInputError, ParseError
from mlsys.recsys import (
    IdCodes,
    feature_table_from_frame,
    interactions_from_frame,
    read_feature_table,
    read_interactions,
)

pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

_ids_int = st.integers(-(2**40), 2**40)
_ids_str = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=6)


@st.composite
def _frames(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(1, 25))
    uid = draw(st.sampled_from([_ids_int, _ids_str]))
    iid = draw(st.sampled_from([_ids_int, _ids_str]))
    users = draw(st.lists(uid, min_size=n, max_size=n))
    items = draw(st.lists(iid, min_size=n, max_size=n))
    ts = draw(st.lists(st.integers(0, 2**40), min_size=n, max_size=n))
    w = draw(st.lists(st.floats(1e-3, 1e3, allow_nan=False, width=64), min_size=n, max_size=n))
    return pd.DataFrame({"u": users, "i": items, "t": np.array(ts, dtype=np.int64), "w": w})


@given(_frames(), st.sampled_from(["auto", "dense"]))
@settings(max_examples=60, deadline=None)
def test_pandas_round_trip_is_exact(df: pd.DataFrame, ids: str) -> None:
    t = interactions_from_frame(df, user="u", item="i", timestamp="t", weight="w", ids=ids)  # type: ignore[arg-type]
    back = t.to_pandas()
    pd.testing.assert_frame_equal(back, df)
    x = t.interactions
    assert len(x) == len(df) and x.users.dtype == np.int64
    assert (t.users.decode(x.users) == df["u"].to_numpy()).all()
    assert (x.timestamps == df["t"].to_numpy()).all()
    if ids == "dense" or not pd.api.types.is_integer_dtype(df["u"]):
        assert x.users.min() >= 0 and x.users.max() < len(t.users)  # dense positions
    else:
        assert (x.users == df["u"].to_numpy()).all()  # integer ids kept as they are


@given(_frames())
@settings(max_examples=30, deadline=None)
def test_polars_round_trip_is_exact(df: pd.DataFrame) -> None:
    pl = pytest.importorskip("polars")
    frame = pl.from_pandas(df)
    t = interactions_from_frame(frame, user="u", item="i", timestamp="t", weight="w")
    assert t.to_polars().equals(frame)
    same = interactions_from_frame(df, user="u", item="i", timestamp="t", weight="w").interactions
    np.testing.assert_array_equal(t.interactions.users, same.users)
    np.testing.assert_array_equal(t.interactions.items, same.items)


def test_datetimes_categoricals_and_big_unsigned_ids_round_trip() -> None:
    df = pd.DataFrame(
        {
            "user": pd.Categorical(["b", "a", "b"]),
            "item": np.array([2**63 + 5, 7, 2**64 - 1], dtype=np.uint64),
            "when": pd.to_datetime(
                ["2020-01-01 00:00:01", "1999-12-31 00:00:00", "2021-06-01 12:00:00"]
            ).tz_localize("UTC"),
        }
    )
    t = interactions_from_frame(df, user="user", item="item", timestamp="when")
    assert t.items.dense and t.interactions.items.tolist() == [1, 0, 2]  # uint64 beyond int64 -> codes
    assert t.interactions.timestamps[0] == 1577836801
    pd.testing.assert_frame_equal(t.to_pandas(), df)


def test_unsupported_types_and_arguments() -> None:
    df = pd.DataFrame({"u": [1.5, 2.0], "i": [1, 2], "w": ["a", "b"]})
    with pytest.raises(InvalidInputError, match="expected integer or string ids"):
        interactions_from_frame(df, user="u", item="i")
    with pytest.raises(InvalidInputError, match="no column 'x'"):
        interactions_from_frame(df, user="x", item="i")
    with pytest.raises(InvalidInputError, match="weight column 'w'"):
        interactions_from_frame(df.assign(u=[1, 2]), user="u", item="i", weight="w")
    with pytest.raises(InvalidInputError, match="two roles"):
        interactions_from_frame(df, user="i", item="i")
    with pytest.raises(InvalidInputError, match="DataFrame"):
        interactions_from_frame({"u": [1]}, user="u", item="i")


@pytest.mark.parametrize(
    ("column", "value", "match"),
    [
        ("u", None, "user column 'u' is missing a value at row 2"),
        ("i", None, "item column 'i' is missing a value at row 2"),
        ("t", np.nan, "timestamp column 't' is missing a value at row 2"),
        ("t", 1.5, "timestamp column 't' has 1.5 at row 2"),
        ("w", -1.0, "weight column 'w' has -1.0 at row 2"),
        ("w", np.inf, "weight column 'w' has inf at row 2"),
        ("u", "", "empty id at row 2"),
    ],
)
def test_bad_rows_are_named(column: str, value: object, match: str) -> None:
    df = pd.DataFrame({"u": ["a", "b", "c", "d"], "i": [1, 2, 3, 4], "t": [1.0, 2.0, 3.0, 4.0], "w": 1.0})
    df[column] = df[column].astype(object)
    df.loc[2, column] = value
    with pytest.raises(InvalidInputError, match=match):
        interactions_from_frame(df, user="u", item="i", timestamp="t", weight="w")


def test_duplicate_column_names_refused(tmp_path: Path) -> None:
    df = pd.DataFrame([[1, 2, 3]], columns=["u", "i", "u"])
    with pytest.raises(InvalidInputError, match="duplicate column name 'u'"):
        interactions_from_frame(df, user="u", item="i")
    p = tmp_path / "dup.csv"
    p.write_text("u,i,u\n1,2,3\n")
    with pytest.raises(InvalidInputError, match="duplicate column name 'u'"):
        read_interactions(p, user="u", item="i")


def test_csv_and_parquet_give_the_frame(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "userId": [3, 1, 3],
            "movieId": ["m1", "m2", "m1"],
            "rating": [4.5, 3.0, 5.0],
            "timestamp": [9, 8, 7],
        }
    )
    csv = tmp_path / "r.csv"
    df.to_csv(csv, index=False)
    parquet = tmp_path / "r.parquet"
    df.to_parquet(parquet, index=False)
    kw = {"user": "userId", "item": "movieId", "timestamp": "timestamp", "weight": "rating"}
    ref = interactions_from_frame(df, **kw)  # type: ignore[arg-type]
    for path in (csv, parquet):
        t = read_interactions(path, **kw)  # type: ignore[arg-type]
        for a in ("users", "items", "timestamps", "weights"):
            np.testing.assert_array_equal(getattr(t.interactions, a), getattr(ref.interactions, a))
        assert t.to_pandas()[list(df.columns)].equals(df) or path == csv  # CSV has no dtype metadata
    # numeric-looking ids kept as strings on request
    t = read_interactions(csv, **kw, column_types={"userId": pa.string()})  # type: ignore[arg-type]
    assert t.users.dense and t.users.labels.tolist() == ["1", "3"]  # type: ignore[union-attr]


def test_csv_bad_row_names_row_and_line(tmp_path: Path) -> None:
    p = tmp_path / "r.csv"
    p.write_text("user,item,timestamp\n1,10,100\n\n2,,200\n")
    with pytest.raises(InvalidInputError, match=r"row 1 \(line 4 of the file\)"):
        read_interactions(p, timestamp="timestamp")


@pytest.mark.parametrize(
    "payload",
    [b"\xff\xfe\x00\x81garbage\x00\n\x80\x90", b"user,item\n1,2,3,4\n\x00\x00", b""],
    ids=["binary", "ragged", "empty"],
)
def test_garbage_csv_is_parse_error(tmp_path: Path, payload: bytes) -> None:
    p = tmp_path / "g.csv"
    p.write_bytes(payload)
    with pytest.raises(ParseError):
        read_interactions(p)


def test_garbage_parquet_is_corrupt_file_error(tmp_path: Path) -> None:
    p = tmp_path / "g.parquet"
    p.write_bytes(b"PAR1" + b"\x00garbage" * 20)
    with pytest.raises(CorruptFileError):
        read_interactions(p)
    with pytest.raises(CorruptFileError):
        read_feature_table(p, id="movieId", categorical=["x"])


@given(st.binary(max_size=300))
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_bytes_csv_typed(tmp_path: Path, payload: bytes) -> None:
    p = tmp_path / "r.csv"
    p.write_bytes(payload)
    try:
        read_interactions(p)
    except (ParseError, InvalidInputError):
        pass


def test_feature_table_from_frame_and_file(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "movieId": ["b", "a", "c"],
            "genres": ["Drama|War", "Comedy", None],
            "decade": [1990, 1980, 1990],
            "x": [0.5, 1.0, 2.0],
            "y": [1, 2, 3],
        }
    )
    f = feature_table_from_frame(
        df, id="movieId", multi_hot={"genres": "|"}, categorical=["decade"], numeric={"xy": ["x", "y"]}
    )
    assert f.ids.labels.tolist() == ["a", "b", "c"]  # type: ignore[union-attr]
    assert f.table.ids.tolist() == [1, 0, 2]  # codes in row order
    assert f.vocabularies["genres"].tolist() == ["Comedy", "Drama", "War"]
    assert f.table.column("genres").tolist() == [[0, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert f.table.column("decade").tolist() == [1, 0, 1] and f.vocabularies["decade"].tolist() == [
        1980,
        1990,
    ]
    np.testing.assert_array_equal(f.table.column("xy"), np.array([[0.5, 1], [1, 2], [2, 3]], np.float32))
    p = tmp_path / "movies.csv"
    df.to_csv(p, index=False)
    g = read_feature_table(p, id="movieId", multi_hot={"genres": "|"}, categorical=["decade"], numeric=["x"])
    np.testing.assert_array_equal(g.table.column("genres"), f.table.column("genres"))
    with pytest.raises(DuplicateIdError, match=r"appears at row 0 .*and row 2"):
        feature_table_from_frame(df.assign(movieId=["a", "b", "a"]), id="movieId", categorical=["decade"])
    with pytest.raises(InvalidInputError, match="missing a value at row 1"):
        feature_table_from_frame(df.assign(x=[1.0, np.nan, 2.0]), id="movieId", numeric=["x"])
    with pytest.raises(InvalidInputError, match="no feature columns"):
        feature_table_from_frame(df, id="movieId")


def test_id_codes() -> None:
    c = IdCodes.fit(np.array(["x", "a"], dtype=object))
    assert c.encode(np.array(["a", "x"], dtype=object)).tolist() == [0, 1]
    with pytest.raises(InvalidInputError, match="unknown id labels"):
        c.encode(np.array(["zz"], dtype=object))
    with pytest.raises(InvalidInputError):
        c.decode([5])
    assert IdCodes.fit(np.array([5, 9])).labels is None
    assert IdCodes.fit(np.array([5, 9]), mode="dense").encode([9]).tolist() == [1]
    with pytest.raises(InvalidInputError):
        IdCodes.fit(np.array([1]), mode="sparse")  # type: ignore[arg-type]
