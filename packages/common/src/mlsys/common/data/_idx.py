"""IDX files (the MNIST / Fashion-MNIST format), plain or gzip, and the Fashion-MNIST loader.

An IDX file is a 4-byte magic number ``0x00 0x00 <dtype code> <ndim>``, then ``ndim`` big-endian
uint32 dimensions, then the values in C order, big-endian. Dtype codes: ``0x08`` uint8, ``0x09``
int8, ``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from mlsys.common.data._io import PathLike, read_bytes
from mlsys.common.errors import CorruptFileError, DatasetNotFoundError, InvalidInputError

__all__ = ["FASHION_MNIST_CLASSES", "FashionMNIST", "load_fashion_mnist", "read_idx", "write_idx"]

_CODE_TO_DTYPE: dict[int, np.dtype[np.generic]] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_DTYPE_TO_CODE: dict[str, int] = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
"""The ten Fashion-MNIST class names, indexed by label (0 = ``"T-shirt/top"``)."""


def read_idx(path: PathLike) -> npt.NDArray[np.generic]:
    """Read an IDX file (gzip-compressed or plain) into a writable, native-byte-order numpy array.

    The header is validated: the two leading zero bytes, a known dtype code, at least one
    dimension, and a payload of exactly ``prod(dims) * itemsize`` bytes. Anything else raises
    :class:`~mlsys.common.errors.CorruptFileError` naming the file, what was found and what was
    expected; a missing file raises :class:`~mlsys.common.errors.DatasetNotFoundError`.

    Args:
        path: the ``.idx`` / ``-ubyte`` file, optionally gzip-compressed (detected from the content).

    Returns:
        An array of shape ``dims`` with dtype uint8, int8, int16, int32, float32 or float64.

    Example:
        >>> import numpy as np, tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "x.idx")
        >>> write_idx(np.arange(6, dtype=np.uint8).reshape(2, 3), p)
        >>> read_idx(p)
        array([[0, 1, 2],
               [3, 4, 5]], dtype=uint8)
    """
    data = read_bytes(path, what="IDX file")
    if len(data) < 4:
        raise CorruptFileError(f"{path}: {len(data)} bytes, expected at least a 4-byte IDX magic number")
    if data[0] != 0 or data[1] != 0:
        raise CorruptFileError(
            f"{path}: magic number starts with 0x{data[0]:02x}{data[1]:02x}, expected 0x0000 (not an IDX file)"
        )
    code, ndim = data[2], data[3]
    if code not in _CODE_TO_DTYPE:
        valid = ", ".join(f"0x{c:02x}" for c in _CODE_TO_DTYPE)
        raise CorruptFileError(f"{path}: unknown IDX dtype code 0x{code:02x}, expected one of {valid}")
    if ndim == 0:
        raise CorruptFileError(f"{path}: IDX header declares 0 dimensions, expected at least 1")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise CorruptFileError(
            f"{path}: truncated header: {len(data)} bytes, expected {header} for {ndim} dimensions"
        )
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _CODE_TO_DTYPE[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    got = len(data) - header
    if got != expected:
        kind = "truncated payload" if got < expected else "trailing bytes after payload"
        raise CorruptFileError(
            f"{path}: {kind}: {got} bytes of data, expected {expected} for shape {dims} of {dtype.name}"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def write_idx(array: npt.ArrayLike, path: PathLike, *, compress: bool | None = None) -> None:
    """Write ``array`` as an IDX file; gzip-compressed when ``compress`` (default: path ends in ``.gz``).

    Example:
        >>> import numpy as np, tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "y.idx.gz")
        >>> write_idx(np.array([1.5, -2.0], dtype=np.float32), p)
        >>> read_idx(p).tolist()
        [1.5, -2.0]
    """
    arr = np.asarray(array)
    key = f"{arr.dtype.kind}{arr.dtype.itemsize}"
    if key not in _DTYPE_TO_CODE:
        raise InvalidInputError(
            f"IDX cannot store dtype {arr.dtype}; expected uint8, int8, int16, int32, float32 or float64"
        )
    if arr.ndim == 0 or arr.ndim > 255:
        raise InvalidInputError(f"IDX needs 1 to 255 dimensions, got an array of shape {arr.shape}")
    if any(d >= 2**32 for d in arr.shape):
        raise InvalidInputError(f"IDX dimensions must be < 2**32, got shape {arr.shape}")
    header = bytes([0, 0, _DTYPE_TO_CODE[key], arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    payload = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder(">")).tobytes()
    p = Path(path)
    if compress is None:
        compress = p.suffix == ".gz"
    blob = header + payload
    p.write_bytes(gzip.compress(blob, mtime=0) if compress else blob)


class FashionMNIST(NamedTuple):
    """Fashion-MNIST arrays; unpacks as ``x_train, y_train, x_test, y_test``.

    Images are uint8 ``(n, 28, 28)``; labels are int64 ``(n,)`` in ``0..9`` (class names in
    :data:`FASHION_MNIST_CLASSES`).
    """

    x_train: npt.NDArray[np.uint8]
    y_train: npt.NDArray[np.int64]
    x_test: npt.NDArray[np.uint8]
    y_test: npt.NDArray[np.int64]


def _find_idx(root: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (root / name).is_file():
            return root / name
    raise DatasetNotFoundError(f"Fashion-MNIST file {stem}[.gz] not found in {root}")


def _load_split(root: Path, prefix: str) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    img_path = _find_idx(root, f"{prefix}-images-idx3-ubyte")
    lbl_path = _find_idx(root, f"{prefix}-labels-idx1-ubyte")
    images: npt.NDArray[np.uint8] = read_idx(img_path)  # type: ignore[assignment]  # dtype checked below
    labels: npt.NDArray[np.uint8] = read_idx(lbl_path)  # type: ignore[assignment]
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise CorruptFileError(
            f"{img_path}: images of shape {images.shape} and dtype {images.dtype}, expected uint8 (n, 28, 28)"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise CorruptFileError(
            f"{lbl_path}: labels of shape {labels.shape} and dtype {labels.dtype}, expected uint8 (n,)"
        )
    if labels.shape[0] != images.shape[0]:
        raise CorruptFileError(
            f"{lbl_path}: {labels.shape[0]} labels for {images.shape[0]} images in {img_path}; expected equal counts"
        )
    if labels.size and int(labels.max()) >= len(FASHION_MNIST_CLASSES):
        bad = int(np.flatnonzero(labels >= len(FASHION_MNIST_CLASSES))[0])
        raise CorruptFileError(f"{lbl_path}: label {int(labels[bad])} at record {bad}, expected 0..9")
    return images, labels.astype(np.int64)


def load_fashion_mnist(root: PathLike) -> FashionMNIST:
    """Load Fashion-MNIST from a folder holding the four official ``*-idx?-ubyte[.gz]`` files.

    Args:
        root: folder with ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
            ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz`` (plain files work too).

    Returns:
        :class:`FashionMNIST` (a named tuple): uint8 images ``(n, 28, 28)`` and int64 labels
        ``(n,)``; 60,000 train and 10,000 test records for the official release.

    Example:
        >>> from mlsys.common.data import find_dataset
        >>> x_train, y_train, x_test, y_test = load_fashion_mnist(find_dataset("fashion-mnist"))  # doctest: +SKIP
        >>> x_train.shape, y_test.shape  # doctest: +SKIP
        ((60000, 28, 28), (10000,))
    """
    base = Path(root)
    if not base.is_dir():
        raise DatasetNotFoundError(f"Fashion-MNIST folder not found: {base}")
    x_train, y_train = _load_split(base, "train")
    x_test, y_test = _load_split(base, "t10k")
    return FashionMNIST(x_train, y_train, x_test, y_test)
