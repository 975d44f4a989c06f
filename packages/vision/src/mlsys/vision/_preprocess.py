"""Image preprocessing with PIL or OpenCV: decode, resize (shorter side), center crop, normalize.

Every step is a stage of a :class:`~mlsys.common.profiling.LatencyProfiler` (``"decode"``,
``"resize"``, ``"crop"``, ``"normalize"``).

Documented conversions (identical for both backends, done in numpy after decoding):

* **Formats**: JPEG and PNG, recognised by their signature; anything else raises
  :class:`UnsupportedImageError`. Truncated files (a PNG without its ``IEND`` chunk, a JPEG without
  its end-of-image marker) and undecodable bytes raise :class:`ImageDecodeError` -- OpenCV would
  otherwise return a partially grey image.
* **Decompression bombs**: both backends read the width and height the PNG/JPEG header declares
  before decoding and refuse more than ``mlsys.common.limits.Limits.max_image_pixels`` (Pillow's
  default, 89,478,485) with :class:`ImageDecodeError`, in microseconds. Raise it with
  ``mlsys.common.limits.limits(max_image_pixels=...)``; beyond twice Pillow's own
  ``PIL.Image.MAX_IMAGE_PIXELS`` the PIL backend also needs that raised.
* **16-bit images** (16-bit PNGs) are reduced to 8 bits by keeping the high byte (``v >> 8``).
* **Alpha** (RGBA, LA, palette with transparency) is composited over ``background`` (white by
  default); alpha never reaches the model.
* **Channels**: ``channels=3`` replicates grayscale to RGB; ``channels=1`` converts RGB to luma with
  the ITU-R BT.601 weights (0.299, 0.587, 0.114), rounded.
* **Zero-size** arrays raise :class:`~mlsys.common.errors.InvalidInputError`; a crop larger than the
  (resized) image raises it too, naming both sizes.

Resizing differs between the libraries: PIL's bilinear filter widens its support when downscaling
(antialiasing), OpenCV's ``INTER_LINEAR`` does not and aliases. The OpenCV backend therefore uses
``INTER_AREA`` to downscale by default (``opencv_downscale="area"``); the outputs of the two
backends then agree within :data:`BACKEND_TOLERANCE` (mean absolute difference of the normalised
tensor divided by the std, i.e. in units of 1/255 pixel levels: see the tests). ``"linear"`` is
faster and aliases.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from mlsys.common._optional import import_optional
from mlsys.common.errors import CorruptFileError, InvalidInputError, LimitExceededError
from mlsys.common.limits import check_image_pixels
from mlsys.common.profiling import LatencyProfiler

__all__ = [
    "BACKEND_TOLERANCE",
    "ImageDecodeError",
    "ImageInput",
    "PreprocessConfig",
    "Preprocessor",
    "UnsupportedImageError",
]

ImageInput = bytes | bytearray | memoryview | str | Path | np.ndarray
"""What the preprocessor accepts: encoded bytes, a file path, or a decoded uint8/uint16 array."""

#: Agreement of the PIL and OpenCV (``INTER_AREA``) backends on downscaled images, in pixel levels
#: (0..255) of the resized uint8 image: mean absolute difference, max absolute difference.
BACKEND_TOLERANCE: dict[str, float] = {"mean_abs": 4.0, "max_abs": 40.0}
"""Agreement of the PIL and OpenCV backends on downscaled images, in pixel levels (0..255) of
the resized uint8 image: mean and max absolute difference.
"""

_PNG = b"\x89PNG\r\n\x1a\n"
_JPEG = b"\xff\xd8\xff"


class ImageDecodeError(CorruptFileError):
    """Image bytes that cannot be decoded: empty, truncated, corrupt, or declaring more pixels than
    ``mlsys.common.limits.Limits.max_image_pixels`` (a decompression bomb, refused before decoding)."""


class UnsupportedImageError(InvalidInputError):
    """An input that is not a JPEG/PNG file, a path to one, or a uint8/uint16 image array."""


@dataclass(frozen=True)
class PreprocessConfig:
    """Configuration of :class:`Preprocessor`.

    Args:
        resize: target length of the shorter side (aspect ratio kept); None = no resize.
        crop: side of the square center crop; None = no crop (a batch then needs equal sizes).
        mean: per-channel mean in [0, 1] units (one value, or one per channel).
        std: per-channel std in [0, 1] units (one value, or one per channel).
        channels: 1 (grayscale) or 3 (RGB) channels out.
        backend: ``"pil"`` or ``"opencv"``.
        opencv_downscale: ``"area"`` (antialiased, agrees with PIL) or ``"linear"`` (faster,
            aliases); OpenCV upscales with ``INTER_LINEAR`` either way.
        background: RGB colour alpha is composited over.
        output: ``"numpy"`` (float32 ``(B, C, H, W)``) or ``"torch"`` (a tensor of the same).

    Example:
        >>> PreprocessConfig(resize=32, crop=28, mean=(0.286,), std=(0.353,), channels=1).crop
        28
    """

    resize: int | None = 256
    crop: int | None = 224
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    channels: int = 3
    backend: Literal["pil", "opencv"] = "pil"
    opencv_downscale: Literal["area", "linear"] = "area"
    background: tuple[int, int, int] = (255, 255, 255)
    output: Literal["numpy", "torch"] = "numpy"

    def __post_init__(self) -> None:
        for name in ("resize", "crop"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
                raise InvalidInputError(f"PreprocessConfig.{name} must be a positive int or None, got {v!r}")
        if self.resize is not None and self.crop is not None and self.crop > self.resize:
            raise InvalidInputError(
                f"PreprocessConfig.crop {self.crop} is larger than the resized shorter side {self.resize}; "
                f"expected crop <= resize"
            )
        if (
            isinstance(self.channels, bool)
            or not isinstance(self.channels, int)
            or self.channels not in (1, 3)
        ):
            raise InvalidInputError(f"PreprocessConfig.channels must be 1 or 3, got {self.channels!r}")
        mean, std = tuple(self.mean), tuple(self.std)
        for name, v in (("mean", mean), ("std", std)):
            if len(v) not in (1, self.channels):
                raise InvalidInputError(
                    f"PreprocessConfig.{name} has {len(v)} values, expected 1 or {self.channels} (channels)"
                )
        if any(not s > 0 for s in std):
            raise InvalidInputError(f"PreprocessConfig.std must be > 0, got {std}")
        if self.backend not in ("pil", "opencv"):
            raise InvalidInputError(
                f"PreprocessConfig.backend must be 'pil' or 'opencv', got {self.backend!r}"
            )
        if self.opencv_downscale not in ("area", "linear"):
            raise InvalidInputError(
                f"PreprocessConfig.opencv_downscale must be 'area' or 'linear', got {self.opencv_downscale!r}"
            )
        if len(self.background) != 3 or any(not 0 <= int(c) <= 255 for c in self.background):
            raise InvalidInputError(
                f"PreprocessConfig.background must be 3 ints in 0..255, got {self.background}"
            )
        if self.output not in ("numpy", "torch"):
            raise InvalidInputError(
                f"PreprocessConfig.output must be 'numpy' or 'torch', got {self.output!r}"
            )
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @property
    def output_size(self) -> int | None:
        """Side of the square output, when fixed by ``crop``."""
        return self.crop


def _read_bytes(image: ImageInput) -> bytes:
    if isinstance(image, (str, Path)):
        p = Path(image)
        if not p.is_file():
            raise InvalidInputError(f"image file not found: {p}")
        return p.read_bytes()
    return bytes(image)  # type: ignore[arg-type]


_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _declared_size(data: bytes, kind: str) -> tuple[int, int]:
    """``(width, height)`` that a PNG or JPEG header declares, read without decoding any pixel."""
    if kind == "png":
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise ImageDecodeError(f"PNG of {len(data)} bytes has no IHDR header; expected a valid PNG")
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            break
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        seg = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in _JPEG_SOF:
            if i + 9 > n:
                break
            return int.from_bytes(data[i + 7 : i + 9], "big"), int.from_bytes(data[i + 5 : i + 7], "big")
        if marker == 0xDA or seg < 2:  # start of scan before any frame header
            break
        i += 2 + seg
    raise ImageDecodeError(
        f"JPEG of {len(data)} bytes has no frame header before its scan; expected a valid JPEG"
    )


def _check_pixels(data: bytes, kind: str) -> None:
    """Refuse an image whose header declares more than ``Limits.max_image_pixels`` (before decoding)."""
    width, height = _declared_size(data, kind)
    try:
        check_image_pixels(width, height, source=kind.upper())
    except LimitExceededError as exc:
        raise ImageDecodeError(f"{exc} (a decompression bomb is refused before decoding)") from exc


def _check_encoded(data: bytes) -> str:
    if len(data) == 0:
        raise ImageDecodeError("image bytes are empty; expected a JPEG or PNG file")
    if data.startswith(_PNG):
        if data.rfind(b"IEND") < 0:
            raise ImageDecodeError(f"PNG of {len(data)} bytes is truncated (no IEND chunk)")
        return "png"
    if data.startswith(_JPEG):
        if data.rfind(b"\xff\xd9") < 3:
            raise ImageDecodeError(f"JPEG of {len(data)} bytes is truncated (no end-of-image marker)")
        return "jpeg"
    raise UnsupportedImageError(
        f"unrecognised image format (first bytes {data[:8]!r}); expected a JPEG or PNG file"
    )


class Preprocessor:
    """Decode, resize, crop and normalize images into a batched float32 ``(B, C, H, W)`` array.

    Args:
        config: the preprocessing configuration.
        profiler: where stage timings go; a new :class:`LatencyProfiler` when None.

    Example:
        >>> import numpy as np
        >>> pre = Preprocessor(PreprocessConfig(resize=16, crop=16, mean=(0.5,), std=(0.5,), channels=1))
        >>> pre([np.zeros((20, 30), np.uint8)]).shape
        (1, 1, 16, 16)
        >>> sorted(pre.profiler.stats())
        ['crop', 'decode', 'end_to_end', 'normalize', 'resize']
    """

    def __init__(
        self, config: PreprocessConfig | None = None, *, profiler: LatencyProfiler | None = None
    ) -> None:
        self.config = config if config is not None else PreprocessConfig()
        if not isinstance(self.config, PreprocessConfig):
            raise InvalidInputError(f"config must be a PreprocessConfig, got {type(self.config).__name__}")
        self.profiler = profiler if profiler is not None else LatencyProfiler()
        if self.config.backend == "opencv":
            self._cv2: Any = import_optional(
                "cv2", package="opencv-python-headless", extra="mlsys-vision[opencv]"
            )
        else:
            self._cv2 = None
        c = self.config.channels
        mean = np.broadcast_to(np.asarray(self.config.mean, np.float32), (c,))
        std = np.broadcast_to(np.asarray(self.config.std, np.float32), (c,))
        self._scale = (1.0 / (255.0 * std)).astype(np.float32)
        self._offset = (-mean / std).astype(np.float32)

    # -- decode ------------------------------------------------------------------------------
    def _decode_pil(self, data: bytes) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(data)) as src:
                src.load()
                mode = src.mode
                img: Image.Image = src
                if mode == "P":
                    img = src.convert("RGBA" if "transparency" in src.info else "RGB")
                elif mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
                    img = src.convert("L" if mode == "1" else "RGB")
                elif mode in ("PA", "La", "RGBa"):
                    img = src.convert("RGBA")
                return np.asarray(img)
        except (
            OSError,
            SyntaxError,
            ValueError,
            UnidentifiedImageError,
            Image.DecompressionBombError,
        ) as exc:
            raise ImageDecodeError(f"cannot decode image ({len(data)} bytes): {exc}") from exc

    def _decode_cv2(self, data: bytes) -> np.ndarray:
        cv2 = self._cv2
        buf = np.frombuffer(data, np.uint8)
        try:
            arr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        except cv2.error as exc:
            raise ImageDecodeError(f"cannot decode image ({len(data)} bytes): {exc}") from exc
        if arr is None:
            raise ImageDecodeError(f"cannot decode image ({len(data)} bytes): OpenCV returned no image")
        if arr.ndim == 3 and arr.shape[2] == 3:
            arr = arr[:, :, ::-1]
        elif arr.ndim == 3 and arr.shape[2] == 4:
            arr = arr[:, :, [2, 1, 0, 3]]
        return arr

    def _convert(self, arr: np.ndarray) -> npt.NDArray[np.uint8]:
        """Bring a decoded array to uint8 ``(H, W, channels)`` (see the module doc)."""
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (2, 3, 4)):
            raise UnsupportedImageError(
                f"image array has shape {arr.shape}; expected (H, W) or (H, W, C) with C in 1, 2, 3, 4"
            )
        if arr.shape[0] == 0 or arr.shape[1] == 0:
            raise InvalidInputError(f"image has zero size {arr.shape[:2]}; expected height and width >= 1")
        if arr.dtype == np.uint16 or arr.dtype == np.dtype(">u2"):
            arr = (arr.astype(np.uint16) >> 8).astype(np.uint8)
        elif arr.dtype == np.int32 and arr.ndim == 2:  # PIL mode "I" from a 16-bit PNG
            arr = (np.clip(arr, 0, 65535) >> 8).astype(np.uint8)
        elif arr.dtype == np.bool_:
            arr = arr.astype(np.uint8) * 255
        elif arr.dtype != np.uint8:
            raise UnsupportedImageError(f"image array has dtype {arr.dtype}; expected uint8 or uint16")
        if arr.ndim == 3 and arr.shape[2] in (2, 4):  # gray+alpha or RGBA: composite over background
            color = arr[:, :, :-1].astype(np.uint16)
            alpha = arr[:, :, -1:].astype(np.uint16)
            bg = np.asarray(self.config.background, np.uint16)
            if color.shape[2] == 1:
                bg = np.asarray([round(float(bg @ np.array([0.299, 0.587, 0.114])))], np.uint16)
            arr = ((color * alpha + bg * (255 - alpha) + 127) // 255).astype(np.uint8)
            if arr.shape[2] == 1:
                arr = arr[:, :, 0]
        want = self.config.channels
        if want == 1 and arr.ndim == 3:
            luma = arr.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
            arr = np.clip(np.rint(luma), 0, 255).astype(np.uint8)
        if arr.ndim == 2:
            arr = arr[:, :, None]
            if want == 3:
                arr = np.repeat(arr, 3, axis=2)
        return np.ascontiguousarray(arr)

    def decode(self, image: ImageInput) -> npt.NDArray[np.uint8]:
        """Decode one image (bytes, path or array) to uint8 ``(H, W, channels)``; stage ``"decode"``."""
        with self.profiler.stage("decode"):
            if isinstance(image, np.ndarray):
                return self._convert(image)
            if not isinstance(image, (bytes, bytearray, memoryview, str, Path)):
                raise UnsupportedImageError(
                    f"cannot preprocess a {type(image).__name__}; expected bytes, a path or a numpy array"
                )
            data = _read_bytes(image)
            _check_pixels(data, _check_encoded(data))
            arr = self._decode_cv2(data) if self._cv2 is not None else self._decode_pil(data)
            return self._convert(arr)

    # -- geometry ----------------------------------------------------------------------------
    def resize(self, img: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        """Resize so the shorter side is ``config.resize``; stage ``"resize"``."""
        with self.profiler.stage("resize"):
            target = self.config.resize
            h, w = img.shape[:2]
            if target is None or min(h, w) == target:
                return img
            if h <= w:
                nh, nw = target, max(1, round(w * target / h))
            else:
                nh, nw = max(1, round(h * target / w)), target
            if self._cv2 is not None:
                cv2 = self._cv2
                down = nh < h or nw < w
                interp = (
                    cv2.INTER_AREA if down and self.config.opencv_downscale == "area" else cv2.INTER_LINEAR
                )
                out = cv2.resize(img, (nw, nh), interpolation=interp)
            else:
                from PIL import Image

                pil = Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)
                out = np.asarray(pil.resize((nw, nh), Image.Resampling.BILINEAR))
            if out.ndim == 2:
                out = out[:, :, None]
            return out

    def crop(self, img: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        """Center-crop to ``config.crop`` squared; stage ``"crop"``."""
        with self.profiler.stage("crop"):
            c = self.config.crop
            if c is None:
                return img
            h, w = img.shape[:2]
            if c > h or c > w:
                raise InvalidInputError(
                    f"crop {c}x{c} is larger than the image {h}x{w}; expected crop <= both sides"
                )
            top, left = round((h - c) / 2.0), round((w - c) / 2.0)
            return img[top : top + c, left : left + c]

    def normalize(self, images: Sequence[npt.NDArray[np.uint8]]) -> Any:
        """Stack, scale to [0, 1], normalise with mean/std and transpose to ``(B, C, H, W)``; stage ``"normalize"``."""
        with self.profiler.stage("normalize"):
            shapes = {im.shape for im in images}
            if len(shapes) != 1:
                raise InvalidInputError(
                    f"images of different sizes {sorted(shapes)} cannot be batched; set crop to a fixed size"
                )
            batch = np.stack(images).astype(np.float32)
            batch *= self._scale
            batch += self._offset
            out = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
            if self.config.output == "torch":
                import torch

                return torch.from_numpy(out)
            return out

    # -- public entry points ---------------------------------------------------------------------
    def image(self, image: ImageInput) -> npt.NDArray[np.uint8]:
        """Decode, resize and crop one image: uint8 ``(H, W, channels)`` before normalisation."""
        return self.crop(self.resize(self.decode(image)))

    def __call__(self, images: ImageInput | Sequence[ImageInput]) -> Any:
        """Preprocess one image or a sequence of images into a float32 ``(B, C, H, W)`` batch.

        A single image (bytes, path or array) gives a batch of one. The whole call is one
        end-to-end request of the profiler.
        """
        items: Sequence[ImageInput]
        if isinstance(images, (bytes, bytearray, memoryview, str, Path, np.ndarray)):
            items = [images]
        else:
            items = list(images)
        if not items:
            raise InvalidInputError("no images given; expected at least one")
        with self.profiler.request():
            return self.normalize([self.image(im) for im in items])
