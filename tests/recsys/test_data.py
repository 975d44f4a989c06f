"""Interactions, FeatureTable and IdIndex: validation at the boundary and round trips."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys.common.errors import DuplicateIdError, EmptyIndexError, InvalidInputError, UnknownIdError
from mlsys.recsys import FeatureSpec, FeatureTable, IdIndex, Interactions


@given(st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=50, unique=True))
@settings(max_examples=50, deadline=None)
def test_id_index_round_trip(ids: list[int]) -> None:
    idx = IdIndex(ids)
    perm = np.random.default_rng(0).permutation(len(ids))
    q = np.asarray(ids)[perm]
    assert idx.positions(q).tolist() == perm.tolist()
    assert (idx.ids[idx.positions(q)] == q).all()


def test_id_index_unknown_and_duplicates() -> None:
    idx = IdIndex([5, 3])
    assert idx.positions([3, 7], missing="mask").tolist() == [1, -1]
    assert 5 in idx and 7 not in idx and "5" not in idx
    with pytest.raises(UnknownIdError, match=r"\[7\]"):
        idx.positions([7])
    with pytest.raises(DuplicateIdError):
        IdIndex([1, 1])
    assert IdIndex([]).positions([1], missing="mask").tolist() == [-1]


def test_interactions_defaults_and_validation() -> None:
    x = Interactions(users=[1, 2], items=[3, 3])
    assert x.timestamps.tolist() == [0, 0] and x.weights.tolist() == [1.0, 1.0]
    assert not x.users.flags.writeable
    with pytest.raises(InvalidInputError, match=r"expected one id per vector|got 1 items"):
        Interactions(users=[1, 2], items=[3])
    with pytest.raises(InvalidInputError, match="finite"):
        Interactions(users=[1], items=[3], weights=[np.nan])
    with pytest.raises(InvalidInputError, match="> 0"):
        Interactions(users=[1], items=[3], weights=[0.0])
    with pytest.raises(InvalidInputError, match="integers"):
        Interactions(users=[1.5], items=[3])
    with pytest.raises(EmptyIndexError):
        Interactions(users=[], items=[]).require_nonempty()


def test_to_csr_binarises_duplicates_or_sums_weights() -> None:
    x = Interactions(users=[1, 1, 2], items=[5, 5, 6], weights=[2.0, 3.0, 1.0])
    u, i = IdIndex([1, 2]), IdIndex([5, 6])
    assert x.to_csr(u, i).toarray().tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert x.to_csr(u, i, binary=False).toarray().tolist() == [[5.0, 0.0], [0.0, 1.0]]
    # Rows outside the indexes are dropped, or refused with strict=True.
    assert x.to_csr(IdIndex([1]), i).shape == (1, 2)
    with pytest.raises(UnknownIdError):
        x.to_csr(IdIndex([1]), i, strict=True)


SPECS = [
    FeatureSpec("cat", "categorical", 3),
    FeatureSpec("mh", "multi_hot", 2),
    FeatureSpec("num", "numeric", 1),
    FeatureSpec("tok", "tokens", 5),
]


def _cols(**over: object) -> dict[str, object]:
    cols: dict[str, object] = {
        "cat": np.array([0, 2]),
        "mh": np.array([[1, 0], [1, 1]]),
        "num": np.array([[0.5], [1.5]]),
        "tok": np.array([[1, 2, 0], [4, 0, 0]]),
    }
    cols.update(over)
    return cols


def test_feature_table_accepts_valid_columns() -> None:
    t = FeatureTable([10, 20], _cols(), SPECS)
    assert t.n == 2 and t.column("mh").dtype == np.float32 and t.column("cat").dtype == np.int64
    assert t.rows([20]).column("cat").tolist() == [2]
    dense = t.dense().toarray()
    assert dense.shape == (2, 3 + 2 + 1 + 5)
    assert dense[1].tolist() == [0, 0, 1, 1, 1, 1.5, 0, 0, 0, 0, 1]  # token 0 (padding) counts nothing


@pytest.mark.parametrize(
    ("cols", "match"),
    [
        ({k: v for k, v in _cols().items() if k != "num"}, r"missing \['num'\]"),
        ({**_cols(), "extra": np.zeros(2)}, r"unexpected \['extra'\]"),
        (_cols(cat=np.array([0.0, 1.0])), "expected int"),
        (_cols(cat=np.array([0, 3])), r"expected 0\.\.2"),
        (_cols(mh=np.array([[1, 0, 0], [1, 1, 0]])), r"expected \(2, 2\)"),
        (_cols(mh=np.array([[2, 0], [1, 1]])), "multi-hot"),
        (_cols(num=np.array([[np.nan], [1.0]])), "NaN or inf"),
        (_cols(num=np.array([[np.inf], [1.0]])), "NaN or inf"),
        (_cols(tok=np.array([[5, 0], [1, 0]])), "token ids"),
        (_cols(num=np.array([["a"], ["b"]])), "numeric"),
        (_cols(cat=np.array([0, 1, 2])), "expected 2"),
    ],
)
def test_feature_table_rejects_bad_columns(cols: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        FeatureTable([10, 20], cols, SPECS)


def test_feature_table_duplicate_ids_and_specs() -> None:
    with pytest.raises(DuplicateIdError):
        FeatureTable([1, 1], _cols(), SPECS)
    with pytest.raises(InvalidInputError):
        FeatureSpec("x", "nope", 2)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        FeatureSpec("x", "categorical", 0)


def test_feature_table_concat_pads_tokens_and_checks_schema() -> None:
    a = FeatureTable([1, 2], _cols(), SPECS)
    b = FeatureTable(
        [3], {"cat": [1], "mh": [[0, 1]], "num": [[0.0]], "tok": np.array([[1, 2, 3, 4]])}, SPECS
    )
    c = a.concat(b)
    assert c.ids.tolist() == [1, 2, 3] and c.column("tok").shape == (3, 4)
    assert c.column("tok")[0].tolist() == [1, 2, 0, 0]
    other = FeatureTable([4], {"cat": [0]}, [FeatureSpec("cat", "categorical", 3)])
    with pytest.raises(InvalidInputError, match="schema"):
        a.concat(other)
    with pytest.raises(DuplicateIdError):
        a.concat(a)


def test_select_columns_and_synthetic_generator() -> None:
    from mlsys.recsys import synthetic_dataset

    t = FeatureTable([10, 20], _cols(), SPECS)
    assert [s.name for s in t.select(["tok", "cat"]).specs] == ["tok", "cat"]
    with pytest.raises(InvalidInputError, match="no feature columns"):
        t.select(["zzz"])
    ds = synthetic_dataset(n_users=10, n_items=8, per_user=3, seed=1)
    again = synthetic_dataset(n_users=10, n_items=8, per_user=3, seed=1)
    assert len(ds.interactions) == 30 and (ds.interactions.items == again.interactions.items).all()
    with pytest.raises(InvalidInputError):
        synthetic_dataset(n_items=3, per_user=5)
    for bad in (0, -2, 2.5, True, "3"):  # every size: a positive int, named in the error
        with pytest.raises(InvalidInputError, match="n_genres"):
            synthetic_dataset(n_genres=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="n_users"):
            synthetic_dataset(n_users=bad)  # type: ignore[arg-type]
