from __future__ import annotations

import io
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mlsys.common.errors import CorruptFileError, InvalidInputError
from mlsys.common.profiling import LatencyProfiler
from mlsys.vision import (
    BACKEND_TOLERANCE,
    ImageDecodeError,
    PreprocessConfig,
    Preprocessor,
    UnsupportedImageError,
)

BACKENDS = ["pil", "opencv"]


def _encode(arr: np.ndarray, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt, **kw)
    return buf.getvalue()


def _smooth_rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    return cv2.GaussianBlur(x, (0, 0), 2.0)


def _gray_config(backend: str, **kw: object) -> PreprocessConfig:
    base: dict[str, object] = dict(
        resize=None, crop=None, mean=(0.0,), std=(1.0,), channels=1, backend=backend
    )
    base.update(kw)
    return PreprocessConfig(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", BACKENDS)
def test_png_round_trip_is_exact(backend: str) -> None:
    img = _smooth_rgb(20, 30)
    pre = Preprocessor(PreprocessConfig(resize=None, crop=None, mean=(0.0,), std=(1.0,), backend=backend))
    assert np.array_equal(pre.decode(_encode(img, "PNG")), img)
    out = pre([_encode(img, "PNG")])
    assert out.shape == (1, 3, 20, 30) and out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(out[0], img.transpose(2, 0, 1) / 255.0, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_path_input_and_jpeg(backend: str, tmp_path: Path) -> None:
    img = _smooth_rgb(40, 40)
    p = tmp_path / "x.jpg"
    p.write_bytes(_encode(img, "JPEG", quality=95))
    pre = Preprocessor(PreprocessConfig(resize=None, crop=None, backend=backend))
    dec = pre.decode(p)
    assert dec.shape == (40, 40, 3)
    assert np.abs(dec.astype(int) - img).mean() < 3.0  # lossy, but close
    assert pre.decode(str(p)).shape == (40, 40, 3)
    with pytest.raises(InvalidInputError, match="not found"):
        pre.decode(tmp_path / "missing.png")


def test_jpeg_decoders_agree() -> None:
    data = _encode(_smooth_rgb(64, 48), "JPEG", quality=90)
    a = Preprocessor(PreprocessConfig(resize=None, crop=None, backend="pil")).decode(data)
    b = Preprocessor(PreprocessConfig(resize=None, crop=None, backend="opencv")).decode(data)
    assert np.abs(a.astype(int) - b).max() <= 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_gray_rgb_rgba_conversions(backend: str) -> None:
    rgb = _smooth_rgb(10, 12)
    gray = rgb[:, :, 0].copy()
    alpha = np.linspace(0, 255, 120).reshape(10, 12).astype(np.uint8)
    rgba = np.dstack([rgb, alpha])
    to3 = Preprocessor(PreprocessConfig(resize=None, crop=None, backend=backend, background=(255, 255, 255)))
    to1 = Preprocessor(_gray_config(backend))
    # grayscale -> RGB replicates the channel
    assert np.array_equal(to3.decode(_encode(gray, "PNG")), np.repeat(gray[:, :, None], 3, axis=2))
    # RGB -> gray uses BT.601 luma (PIL's own convert("L") agrees within rounding)
    luma = to1.decode(_encode(rgb, "PNG"))[:, :, 0]
    pil_luma = np.asarray(Image.fromarray(rgb).convert("L"))
    assert np.abs(luma.astype(int) - pil_luma).max() <= 1
    # RGBA -> RGB composites over the background; alpha 0 gives the background, 255 the colour
    comp = to3.decode(_encode(rgba, "PNG")).astype(int)
    expected = (rgb.astype(int) * alpha[..., None] + 255 * (255 - alpha[..., None].astype(int)) + 127) // 255
    assert np.array_equal(comp, expected)
    assert (comp[0, 0] == 255).all()
    # gray + alpha (LA)
    la = Image.fromarray(np.dstack([gray, alpha]), mode="LA")
    buf = io.BytesIO()
    la.save(buf, "PNG")
    out = to1.decode(buf.getvalue())[:, :, 0].astype(int)
    exp = (gray.astype(int) * alpha + 255 * (255 - alpha.astype(int)) + 127) // 255
    assert np.abs(out - exp).max() <= 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_16bit_png_keeps_high_byte(backend: str) -> None:
    rng = np.random.default_rng(0)
    arr16 = rng.integers(0, 65536, (9, 11), dtype=np.uint16)
    ok, enc = cv2.imencode(".png", arr16)
    assert ok
    out = Preprocessor(_gray_config(backend)).decode(enc.tobytes())
    assert out.dtype == np.uint8 and np.array_equal(out[:, :, 0], (arr16 >> 8).astype(np.uint8))


def test_16bit_rgb_png_opencv() -> None:
    rng = np.random.default_rng(1)
    arr16 = rng.integers(0, 65536, (5, 6, 3), dtype=np.uint16)
    ok, enc = cv2.imencode(".png", arr16[:, :, ::-1])  # OpenCV writes BGR
    assert ok
    out = Preprocessor(PreprocessConfig(resize=None, crop=None, backend="opencv")).decode(enc.tobytes())
    assert np.array_equal(out, (arr16 >> 8).astype(np.uint8))
    out_pil = Preprocessor(PreprocessConfig(resize=None, crop=None, backend="pil")).decode(enc.tobytes())
    assert np.abs(out_pil.astype(int) - out).max() <= 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_corrupt_truncated_and_unsupported_bytes(backend: str) -> None:
    pre = Preprocessor(PreprocessConfig(resize=None, crop=None, backend=backend))
    png = _encode(_smooth_rgb(32, 32), "PNG")
    jpg = _encode(_smooth_rgb(32, 32), "JPEG")
    with pytest.raises(ImageDecodeError, match="empty"):
        pre.decode(b"")
    with pytest.raises(ImageDecodeError, match="truncated"):
        pre.decode(png[: len(png) // 2])
    with pytest.raises(ImageDecodeError, match="truncated"):
        pre.decode(jpg[: len(jpg) // 2])
    corrupt = bytearray(png)
    corrupt[40:60] = b"\x00" * 20  # inside IHDR/IDAT: CRC or zlib failure
    with pytest.raises(ImageDecodeError):
        pre.decode(bytes(corrupt))
    with pytest.raises(UnsupportedImageError, match="expected a JPEG or PNG"):
        pre.decode(b"GIF89a" + b"\x00" * 20)
    with pytest.raises(UnsupportedImageError):
        pre.decode(12345)  # type: ignore[arg-type]
    assert issubclass(ImageDecodeError, CorruptFileError)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_size_images(backend: str) -> None:
    pre = Preprocessor(_gray_config(backend))
    with pytest.raises(InvalidInputError, match="zero size"):
        pre.decode(np.zeros((0, 5), np.uint8))
    # a PNG whose header declares width 0 is refused by the decoders
    ihdr = (0).to_bytes(4, "big") + (4).to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    png = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b""))
        + _png_chunk(b"IEND", b"")
    )
    with pytest.raises((ImageDecodeError, InvalidInputError)):
        pre.decode(png)


def test_array_inputs_validation() -> None:
    pre = Preprocessor(PreprocessConfig(resize=None, crop=None))
    with pytest.raises(UnsupportedImageError, match="dtype"):
        pre.decode(np.zeros((4, 4), np.float32))
    with pytest.raises(UnsupportedImageError, match="shape"):
        pre.decode(np.zeros((4, 4, 5), np.uint8))
    assert pre.decode(np.zeros((4, 4, 1), np.uint8)).shape == (4, 4, 3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_resize_shorter_side_and_center_crop(backend: str) -> None:
    pre = Preprocessor(PreprocessConfig(resize=32, crop=24, backend=backend))
    img = _smooth_rgb(60, 90)
    resized = pre.resize(img)
    assert resized.shape == (32, 48, 3)
    cropped = pre.crop(resized)
    assert np.array_equal(cropped, resized[4:28, 12:36])
    tall = pre.resize(_smooth_rgb(90, 60))
    assert tall.shape == (48, 32, 3)
    gray = Preprocessor(_gray_config(backend, resize=8)).resize(np.zeros((16, 16, 1), np.uint8))
    assert gray.shape == (8, 8, 1)


def test_crop_larger_than_image_raises() -> None:
    with pytest.raises(InvalidInputError, match="crop 40 is larger"):
        PreprocessConfig(resize=32, crop=40)
    pre = Preprocessor(PreprocessConfig(resize=None, crop=40))
    with pytest.raises(InvalidInputError, match="crop 40x40 is larger than the image 30x50"):
        pre.crop(np.zeros((30, 50, 3), np.uint8))


def test_mixed_sizes_need_a_crop() -> None:
    pre = Preprocessor(PreprocessConfig(resize=None, crop=None))
    with pytest.raises(InvalidInputError, match="different sizes"):
        pre([np.zeros((4, 4, 3), np.uint8), np.zeros((5, 4, 3), np.uint8)])
    with pytest.raises(InvalidInputError, match="no images"):
        pre([])


@pytest.mark.parametrize(
    "kw",
    [
        {"channels": 2},
        {"mean": (0.1, 0.2)},
        {"std": (0.0,)},
        {"backend": "skimage"},
        {"resize": 0},
        {"output": "list"},
        {"background": (0, 0)},
        {"opencv_downscale": "cubic"},
    ],
)
def test_config_validation(kw: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        PreprocessConfig(**kw)  # type: ignore[arg-type]


def test_normalize_values_and_torch_output() -> None:
    cfg = PreprocessConfig(
        resize=None, crop=None, mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0), output="torch"
    )
    img = np.full((2, 2, 3), 255, np.uint8)
    out = Preprocessor(cfg)(img)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    np.testing.assert_allclose(out[0, :, 0, 0].numpy(), [1.0, 3.0, 1.0], rtol=1e-6)


def test_every_step_is_a_profiler_stage() -> None:
    prof = LatencyProfiler()
    pre = Preprocessor(PreprocessConfig(resize=16, crop=16), profiler=prof)
    pre([_encode(_smooth_rgb(20, 20), "PNG")] * 3)
    stats = prof.stats()
    assert {k: stats[k].count for k in ("decode", "resize", "crop", "normalize", "end_to_end")} == {
        "decode": 3,
        "resize": 3,
        "crop": 3,
        "normalize": 1,
        "end_to_end": 1,
    }


@settings(max_examples=15, deadline=None)
@given(h=st.integers(40, 160), w=st.integers(40, 160), target=st.integers(12, 40), seed=st.integers(0, 100))
def test_backends_agree_within_tolerance(h: int, w: int, target: int, seed: int) -> None:
    img = _smooth_rgb(h, w, seed)
    pil = Preprocessor(PreprocessConfig(resize=target, crop=None, backend="pil")).resize(img).astype(int)
    area = Preprocessor(PreprocessConfig(resize=target, crop=None, backend="opencv")).resize(img).astype(int)
    assert pil.shape == area.shape
    diff = np.abs(pil - area)
    assert diff.mean() <= BACKEND_TOLERANCE["mean_abs"]
    assert diff.max() <= BACKEND_TOLERANCE["max_abs"]


def test_area_is_closer_to_pil_than_linear_on_fine_detail() -> None:
    # White noise downscaled 4x: OpenCV's linear filter samples 2x2 pixels and aliases; INTER_AREA
    # averages 4x4 like PIL's widened bilinear filter.
    img = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    pil = Preprocessor(PreprocessConfig(resize=32, crop=None, backend="pil")).resize(img).astype(int)
    area = Preprocessor(PreprocessConfig(resize=32, crop=None, backend="opencv")).resize(img).astype(int)
    lin = Preprocessor(
        PreprocessConfig(resize=32, crop=None, backend="opencv", opencv_downscale="linear")
    ).resize(img)
    assert np.abs(pil - area).mean() < np.abs(pil - lin.astype(int)).mean()
