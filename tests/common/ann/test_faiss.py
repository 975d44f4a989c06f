"""FaissIndex specifics: id modes, tombstones and rebuilds, the training buffer, factory errors."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest
from ann_testlib import space, vectors  # type: ignore[import-not-found]

from mlsys.common.ann import FaissIndex, load_index
from mlsys.common.errors import InvalidInputError, UnknownNameError


@pytest.mark.parametrize(
    ("factory", "mode"),
    [
        ("Flat", "idmap"),
        ("PQ2x4", "idmap"),
        ("SQ8", "idmap"),
        ("IVF4,Flat", "ivf"),
        ("IVF4,PQ2x4", "ivf"),
        ("HNSW8", "tombstone"),
        ("HNSW8,SQ8", "tombstone"),
    ],
)
def test_mode_follows_the_factory(factory: str, mode: str) -> None:
    assert FaissIndex(space(8), factory).mode == mode


def test_defaults_are_explicit() -> None:
    index = FaissIndex(space(8))
    assert index.config.factory == "HNSW32"
    assert index.faiss_index.hnsw.efSearch == 64 and index.faiss_index.hnsw.efConstruction == 200
    ivf = FaissIndex(space(8), "IVF16,Flat")
    assert ivf.train_size == 1000 and ivf.config.nprobe == 16
    assert FaissIndex(space(8), "IVF64,PQ2x8").train_size == 39 * 256


def test_bad_factory_and_params() -> None:
    with pytest.raises(InvalidInputError, match="NotAnIndex"):
        FaissIndex(space(8), "NotAnIndex")
    with pytest.raises(InvalidInputError, match="IDMap"):
        FaissIndex(space(8), "IDMap,Flat")
    with pytest.raises(InvalidInputError):
        FaissIndex(space(8), "HNSW8", ef_search=0)
    with pytest.raises(UnknownNameError, match="efSearch"):
        FaissIndex(space(8), "HNSW8", efSearch=10)
    with pytest.raises(InvalidInputError, match="cannot change"):
        FaissIndex(space(8), "HNSW8").set_params(factory="Flat")


def test_hnsw_tombstones_hide_removed_items_then_rebuild_compacts() -> None:
    index = FaissIndex(space(8, "l2"), "HNSW8", rebuild_threshold=0.5)
    x = vectors(100)
    index.add(np.arange(100), x)
    index.remove(np.arange(40))
    assert index.n_tombstones == 40 and index.faiss_index.ntotal == 100
    ids, _ = index.search(x[:40], 10)
    assert (ids >= 40).all()
    index.upsert([50], x[0:1])  # upsert = tombstone + append
    assert index.n_tombstones == 41 and index.faiss_index.ntotal == 101
    index.remove(np.arange(51, 61))  # 51 of 101 > 0.5: rebuild
    assert index.n_tombstones == 0 and index.faiss_index.ntotal == len(index) == 50
    ids, scores = index.search(x[0:1], 1)
    assert ids[0, 0] == 50 and abs(scores[0, 0]) < 1e-5
    np.testing.assert_allclose(index.get_vectors([99, 50]), x[[99, 0]])


def test_hnsw_rebuild_keeps_trained_quantiser() -> None:
    index = FaissIndex(space(8, "l2"), "HNSW8,SQ8", train_size=200, rebuild_threshold=0.3)
    x = vectors(300)
    index.add(np.arange(300), x)
    assert index.is_trained and index.mode == "tombstone"
    index.remove(np.arange(100))
    assert index.n_tombstones == 0 and index.faiss_index.ntotal == 200
    ids, _ = index.search(x[100:110], 1)
    assert (ids[:, 0] == np.arange(100, 110)).mean() >= 0.9


def test_training_buffer_then_automatic_training() -> None:
    index = FaissIndex(space(8, "l2"), "IVF4,Flat", nprobe=4, train_size=150)
    x = vectors(200)
    index.add(np.arange(100), x[:100])
    assert not index.is_trained and index.faiss_index.ntotal == 0
    ids, _ = index.search(x[:5], 1)  # exact while buffering
    assert ids[:, 0].tolist() == [0, 1, 2, 3, 4]
    index.remove([0])
    index.add(np.arange(100, 200), x[100:])  # 199 buffered >= 150: trains and moves in
    assert index.is_trained and index.faiss_index.ntotal == 199 and len(index) == 199
    ids, _ = index.search(x[1:6], 1)
    assert ids[:, 0].tolist() == [1, 2, 3, 4, 5]


def test_explicit_train_on_a_sample(tmp_path: Path) -> None:
    index = FaissIndex(space(8), "IVF4,Flat", nprobe=4)
    with pytest.raises(InvalidInputError, match="at least 4"):
        index.train(vectors(2))
    assert not index.is_trained
    index.add([7, 8], vectors(2, seed=3))
    index.save(tmp_path / "untrained")
    loaded = FaissIndex.load(tmp_path / "untrained")
    assert not loaded.is_trained and loaded.ids().tolist() == [7, 8]
    index.train(vectors(500, seed=4))
    assert index.is_trained and index.faiss_index.ntotal == 2
    with pytest.raises(InvalidInputError, match="already trained"):
        index.train(vectors(500))


def test_tombstones_survive_save_load(tmp_path: Path) -> None:
    index = FaissIndex(space(8, "l2"), "HNSW8", rebuild_threshold=0.9)
    x = vectors(50)
    index.add(np.arange(50), x)
    index.remove(np.arange(10))
    index.save(tmp_path / "i")
    loaded = load_index(tmp_path / "i")
    assert loaded.n_tombstones == 10 and len(loaded) == 40
    ids, _ = loaded.search(x, 50)
    assert set(ids[ids >= 0].tolist()) == set(range(10, 50))
    loaded.add([3], x[3:4])
    assert 3 in loaded and loaded.search(x[3:4], 1)[0][0, 0] == 3


def test_set_params_reaches_faiss() -> None:
    index = FaissIndex(space(8), "HNSW8")
    index.set_params(ef_search=123)
    assert index.faiss_index.hnsw.efSearch == 123
    ivf = FaissIndex(space(8), "IVF4,Flat", nprobe=2)
    ivf.add(np.arange(2000), vectors(2000))
    ivf.set_params(nprobe=3)
    assert faiss.extract_index_ivf(ivf.faiss_index).nprobe == 3


def test_missing_faiss_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from mlsys.common.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(MissingDependencyError, match=r"mlsys-common\[faiss\]"):
        FaissIndex(space(8))
