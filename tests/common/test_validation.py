from __future__ import annotations

import numpy as np
import pytest

from mlsys.common.errors import DimensionMismatchError, DuplicateIdError, InvalidInputError, UnknownIdError
from mlsys.common.validation import as_ids, as_vectors, check_k, check_unique


def test_as_vectors_converts_and_is_contiguous() -> None:
    x = np.arange(12, dtype=np.float64).reshape(3, 4)[:, ::-1]
    out = as_vectors(x, dim=4)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, x.astype(np.float32))
    assert as_vectors(np.ones(4), dim=4).shape == (1, 4)


@pytest.mark.parametrize(
    ("x", "err", "msg"),
    [
        (np.ones((2, 3)), DimensionMismatchError, "dim 3, expected 4"),
        (np.ones((2, 2, 4)), InvalidInputError, "shape"),
        (np.zeros((0, 4)), InvalidInputError, "empty"),
        (np.array([[1, np.nan, 0, 0]]), InvalidInputError, "NaN"),
        (np.array([[1, np.inf, 0, 0]]), InvalidInputError, "row 0"),
        (np.array([["a", "b", "c", "d"]]), InvalidInputError, "numeric"),
    ],
)
def test_as_vectors_refuses(x: np.ndarray, err: type[Exception], msg: str) -> None:
    with pytest.raises(err, match=msg):
        as_vectors(x, dim=4)


def test_ids() -> None:
    assert as_ids([1, 2]).dtype == np.int64
    with pytest.raises(InvalidInputError, match="integers"):
        as_ids([1.5])
    with pytest.raises(InvalidInputError, match="one id per vector"):
        as_ids([1, 2], n=3)
    with pytest.raises(DuplicateIdError, match=r"\[2\]"):
        check_unique(np.array([1, 2, 2]))


@pytest.mark.parametrize("k", [0, -1, 1.5, True, "3"])
def test_check_k_refuses(k: object) -> None:
    with pytest.raises(InvalidInputError):
        check_k(k)


def test_unknown_id_error_message_is_not_quoted() -> None:
    e = UnknownIdError("id 7 is not in the index")
    assert str(e) == "id 7 is not in the index" and isinstance(e, KeyError)
