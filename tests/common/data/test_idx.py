from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mlsys.common.data import FASHION_MNIST_CLASSES, load_fashion_mnist, read_idx, write_idx
from mlsys.common.errors import CorruptFileError, DatasetNotFoundError, InvalidInputError

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


def _header(code: int, dims: tuple[int, ...]) -> bytes:
    return bytes([0, 0, code, len(dims)]) + np.asarray(dims, dtype=">u4").tobytes()


def test_reads_a_hand_written_big_endian_file(tmp_path: Path) -> None:
    values = np.array([[1, -2, 300], [70000, 0, -1]], dtype=">i4")
    p = tmp_path / "x-idx2-int"
    p.write_bytes(_header(0x0C, (2, 3)) + values.tobytes())
    out = read_idx(p)
    assert out.dtype == np.int32 and out.dtype.isnative
    np.testing.assert_array_equal(out, values.astype(np.int32))
    out[0, 0] = 5  # writable


@settings(max_examples=60, deadline=None)
@given(
    arr=st.sampled_from(DTYPES).flatmap(
        lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5))
    ),
    compress=st.booleans(),
)
def test_round_trip(tmp_path_factory: pytest.TempPathFactory, arr: np.ndarray, compress: bool) -> None:
    p = tmp_path_factory.mktemp("idx") / "a.idx"
    write_idx(arr, p, compress=compress)
    back = read_idx(p)
    assert back.dtype == arr.dtype and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)


def test_gzip_is_detected_from_content_not_name(tmp_path: Path) -> None:
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    p = tmp_path / "plain-name"
    write_idx(arr, p, compress=True)
    assert p.read_bytes()[:2] == b"\x1f\x8b"
    np.testing.assert_array_equal(read_idx(p), arr)


@pytest.mark.parametrize(
    ("blob", "match"),
    [
        (b"\x00\x00", "at least a 4-byte"),
        (b"\x01\x00\x08\x01" + b"\x00\x00\x00\x01" + b"\x05", "expected 0x0000"),
        (b"\x00\x00\x07\x01" + b"\x00\x00\x00\x01" + b"\x05", "unknown IDX dtype code 0x07"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"\x00\x00\x08\x03" + b"\x00\x00\x00\x01", "truncated header"),
        (_header(0x08, (2, 3)) + bytes(5), "truncated payload: 5 bytes of data, expected 6"),
        (_header(0x0D, (2,)) + bytes(7), "truncated payload: 7 bytes of data, expected 8"),
        (_header(0x08, (2,)) + bytes(3), "trailing bytes"),
    ],
)
def test_corrupt_files_name_the_file(tmp_path: Path, blob: bytes, match: str) -> None:
    for p, data in ((tmp_path / "bad.idx", blob), (tmp_path / "bad.idx.gz", gzip.compress(blob))):
        p.write_bytes(data)
        with pytest.raises(CorruptFileError, match=match) as info:
            read_idx(p)
        assert str(p) in str(info.value)


def test_truncated_gzip_stream(tmp_path: Path) -> None:
    p = tmp_path / "t.gz"
    blob = gzip.compress(_header(0x08, (100,)) + bytes(range(100)))
    p.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CorruptFileError, match="gzip") as info:
        read_idx(p)
    assert str(p) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"nope\.idx"):
        read_idx(tmp_path / "nope.idx")


def test_write_rejects_unsupported_dtypes(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="int64"):
        write_idx(np.zeros(3, dtype=np.int64), tmp_path / "x")
    with pytest.raises(InvalidInputError, match="dimensions"):
        write_idx(np.float32(1.0), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def _fake_fashion(root: Path, n_train: int = 7, n_test: int = 3, *, label_max: int = 9) -> None:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), root / f"{prefix}-images-idx3-ubyte.gz")
        write_idx(rng.integers(0, label_max + 1, n, dtype=np.uint8), root / f"{prefix}-labels-idx1-ubyte.gz")


def test_load_fashion_mnist_generated(tmp_path: Path) -> None:
    _fake_fashion(tmp_path)
    x_train, y_train, x_test, y_test = load_fashion_mnist(tmp_path)
    assert x_train.shape == (7, 28, 28) and x_train.dtype == np.uint8
    assert y_train.shape == (7,) and y_train.dtype == np.int64
    assert x_test.shape == (3, 28, 28) and y_test.shape == (3,)


def test_load_fashion_mnist_plain_files(tmp_path: Path) -> None:
    _fake_fashion(tmp_path)
    for gz in tmp_path.glob("*.gz"):
        gz.with_suffix("").write_bytes(gzip.decompress(gz.read_bytes()))
        gz.unlink()
    assert load_fashion_mnist(tmp_path).x_train.shape == (7, 28, 28)


def test_load_fashion_mnist_validates(tmp_path: Path) -> None:
    _fake_fashion(tmp_path, label_max=12)
    with pytest.raises(CorruptFileError, match=r"expected 0\.\.9"):
        load_fashion_mnist(tmp_path)
    _fake_fashion(tmp_path)
    write_idx(np.zeros(6, dtype=np.uint8), tmp_path / "train-labels-idx1-ubyte.gz")
    with pytest.raises(CorruptFileError, match="6 labels for 7 images"):
        load_fashion_mnist(tmp_path)
    write_idx(np.zeros((7, 28, 27), dtype=np.uint8), tmp_path / "train-images-idx3-ubyte.gz")
    with pytest.raises(CorruptFileError, match=r"expected uint8 \(n, 28, 28\)"):
        load_fashion_mnist(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    (tmp_path / "other").mkdir()
    _fake_fashion(tmp_path / "other")
    (tmp_path / "other" / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError, match="t10k-images-idx3-ubyte"):
        load_fashion_mnist(tmp_path / "other")


def test_real_fashion_mnist(dataset) -> None:  # type: ignore[no-untyped-def]
    x_train, y_train, x_test, y_test = load_fashion_mnist(dataset("fashion-mnist"))
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert x_train.dtype == np.uint8
    assert np.bincount(y_train).tolist() == [6000] * len(FASHION_MNIST_CLASSES)
    assert np.bincount(y_test).tolist() == [1000] * 10
    # Figures from the data set's SOURCE.md.
    assert x_train.mean() / 255 == pytest.approx(0.2860, abs=5e-5)
    assert x_test.mean() / 255 == pytest.approx(0.2868, abs=5e-5)
