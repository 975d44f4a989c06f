"""The VectorIndex contract, checked for every registered backend (one suite, parametrised)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ann_testlib import BACKENDS, backend_id, space, true_scores, vectors  # type: ignore[import-not-found]

from mlsys.common.ann import ExactIndex, VectorIndex, list_indexes, load_index, make_index
from mlsys.common.distributed import ray_available
from mlsys.common.errors import (
    CorruptFileError,
    DimensionMismatchError,
    DuplicateIdError,
    EmbeddingSpaceMismatchError,
    EmptyIndexError,
    FormatVersionError,
    InvalidInputError,
    UnknownIdError,
    UnknownNameError,
)

# the sharded index runs its shards as Ray actors on the session's local cluster (tests/conftest.py);
# shards share the 2 CPUs (cpus_per_shard) so that the indexes of consecutive tests fit
SHARDED: list[tuple[str, dict[str, Any], float, float]] = [
    ("sharded", {"backend": "exact", "shards": 2, "cpus_per_shard": 0.1}, 1.0, 1e-4),
    ("sharded", {"backend": "hnsw", "shards": 2, "cpus_per_shard": 0.1}, 0.9, 1e-4),
]
_RAY_SKIP = "needs Ray: pip install -c constraints.txt -e 'packages/common[ray]' (or run `nox -s ray`)"
CASES = [pytest.param(c, id=backend_id(c)) for c in BACKENDS] + [
    pytest.param(
        c,
        id=backend_id(c),
        marks=[pytest.mark.ray, pytest.mark.skipif(not ray_available(), reason=_RAY_SKIP)],
    )
    for c in SHARDED
]


@pytest.fixture(autouse=True)
def _ray_for_sharded(request: pytest.FixtureRequest) -> None:
    """Start the session's Ray cluster for the sharded cases only."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("case", ("",))[0] == "sharded":
        request.getfixturevalue("ray_cluster")


def build(case: tuple[str, dict[str, Any], bool], metric: str = "ip", dim: int = 8) -> Any:
    kind, params = case[0], case[1]
    return make_index(kind, space(dim, metric), **params)


def snapshot(index: Any) -> tuple[Any, ...]:
    ids = index.ids()
    vecs = index.get_vectors(ids) if ids.size else np.empty((0,))
    res = index.search(vectors(3, index.space.dim, seed=99), 5) if ids.size else None
    return ids.tolist(), vecs.tolist(), None if res is None else (res[0].tolist(), res[1].tolist())


def test_every_registered_backend_is_covered() -> None:
    assert {case[0] for case in BACKENDS + SHARDED} == set(list_indexes())


@pytest.mark.parametrize("case", CASES)
def test_satisfies_protocol(case: Any) -> None:
    assert isinstance(build(case), VectorIndex)


@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
@pytest.mark.parametrize("case", CASES)
def test_search_returns_true_scores_best_first(case: Any, metric: str) -> None:
    index = build(case, metric)
    x = vectors(200, seed=1)
    ids = np.arange(1000, 1200, dtype=np.int64)
    index.add(ids, x)
    q = vectors(20, seed=2)
    got_ids, got_scores = index.search(q, 10)
    assert got_ids.shape == (20, 10) and got_ids.dtype == np.int64
    assert got_scores.shape == (20, 10) and got_scores.dtype == np.float32
    truth = true_scores(q, x, metric)
    # every returned score is the true score of the returned id, rows are sorted, no duplicates
    atol = case[3]
    np.testing.assert_allclose(
        got_scores, np.take_along_axis(truth, got_ids - 1000, axis=1), rtol=atol, atol=atol
    )
    assert (np.diff(got_scores, axis=1) <= 1e-6).all()
    assert all(len(set(r)) == 10 for r in got_ids.tolist())
    best = -np.sort(-truth, axis=1)[:, :10]
    recall = (
        np.mean([len(set(a) & set(b)) for a, b in zip(got_ids - 1000, np.argsort(-truth, 1)[:, :10])]) / 10
    )
    if case[2] == 1.0:
        np.testing.assert_allclose(got_scores, best, rtol=1e-4, atol=1e-4)
    assert recall >= case[2]


