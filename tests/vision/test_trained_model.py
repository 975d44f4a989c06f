"""Slow checks of the trained Fashion-MNIST models in ``~/.cache/mlsys/vision`` (skipped when absent).

Produce them with ``python benchmarks/vision/train_fmnist.py`` and
``python benchmarks/vision/train_fmnist.py --prune 0.7``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from mlsys.common.data import cache_root, load_fashion_mnist
from mlsys.vision import DynamicTokenPruning, ViT, evaluate, images_to_tensor, load_model

pytestmark = pytest.mark.slow

CACHE = cache_root() / "vision"
MEAN, STD = 0.2860, 0.3530


def _load(name: str) -> torch.nn.Module:
    path = CACHE / name
    if not (path / "manifest.json").exists():
        pytest.skip(f"no trained model at {path}; run benchmarks/vision/train_fmnist.py first")
    return load_model(path)


def _test_set(dataset: Callable[[str], Path]) -> tuple[torch.Tensor, torch.Tensor]:
    d = load_fashion_mnist(dataset("fashion-mnist"))
    return images_to_tensor(d.x_test, MEAN, STD), torch.from_numpy(d.y_test)


def test_teacher_reaches_88_percent(dataset: Callable[[str], Path]) -> None:
    torch.set_num_threads(2)
    vit = _load("fmnist_vit")
    assert isinstance(vit, ViT) and vit.config.num_patches >= 144
    x, y = _test_set(dataset)
    assert evaluate(vit, x, y).accuracy >= 0.88


def test_pruned_student_within_half_a_point(dataset: Callable[[str], Path]) -> None:
    torch.set_num_threads(2)
    vit = _load("fmnist_vit")
    student = _load("fmnist_vit_prune0.7")
    assert isinstance(student, DynamicTokenPruning) and student.config.keep_ratio == pytest.approx(0.7)
    x, y = _test_set(dataset)
    drop = evaluate(vit, x, y).accuracy - evaluate(student, x, y).accuracy
    assert drop <= 0.005
    # on real images too, real pruning equals the masked forward with the same decisions
    with torch.no_grad():
        masked, pruned = student.forward_masked(x[:64]), student.forward_pruned(x[:64])
    torch.testing.assert_close(pruned.logits, masked.logits, rtol=1e-4, atol=1e-4)
