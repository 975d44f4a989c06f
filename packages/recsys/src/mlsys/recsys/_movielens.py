"""MovieLens (every release layout) as a recsys data set: interactions plus user and item feature tables.

The files are read by :func:`mlsys.common.data.load_movielens_release` (100K ``u.data``, 1M / 10M
``::``-separated, 20M / 25M / 32M / latest CSV; validated, latin-1 where published); this module
only turns them into :class:`Interactions` and declared :class:`FeatureTable` s. The data are never shipped with mlsys (no-redistribution licence; cite
Harper & Konstan, 2015).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mlsys.common.data import MovieLensRelease, load_movielens_release
from mlsys.common.errors import InvalidInputError
from mlsys.recsys._data import FeatureSpec, FeatureTable, Interactions

__all__ = [
    "AGE_BUCKETS",
    "RecsysDataset",
    "load_movielens",
    "title_tokens",
    "year_bucket",
    "year_bucket_count",
]

#: Upper bounds (exclusive) of the age buckets used by MovieLens-1M: <18, 18-24, 25-34, 35-44, 45-49, 50-55, 56+.
AGE_BUCKETS: tuple[int, ...] = (18, 25, 35, 45, 50, 56)
_WORD = re.compile(r"[a-z0-9]+")
_YEAR_SUFFIX = re.compile(r"\(\d{4}\)\s*$")


@dataclass(frozen=True, eq=False)
class RecsysDataset:
    """Interactions with the user and item feature tables that describe them.

    Attributes:
        name: data set name.
        interactions: every event, in file order.
        users: user feature table (one row per known user).
        items: item feature table; its ids are the catalogue ranked in evaluation.
        item_titles: display titles aligned with ``items.ids``.
    """

    name: str
    interactions: Interactions
    users: FeatureTable
    items: FeatureTable
    item_titles: npt.NDArray[np.str_]


def year_bucket(years: npt.NDArray[np.int64], last_year: int | None = None) -> npt.NDArray[np.int64]:
    """Release-year buckets that fit the data: 0 unknown (year <= 0), 1 before 1940, 2-6 the
    decades 1940s-1980s, then one bucket per year from 1990 up to ``last_year``.

    ``last_year`` (default: the latest known year in ``years``, at least 1990) closes the per-year
    range; later years share its bucket (a new item released after the data was collected). The
    number of buckets is :func:`year_bucket_count` ``(last_year)``. On MovieLens-100K (latest
    1998) this is the 16-bucket scheme of earlier versions; on 25M (latest 2019) years 1998-2019
    get their own buckets instead of sharing one.

    Example:
        >>> year_bucket(np.array([0, 1935, 1965, 1990, 1998, 2005])).tolist()
        [0, 1, 4, 7, 15, 22]
        >>> year_bucket(np.array([1990, 1998, 2005]), last_year=1998).tolist()
        [7, 15, 15]
    """
    y = np.asarray(years, dtype=np.int64)
    last = _last_year(y) if last_year is None else int(last_year)
    if last < 1990:
        raise InvalidInputError(f"last_year must be >= 1990, got {last_year!r}")
    out = np.where(
        y < 1940, 1, np.where(y < 1990, 2 + (y - 1940) // 10, 7 + np.minimum(y - 1990, last - 1990))
    )
    return np.where(y <= 0, 0, out).astype(np.int64)


def year_bucket_count(last_year: int) -> int:
    """Number of :func:`year_bucket` buckets for ``last_year`` (16 for 1998).

    Example:
        >>> year_bucket_count(1998), year_bucket_count(2019)
        (16, 37)
    """
    return 8 + int(last_year) - 1990


def _last_year(years: npt.NDArray[np.int64]) -> int:
    known = years[years > 0]
    return max(1990, int(known.max())) if known.size else 1990


def _words(title: str) -> list[str]:
    return _WORD.findall(_YEAR_SUFFIX.sub("", title).lower())


def title_tokens(
    titles: npt.NDArray[np.str_] | list[str], vocab: dict[str, int], max_len: int = 12
) -> npt.NDArray[np.int64]:
    """Token ids ``(n, max_len)`` for titles: 0 pads, 1 is out-of-vocabulary, known words from ``vocab``.

    Example:
        >>> title_tokens(["Toy Story (1995)"], {"toy": 2, "story": 3}, max_len=3).tolist()
        [[2, 3, 0]]
    """
    out = np.zeros((len(titles), max_len), dtype=np.int64)
    for row, title in enumerate(titles):
        ids = [vocab.get(w, 1) for w in _words(str(title))][:max_len]
        out[row, : len(ids)] = ids
    return out


def load_movielens(root: str | os.PathLike[str], *, min_word_count: int = 2) -> RecsysDataset:
    """Load any MovieLens release from its folder: 100K, 1M, 10M, 20M, 25M, 32M or latest(-small).

    All ratings become positive implicit events of weight 1, in file order (the order the random
    holdout permutes). Item features: ``genres`` (multi-hot over the release's genres), ``year``
    (categorical :func:`year_bucket`, closed at the data's latest release year), ``title``
    (tokens; words seen in at least ``min_word_count`` titles, others map to the
    out-of-vocabulary id 1). User features where the release has a user file (100K, 1M): ``age``
    (:data:`AGE_BUCKETS`), ``gender``, ``occupation`` and ``zip`` (first digit, 10 for
    non-numeric codes); releases without one (10M and later) get a single constant ``all``
    column so that the table is never empty. The data set's ``name`` says the layout.

    Example:
        >>> ds = load_movielens("/path/to/ml-100k")  # doctest: +SKIP
        >>> len(ds.interactions), ds.users.n, ds.items.n  # doctest: +SKIP
        (100000, 943, 1682)
    """
    ml = load_movielens_release(root)
    interactions = Interactions(users=ml.user_id, items=ml.item_id, timestamps=ml.timestamp)
    items = _item_features(ml, min_word_count)
    users = _user_features(ml)
    name = {"100k": "movielens-100k", "1m": "movielens-1m", "10m": "movielens-10m", "csv": "movielens-csv"}
    return RecsysDataset(name[ml.layout], interactions, users, items, np.asarray(ml.movies.title))


def _item_features(ml: MovieLensRelease, min_word_count: int) -> FeatureTable:
    it = ml.movies
    counts = Counter(w for t in it.title for w in set(_words(str(t))))
    words = sorted(w for w, c in counts.items() if c >= min_word_count)
    vocab = {w: i + 2 for i, w in enumerate(words)}
    tokens = title_tokens(it.title, vocab)
    last = _last_year(it.year)
    genres = it.genres.astype(np.float32)
    n_genres = int(genres.shape[1])
    if n_genres == 0:  # a release whose movies list no genre at all: one all-zero column
        genres, n_genres = np.zeros((len(it), 1), dtype=np.float32), 1
    return FeatureTable(
        it.item_id,
        {"genres": genres, "year": year_bucket(it.year, last), "title": tokens},
        [
            FeatureSpec("genres", "multi_hot", n_genres),
            FeatureSpec("year", "categorical", year_bucket_count(last)),
            FeatureSpec("title", "tokens", len(vocab) + 2),
        ],
    )


def _user_features(ml: MovieLensRelease) -> FeatureTable:
    us = ml.users
    if us is None:
        ids = np.unique(ml.user_id)
        return FeatureTable(
            ids, {"all": np.zeros(ids.shape[0], dtype=np.int64)}, [FeatureSpec("all", "categorical", 1)]
        )
    occupations = sorted(set(us.occupation.tolist()))
    occ = np.array([occupations.index(o) for o in us.occupation], dtype=np.int64)
    zip_digit = np.array([int(z[0]) if z[:1].isdigit() else 10 for z in us.zip], dtype=np.int64)
    return FeatureTable(
        us.user_id,
        {
            "age": np.searchsorted(np.array(AGE_BUCKETS), us.age, side="right").astype(np.int64),
            "gender": (us.gender == "F").astype(np.int64),
            "occupation": occ,
            "zip": zip_digit,
        },
        [
            FeatureSpec("age", "categorical", len(AGE_BUCKETS) + 1),
            FeatureSpec("gender", "categorical", 2),
            FeatureSpec("occupation", "categorical", len(occupations)),
            FeatureSpec("zip", "categorical", 11),
        ],
    )