@pytest.mark.parametrize("case", CASES)
def test_self_is_nearest_under_l2(case: Any) -> None:
    index = build(case, "l2")
    x = vectors(100, seed=3)
    index.add(np.arange(100), x)
    ids, scores = index.search(x, 1)
    assert (ids[:, 0] == np.arange(100)).mean() >= (0.98 if case[2] >= 0.9 else 0.8)
    assert np.abs(scores[ids[:, 0] == np.arange(100), 0]).max() < 1e-3


@pytest.mark.parametrize("case", CASES)
def test_padding_when_fewer_than_k_items(case: Any) -> None:
    index = build(case)
    index.add([5, 6, 7], vectors(3))
    ids, scores = index.search(vectors(2, seed=5), 5)
    assert ids.shape == (2, 5)
    assert sorted(ids[0, :3].tolist()) == [5, 6, 7]
    assert (ids[:, 3:] == -1).all() and np.isneginf(scores[:, 3:]).all()
    assert np.isfinite(scores[:, :3]).all()


@pytest.mark.parametrize("case", CASES)
def test_one_dimensional_query_and_other_dtypes_are_converted(case: Any) -> None:
    index = build(case)
    x = vectors(30)
    index.add(np.arange(30, dtype=np.int32), x.astype(np.float64))
    a = index.search(x[3].astype(np.float64), 3)
    b = index.search(np.asfortranarray(x[3:4]), 3)
    c = index.search(x[3:4], 3)
    assert a[0].shape == (1, 3)
    np.testing.assert_array_equal(a[0], c[0])
    np.testing.assert_array_equal(b[0], c[0])
    # strided float32 queries (every other row; the first columns of a wider array) on the fast paths
    wide = np.concatenate([x, vectors(30, seed=9)], axis=1)
    for strided in (x[::2], wide[::2, : x.shape[1]]):
        assert not strided.flags.c_contiguous
        got, want = index.search(strided, 3), index.search(np.ascontiguousarray(strided), 3)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_allclose(got[1], want[1], rtol=1e-6)


@pytest.mark.parametrize("case", CASES)
def test_upsert_replaces_and_inserts(case: Any) -> None:
    index = build(case, "l2")
    x = vectors(50, seed=6)
    index.add(np.arange(50), x)
    new = vectors(2, seed=7) + 100.0
    index.upsert([3, 77], new)
    assert len(index) == 51 and 77 in index and 3 in index
    np.testing.assert_allclose(index.get_vectors([3, 77]), new, rtol=1e-5)
    ids, _ = index.search(new, 1)
    assert ids[:, 0].tolist() == [3, 77]
    ids, _ = index.search(x[3:4], 50)
    assert 3 not in ids[0, :5].tolist()


@pytest.mark.parametrize("case", CASES)
def test_remove_then_readd(case: Any) -> None:
    index = build(case, "l2")
    x = vectors(60, seed=8)
    index.add(np.arange(60), x)
    gone = np.arange(0, 60, 3)
    index.remove(gone)
    assert len(index) == 40
    assert not any(int(i) in index for i in gone)
    assert set(index.ids().tolist()) == set(range(60)) - set(gone.tolist())
    ids, _ = index.search(x, 40)
    assert not np.isin(ids, gone).any()
    assert (ids >= 0).all()  # exactly 40 live items, all returned
    index.add([0], x[0:1])
    ids, scores = index.search(x[0:1], 1)
    assert ids[0, 0] == 0 and abs(scores[0, 0]) < 1e-4


@pytest.mark.parametrize("case", CASES)
def test_remove_everything_then_add(case: Any) -> None:
    index = build(case)
    index.add([1, 2, 3], vectors(3))
    index.remove([1, 2, 3])
    assert len(index) == 0
    with pytest.raises(EmptyIndexError):
        index.search(vectors(1), 1)
    index.add([9], vectors(1, seed=4))
    assert index.search(vectors(1), 3)[0].tolist() == [[9, -1, -1]]


