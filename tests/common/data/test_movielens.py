from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlsys.common.data import RATING_COLUMNS, load_movielens_100k
from mlsys.common.errors import DatasetNotFoundError, ParseError

GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
]  # fmt: skip


def _flags(*on: int) -> str:
    return "|".join("1" if i in on else "0" for i in range(19))


def _make(root: Path, *, data: str | None = None, item: bytes | None = None, user: str | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "u.genre").write_text("".join(f"{g}|{i}\n" for i, g in enumerate(GENRES)) + "\n")
    default_item = (
        f"1|Toy Story (1995)|01-Jan-1995||http://x/1|{_flags(3, 4, 5)}\n"
        f"2|Cité des enfants perdus, La (1995)|01-Jan-1995||http://x/2|{_flags(1)}\n"
        f"3|unknown||||{_flags(0)}\n"
    ).encode("latin-1")
    (root / "u.item").write_bytes(default_item if item is None else item)
    (root / "u.user").write_text(user or "1|24|M|technician|85711\n2|53|F|other|E2A4J\n")
    (root / "u.data").write_text(data or "1\t1\t5\t874965758\n2\t3\t1\t876893171\n\n1\t2\t3\t878542960\n")
    return root


def test_load_small(tmp_path: Path) -> None:
    ml = load_movielens_100k(_make(tmp_path))
    assert RATING_COLUMNS == ("user_id", "item_id", "rating", "timestamp")
    assert ml.ratings.dtype == np.int64 and ml.ratings.shape == (3, 4)
    np.testing.assert_array_equal(ml.ratings[:, 0], [1, 2, 1])
    np.testing.assert_array_equal(ml.item_ids, [1, 3, 2])
    np.testing.assert_array_equal(ml.rating_values, [5, 1, 3])
    np.testing.assert_array_equal(ml.timestamps, [874965758, 876893171, 878542960])
    assert ml.genre_names == tuple(GENRES)
    assert ml.items.genres.dtype == np.uint8 and ml.items.genres.shape == (3, 19)
    np.testing.assert_array_equal(np.flatnonzero(ml.items.genres[0]), [3, 4, 5])
    assert ml.items.title[1] == "Cité des enfants perdus, La (1995)"  # latin-1 decoded
    assert ml.items.release_date[0] == np.datetime64("1995-01-01")
    assert np.isnat(ml.items.release_date[2])
    assert ml.users.zip.tolist() == ["85711", "E2A4J"]
    assert ml.users.gender.tolist() == ["M", "F"] and ml.users.age.tolist() == [24, 53]
    assert len(ml.users) == 2 and len(ml.items) == 3


@pytest.mark.parametrize(
    ("kwargs", "file", "line", "match"),
    [
        ({"data": "1\t1\t5\t1\n1\t2\t3\n"}, "u.data", 2, "3 tab-separated fields"),
        ({"data": "1\t1\t5\t1\n\n1\tx\t3\t1\n"}, "u.data", 3, "item_id 'x' is not an integer"),
        ({"data": "1\t1\t5\t1\n1\t2\t6\t1\n"}, "u.data", 2, "rating 6, expected an integer in 1..5"),
        ({"data": "1\t1\t5\t1\n\n7\t2\t3\t1\n"}, "u.data", 3, "user id 7 is not in"),
        ({"data": "1\t1\t5\t1\n1\t9\t3\t1\n"}, "u.data", 2, "item id 9 is not in"),
        ({"item": f"1|T|01-Jan-1995||u|{_flags()}|0\n".encode()}, "u.item", 1, "25 '\\|'-separated fields"),
        (
            {"item": f"1|T|01-Jan-1995||u|{_flags()}\n1|T|||u|{_flags()}\n".encode()},
            "u.item",
            2,
            "duplicate item id 1",
        ),
        ({"item": f"1|T|1995/01/01||u|{_flags()}\n".encode()}, "u.item", 1, "release date"),
        ({"item": f"1|T|||u|{_flags()[:-1]}2\n".encode()}, "u.item", 1, "genre flags"),
        ({"user": "1|24|M|x|1\n2|old|F|x|2\n"}, "u.user", 2, "age 'old'"),
        ({"user": "1|24|X|x|1\n"}, "u.user", 1, "gender 'X'"),
        ({"user": "1|24|M|x\n"}, "u.user", 1, "4 '\\|'-separated fields"),
    ],
)
def test_malformed(tmp_path: Path, kwargs: dict, file: str, line: int, match: str) -> None:  # type: ignore[type-arg]
    root = _make(tmp_path, **kwargs)
    with pytest.raises(ParseError, match=match) as info:
        load_movielens_100k(root)
    assert info.value.line == line
    assert str(info.value).startswith(f"{root / file}:{line}: ")


def test_bad_genre_file_and_missing_files(tmp_path: Path) -> None:
    root = _make(tmp_path / "a")
    (root / "u.genre").write_text("unknown|0\nAction|2\n")
    with pytest.raises(ParseError, match="genre ids"):
        load_movielens_100k(root)
    root = _make(tmp_path / "b")
    (root / "u.user").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"u\.user"):
        load_movielens_100k(root)


def test_real_movielens(dataset) -> None:  # type: ignore[no-untyped-def]
    ml = load_movielens_100k(dataset("movielens-100k"))
    assert ml.ratings.shape == (100000, 4)
    assert len(ml.users) == 943 and len(ml.items) == 1682
    assert len(np.unique(ml.user_ids)) == 943 and len(np.unique(ml.item_ids)) == 1682
    # Figures from the data set's SOURCE.md.
    assert np.bincount(ml.rating_values, minlength=6)[1:].tolist() == [6110, 11370, 27145, 34174, 21201]
    assert ml.timestamps.min() == 874724710 and ml.timestamps.max() == 893286638
    assert np.bincount(ml.user_ids)[1:].min() >= 20
    assert (
        ml.items.genres.shape == (1682, 19)
        and ml.genre_names[0] == "unknown"
        and ml.genre_names[-1] == "Western"
    )
    assert ml.items.title[0] == "Toy Story (1995)"
    np.testing.assert_array_equal(ml.items.item_id, np.arange(1, 1683))
    np.testing.assert_array_equal(ml.users.user_id, np.arange(1, 944))
