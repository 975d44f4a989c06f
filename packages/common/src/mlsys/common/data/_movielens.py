"""MovieLens-100K (``ml-100k``): ``u.data``, ``u.item``, ``u.user`` and ``u.genre``."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from mlsys.common.data._io import PathLike, iter_lines
from mlsys.common.errors import DatasetNotFoundError, ParseError

__all__ = ["RATING_COLUMNS", "MovieLens100K", "MovieLensItems", "MovieLensUsers", "load_movielens_100k"]

RATING_COLUMNS: tuple[str, ...] = ("user_id", "item_id", "rating", "timestamp")
"""Column order of ``MovieLens100K.ratings``: user id, item id, rating, Unix timestamp."""
_N_GENRES = 19
_ITEM_FIELDS = 5 + _N_GENRES


@dataclass(frozen=True)
class MovieLensItems:
    """Movies of ``u.item``, one row per movie, in file order.

    Attributes:
        item_id: int64 ``(n_items,)``, raw 1-based ids.
        title: str ``(n_items,)``.
        release_date: ``datetime64[D]`` ``(n_items,)``, ``NaT`` where the file has none.
        imdb_url: str ``(n_items,)`` (empty where missing).
        genres: uint8 multi-hot ``(n_items, 19)`` in the order of :attr:`MovieLens100K.genre_names`.
    """

    item_id: npt.NDArray[np.int64]
    title: npt.NDArray[np.str_]
    release_date: npt.NDArray[np.datetime64]
    imdb_url: npt.NDArray[np.str_]
    genres: npt.NDArray[np.uint8]

    def __len__(self) -> int:
        return int(self.item_id.shape[0])


@dataclass(frozen=True)
class MovieLensUsers:
    """Users of ``u.user``, one row per user, in file order.

    Attributes:
        user_id: int64 ``(n_users,)``, raw 1-based ids.
        age: int64 ``(n_users,)``.
        gender: str ``(n_users,)``, ``"M"`` or ``"F"``.
        occupation: str ``(n_users,)``.
        zip: str ``(n_users,)`` (kept as text: some codes are not numeric).
    """

    user_id: npt.NDArray[np.int64]
    age: npt.NDArray[np.int64]
    gender: npt.NDArray[np.str_]
    occupation: npt.NDArray[np.str_]
    zip: npt.NDArray[np.str_]

    def __len__(self) -> int:
        return int(self.user_id.shape[0])


@dataclass(frozen=True)
class MovieLens100K:
    """The MovieLens-100K data set.

    Attributes:
        ratings: int64 ``(n_ratings, 4)`` with columns ``user_id, item_id, rating, timestamp``
            (:data:`RATING_COLUMNS`), raw 1-based ids, in file order.
        items: :class:`MovieLensItems`.
        users: :class:`MovieLensUsers`.
        genre_names: the 19 genre names in the order of ``items.genres`` columns.
    """

    ratings: npt.NDArray[np.int64]
    items: MovieLensItems
    users: MovieLensUsers
    genre_names: tuple[str, ...]

    @property
    def user_ids(self) -> npt.NDArray[np.int64]:
        """Column ``user_id`` of :attr:`ratings`."""
        return self.ratings[:, 0]

    @property
    def item_ids(self) -> npt.NDArray[np.int64]:
        """Column ``item_id`` of :attr:`ratings`."""
        return self.ratings[:, 1]

    @property
    def rating_values(self) -> npt.NDArray[np.int64]:
        """Column ``rating`` of :attr:`ratings` (1..5)."""
        return self.ratings[:, 2]

    @property
    def timestamps(self) -> npt.NDArray[np.int64]:
        """Column ``timestamp`` of :attr:`ratings` (Unix seconds)."""
        return self.ratings[:, 3]


def _int(token: str, *, field: str, path: Path, line: int) -> int:
    try:
        return int(token)
    except ValueError:
        raise ParseError(f"{field} {token!r} is not an integer", path=path, line=line) from None


def _read_ratings(path: Path) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Return the ratings and, per row, its 1-based line number in the file (for error messages)."""
    rows: list[list[str]] = []
    linenos: list[int] = []
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 4:
            raise ParseError(
                f"{len(fields)} tab-separated fields in {line!r}, expected 4: user_id item_id rating timestamp",
                path=path,
                line=lineno,
            )
        rows.append(fields)
        linenos.append(lineno)
    if not rows:
        raise ParseError("no ratings, expected at least one line", path=path)
    try:
        ratings = np.array(rows, dtype=np.int64).reshape(-1, 4)
    except (ValueError, OverflowError):
        # Slow path only to name the offending line and field.
        for fields, lineno in zip(rows, linenos):
            for token, name in zip(fields, RATING_COLUMNS):
                _int(token, field=name, path=path, line=lineno)
        raise ParseError("integer fields out of the int64 range", path=path) from None
    bad = (ratings[:, 2] < 1) | (ratings[:, 2] > 5)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ParseError(
            f"rating {int(ratings[row, 2])}, expected an integer in 1..5", path=path, line=linenos[row]
        )
    return ratings, np.array(linenos, dtype=np.int64)


