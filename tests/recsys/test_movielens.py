"""MovieLens loader (tiny generated files) and, as slow tests, the reference figures on the real data."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mlsys.common.errors import InvalidInputError
from mlsys.recsys import (
    EASE,
    ItemKNN,
    Popularity,
    TwoTowerConfig,
    TwoTowerModel,
    TwoTowerRetriever,
    evaluate_recommender,
    item_cold_start,
    load_movielens,
    random_holdout,
)
from mlsys.recsys._movielens import title_tokens, year_bucket, year_bucket_count


def _write_fake_ml100k(root: Path) -> None:
    genres = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
              "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
              "War", "Western"]  # fmt: skip
    (root / "u.genre").write_text("".join(f"{g}|{i}\n" for i, g in enumerate(genres)) + "\n")
    flags = ["0"] * 19
    items = []
    for i, (title, date) in enumerate(
        [("Toy Story (1995)", "01-Jan-1995"), ("Toy Soldiers (1991)", "01-Jan-1991"), ("Café (1960)", "")], 1
    ):
        f = flags.copy()
        f[i] = "1"
        items.append(f"{i}|{title}|{date}||http://x|" + "|".join(f))
    (root / "u.item").write_bytes(("\n".join(items) + "\n").encode("latin-1"))
    (root / "u.user").write_text("1|24|M|student|12345\n2|60|F|writer|K1A0B\n")
    (root / "u.data").write_text("1\t1\t5\t100\n1\t2\t3\t200\n2\t3\t4\t150\n2\t1\t2\t50\n")


def test_load_movielens_builds_features(tmp_path: Path) -> None:
    _write_fake_ml100k(tmp_path)
    ds = load_movielens(tmp_path)
    assert len(ds.interactions) == 4 and ds.interactions.users.tolist() == [1, 1, 2, 2]  # file order
    assert ds.interactions.timestamps.tolist() == [100, 200, 150, 50]
    assert ds.items.ids.tolist() == [1, 2, 3] and ds.item_titles[2] == "Café (1960)"
    assert ds.items.column("year").tolist() == [12, 8, 0]  # 1995, 1991, unknown date
    tok = ds.items.column("title")
    assert tok[0, 0] == tok[1, 0] >= 2  # "toy" is shared by two titles: in the vocabulary
    assert tok[0, 1] == 1 and tok[2, 0] == 1  # words seen once are out-of-vocabulary
    assert ds.users.column("age").tolist() == [1, 6] and ds.users.column("gender").tolist() == [0, 1]
    assert ds.users.column("zip").tolist() == [1, 10]
    assert ds.items.column("genres").sum(axis=1).tolist() == [1, 1, 1]


def test_feature_helpers() -> None:
    assert year_bucket(np.array([0, 1939, 1940, 1989, 1990, 1998])).tolist() == [0, 1, 2, 6, 7, 15]
    assert title_tokens(["A Tale (1990)"], {"tale": 5}, max_len=2).tolist() == [[1, 5]]


# ----------------------------------------------------------------------------- real data (slow)
# itemknn: the per-target default of issue 18 (0.347 before, with per-source cosine; that variant is
# itemknn_source here: 0.351 now that ties at the k-th neighbour go to the lower item position)
REFERENCE = {
    "popularity": (0.219, 0.116),
    "itemknn": (0.414, 0.218),
    "itemknn_source": (0.351, 0.187),
    "ease": (0.453, 0.241),
}


@pytest.mark.slow
def test_reference_figures_reproduce(dataset) -> None:  # type: ignore[no-untyped-def]
    ds = load_movielens(dataset("movielens-100k"))
    split = random_holdout(ds.interactions, seed=0)
    source = ItemKNN(neighbors=100, neighborhood="source", similarity="cosine")
    for model in (Popularity(), ItemKNN(neighbors=100), source, EASE(l2=500.0)):
        model.fit(split.train, catalogue=ds.items.ids)
        r = evaluate_recommender(model, split, ks=(10,))
        ndcg, rec = REFERENCE[model.name]
        assert r.metrics["ndcg@10"] == pytest.approx(ndcg, abs=0.01), (model.name, r.metrics)
        assert r.metrics["recall@10"] == pytest.approx(rec, abs=0.01), (model.name, r.metrics)


@pytest.mark.slow
def test_two_tower_targets(dataset) -> None:  # type: ignore[no-untyped-def]
    import torch

    from mlsys.recsys.evaluate import COLD_CONFIG, WARM_CONFIG

    torch.set_num_threads(1)
    ds = load_movielens(dataset("movielens-100k"))
    split = random_holdout(ds.interactions, seed=0)
    # the hand-tuned constants (tune=False): 0.407 on this split; the data-driven default measured 0.397
    # (benchmarks/recsys/README.md, issue 18)
    m = TwoTowerModel(replace(WARM_CONFIG, tune=False)).fit(
        split.train, items=ds.items, users=ds.users, progress=False
    )
    warm = evaluate_recommender(TwoTowerRetriever(m, ds.items), split, ks=(10,)).metrics["ndcg@10"]
    assert warm >= 0.40
    cold = []
    for seed in (0, 1, 2):
        cs = item_cold_start(ds.interactions, catalogue=ds.items.ids, cold_fraction=0.2, seed=seed)
        mc = TwoTowerModel(COLD_CONFIG).fit(cs.train, items=ds.items, users=ds.users, progress=False)
        cold.append(evaluate_recommender(TwoTowerRetriever(mc, ds.items), cs, ks=(10,)).metrics["ndcg@10"])
    assert float(np.mean(cold)) > 0.251, cold
    assert isinstance(TwoTowerConfig(), TwoTowerConfig)


@pytest.mark.slow
def test_data_driven_two_tower_reaches_the_warm_goal(dataset) -> None:  # type: ignore[no-untyped-def]
    """Issue 18: the default search (distillation included) from ``WARM_CONFIG`` reaches NDCG@10 >= 0.42.

    About 6 minutes on one thread; measured 0.4418 (benchmarks/recsys/README.md).
    """
    import torch

    from mlsys.recsys.evaluate import WARM_CONFIG

    torch.set_num_threads(1)
    ds = load_movielens(dataset("movielens-100k"))
    split = random_holdout(ds.interactions, seed=0)
    m = TwoTowerModel(replace(WARM_CONFIG, tune_budget_s=3600.0)).fit(
        split.train, items=ds.items, users=ds.users, progress=False
    )
    assert m.report_.tuned and not m.report_.budget_exhausted and m.config.distill == 1.0
    warm = evaluate_recommender(TwoTowerRetriever(m, ds.items), split, ks=(10,)).metrics["ndcg@10"]
    assert warm >= 0.42, warm


def _write_release(root: Path, layout: str) -> None:
    movies = [
        (10, "GoldenEye (1995)", "Action|Thriller"),
        (20, "Up (2009)", "Animation"),
        (30, "Up Close", "Drama"),
    ]
    if layout == "csv":
        (root / "ratings.csv").write_text(
            "userId,movieId,rating,timestamp\n1,10,4.5,100\n2,20,3.0,90\n2,30,5.0,80\n"
        )
        (root / "movies.csv").write_text(
            "movieId,title,genres\n" + "".join(f"{i},{t},{g}\n" for i, t, g in movies)
        )
        return
    (root / "ratings.dat").write_text("1::10::4::100\n2::20::3::90\n2::30::5::80\n")
    (root / "movies.dat").write_text("".join(f"{i}::{t}::{g}\n" for i, t, g in movies))
    if layout == "1m":
        (root / "users.dat").write_text("1::F::25::4::02139\n2::M::56::12::K1A0B\n")


@pytest.mark.parametrize("layout", ["1m", "10m", "csv"])
def test_load_movielens_every_layout(tmp_path: Path, layout: str) -> None:
    _write_release(tmp_path, layout)
    ds = load_movielens(tmp_path)
    assert ds.name == {"1m": "movielens-1m", "10m": "movielens-10m", "csv": "movielens-csv"}[layout]
    assert ds.interactions.users.tolist() == [1, 2, 2] and ds.interactions.items.tolist() == [10, 20, 30]
    assert ds.interactions.timestamps.tolist() == [100, 90, 80] and (ds.interactions.weights == 1).all()
    assert ds.items.ids.tolist() == [10, 20, 30]
    # buckets fit the data: 1995 and 2009 are told apart (before, every year from 1998 on shared one)
    assert ds.items.column("year").tolist() == [12, 26, 0]
    spec = {s.name: s for s in ds.items.specs}
    assert spec["year"].size == 27 and spec["genres"].size == 4
    assert ds.items.column("genres").tolist() == [[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 0]]
    tok = ds.items.column("title")
    assert tok[1, 0] == tok[2, 0] >= 2  # "up" appears in two titles
    if layout == "1m":
        assert ds.users.column("age").tolist() == [2, 6] and ds.users.column("gender").tolist() == [1, 0]
        assert ds.users.column("zip").tolist() == [0, 10]
    else:
        assert [s.name for s in ds.users.specs] == ["all"] and ds.users.ids.tolist() == [1, 2]
    # the data set feeds a model end to end
    assert ItemKNN(neighbors=2).fit(ds.interactions, catalogue=ds.items.ids).recommend([1], 1)[0].shape == (
        1,
        1,
    )


def test_year_buckets_fit_the_data() -> None:
    years = np.array([0, 1935, 1995, 1998, 2005, 2019])
    assert year_bucket(years).tolist() == [0, 1, 12, 15, 22, 36]
    assert len(set(year_bucket(years).tolist())) == 6  # every year from 1998 on no longer collapses
    assert year_bucket(years, last_year=1998).tolist() == [0, 1, 12, 15, 15, 15]
    assert year_bucket_count(2019) == 37 and year_bucket(years).max() < year_bucket_count(2019)
    with pytest.raises(InvalidInputError):
        year_bucket(years, last_year=1980)
