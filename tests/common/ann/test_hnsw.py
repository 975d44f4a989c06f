"""HNSWIndex specifics: slot reuse with replace_deleted, resizing, re-adding removed ids, rebuilds."""

from __future__ import annotations

import numpy as np
import pytest
from ann_testlib import space, vectors  # type: ignore[import-not-found]

from mlsys.common.ann import HNSWIndex
from mlsys.common.errors import InvalidInputError


def test_defaults_are_explicit() -> None:
    index = HNSWIndex(space(8))
    assert (index.config.M, index.config.ef_construction, index.config.ef) == (16, 200, 64)
    assert index.hnswlib_index.ef == 64


def test_deleted_slots_are_reused_and_capacity_grows() -> None:
    index = HNSWIndex(space(8, "l2"), initial_capacity=4, rebuild_threshold=1.0)
    x = vectors(40)
    index.add(np.arange(20), x[:20])
    assert index.hnswlib_index.max_elements >= 20
    index.remove(np.arange(10))
    assert index.n_deleted_slots == 10
    index.add(np.arange(100, 110), x[20:30])  # fills the 10 deleted slots, no growth
    assert index.hnswlib_index.element_count == 20 and index.n_deleted_slots == 0
    ids, _ = index.search(x[20:30], 1)
    assert ids[:, 0].tolist() == list(range(100, 110))


def test_readding_a_removed_id_whose_slot_was_reused() -> None:
    # hnswlib keeps a deleted label in its lookup until another add reuses the slot; the wrapper
    # must handle both cases (un-mark and update in place / add afresh)
    index = HNSWIndex(space(8, "l2"), rebuild_threshold=1.0)
    x = vectors(10)
    index.add([1, 2, 3], x[:3])
    index.remove([1, 2])
    index.add([9], x[9:10])  # reuses one of the two deleted slots
    index.add([1, 2], x[4:6])  # one comes back in place, the other afresh
    assert sorted(index.ids().tolist()) == [1, 2, 3, 9]
    np.testing.assert_allclose(index.get_vectors([1, 2]), x[4:6])
    ids, _ = index.search(x[4:6], 1)
    assert ids[:, 0].tolist() == [1, 2]
    index.remove([1, 2, 3, 9])
    assert len(index) == 0


def test_rebuild_past_threshold() -> None:
    index = HNSWIndex(space(8, "l2"), rebuild_threshold=0.25)
    x = vectors(100)
    index.add(np.arange(100), x)
    index.remove(np.arange(20))
    assert index.n_deleted_slots == 20
    index.remove(np.arange(20, 30))  # 30 of 100 > 0.25: rebuilt
    assert index.n_deleted_slots == 0 and index.hnswlib_index.element_count == 70
    ids, _ = index.search(x[30:40], 1)
    assert ids[:, 0].tolist() == list(range(30, 40))


def test_upsert_updates_in_place() -> None:
    index = HNSWIndex(space(8, "l2"))
    x = vectors(20)
    index.add(np.arange(20), x)
    index.upsert([5], x[15:16] + 0.001)
    assert index.hnswlib_index.element_count == 20 and index.n_deleted_slots == 0
    np.testing.assert_allclose(index.get_vectors([5]), x[15:16] + 0.001, rtol=1e-5)


def test_bad_params() -> None:
    with pytest.raises(InvalidInputError):
        HNSWIndex(space(8), M=1)
    with pytest.raises(InvalidInputError):
        HNSWIndex(space(8), num_threads=0)
    index = HNSWIndex(space(8))
    index.set_params(ef=7)
    assert index.hnswlib_index.ef == 7


def test_missing_hnswlib_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from mlsys.common.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "hnswlib", None)
    with pytest.raises(MissingDependencyError, match=r"mlsys-common\[hnsw\]"):
        HNSWIndex(space(8))
