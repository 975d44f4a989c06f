"""Serving guards: stale embeddings by model version, feature change and age; drift between versions."""

from __future__ import annotations

import numpy as np
import pytest

from mlsys.common import EmbeddingSpace
from mlsys.common.errors import DimensionMismatchError, InvalidInputError
from mlsys.recsys import FeatureSpec, FeatureTable
from mlsys.recsys.cascade import EmbeddingRegistry, drift_report, feature_hashes

V1 = EmbeddingSpace("two-tower", "v1", 16, metric="ip")
V2 = EmbeddingSpace("two-tower", "v2", 16, metric="ip")


def test_stale_items_by_version_features_and_age() -> None:
    reg = EmbeddingRegistry()
    reg.record(np.arange(10), space=V1, feature_hashes=np.arange(10) * 7, embedded_at=1000.0)
    reg.record([3, 4], space=V2, feature_hashes=[21, 28], embedded_at=2000.0)  # re-embedded with v2
    assert len(reg) == 10
    assert reg.stale_items(space=V2).tolist() == [0, 1, 2, 5, 6, 7, 8, 9]
    assert reg.stale_items(space=V1).tolist() == [3, 4]
    changed = reg.stale_items(
        feature_hashes=(np.arange(10), np.where(np.arange(10) == 6, 999, np.arange(10) * 7))
    )
    assert changed.tolist() == [6]
    assert reg.stale_items(max_age_s=500, now=2100.0).tolist() == [0, 1, 2, 5, 6, 7, 8, 9]
    # unknown items are stale when asked about explicitly
    assert reg.stale_items(space=V2, items=[3, 5, 42]).tolist() == [5, 42]
    assert reg.count_served([[3, 5], [4, -1]], space=V2) == pytest.approx(1 / 3)
    assert reg.counters() == {"served": 3, "stale_served": 1, "stale_rate": pytest.approx(1 / 3)}


def test_feature_hashes_follow_feature_changes() -> None:
    specs = [FeatureSpec("genre", "categorical", 5), FeatureSpec("year", "numeric", 1)]
    a = FeatureTable(
        [1, 2, 3], {"genre": np.array([0, 1, 2]), "year": np.array([[1.0], [2.0], [3.0]])}, specs
    )
    b = FeatureTable(
        [1, 2, 3], {"genre": np.array([0, 4, 2]), "year": np.array([[1.0], [2.0], [3.5]])}, specs
    )
    ha, hb = feature_hashes(a), feature_hashes(b)
    assert (ha == hb).tolist() == [True, False, False]
    reg = EmbeddingRegistry()
    reg.record(a.ids, space=V1, feature_hashes=ha)
    assert reg.stale_items(space=V1, feature_hashes=(b.ids, hb)).tolist() == [2, 3]


def test_drift_report() -> None:
    rng = np.random.default_rng(0)
    old = rng.normal(size=(200, 16))
    same = drift_report(old, old)
    assert (
        same.cosine_min == pytest.approx(1.0)
        and same.moved == 0
        and same.norm_ratio_mean == pytest.approx(1.0)
    )
    new = old.copy()
    new[:50] = rng.normal(size=(50, 16))  # a quarter of the items re-embedded elsewhere
    r = drift_report(old, new, threshold=0.9)
    assert r.moved >= 45 and r.cosine_p05 < 0.5 < r.cosine_mean < 1
    with pytest.raises(DimensionMismatchError):
        drift_report(old, new[:, :8])
    with pytest.raises(InvalidInputError, match="zero vector"):
        drift_report(np.zeros((1, 2)), np.ones((1, 2)))


def test_bad_input_leaves_the_registry_unchanged() -> None:
    reg = EmbeddingRegistry()
    reg.record([1, 2], space=V1, feature_hashes=[5, 6], embedded_at=10.0)
    before = reg.stale_items(max_age_s=0, now=11.0).tolist()
    for bad in (
        lambda: reg.record([3, 3], space=V1),
        lambda: reg.record([3, 4], space=V1, feature_hashes=[1]),
        lambda: reg.record([3], space=V1, embedded_at=float("nan")),
    ):
        with pytest.raises(InvalidInputError):
            bad()
    assert len(reg) == 2 and reg.stale_items(max_age_s=0, now=11.0).tolist() == before
    with pytest.raises(InvalidInputError, match="max_age_s"):
        reg.stale_items(max_age_s=-1)
