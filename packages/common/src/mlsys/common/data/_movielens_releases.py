"""Every MovieLens release layout: 100K ``u.data``, 1M / 10M ``::``-separated, 20M / 25M / 32M / latest CSV.

:func:`load_movielens_release` looks at the folder, picks the layout and returns one
:class:`MovieLensRelease` shape for all of them: ratings as arrays, movies with title, release
year and multi-hot genres, and users where the release has a user file (100K, 1M).

=============  ===========================================  =======================  ==========
layout         files                                        ratings                  encoding
=============  ===========================================  =======================  ==========
``"100k"``     ``u.data`` (tab), ``u.item``, ``u.user``     integers 1-5             latin-1
``"1m"``       ``ratings.dat``, ``movies.dat``, ``users.dat``  integers 1-5 (``::``)  latin-1
``"10m"``      ``ratings.dat``, ``movies.dat`` (no users)   halves 0.5-5 (``::``)    UTF-8
``"csv"``      ``ratings.csv``, ``movies.csv`` (header)     halves 0.5-5             UTF-8
=============  ===========================================  =======================  ==========

Every line is validated (field counts, integer ids and timestamps, ratings on the release's
scale, every rating's movie and user known); a violation raises
:class:`~mlsys.common.errors.ParseError` naming the file and line. Bytes that are not text of the
release's encoding are a ``ParseError`` too (files that are not UTF-8 fall back to latin-1 only for
the ``::`` movie file of 1M, which is published in latin-1).
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from mlsys.common.data._io import PathLike, read_bytes
from mlsys.common.data._movielens import MovieLensUsers, load_movielens_100k
from mlsys.common.errors import DatasetNotFoundError, InvalidInputError, ParseError

__all__ = [
    "ML1M_OCCUPATIONS",
    "MovieLensMovies",
    "MovieLensRelease",
    "load_movielens_release",
    "movielens_layout",
]

#: Occupation names of MovieLens-1M's ``users.dat`` codes 0-20 (from the release's README).
ML1M_OCCUPATIONS: tuple[str, ...] = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student", "customer service",
    "doctor/health care", "executive/managerial", "farmer", "homemaker", "K-12 student", "lawyer",
    "programmer", "retired", "sales/marketing", "scientist", "self-employed", "technician/engineer",
    "tradesman/craftsman", "unemployed", "writer",
)  # fmt: skip
"""MovieLens-1M occupation names, indexed by the occupation code of ``users.dat``."""
_ML1M_AGES = (1, 18, 25, 35, 45, 50, 56)
_NO_GENRES = "(no genres listed)"
_YEAR = re.compile(r"\((\d{4})\)\s*$")


@dataclass(frozen=True)
class MovieLensMovies:
    """Movies of a release, one row per movie, in file order.

    Attributes:
        item_id: int64 ``(n,)`` raw movie ids.
        title: str ``(n,)``.
        year: int64 ``(n,)`` release year (100K: from the release date; others: the ``(YYYY)`` at
            the end of the title), 0 where unknown.
        genres: uint8 multi-hot ``(n, len(genre_names))``.
        genre_names: genre names in column order (the release's own list; ``(no genres listed)``
            is an empty row, not a genre).
    """

    item_id: npt.NDArray[np.int64]
    title: npt.NDArray[np.str_]
    year: npt.NDArray[np.int64]
    genres: npt.NDArray[np.uint8]
    genre_names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.item_id.shape[0])


@dataclass(frozen=True)
class MovieLensRelease:
    """Any MovieLens release in one shape.

    Attributes:
        layout: ``"100k"``, ``"1m"``, ``"10m"`` or ``"csv"`` (20M, 25M, 32M, latest).
        user_id: int64 ``(n_ratings,)``.
        item_id: int64 ``(n_ratings,)``.
        rating: float32 ``(n_ratings,)`` (1-5, or 0.5-5 in halves).
        timestamp: int64 ``(n_ratings,)`` Unix seconds.
        movies: :class:`MovieLensMovies`.
        users: :class:`~mlsys.common.data.MovieLensUsers` (100K, 1M; 1M ages are its age-group
            codes 1/18/25/35/45/50/56) or ``None``.
    """

    layout: str
    user_id: npt.NDArray[np.int64]
    item_id: npt.NDArray[np.int64]
    rating: npt.NDArray[np.float32]
    timestamp: npt.NDArray[np.int64]
    movies: MovieLensMovies
    users: MovieLensUsers | None

    def __len__(self) -> int:
        return int(self.user_id.shape[0])


def movielens_layout(root: PathLike) -> str:
    """The layout of a MovieLens folder: ``"100k"``, ``"1m"``, ``"10m"`` or ``"csv"``.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "ratings.csv").write_text("userId,movieId,rating,timestamp\\n")
        >>> movielens_layout(d)
        'csv'
    """
    if not isinstance(root, (str, os.PathLike)) or "\x00" in str(os.fspath(root)):
        raise InvalidInputError(f"root must be a folder path (str or os.PathLike), got {root!r:.80}")
    base = Path(root)
    if not base.is_dir():
        raise DatasetNotFoundError(f"MovieLens folder not found: {base}")
    if (base / "u.data").is_file():
        return "100k"
    if (base / "ratings.dat").is_file():
        return "1m" if (base / "users.dat").is_file() else "10m"
    if (base / "ratings.csv").is_file():
        return "csv"
    raise DatasetNotFoundError(
        f"{base} holds no MovieLens ratings file; expected u.data (100K), ratings.dat (1M, 10M) or "
        "ratings.csv (20M, 25M, 32M, latest)"
    )


def _text(path: Path, *, latin1_fallback: bool) -> str:
    raw = read_bytes(path, what="MovieLens file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        if latin1_fallback:
            return raw.decode("latin-1")
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ParseError(
            f"bytes {raw[exc.start : exc.end]!r} are not valid UTF-8; expected UTF-8 text",
            path=path,
            line=line,
        ) from exc


def _ratings(path: Path, *, sep: str, header: bool, halves: bool) -> tuple[np.ndarray, _Lines]:
    """``(float64 (n, 4) user, item, rating, timestamp; row -> 1-based file line)``.

    numpy's C parser reads the whole file (25M ratings in seconds); only when it refuses does a
    line-by-line pass run, to name the offending line and field.
    """
    text = _text(path, latin1_fallback=False)
    if header:
        first, _, body = text.partition("\n")
        head = [h.strip() for h in first.lstrip("\ufeff").split(sep)]
        if head != ["userId", "movieId", "rating", "timestamp"]:
            raise ParseError(
                f"header {first[:80]!r}, expected userId,movieId,rating,timestamp", path=path, line=1
            )
    else:
        body = text
    offset = 1 if header else 0
    delim = ":" if sep == "::" else sep
    if not body.strip():
        raise ParseError("no ratings, expected at least one line", path=path)
    try:
        if sep == "::" and ":::" in body:
            raise ValueError("':::' in a '::'-separated file")
        arr = np.loadtxt(
            io.StringIO(body.replace("::", ":") if sep == "::" else body),
            delimiter=delim,
            dtype=np.float64,
            ndmin=2,
            comments=None,
        )
        if arr.shape[1] != 4:
            raise ValueError(f"{arr.shape[1]} columns")
    except ValueError:
        _name_bad_line(body, sep, offset, path)
        raise ParseError(
            f"unreadable ratings, expected 4 {sep!r}-separated numbers per line", path=path
        ) from None
    if arr.shape[0] == 0:
        raise ParseError("no ratings, expected at least one line", path=path)
    lines = _Lines(body, offset)
    ints = arr[:, [0, 1, 3]]
    bad = (
        ~np.isfinite(ints).all(axis=1)
        | (ints != np.round(ints)).any(axis=1)
        | (np.abs(ints) > 2.0**53).any(axis=1)
    )
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise ParseError(
            f"ids and timestamp {arr[r, 0]!r}, {arr[r, 1]!r}, {arr[r, 3]!r}, expected integers",
            path=path,
            line=lines(r),
        )
    rating = arr[:, 2]
    if halves:
        ok = (rating >= 0.5) & (rating <= 5.0) & (rating * 2 == np.round(rating * 2))
        scale = "0.5..5 in steps of 0.5"
    else:
        ok = (rating >= 1) & (rating <= 5) & (rating == np.round(rating))
        scale = "an integer in 1..5"
    if not ok.all():
        r = int(np.flatnonzero(~ok)[0])
        raise ParseError(f"rating {float(rating[r])!r}, expected {scale}", path=path, line=lines(r))
    return arr, lines


class _Lines:
    """Row index -> 1-based file line, computed only when an error needs it (blank lines skipped)."""

    def __init__(self, body: str, offset: int) -> None:
        self._body, self._offset = body, offset

    def __call__(self, row: int) -> int:
        seen = -1
        for i, line in enumerate(self._body.split("\n")):
            if line.strip():
                seen += 1
                if seen == row:
                    return i + 1 + self._offset
        return 0


def _name_bad_line(body: str, sep: str, offset: int, path: Path) -> None:
    """Raise a ParseError naming the first line numpy could not read (returns if none is found)."""
    for i, line in enumerate(body.split("\n")):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        lineno = i + 1 + offset
        fields = line.split(sep)
        if len(fields) != 4:
            raise ParseError(
                f"{len(fields)} {sep!r}-separated fields in {line[:80]!r}, expected 4: user, movie, rating, timestamp",
                path=path,
                line=lineno,
            )
        for token, name in zip(fields, ("user id", "movie id", "rating", "timestamp")):
            try:
                float(token)
            except ValueError:
                raise ParseError(f"{name} {token[:40]!r} is not a number", path=path, line=lineno) from None


def _year(title: str) -> int:
    m = _YEAR.search(title)
    return int(m.group(1)) if m else 0


def _movies_table(path: Path, records: list[tuple[int, int, str, str]]) -> MovieLensMovies:
    """From ``(line, id, title, genres "A|B")`` records: check ids unique, build the genre matrix."""
    if not records:
        raise ParseError("no movies, expected at least one line", path=path)
    first: dict[int, int] = {}
    for lineno, mid, _, _ in records:
        if mid in first:
            raise ParseError(f"duplicate movie id {mid} (first on line {first[mid]})", path=path, line=lineno)
        first[mid] = lineno
    sets = [{g for g in genres.split("|") if g and g != _NO_GENRES} for *_, genres in records]
    names = tuple(sorted(set().union(*sets)))
    col = {g: j for j, g in enumerate(names)}
    genres_m = np.zeros((len(records), len(names)), dtype=np.uint8)
    for r, s in enumerate(sets):
        for g in s:
            genres_m[r, col[g]] = 1
    titles = [t for _, _, t, _ in records]
    return MovieLensMovies(
        item_id=np.array([m for _, m, _, _ in records], dtype=np.int64),
        title=np.array(titles, dtype=np.str_),
        year=np.array([_year(t) for t in titles], dtype=np.int64),
        genres=genres_m,
        genre_names=names,
    )


def _int_field(token: str, what: str, path: Path, line: int) -> int:
    try:
        return int(token)
    except ValueError:
        raise ParseError(f"{what} {token!r} is not an integer", path=path, line=line) from None


def _movies_dat(path: Path, *, latin1: bool) -> MovieLensMovies:
    text = _text(path, latin1_fallback=latin1)
    records = []
    for i, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        fields = line.split("::")
        if len(fields) != 3:
            raise ParseError(
                f"{len(fields)} '::'-separated fields in {line[:80]!r}, expected 3: MovieID::Title::Genres",
                path=path,
                line=i,
            )
        records.append((i, _int_field(fields[0], "movie id", path, i), fields[1], fields[2]))
    return _movies_table(path, records)


def _movies_csv(path: Path) -> MovieLensMovies:
    text = _text(path, latin1_fallback=False)
    reader = csv.reader(io.StringIO(text, newline=""))
    records = []
    try:
        header = next(reader, None)
        if header is None or [h.strip().lstrip("\ufeff") for h in header] != ["movieId", "title", "genres"]:
            raise ParseError(f"header {header!r}, expected movieId,title,genres", path=path, line=1)
        for row in reader:
            line = reader.line_num
            if not row or not "".join(row).strip():
                continue
            if len(row) != 3:
                raise ParseError(
                    f"{len(row)} fields in {row!r:.80}, expected 3: movieId,title,genres",
                    path=path,
                    line=line,
                )
            records.append((line, _int_field(row[0], "movie id", path, line), row[1], row[2]))
    except csv.Error as exc:
        raise ParseError(f"malformed CSV ({exc})", path=path, line=reader.line_num) from exc
    return _movies_table(path, records)


def _users_dat(path: Path) -> MovieLensUsers:
    text = _text(path, latin1_fallback=True)
    ids, ages, genders, occs, zips = [], [], [], [], []
    first: dict[int, int] = {}
    for i, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        f = line.split("::")
        if len(f) != 5:
            raise ParseError(
                f"{len(f)} '::'-separated fields in {line[:80]!r}, expected 5: UserID::Gender::Age::Occupation::Zip",
                path=path,
                line=i,
            )
        uid = _int_field(f[0], "user id", path, i)
        if uid in first:
            raise ParseError(f"duplicate user id {uid} (first on line {first[uid]})", path=path, line=i)
        first[uid] = i
        if f[1] not in ("M", "F"):
            raise ParseError(f"gender {f[1]!r}, expected 'M' or 'F'", path=path, line=i)
        age = _int_field(f[2], "age", path, i)
        if age not in _ML1M_AGES:
            raise ParseError(f"age code {age}, expected one of {_ML1M_AGES}", path=path, line=i)
        occ = _int_field(f[3], "occupation", path, i)
        if not 0 <= occ < len(ML1M_OCCUPATIONS):
            raise ParseError(
                f"occupation code {occ}, expected 0..{len(ML1M_OCCUPATIONS) - 1}", path=path, line=i
            )
        ids.append(uid)
        ages.append(age)
        genders.append(f[1])
        occs.append(ML1M_OCCUPATIONS[occ])
        zips.append(f[4])
    if not ids:
        raise ParseError("no users, expected at least one line", path=path)
    return MovieLensUsers(
        user_id=np.array(ids, dtype=np.int64),
        age=np.array(ages, dtype=np.int64),
        gender=np.array(genders, dtype=np.str_),
        occupation=np.array(occs, dtype=np.str_),
        zip=np.array(zips, dtype=np.str_),
    )


def _check_known(
    values: np.ndarray, known: np.ndarray, lines: _Lines, *, what: str, path: Path, where: Path
) -> None:
    missing = ~np.isin(values, known)
    if missing.any():
        r = int(np.flatnonzero(missing)[0])
        raise ParseError(f"{what} {int(values[r])} is not in {where}", path=path, line=lines(r))


def load_movielens_release(root: PathLike) -> MovieLensRelease:
    """Load any MovieLens release from its folder (layout from :func:`movielens_layout`).

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "ratings.dat").write_text("1::10::4.5::978300760\\n")
        >>> _ = (d / "movies.dat").write_text("10::GoldenEye (1995)::Action|Thriller\\n")
        >>> ml = load_movielens_release(d)
        >>> ml.layout, ml.rating.tolist(), ml.movies.year.tolist(), ml.movies.genre_names
        ('10m', [4.5], [1995], ('Action', 'Thriller'))
    """
    layout = movielens_layout(root)
    base = Path(root)
    if layout == "100k":
        ml = load_movielens_100k(base)
        it = ml.items
        years = np.array([0 if np.isnat(d) else int(str(d)[:4]) for d in it.release_date], dtype=np.int64)
        movies = MovieLensMovies(it.item_id, it.title, years, it.genres, ml.genre_names)
        r = ml.ratings
        return MovieLensRelease(
            layout,
            r[:, 0].copy(),
            r[:, 1].copy(),
            r[:, 2].astype(np.float32),
            r[:, 3].copy(),
            movies,
            ml.users,
        )
    users: MovieLensUsers | None = None
    if layout in ("1m", "10m"):
        rpath, mpath = base / "ratings.dat", base / "movies.dat"
        if not mpath.is_file():
            raise DatasetNotFoundError(f"MovieLens file movies.dat not found at {mpath}")
        movies = _movies_dat(mpath, latin1=layout == "1m")
        arr, lines = _ratings(rpath, sep="::", header=False, halves=layout == "10m")
        if layout == "1m":
            users = _users_dat(base / "users.dat")
    else:
        rpath, mpath = base / "ratings.csv", base / "movies.csv"
        if not mpath.is_file():
            raise DatasetNotFoundError(f"MovieLens file movies.csv not found at {mpath}")
        movies = _movies_csv(mpath)
        arr, lines = _ratings(rpath, sep=",", header=True, halves=True)
    user_id, item_id = arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64)
    _check_known(item_id, movies.item_id, lines, what="movie id", path=rpath, where=mpath)
    if users is not None:
        _check_known(user_id, users.user_id, lines, what="user id", path=rpath, where=base / "users.dat")
    return MovieLensRelease(
        layout, user_id, item_id, arr[:, 2].astype(np.float32), arr[:, 3].astype(np.int64), movies, users
    )
