from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlsys.common.errors import EmbeddingSpaceMismatchError, InvalidInputError, MlsysError
from mlsys.common.spaces import EmbeddingSpace


def make(**kw: object) -> EmbeddingSpace:
    base: dict[str, object] = dict(name="m", version="v1", dim=8, metric="cosine", normalized=True)
    base.update(kw)
    return EmbeddingSpace(**base)  # type: ignore[arg-type]


def test_same_width_model_swap_is_refused() -> None:
    a, b = make(), make(version="v2")
    assert a.dim == b.dim and a != b and a.space_id != b.space_id
    with pytest.raises(EmbeddingSpaceMismatchError, match=r"version: 'v2' != expected 'v1'") as info:
        a.check_same(b)
    assert isinstance(info.value, ValueError) and isinstance(info.value, MlsysError)


@pytest.mark.parametrize(
    "change",
    [
        {"name": "x"},
        {"dim": 9},
        {"metric": "ip"},
        {"normalized": False},
        {"pooling": "mean"},
        {"query_prefix": "query: "},
        {"document_prefix": "passage: "},
    ],
)
def test_every_field_is_part_of_the_identity(change: dict[str, object]) -> None:
    assert make().space_id != make(**change).space_id
    with pytest.raises(EmbeddingSpaceMismatchError):
        make().check_same(make(**change))


def test_space_id_is_stable_across_processes() -> None:
    # Pinned value: space_id must not depend on hash randomisation or dict order.
    assert make().space_id == EmbeddingSpace.from_dict(make().to_dict()).space_id
    assert make().space_id == "fa79c3d18f5fd887"
    assert pickle.loads(pickle.dumps(make())) == make()


@given(
    name=st.text(min_size=1, max_size=20),
    version=st.text(min_size=1, max_size=20),
    dim=st.integers(1, 4096),
    metric=st.sampled_from(["ip", "cosine", "l2"]),
    normalized=st.booleans(),
)
def test_dict_round_trip(name: str, version: str, dim: int, metric: str, normalized: bool) -> None:
    s = EmbeddingSpace(name, version, dim, metric=metric, normalized=normalized)  # type: ignore[arg-type]
    r = EmbeddingSpace.from_dict(s.to_dict())
    assert r == s and r.space_id == s.space_id


@pytest.mark.parametrize(
    "kw",
    [{"dim": 0}, {"dim": -3}, {"dim": 2.5}, {"dim": True}, {"metric": "dot"}, {"name": ""}, {"version": ""}],
)
def test_invalid_fields(kw: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        make(**kw)


def test_from_dict_refuses_unknown_fields() -> None:
    d = make().to_dict() | {"colour": "red"}
    with pytest.raises(InvalidInputError, match="colour"):
        EmbeddingSpace.from_dict(d)
