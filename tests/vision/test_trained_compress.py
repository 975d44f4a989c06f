"""Slow checks of the distilled and quantized Fashion-MNIST student (skipped when absent).

Produce the checkpoints with ``python benchmarks/vision/train_fmnist.py`` (teacher) and
``python benchmarks/vision/distill_fmnist.py`` (students under ``~/.cache/mlsys/vision/students``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from mlsys.common.data import cache_root, load_fashion_mnist
from mlsys.vision import ViT, evaluate, export_onnx, images_to_tensor, load_model, onnx_session
from mlsys.vision.compress import (
    CalibrationData,
    MobileNetV3,
    count_parameters,
    onnx_parity,
    quantize_onnx,
    quantized_layers,
)

pytestmark = pytest.mark.slow

CACHE = cache_root() / "vision"
MEAN, STD = 0.2860, 0.3530


def _load(path: Path) -> torch.nn.Module:
    if not (path / "manifest.json").exists():
        pytest.skip(
            f"no trained model at {path}; run benchmarks/vision/train_fmnist.py and distill_fmnist.py"
        )
    return load_model(path)


def _data(dataset: Callable[[str], Path]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    d = load_fashion_mnist(dataset("fashion-mnist"))
    return (
        images_to_tensor(d.x_train[:512], MEAN, STD),
        images_to_tensor(d.x_test, MEAN, STD),
        torch.from_numpy(d.y_test.astype(np.int64)),
    )


def test_distilled_student_is_small_and_exports_exactly(
    dataset: Callable[[str], Path], tmp_path: Path
) -> None:
    torch.set_num_threads(2)
    teacher = _load(CACHE / "fmnist_vit")
    student = _load(CACHE / "students" / "feature_s0")
    assert isinstance(teacher, ViT) and isinstance(student, MobileNetV3)
    assert count_parameters(teacher) >= 8 * count_parameters(student)
    cal_x, x, y = _data(dataset)
    acc = evaluate(student, x, y).accuracy
    assert acc >= 0.85
    p = export_onnx(student, tmp_path / "student.onnx")
    res = onnx_parity(student, p, x[:32], batches=(1, 32))
    assert all(r.max_abs_diff <= 1e-4 and r.top1_agreement == 1.0 for r in res)
    q = quantize_onnx(p, tmp_path / "student_int8.onnx", calibration=CalibrationData(cal_x, batch_size=32))
    assert set(quantized_layers(q).values()) == {"int8"}
    sess = onnx_session(q, threads=2)
    pred = np.concatenate(
        [sess.run(None, {"images": x[i : i + 1000].numpy()})[0].argmax(-1) for i in range(0, 10000, 1000)]
    )
    acc8 = float((pred == y.numpy()).mean())
    assert acc - acc8 <= 0.01  # INT8 loses at most one point (README: measured loss)