def _read_genres(path: Path) -> tuple[str, ...]:
    names: dict[int, str] = {}
    for lineno, line in iter_lines(path, encoding="latin-1"):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) != 2:
            raise ParseError(
                f"{len(fields)} '|'-separated fields in {line!r}, expected 2: name|id", path=path, line=lineno
            )
        gid = _int(fields[1], field="genre id", path=path, line=lineno)
        if gid in names:
            raise ParseError(f"duplicate genre id {gid}", path=path, line=lineno)
        names[gid] = fields[0]
    if sorted(names) != list(range(_N_GENRES)):
        raise ParseError(f"genre ids {sorted(names)}, expected exactly 0..{_N_GENRES - 1}", path=path)
    return tuple(names[i] for i in range(_N_GENRES))


def _parse_date(token: str, *, path: Path, line: int) -> np.datetime64:
    if not token:
        return np.datetime64("NaT", "D")
    try:
        return np.datetime64(_dt.datetime.strptime(token, "%d-%b-%Y").date(), "D")
    except ValueError:
        raise ParseError(
            f"release date {token!r}, expected DD-Mon-YYYY (e.g. 01-Jan-1995)", path=path, line=line
        ) from None


def _read_items(path: Path) -> MovieLensItems:
    ids: list[int] = []
    titles: list[str] = []
    dates: list[np.datetime64] = []
    urls: list[str] = []
    genres: list[list[int]] = []
    first: dict[int, int] = {}
    for lineno, line in iter_lines(path, encoding="latin-1"):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) != _ITEM_FIELDS:
            raise ParseError(
                f"{len(fields)} '|'-separated fields, expected {_ITEM_FIELDS}: "
                f"id|title|release_date|video_release_date|url and {_N_GENRES} genre flags",
                path=path,
                line=lineno,
            )
        item = _int(fields[0], field="item id", path=path, line=lineno)
        if item in first:
            raise ParseError(
                f"duplicate item id {item} (first on line {first[item]})", path=path, line=lineno
            )
        first[item] = lineno
        flags = fields[5:]
        if any(f not in ("0", "1") for f in flags):
            raise ParseError(
                f"genre flags {flags}, expected {_N_GENRES} values of 0 or 1", path=path, line=lineno
            )
        ids.append(item)
        titles.append(fields[1])
        dates.append(_parse_date(fields[2], path=path, line=lineno))
        urls.append(fields[4])
        genres.append([int(f) for f in flags])
    if not ids:
        raise ParseError("no items, expected at least one line", path=path)
    return MovieLensItems(
        item_id=np.array(ids, dtype=np.int64),
        title=np.array(titles, dtype=np.str_),
        release_date=np.array(dates, dtype="datetime64[D]"),
        imdb_url=np.array(urls, dtype=np.str_),
        genres=np.array(genres, dtype=np.uint8),
    )


