"""``ImageFolder``: the most common image data set layout, one folder per class.

::

    root/
      cat/  001.jpg  002.png  more/003.jpg
      dog/  a.jpg ...

Classes are the sub-folder names in sorted order (label ``i`` is ``classes[i]``); images are every
file with an image extension below a class folder (nested folders included), in sorted path
order; hidden files and folders (``.``-prefixed) are skipped. :meth:`ImageFolder.split` makes seeded,
per-class (stratified) splits; :meth:`ImageFolder.batches` decodes batches through a
:class:`~mlsys.vision.Preprocessor`; :meth:`ImageFolder.tensors` gives the ``(x, y)`` tensors a
:class:`~mlsys.vision.Trainer` fits on.

A file that cannot be decoded raises :class:`~mlsys.vision.ImageDecodeError` (or
:class:`~mlsys.vision.UnsupportedImageError`) naming it, or, with ``on_error="skip"``, is left out
and recorded in the returned :class:`FolderBatch` (``skipped``), so one bad file costs one image.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from mlsys.common._display import DisplayTable, TabularDisplay
from mlsys.common.errors import DatasetNotFoundError, InvalidInputError, MlsysError
from mlsys.vision._preprocess import Preprocessor

__all__ = ["IMAGE_EXTENSIONS", "FolderBatch", "ImageFolder"]

#: File extensions read as images (case-insensitive).
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
"""File extensions :class:`ImageFolder` reads as images (lower case)."""

OnError = Literal["raise", "skip"]


@dataclass(frozen=True)
class FolderBatch:
    """One decoded batch.

    Attributes:
        x: float32 ``(B, C, H, W)`` from the preprocessor (numpy or torch, as it is configured).
        y: int64 ``(B,)`` labels.
        paths: the ``B`` files, in batch order.
        skipped: ``(path, error message)`` of the files of this batch left out (``on_error="skip"``).
    """

    x: Any
    y: npt.NDArray[np.int64]
    paths: tuple[Path, ...]
    skipped: tuple[tuple[Path, str], ...] = field(default_factory=tuple)


class ImageFolder(TabularDisplay):
    """Images laid out one folder per class: a file-to-label table.

    In a notebook it displays as that table (long folders shortened, the class counts folded
    away); :meth:`to_pandas` gives one row per file: ``path``, ``label``, ``class``.

    Args:
        root: the folder holding one sub-folder per class.
        extensions: file extensions read as images (default :data:`IMAGE_EXTENSIONS`).

    Raises:
        DatasetNotFoundError: ``root`` is not a folder, holds no class folder, or a class folder
            holds no image.

    Example:
        >>> import tempfile, pathlib
        >>> from PIL import Image
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> for c in ("cat", "dog"):
        ...     (root / c).mkdir()
        ...     for i in range(3):
        ...         Image.new("L", (8, 8), 40 * i).save(root / c / f"{i}.png")
        >>> data = ImageFolder(root)
        >>> data.classes, len(data), data.labels.tolist()
        (('cat', 'dog'), 6, [0, 0, 0, 1, 1, 1])
        >>> from mlsys.vision import PreprocessConfig, Preprocessor
        >>> pre = Preprocessor(PreprocessConfig(resize=8, crop=8, mean=(0.5,), std=(0.5,), channels=1))
        >>> x, y = data.tensors(pre)
        >>> tuple(x.shape), y.tolist()
        ((6, 1, 8, 8), [0, 0, 0, 1, 1, 1])
    """

    def __init__(self, root: str | os.PathLike[str], *, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> None:
        if not isinstance(root, (str, os.PathLike)) or "\x00" in str(os.fspath(root)):
            raise InvalidInputError(f"root must be a folder path (str or os.PathLike), got {root!r:.80}")
        if isinstance(extensions, str) or not all(isinstance(e, str) for e in extensions):
            raise InvalidInputError(
                f"extensions must be a sequence of strings such as '.jpg', got {extensions!r}"
            )
        base = Path(root)
        if not base.is_dir():
            raise DatasetNotFoundError(f"image folder not found: {base} (expected a folder of class folders)")
        exts = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
        classes = sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not classes:
            raise DatasetNotFoundError(f"{base} holds no class folder; expected one sub-folder per class")
        paths: list[Path] = []
        labels: list[int] = []
        for label, name in enumerate(classes):
            found = sorted(_images_below(base / name, exts))
            if not found:
                raise DatasetNotFoundError(
                    f"class folder {base / name} holds no image; expected files ending in {sorted(exts)}"
                )
            paths.extend(found)
            labels.extend([label] * len(found))
        self.root = base
        self.classes: tuple[str, ...] = tuple(classes)
        self.paths: tuple[Path, ...] = tuple(paths)
        self.labels: npt.NDArray[np.int64] = np.array(labels, dtype=np.int64)
        self.labels.setflags(write=False)

    @classmethod
    def _subset(cls, parent: ImageFolder, rows: npt.NDArray[np.int64]) -> ImageFolder:
        out = cls.__new__(cls)
        out.root, out.classes = parent.root, parent.classes
        out.paths = tuple(parent.paths[int(r)] for r in rows)
        out.labels = parent.labels[rows].copy()
        out.labels.setflags(write=False)
        return out

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return f"ImageFolder({str(self.root)!r}, {len(self)} images, {len(self.classes)} classes)"

    _pandas_extra = "mlsys-vision[pandas]"

    def _display_table(self) -> DisplayTable:
        return DisplayTable(
            f"ImageFolder {self.root}: {len(self)} images, {len(self.classes)} classes",
            ("path", "label", "class"),
            tuple((str(p), int(y), self.classes[y]) for p, y in zip(self.paths, self.labels.tolist())),
            index="path",
            details=(
                ("root", str(self.root)),
                *((f"images of {c}", n) for c, n in self.class_counts().items()),
            ),
        )

    def class_counts(self) -> dict[str, int]:
        """``{class name: number of images}``."""
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return {c: int(n) for c, n in zip(self.classes, counts)}

    def split(self, fractions: Sequence[float] = (0.8, 0.2), *, seed: int = 0) -> tuple[ImageFolder, ...]:
        """Seeded stratified split: each class's images are permuted (``default_rng(seed)``) and cut by ``fractions``.

        ``fractions`` are positive and sum to 1 (e.g. ``(0.8, 0.1, 0.1)``); part sizes per class are
        ``floor(f * n)`` with the remainder going to the first part, so every image lands in
        exactly one part. Same seed, same split.

        Example:
            >>> import tempfile, pathlib
            >>> from PIL import Image
            >>> root = pathlib.Path(tempfile.mkdtemp())
            >>> for c in ("a", "b"):
            ...     (root / c).mkdir()
            ...     for i in range(10):
            ...         Image.new("L", (4, 4)).save(root / c / f"{i}.png")
            >>> train, val = ImageFolder(root).split((0.8, 0.2), seed=1)
            >>> len(train), len(val), val.class_counts()
            (16, 4, {'a': 2, 'b': 2})
        """
        fr = [float(f) for f in _fractions(fractions)]
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise InvalidInputError(f"seed must be a non-negative int, got {seed!r}")
        rng = np.random.default_rng(int(seed))
        parts: list[list[int]] = [[] for _ in fr]
        for label in range(len(self.classes)):
            rows = rng.permutation(np.flatnonzero(self.labels == label))
            sizes = [int(np.floor(f * rows.size)) for f in fr]
            sizes[0] += rows.size - sum(sizes)
            start = 0
            for j, size in enumerate(sizes):
                parts[j].extend(rows[start : start + size].tolist())
                start += size
        return tuple(ImageFolder._subset(self, np.sort(np.array(p, dtype=np.int64))) for p in parts)

    def batches(
        self,
        preprocessor: Preprocessor,
        batch_size: int = 64,
        *,
        shuffle: bool = False,
        seed: int = 0,
        on_error: OnError = "raise",
    ) -> Iterator[FolderBatch]:
        """Decode the images in batches through ``preprocessor`` (resize, crop, normalise).

        Args:
            preprocessor: a :class:`~mlsys.vision.Preprocessor` (its crop size must be fixed).
            batch_size: images per batch (the last one may be smaller, or smaller still after skips).
            shuffle: visit the images in a seeded random order (``default_rng(seed)``).
            seed: the shuffle's seed.
            on_error: ``"raise"``: a file that cannot be decoded raises its typed error with the
                file named; ``"skip"``: it is left out and listed in the batch's ``skipped``.

        Yields:
            :class:`FolderBatch` es; a batch whose every file was skipped is yielded with zero images.
        """
        if not isinstance(preprocessor, Preprocessor):
            raise InvalidInputError(f"preprocessor must be a Preprocessor, got {type(preprocessor).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise InvalidInputError(f"batch_size must be a positive int, got {batch_size!r}")
        if on_error not in ("raise", "skip"):
            raise InvalidInputError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        order = np.arange(len(self))
        if shuffle:
            order = np.random.default_rng(seed).permutation(order)
        for start in range(0, order.size, int(batch_size)):
            rows = order[start : start + int(batch_size)]
            images, kept, skipped = [], [], []
            for r in rows.tolist():
                path = self.paths[r]
                try:
                    images.append(preprocessor.image(path))
                except MlsysError as exc:
                    if on_error == "raise":
                        raise type(exc)(f"{path}: {exc}") from exc
                    skipped.append((path, f"{type(exc).__name__}: {exc}"))
                    continue
                kept.append(r)
            if images:
                x = preprocessor.normalize(images)
            else:
                c, s = preprocessor.config.channels, preprocessor.config.output_size
                x = np.zeros((0, c, s or 0, s or 0), dtype=np.float32)
            keep = np.array(kept, dtype=np.int64)
            yield FolderBatch(x, self.labels[keep], tuple(self.paths[r] for r in kept), tuple(skipped))

    def tensors(
        self, preprocessor: Preprocessor, *, on_error: OnError = "raise", batch_size: int = 256
    ) -> tuple[Any, Any]:
        """All images as torch tensors ``(x float32 (N, C, H, W), y int64 (N,))`` for :meth:`Trainer.fit`.

        With ``on_error="skip"`` undecodable files are left out (``len(y)`` tells how many remain).
        """
        import torch

        xs, ys = [], []
        for b in self.batches(preprocessor, batch_size, on_error=on_error):
            if len(b.y):
                xs.append(torch.as_tensor(np.asarray(b.x)) if not isinstance(b.x, torch.Tensor) else b.x)
                ys.append(torch.from_numpy(b.y))
        if not xs:
            raise DatasetNotFoundError(f"no image of {self.root} could be decoded")
        return torch.cat(xs), torch.cat(ys)


def _images_below(folder: Path, exts: set[str]) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in exts:
                yield Path(dirpath) / name


def _fractions(fractions: Sequence[float]) -> list[float]:
    try:
        fr = [float(f) for f in fractions]
    except (TypeError, ValueError):
        raise InvalidInputError(f"fractions must be numbers, got {fractions!r:.80}") from None
    if not fr or any(not np.isfinite(f) or f <= 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-9:
        raise InvalidInputError(f"fractions must be positive and sum to 1, got {fractions!r:.80}")
    return fr
