"""Random interleavings of add/upsert/remove/search/save/load, checked against ExactIndex as the oracle.

Every backend must raise the same error type as the oracle on the same call (and then stay
unchanged), hold the same ids, and return k results whenever k items pass the filter. The indexes
are tiny (ids 0..40), where the approximate backends with a wide beam search exhaustively, so their
scores must match the oracle's exactly ("strict" cases); the narrow-beam cases (which force the
native filter + widening path) must return the true score of every id they return. What is
exercised is the bookkeeping: id maps, tombstones, slot reuse, rebuilds, training hand-over,
persistence.
"""

from __future__ import annotations

import shutil
import tempfile
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from mlsys.common.ann import ExactIndex, load_index, make_index
from mlsys.common.errors import MlsysError
from mlsys.common.spaces import EmbeddingSpace

DIM = 4
# (name, kind, params, strict)
CASES: list[tuple[str, str, dict[str, Any], bool]] = [
    ("exact_small_chunks", "exact", {"chunk_rows": 3, "initial_capacity": 2, "rebuild_threshold": 0.3}, True),
    ("faiss_flat", "faiss", {"factory": "Flat"}, True),
    ("faiss_hnsw", "faiss", {"factory": "HNSW8", "ef_search": 64, "rebuild_threshold": 0.3}, True),
    (
        "faiss_hnsw_native_filters",
        "faiss",
        {"factory": "HNSW4", "ef_search": 8, "filter_exact_threshold": 0, "deny_overfetch_limit": 0},
        False,
    ),
    ("faiss_ivf_trains_midway", "faiss", {"factory": "IVF2,Flat", "nprobe": 2, "train_size": 12}, True),
    ("hnswlib", "hnsw", {"M": 8, "ef": 64, "initial_capacity": 4, "rebuild_threshold": 0.3}, True),
    (
        "hnswlib_native_filters",
        "hnsw",
        {"M": 4, "ef": 8, "initial_capacity": 4, "filter_exact_threshold": 0, "deny_overfetch_limit": 0},
        False,
    ),
]

id_lists = st.lists(st.integers(0, 40), min_size=0, max_size=8)
unique_ids = st.lists(st.integers(0, 40), min_size=1, max_size=8, unique=True)


def make_machine(kind: str, params: dict[str, Any], metric: str, strict: bool) -> type[RuleBasedStateMachine]:
    space = EmbeddingSpace("sm", "1", DIM, metric=metric)  # type: ignore[arg-type]

    class IndexMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.oracle = ExactIndex(space)
            self.index = make_index(kind, space, **params)
            self.tmp = tempfile.mkdtemp(prefix="ann-sm-")

        def teardown(self) -> None:
            shutil.rmtree(self.tmp, ignore_errors=True)

        def both(self, method: str, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            results = []
            for target in (self.oracle, self.index):
                try:
                    results.append(getattr(target, method)(*args, **kwargs))
                except MlsysError as exc:
                    results.append(type(exc))
            a, b = results
            if isinstance(a, type) or isinstance(b, type):
                assert a == b, f"{method}: oracle -> {a}, index -> {b}"
            return a, b

        @staticmethod
        def vecs(n: int, seed: int) -> np.ndarray:
            return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)

        @rule(ids=id_lists, seed=st.integers(0, 10_000))
        def add(self, ids: list[int], seed: int) -> None:
            self.both("add", ids, self.vecs(len(ids), seed))

        @rule(ids=id_lists, seed=st.integers(0, 10_000))
        def upsert(self, ids: list[int], seed: int) -> None:
            self.both("upsert", ids, self.vecs(len(ids), seed))

        @rule(ids=id_lists)
        def remove(self, ids: list[int]) -> None:
            self.both("remove", ids)

        @precondition(lambda self: len(self.oracle) > 0)
        @rule(data=st.data())
        def remove_existing(self, data: st.DataObject) -> None:
            live = self.oracle.ids().tolist()
            ids = data.draw(st.lists(st.sampled_from(live), min_size=1, max_size=len(live), unique=True))
            self.both("remove", ids)

        @rule(
            seed=st.integers(0, 10_000),
            nq=st.integers(1, 3),
            k=st.integers(1, 12),
            allow=st.none() | st.lists(st.integers(0, 45), max_size=30),
            deny=st.none() | st.lists(st.integers(0, 45), max_size=30),
        )
        def search(self, seed: int, nq: int, k: int, allow: list[int] | None, deny: list[int] | None) -> None:
            q = self.vecs(nq, seed + 1)
            a, b = self.both("search", q, k, allow=allow, deny=deny)
            if isinstance(a, type):
                return
            (oi, os_), (ii, is_) = a, b
            assert ii.shape == oi.shape == (nq, k)
            # same number of results per row (k whenever k items pass the filter), same scores
            np.testing.assert_array_equal(ii < 0, oi < 0)
            if strict:
                np.testing.assert_allclose(is_, os_, rtol=1e-4, atol=1e-4)
            else:
                for r in range(nq):
                    got = ii[r][ii[r] >= 0]
                    if got.size:
                        v = self.oracle.get_vectors(got)
                        qr = q[r] / np.linalg.norm(q[r]) if metric == "cosine" else q[r]
                        true = -((qr - v) ** 2).sum(1) if metric == "l2" else v @ qr
                        np.testing.assert_allclose(is_[r, : got.size], true, rtol=1e-4, atol=1e-4)
            live = set(self.oracle.ids().tolist())
            for row in ii.tolist():
                got = [i for i in row if i >= 0]
                assert len(set(got)) == len(got) and set(got) <= live
                if allow is not None:
                    assert set(got) <= set(allow)
                if deny is not None:
                    assert not set(got) & set(deny)

        @precondition(lambda self: len(self.oracle) > 0)
        @rule(data=st.data())
        def get_vectors(self, data: st.DataObject) -> None:
            ids = data.draw(st.lists(st.sampled_from(self.oracle.ids().tolist()), min_size=1, max_size=5))
            a, b = self.both("get_vectors", ids)
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)

        @rule()
        def save_and_load(self) -> None:
            path = f"{self.tmp}/idx"
            self.index.save(path)
            loaded = load_index(path, expected_space=space)
            assert type(loaded) is type(self.index)
            self.index = loaded

        @invariant()
        def same_items(self) -> None:
            assert len(self.index) == len(self.oracle)
            assert self.index.ids().tolist() == self.oracle.ids().tolist()

    return IndexMachine


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_backend_matches_exact_oracle(case: tuple[str, str, dict[str, Any], bool], metric: str) -> None:
    machine = make_machine(case[1], case[2], metric, case[3])
    settings_ = settings(
        max_examples=12,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    machine.TestCase.settings = settings_
    machine.TestCase().runTest()


@pytest.mark.slow
@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_backend_matches_exact_oracle_long(case: tuple[str, str, dict[str, Any], bool], metric: str) -> None:
    machine = make_machine(case[1], case[2], metric, case[3])
    machine.TestCase.settings = settings(
        max_examples=60, stateful_step_count=50, deadline=None, suppress_health_check=list(HealthCheck)
    )
    machine.TestCase().runTest()
