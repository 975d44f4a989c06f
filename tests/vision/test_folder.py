"""ImageFolder: class-per-folder scan, seeded stratified splits, decoded batches, corrupt files typed or skipped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mlsys.common.errors import DatasetNotFoundError, InvalidInputError
from mlsys.vision import (
    ImageDecodeError,
    ImageFolder,
    PreprocessConfig,
    Preprocessor,
    TrainConfig,
    Trainer,
    ViT,
    ViTConfig,
)


def _make(root: Path, counts: dict[str, int], size: int = 12) -> None:
    rng = np.random.default_rng(0)
    for c, n in counts.items():
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            arr = rng.integers(0, 256, (size, size), dtype=np.uint8)
            ext = ".png" if i % 2 else ".JPG"
            Image.fromarray(arr).save(root / c / f"{i:03d}{ext}", format="PNG" if ext == ".png" else "JPEG")


def _pre(output: str = "numpy") -> Preprocessor:
    return Preprocessor(
        PreprocessConfig(resize=8, crop=8, mean=(0.5,), std=(0.5,), channels=1, output=output)
    )  # type: ignore[arg-type]


def test_scan_classes_nested_hidden_and_extensions(tmp_path: Path) -> None:
    _make(tmp_path, {"zebra": 3, "ant": 2})
    (tmp_path / "ant" / "deep").mkdir()
    Image.new("L", (5, 5)).save(tmp_path / "ant" / "deep" / "x.png")
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    (tmp_path / "ant" / ".hidden.png").write_bytes(b"junk")
    (tmp_path / ".cache").mkdir()
    (tmp_path / "README.md").write_text("top-level files are not images of a class")
    data = ImageFolder(tmp_path)
    assert data.classes == ("ant", "zebra") and len(data) == 6
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert data.paths[2] == tmp_path / "ant" / "deep" / "x.png"
    assert data.class_counts() == {"ant": 3, "zebra": 3}
    assert len(ImageFolder(tmp_path, extensions=[".png"])) == 3  # the .JPG files left out
    with pytest.raises(ValueError):
        data.labels[0] = 5  # read-only


@given(
    st.lists(st.integers(1, 30), min_size=1, max_size=4),
    st.integers(0, 2**31),
    st.sampled_from([(0.8, 0.2), (0.5, 0.3, 0.2)]),
)
@settings(max_examples=25, deadline=None)
def test_split_is_stratified_seeded_and_a_partition(
    counts: list[int], seed: int, fractions: tuple[float, ...]
) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        for c, n in enumerate(counts):
            (root / f"c{c}").mkdir()
            for i in range(n):
                (root / f"c{c}" / f"{i}.png").write_bytes(b"")  # scanning never decodes
        data = ImageFolder(root)
        parts = data.split(fractions, seed=seed)
        again = data.split(fractions, seed=seed)
        assert [p.paths for p in parts] == [p.paths for p in again]
        everything = sorted(p for part in parts for p in part.paths)
        assert everything == sorted(data.paths)  # each image in exactly one part
        for label, n in enumerate(counts):
            sizes = [int((part.labels == label).sum()) for part in parts]
            for j, f in enumerate(fractions[1:], start=1):
                assert sizes[j] == int(np.floor(f * n))
            assert sum(sizes) == n
        for part in parts:
            assert all(data.classes[lab] == p.parent.name for lab, p in zip(part.labels, part.paths))


def test_batches_go_through_the_preprocessor(tmp_path: Path) -> None:
    _make(tmp_path, {"a": 5, "b": 4})
    data = ImageFolder(tmp_path)
    pre = _pre()
    batches = list(data.batches(pre, 4))
    assert [len(b.y) for b in batches] == [4, 4, 1]
    x = np.concatenate([b.x for b in batches])
    assert x.shape == (9, 1, 8, 8) and x.dtype == np.float32
    np.testing.assert_array_equal(x, pre(list(data.paths)))  # same as preprocessing the files directly
    assert np.concatenate([b.y for b in batches]).tolist() == data.labels.tolist()
    shuffled = list(data.batches(pre, 4, shuffle=True, seed=3))
    order = [p for b in shuffled for p in b.paths]
    assert sorted(order) == sorted(data.paths) and order != list(data.paths)
    assert order == [p for b in data.batches(pre, 4, shuffle=True, seed=3) for p in b.paths]


def test_corrupt_files_raise_named_or_are_skipped(tmp_path: Path) -> None:
    _make(tmp_path, {"a": 20, "b": 20}, size=8)
    bad = [tmp_path / "a" / "003.png", tmp_path / "b" / "010.JPG", tmp_path / "b" / "019.png"]
    bad[0].write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 4)  # a PNG signature, then garbage
    bad[1].write_bytes(b"\xff\xd8\xff" + bytes(range(256)))  # a truncated JPEG
    bad[2].write_bytes(b"")  # empty
    data = ImageFolder(tmp_path)
    with pytest.raises(ImageDecodeError, match=r"003\.png"):
        list(data.batches(_pre(), 16))
    batches = list(data.batches(_pre(), 16, on_error="skip"))
    skipped = [s for b in batches for s in b.skipped]
    assert sorted(p for p, _ in skipped) == sorted(bad) and all("ImageDecodeError" in m for _, m in skipped)
    assert sum(len(b.y) for b in batches) == 37
    x, y = data.tensors(_pre(), on_error="skip")
    assert x.shape == (37, 1, 8, 8) and y.shape == (37,) and y.dtype == torch.int64


def test_tensors_train_with_the_trainer(tmp_path: Path) -> None:
    _make(tmp_path, {"a": 6, "b": 6}, size=8)
    train, val = ImageFolder(tmp_path).split((0.5, 0.5), seed=0)
    x, y = train.tensors(_pre("torch"))
    xv, yv = val.tensors(_pre())
    torch.manual_seed(0)
    model = ViT(
        ViTConfig(img_size=8, patch_size=4, in_chans=1, num_classes=2, embed_dim=8, depth=1, num_heads=2)
    )
    hist = Trainer(model, TrainConfig(epochs=1, batch_size=4), progress=False).fit(x, y, xv, yv)
    assert len(hist.epochs) == 1 and xv.shape == (6, 1, 8, 8)


def test_bad_folders_and_arguments(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="not found"):
        ImageFolder(tmp_path / "missing")
    with pytest.raises(DatasetNotFoundError, match="no class folder"):
        ImageFolder(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="holds no image"):
        ImageFolder(tmp_path)
    _make(tmp_path, {"empty": 2})
    data = ImageFolder(tmp_path)
    for bad in ((0.5, 0.4), (1.0, 0.0), ("a",), ()):
        with pytest.raises(InvalidInputError):
            data.split(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        next(data.batches(_pre(), 0))
    with pytest.raises(InvalidInputError):
        next(data.batches(_pre(), 2, on_error="record"))  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        next(data.batches("not a preprocessor", 2))  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        ImageFolder(17)  # type: ignore[arg-type]


def test_thousand_images_three_corrupt(tmp_path: Path) -> None:
    """Issue 18's figure for a folder: 1,000 images with 3 corrupt files give 997 images and 3 typed skips."""
    png = {}
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        buf = tmp_path / "one.png"
        Image.new("L", (8, 8), 7 if c == "a" else 200).save(buf)
        png[c] = buf.read_bytes()
        for i in range(500):
            (tmp_path / c / f"{i:04d}.png").write_bytes(png[c])
    buf.unlink()
    for c, i in (("a", 17), ("b", 0), ("b", 499)):
        (tmp_path / c / f"{i:04d}.png").write_bytes(png[c][:40])  # truncated
    batches = list(ImageFolder(tmp_path).batches(_pre(), 128, on_error="skip"))
    assert sum(len(b.y) for b in batches) == 997
    skipped = [s for b in batches for s in b.skipped]
    assert len(skipped) == 3 and all(
        m.startswith(("ImageDecodeError", "UnsupportedImageError")) for _, m in skipped
    )
