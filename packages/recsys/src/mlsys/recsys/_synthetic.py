"""A small generated data set with the MovieLens shape, for tests, smoke benchmarks and the demo.

Users have a favourite genre; items have one genre, a Zipf popularity and title tokens tied to the
genre; each user picks items with probability proportional to popularity, boosted 8x in the
favourite genre. The signal is simple enough that every model should beat random, and the
popularity skew is strong enough that the logQ correction matters.

Example:
    >>> ds = synthetic_dataset(n_users=20, n_items=15, per_user=5, seed=0)
    >>> len(ds.interactions), ds.users.n, ds.items.n
    (100, 20, 15)
"""

from __future__ import annotations

import numpy as np

from mlsys.common.errors import InvalidInputError
from mlsys.common.validation import check_k
from mlsys.recsys._data import FeatureSpec, FeatureTable, Interactions
from mlsys.recsys._movielens import RecsysDataset

__all__ = ["synthetic_dataset"]


def synthetic_dataset(
    n_users: int = 80,
    n_items: int = 60,
    *,
    n_genres: int = 6,
    per_user: int = 12,
    favourite_boost: float = 8.0,
    zipf: float = 1.6,
    seed: int = 0,
) -> RecsysDataset:
    """Generate interactions plus user (``fav``, ``age``) and item (``genres``, ``title``, ``year``) features.

    Item ids start at 100 and user ids at 1 (so the two never coincide by accident).
    """
    for name, size in (
        ("n_users", n_users),
        ("n_items", n_items),
        ("n_genres", n_genres),
        ("per_user", per_user),
    ):
        check_k(size, name=name, limit=None)
    if per_user > n_items:
        raise InvalidInputError(f"need per_user <= n_items, got per_user={per_user} n_items={n_items}")
    rng = np.random.default_rng(seed)
    item_genre = rng.integers(0, n_genres, n_items)
    genres = np.zeros((n_items, n_genres), dtype=np.float32)
    genres[np.arange(n_items), item_genre] = 1.0
    pop = rng.zipf(zipf, n_items).astype(np.float64).clip(1, 50)
    title = np.zeros((n_items, 3), dtype=np.int64)
    title[:, 0] = 2 + item_genre  # a genre word
    title[:, 1] = 2 + n_genres + rng.integers(0, 10, n_items)  # noise words
    items = FeatureTable(
        np.arange(100, 100 + n_items),
        {"genres": genres, "title": title, "year": rng.integers(0, 4, n_items)},
        [
            FeatureSpec("genres", "multi_hot", n_genres),
            FeatureSpec("title", "tokens", 2 + n_genres + 10),
            FeatureSpec("year", "categorical", 4),
        ],
    )
    fav = rng.integers(0, n_genres, n_users)
    users_rows: list[int] = []
    items_rows: list[int] = []
    ts: list[int] = []
    for u in range(n_users):
        w = pop * np.where(item_genre == fav[u], favourite_boost, 1.0)
        chosen = rng.choice(n_items, size=per_user, replace=False, p=w / w.sum())
        users_rows += [u + 1] * per_user
        items_rows += (100 + chosen).tolist()
        ts += sorted(rng.integers(0, 10_000, per_user).tolist())
    users = FeatureTable(
        np.arange(1, n_users + 1),
        {"fav": fav.astype(np.int64), "age": rng.integers(0, 3, n_users)},
        [FeatureSpec("fav", "categorical", n_genres), FeatureSpec("age", "categorical", 3)],
    )
    titles = np.array([f"item {i} (genre {g})" for i, g in zip(range(100, 100 + n_items), item_genre)])
    return RecsysDataset(
        "synthetic", Interactions(users=users_rows, items=items_rows, timestamps=ts), users, items, titles
    )
