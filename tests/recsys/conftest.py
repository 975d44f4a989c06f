"""Small generated recommendation data for the fast recsys tests (no real data set needed)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from mlsys.recsys import FeatureSpec, FeatureTable, Interactions


@dataclass(frozen=True)
class Synthetic:
    interactions: Interactions
    users: FeatureTable
    items: FeatureTable
    item_genre: np.ndarray


def make_synthetic(
    n_users: int = 80, n_items: int = 60, n_genres: int = 6, per_user: int = 12, seed: int = 0
) -> Synthetic:
    """Users like one or two genres; items have a genre, a popularity and title tokens tied to the genre."""
    rng = np.random.default_rng(seed)
    item_genre = rng.integers(0, n_genres, n_items)
    genres = np.zeros((n_items, n_genres), dtype=np.float32)
    genres[np.arange(n_items), item_genre] = 1.0
    pop = rng.zipf(1.6, n_items).astype(np.float64).clip(1, 50)
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
    users_rows, items_rows, ts = [], [], []
    for u in range(n_users):
        w = pop * np.where(item_genre == fav[u], 8.0, 1.0)
        chosen = rng.choice(n_items, size=per_user, replace=False, p=w / w.sum())
        users_rows += [u + 1] * per_user
        items_rows += (100 + chosen).tolist()
        ts += sorted(rng.integers(0, 10_000, per_user).tolist())
    users = FeatureTable(
        np.arange(1, n_users + 1),
        {"fav": fav.astype(np.int64), "age": rng.integers(0, 3, n_users)},
        [FeatureSpec("fav", "categorical", n_genres), FeatureSpec("age", "categorical", 3)],
    )
    return Synthetic(
        Interactions(users=users_rows, items=items_rows, timestamps=ts), users, items, item_genre
    )


@pytest.fixture(scope="session")
def synth() -> Synthetic:
    return make_synthetic()


@pytest.fixture(scope="session")
def make_synth():  # type: ignore[no-untyped-def]
    """The generator itself, for tests that need other sizes or seeds."""
    return make_synthetic