def _read_users(path: Path) -> MovieLensUsers:
    ids: list[int] = []
    ages: list[int] = []
    genders: list[str] = []
    occupations: list[str] = []
    zips: list[str] = []
    first: dict[int, int] = {}
    for lineno, line in iter_lines(path, encoding="latin-1"):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) != 5:
            raise ParseError(
                f"{len(fields)} '|'-separated fields in {line!r}, expected 5: id|age|gender|occupation|zip",
                path=path,
                line=lineno,
            )
        user = _int(fields[0], field="user id", path=path, line=lineno)
        if user in first:
            raise ParseError(
                f"duplicate user id {user} (first on line {first[user]})", path=path, line=lineno
            )
        first[user] = lineno
        age = _int(fields[1], field="age", path=path, line=lineno)
        if age < 0:
            raise ParseError(f"age {age}, expected a non-negative integer", path=path, line=lineno)
        if fields[2] not in ("M", "F"):
            raise ParseError(f"gender {fields[2]!r}, expected 'M' or 'F'", path=path, line=lineno)
        ids.append(user)
        ages.append(age)
        genders.append(fields[2])
        occupations.append(fields[3])
        zips.append(fields[4])
    if not ids:
        raise ParseError("no users, expected at least one line", path=path)
    return MovieLensUsers(
        user_id=np.array(ids, dtype=np.int64),
        age=np.array(ages, dtype=np.int64),
        gender=np.array(genders, dtype=np.str_),
        occupation=np.array(occupations, dtype=np.str_),
        zip=np.array(zips, dtype=np.str_),
    )


def _check_known(
    ratings: npt.NDArray[np.int64],
    linenos: npt.NDArray[np.int64],
    col: int,
    known: npt.NDArray[np.int64],
    *,
    path: Path,
    what: str,
    where: Path,
) -> None:
    missing = ~np.isin(ratings[:, col], known)
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise ParseError(
            f"{what} {int(ratings[row, col])} is not in {where}", path=path, line=int(linenos[row])
        )


def load_movielens_100k(root: PathLike) -> MovieLens100K:
    """Load MovieLens-100K from its ``ml-100k`` folder (``u.data``, ``u.item``, ``u.user``, ``u.genre``).

    Every file is validated line by line (field counts, integer fields, ratings in 1..5, 19 genre
    flags of 0/1, unique user and item ids) and every rating must name a known user and item;
    a violation raises :class:`~mlsys.common.errors.ParseError` with the file and line. ``u.item``
    and ``u.user`` are read as latin-1, as published.

    Example:
        >>> from mlsys.common.data import find_dataset
        >>> ml = load_movielens_100k(find_dataset("movielens-100k"))  # doctest: +SKIP
        >>> ml.ratings.shape, len(ml.users), len(ml.items), ml.items.genres.shape  # doctest: +SKIP
        ((100000, 4), 943, 1682, (1682, 19))
    """
    base = Path(root)
    if not base.is_dir():
        raise DatasetNotFoundError(f"MovieLens-100K folder not found: {base}")
    paths = {name: base / name for name in ("u.data", "u.item", "u.user", "u.genre")}
    for name, p in paths.items():
        if not p.is_file():
            raise DatasetNotFoundError(f"MovieLens-100K file {name} not found at {p}")
    genre_names = _read_genres(paths["u.genre"])
    items = _read_items(paths["u.item"])
    users = _read_users(paths["u.user"])
    ratings, linenos = _read_ratings(paths["u.data"])
    _check_known(
        ratings, linenos, 0, users.user_id, path=paths["u.data"], what="user id", where=paths["u.user"]
    )
    _check_known(
        ratings, linenos, 1, items.item_id, path=paths["u.data"], what="item id", where=paths["u.item"]
    )
    return MovieLens100K(ratings=ratings, items=items, users=users, genre_names=genre_names)