@pytest.mark.parametrize("case", CASES)
def test_allow_and_deny(case: Any) -> None:
    index = build(case)
    x = vectors(300, seed=9)
    index.add(np.arange(300), x)
    q = vectors(10, seed=10)
    allow = np.arange(0, 300, 7)
    ids, scores = index.search(q, 10, allow=allow)
    assert np.isin(ids, allow).all()
    truth = true_scores(q, x[allow], "ip")
    if case[2] == 1.0:
        np.testing.assert_allclose(scores, -np.sort(-truth, 1)[:, :10], rtol=1e-4, atol=1e-4)
    assert (ids >= 0).all()
    deny = np.arange(150)
    ids, _ = index.search(q, 10, deny=deny)
    assert (ids >= 150).all()
    ids, _ = index.search(q, 10, allow=set(range(100)), deny=range(95))
    assert sorted(ids[0, :5].tolist()) == [95, 96, 97, 98, 99]
    assert (ids[:, 5:] == -1).all()
    ids, scores = index.search(q, 4, allow=[10_000, 10_001])
    assert (ids == -1).all() and np.isneginf(scores).all()
    ids, _ = index.search(q, 3, deny=list(range(300)))
    assert (ids == -1).all()


@pytest.mark.parametrize("case", CASES)
def test_get_vectors(case: Any) -> None:
    index = build(case)
    x = vectors(10)
    index.add(np.arange(10) * 2, x)
    np.testing.assert_allclose(index.get_vectors([18, 0]), x[[9, 0]], rtol=1e-5)
    with pytest.raises(UnknownIdError, match=r"\[1\]"):
        index.get_vectors([0, 1])


@pytest.mark.parametrize("case", CASES)
def test_contains_len_ids(case: Any) -> None:
    index = build(case)
    assert len(index) == 0 and 1 not in index and "x" not in index
    index.add([4, 1], vectors(2))
    assert 1 in index and np.int64(4) in index and 2 not in index
    assert index.ids().tolist() == [1, 4]


@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
@pytest.mark.parametrize("case", CASES)
def test_save_load_round_trip(case: Any, metric: str, tmp_path: Path) -> None:
    index = build(case, metric)
    x = vectors(120, seed=11)
    index.add(np.arange(120) + 7, x)
    index.remove([7, 8, 9])
    index.upsert([10], vectors(1, seed=12))
    q = vectors(5, seed=13)
    before = index.search(q, 8)
    index.save(tmp_path / "idx")
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["format_version"] == 1 and manifest["kind"] == case[0]
    assert manifest["space"]["metric"] == metric and manifest["count"] == 117
    assert all(len(m["sha256"]) == 64 for m in manifest["files"].values())
    for loaded in (
        type(index).load(tmp_path / "idx"),
        load_index(tmp_path / "idx", expected_space=index.space),
    ):
        assert type(loaded) is type(index) and loaded.space == index.space
        assert loaded.config == index.config
        assert loaded.ids().tolist() == index.ids().tolist()
        after = loaded.search(q, 8)
        np.testing.assert_array_equal(after[0], before[0])
        np.testing.assert_allclose(after[1], before[1], rtol=1e-5)
        loaded.add([1], vectors(1))  # still mutable after loading
    index.save(tmp_path / "idx")  # overwriting an index directory is allowed


