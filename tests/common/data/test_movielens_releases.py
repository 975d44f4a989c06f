"""load_movielens_release: every MovieLens layout from small generated files; bad lines named; garbage typed."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlsys.common.data import load_movielens_release, movielens_layout
from mlsys.common.errors import CorruptFileError, DatasetNotFoundError, MlsysError, ParseError

RATINGS = [(1, 10, 4, 978300760), (1, 20, 5, 978302109), (2, 10, 3, 978301968), (2, 30, 1, 978300275)]
HALF = [
    (1, 10, 4.5, 1112486027),
    (1, 20, 0.5, 1112484676),
    (2, 10, 3.0, 1112484819),
    (2, 30, 5.0, 1112484727),
]
MOVIES = [
    (10, "GoldenEye (1995)", "Action|Adventure|Thriller"),
    (20, "Café, the Movie (2015)", "Comedy"),
    (30, "Untitled", "(no genres listed)"),
]


def write_1m(root: Path) -> None:
    (root / "ratings.dat").write_text("".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in RATINGS))
    (root / "movies.dat").write_bytes("".join(f"{i}::{t}::{g}\n" for i, t, g in MOVIES).encode("latin-1"))
    (root / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")


def write_10m(root: Path) -> None:
    (root / "ratings.dat").write_text("".join(f"{u}::{i}::{r:g}::{t}\n" for u, i, r, t in HALF))
    (root / "movies.dat").write_text("".join(f"{i}::{t}::{g}\n" for i, t, g in MOVIES), encoding="utf-8")


def write_csv(root: Path) -> None:
    rows = "".join(f"{u},{i},{r:.1f},{t}\n" for u, i, r, t in HALF)
    (root / "ratings.csv").write_text("userId,movieId,rating,timestamp\n" + rows)
    movies = "".join(f'{i},"{t}",{g}\n' if "," in t else f"{i},{t},{g}\n" for i, t, g in MOVIES)
    (root / "movies.csv").write_text("movieId,title,genres\n" + movies, encoding="utf-8")


WRITERS = {"1m": write_1m, "10m": write_10m, "csv": write_csv}


@pytest.mark.parametrize("layout", ["1m", "10m", "csv"])
def test_every_layout(tmp_path: Path, layout: str) -> None:
    WRITERS[layout](tmp_path)
    assert movielens_layout(tmp_path) == layout
    ml = load_movielens_release(tmp_path)
    src = RATINGS if layout == "1m" else HALF
    assert ml.layout == layout and len(ml) == 4
    assert ml.user_id.tolist() == [r[0] for r in src] and ml.item_id.tolist() == [r[1] for r in src]
    assert ml.rating.tolist() == [float(r[2]) for r in src] and ml.rating.dtype == np.float32
    assert ml.timestamp.tolist() == [r[3] for r in src]
    mv = ml.movies
    assert mv.item_id.tolist() == [10, 20, 30] and mv.title[1] == "Café, the Movie (2015)"
    assert mv.year.tolist() == [1995, 2015, 0]
    assert mv.genre_names == ("Action", "Adventure", "Comedy", "Thriller")
    assert mv.genres.tolist() == [[1, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 0]]
    if layout == "1m":
        assert ml.users is not None and ml.users.age.tolist() == [1, 56]
        assert ml.users.occupation.tolist() == ["K-12 student", "self-employed"]
    else:
        assert ml.users is None


def test_100k_through_the_same_entry(tmp_path: Path) -> None:
    genres = [f"g{i}" for i in range(19)]
    (tmp_path / "u.genre").write_text("".join(f"{g}|{i}\n" for i, g in enumerate(genres)))
    flags = "|".join(["0"] * 18 + ["1"])
    (tmp_path / "u.item").write_text(f"1|Toy Story (1995)|01-Jan-1995||http://x|{flags}\n")
    (tmp_path / "u.user").write_text("1|24|M|student|12345\n")
    (tmp_path / "u.data").write_text("1\t1\t5\t100\n")
    ml = load_movielens_release(tmp_path)
    assert ml.layout == "100k" and ml.rating.tolist() == [5.0] and ml.movies.year.tolist() == [1995]


def test_gzip_files_are_read(tmp_path: Path) -> None:
    write_10m(tmp_path)
    data = (tmp_path / "ratings.dat").read_bytes()
    (tmp_path / "ratings.dat").write_bytes(gzip.compress(data))
    assert len(load_movielens_release(tmp_path)) == 4


@pytest.mark.parametrize(
    ("layout", "file", "content", "match", "line"),
    [
        ("1m", "ratings.dat", "1::10::4::5\n1::10::6::5\n", "rating 6.0, expected an integer in 1..5", 2),
        ("10m", "ratings.dat", "1::10::4.5::5\n1::10::4.25::5\n", "expected 0.5..5 in steps of 0.5", 2),
        ("10m", "ratings.dat", "1::10::4::5\n\n1::10::x::5\n", "rating 'x' is not a number", 3),
        ("10m", "ratings.dat", "1::10::4::5\n1::10::4\n", "3 '::'-separated fields", 2),
        ("10m", "ratings.dat", "1::10::4::5\n1::99::4::5\n", "movie id 99 is not in", 2),
        ("1m", "ratings.dat", "1::10::4::5\n7::10::4::5\n", "user id 7 is not in", 2),
        (
            "csv",
            "ratings.csv",
            "userId,movieId,rating,timestamp\n1,10,4.0,5\n1,10.5,4.0,5\n",
            "expected integers",
            3,
        ),
        ("csv", "ratings.csv", "user,movie,rating,timestamp\n1,10,4.0,5\n", "header", 1),
        ("csv", "movies.csv", "movieId,title,genres\n10,A,Drama\n10,B,Drama\n", "duplicate movie id 10", 3),
        ("csv", "movies.csv", 'movieId,title,genres\n10,"A,Drama\n', "2 fields", 2),
        ("1m", "users.dat", "1::F::2::10::48067\n", "age code 2", 1),
        ("1m", "movies.dat", "10::A\n", "expected 3: MovieID::Title::Genres", 1),
    ],
)
def test_bad_lines_are_named(
    tmp_path: Path, layout: str, file: str, content: str, match: str, line: int
) -> None:
    WRITERS[layout](tmp_path)
    (tmp_path / file).write_text(content)
    with pytest.raises(ParseError, match=match) as info:
        load_movielens_release(tmp_path)
    assert info.value.line == line


@pytest.mark.parametrize("layout", ["1m", "10m", "csv"])
@pytest.mark.parametrize("which", ["ratings", "movies"])
def test_garbage_bytes_are_typed(tmp_path: Path, layout: str, which: str) -> None:
    WRITERS[layout](tmp_path)
    name = {"1m": ".dat", "10m": ".dat", "csv": ".csv"}[layout]
    (tmp_path / f"{which}{name}").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x81garbage::\x00")
    with pytest.raises(ParseError):
        load_movielens_release(tmp_path)


def test_truncated_gzip_is_corrupt(tmp_path: Path) -> None:
    write_csv(tmp_path)
    (tmp_path / "ratings.csv").write_bytes(gzip.compress((tmp_path / "ratings.csv").read_bytes())[:20])
    with pytest.raises(CorruptFileError):
        load_movielens_release(tmp_path)


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="no MovieLens ratings file"):
        load_movielens_release(tmp_path)
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n")
    with pytest.raises(DatasetNotFoundError, match=r"movies\.csv"):
        load_movielens_release(tmp_path)
    with pytest.raises(DatasetNotFoundError):
        load_movielens_release(tmp_path / "nowhere")


@given(st.binary(max_size=200), st.sampled_from(["1m", "10m", "csv"]))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_ratings_bytes_never_escape_untyped(tmp_path: Path, payload: bytes, layout: str) -> None:
    for f in tmp_path.iterdir():
        f.unlink()
    WRITERS[layout](tmp_path)
    (tmp_path / ("ratings.csv" if layout == "csv" else "ratings.dat")).write_bytes(payload)
    try:
        load_movielens_release(tmp_path)
    except MlsysError:
        pass
