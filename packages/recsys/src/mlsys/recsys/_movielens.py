"""MovieLens-100K as a recsys data set: interactions plus user and item feature tables.

The files are read by :func:`mlsys.common.data.load_movielens_100k` (validated, latin-1 where
published); this module only turns them into :class:`Interactions` and declared
:class:`FeatureTable` s. The data are never shipped with mlsys (no-redistribution licence; cite
Harper & Konstan, 2015).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mlsys.common.data import load_movielens_100k
from mlsys.recsys._data import FeatureSpec, FeatureTable, Interactions

__all__ = ["AGE_BUCKETS", "RecsysDataset", "load_movielens", "title_tokens", "year_bucket"]

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


def year_bucket(years: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Release-year buckets: 0 unknown (year <= 0), 1 before 1940, 2-6 the decades 1940s-1980s, 7-15 the years 1990-1998+.

    Example:
        >>> year_bucket(np.array([0, 1935, 1965, 1990, 1998, 2005])).tolist()
        [0, 1, 4, 7, 15, 15]
    """
    y = np.asarray(years, dtype=np.int64)
    out = np.where(y < 1940, 1, np.where(y < 1990, 2 + (y - 1940) // 10, 7 + np.minimum(y - 1990, 8)))
    return np.where(y <= 0, 0, out).astype(np.int64)


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
    """Load MovieLens-100K from a folder holding ``u.data``, ``u.item``, ``u.user`` and ``u.genre``.

    All ratings become positive implicit events of weight 1, in file order (the order the random
    holdout permutes). Item features: ``genres`` (multi-hot, 19), ``year`` (categorical
    :func:`year_bucket`), ``title`` (tokens; words seen in at least ``min_word_count`` titles, others
    map to the out-of-vocabulary id 1). User features: ``age`` (:data:`AGE_BUCKETS`), ``gender``,
    ``occupation`` and ``zip`` (first digit, 10 for non-numeric codes).

    Example:
        >>> ds = load_movielens("/path/to/ml-100k")  # doctest: +SKIP
        >>> len(ds.interactions), ds.users.n, ds.items.n  # doctest: +SKIP
        (100000, 943, 1682)
    """
    ml = load_movielens_100k(root)
    r = ml.ratings
    interactions = Interactions(users=r[:, 0], items=r[:, 1], timestamps=r[:, 3])

    it = ml.items
    years = np.array([0 if np.isnat(d) else int(str(d)[:4]) for d in it.release_date], dtype=np.int64)
    counts = Counter(w for t in it.title for w in set(_words(str(t))))
    words = sorted(w for w, c in counts.items() if c >= min_word_count)
    vocab = {w: i + 2 for i, w in enumerate(words)}
    tokens = title_tokens(it.title, vocab)
    items = FeatureTable(
        it.item_id,
        {"genres": it.genres.astype(np.float32), "year": year_bucket(years), "title": tokens},
        [
            FeatureSpec("genres", "multi_hot", int(it.genres.shape[1])),
            FeatureSpec("year", "categorical", 16),
            FeatureSpec("title", "tokens", len(vocab) + 2),
        ],
    )

    us = ml.users
    occupations = sorted(set(us.occupation.tolist()))
    occ = np.array([occupations.index(o) for o in us.occupation], dtype=np.int64)
    zip_digit = np.array([int(z[0]) if z[:1].isdigit() else 10 for z in us.zip], dtype=np.int64)
    users = FeatureTable(
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
    return RecsysDataset("movielens-100k", interactions, users, items, np.asarray(it.title))