@pytest.mark.parametrize("case", CASES)
def test_load_refuses_bad_files(case: Any, tmp_path: Path) -> None:
    index = build(case)
    index.add(np.arange(50), vectors(50))
    path = tmp_path / "idx"
    index.save(path)
    with pytest.raises(EmbeddingSpaceMismatchError, match="version"):
        load_index(path, expected_space=space(version="2"))
    # the largest payload file (a sharded index keeps its payloads in one directory per shard)
    payload = max(
        (p for p in path.rglob("*") if p.is_file() and p != path / "manifest.json"),
        key=lambda p: p.stat().st_size,
    )
    for damage in ("truncate", "flip", "delete", "version", "json", "kind"):
        bad = tmp_path / damage
        shutil.copytree(path, bad)
        target = bad / payload.relative_to(path)
        if damage == "truncate":
            target.write_bytes(target.read_bytes()[:-10])
        elif damage == "flip":
            data = bytearray(target.read_bytes())
            data[len(data) // 2] ^= 0xFF
            target.write_bytes(bytes(data))
        elif damage == "delete":
            target.unlink()
        elif damage in ("version", "kind"):
            m = json.loads((bad / "manifest.json").read_text())
            m["format_version" if damage == "version" else "kind"] = 99 if damage == "version" else "nope"
            (bad / "manifest.json").write_text(json.dumps(m))
        else:
            (bad / "manifest.json").write_text("{not json")
        err = FormatVersionError if damage == "version" else CorruptFileError
        with pytest.raises(err):
            load_index(bad)
        with pytest.raises(err):
            type(index).load(bad)
    with pytest.raises(CorruptFileError):
        load_index(tmp_path / "nothing-here")
    if type(index) is not ExactIndex:
        with pytest.raises(CorruptFileError, match="expected a ExactIndex"):
            ExactIndex.load(path)


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_refused_and_leaves_index_unchanged(case: Any, tmp_path: Path) -> None:
    index = build(case, "cosine")
    index.add(np.arange(40), vectors(40))
    before = snapshot(index)
    nan = vectors(2)
    nan[1, 3] = np.nan
    inf = vectors(2)
    inf[0, 0] = np.inf
    bad_calls = [
        (DimensionMismatchError, lambda: index.add([100, 101], vectors(2, dim=7))),
        (InvalidInputError, lambda: index.add([100, 101], nan)),
        (InvalidInputError, lambda: index.upsert([0, 101], inf)),
        (InvalidInputError, lambda: index.add([100, 101], np.zeros((2, 8)))),  # cosine of zero vector
        (InvalidInputError, lambda: index.add([100, 101], np.array([["a"] * 8] * 2))),
        (InvalidInputError, lambda: index.add([100], vectors(2))),
        (InvalidInputError, lambda: index.add([-3, 101], vectors(2))),
        (InvalidInputError, lambda: index.add([1.5, 2.5], vectors(2))),
        (DuplicateIdError, lambda: index.add([100, 100], vectors(2))),
        (DuplicateIdError, lambda: index.add([100, 5], vectors(2))),
        (DuplicateIdError, lambda: index.upsert([100, 100], vectors(2))),
        (UnknownIdError, lambda: index.remove([1, 2, 999])),
        (DuplicateIdError, lambda: index.remove([1, 1])),
        (EmbeddingSpaceMismatchError, lambda: index.add([100], vectors(1), space=space(version="2"))),
        (EmbeddingSpaceMismatchError, lambda: index.search(vectors(1), 3, space=space(version="2"))),
        (InvalidInputError, lambda: index.search(vectors(1), 0)),
        (InvalidInputError, lambda: index.search(vectors(1), -2)),
        (InvalidInputError, lambda: index.search(vectors(1), 2.0)),  # type: ignore[arg-type]
        (InvalidInputError, lambda: index.search(vectors(1), True)),  # type: ignore[arg-type]
        (DimensionMismatchError, lambda: index.search(vectors(1, dim=9), 3)),
        # narrower than the index: hnswlib's knn_query itself would read past the query's buffer
        (DimensionMismatchError, lambda: index.search(vectors(1, dim=7), 3)),
        (InvalidInputError, lambda: index.search(vectors(1, dim=4)[0], 3)),  # 1-D, not dim long
        (InvalidInputError, lambda: index.search(nan, 3)),
        (InvalidInputError, lambda: index.search(inf, 3)),
        (InvalidInputError, lambda: index.search(np.zeros((0, 8), np.float32), 3)),
        (InvalidInputError, lambda: index.search(vectors(1), 3, allow=[1.5])),
        (InvalidInputError, lambda: index.search(vectors(1), 3, deny=[[1, 2]])),
        (UnknownIdError, lambda: index.get_vectors([999])),
    ]
    for err, call in bad_calls:
        with pytest.raises(err):
            call()
        assert snapshot(index) == before
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "keep.txt").write_text("user data")
    with pytest.raises(InvalidInputError):
        index.save(tmp_path / "junk")
    assert (tmp_path / "junk" / "keep.txt").read_text() == "user data"


@pytest.mark.parametrize("case", CASES)
def test_empty_index_search_raises(case: Any) -> None:
    with pytest.raises(EmptyIndexError, match="empty"):
        build(case).search(vectors(1), 1)


def test_make_index_unknown_kind_and_param() -> None:
    with pytest.raises(UnknownNameError, match="exact"):
        make_index("annoy", space())
    with pytest.raises(UnknownNameError, match="chunk_rows"):
        make_index("exact", space(), chunk_size=3)
    with pytest.raises(InvalidInputError):
        make_index("exact", space(), chunk_rows=0)
    with pytest.raises(InvalidInputError):
        ExactIndex("not a space")  # type: ignore[arg-type]
