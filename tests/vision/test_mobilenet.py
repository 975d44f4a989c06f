"""MobileNetV3 student: configs, shapes, feature taps, BN folding, persistence, ONNX parity."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from mlsys.common.errors import DimensionMismatchError, InvalidInputError
from mlsys.vision import ViT, ViTConfig, export_onnx, load_model, save_model
from mlsys.vision.compress import (
    MobileNetV3,
    MobileNetV3Config,
    count_parameters,
    make_divisible,
    onnx_parity,
)


def test_fashion_mnist_student_is_8x_smaller_than_the_teacher() -> None:
    student = MobileNetV3(MobileNetV3Config.fashion_mnist())
    teacher = ViT(ViTConfig.fashion_mnist())
    assert count_parameters(student) == 27274
    assert count_parameters(teacher) == 232170
    assert count_parameters(teacher) / count_parameters(student) >= 8.0


def test_reference_configs_at_imagenet_size() -> None:
    small = MobileNetV3Config(arch="small", num_classes=1000)
    large = MobileNetV3Config(arch="large", num_classes=1000)
    assert small.stem_stride == 2 and small.feature_sizes[-1] == 7  # 224 / 32
    assert large.feature_sizes[-1] == 7
    # the reference MobileNetV3-small has ~2.5 M parameters, large ~5.5 M (torchvision: 2,542,856 / 5,483,032)
    assert 2.4e6 < count_parameters(MobileNetV3(small)) < 2.7e6
    assert 5.3e6 < count_parameters(MobileNetV3(large)) < 5.7e6


def test_input_size_aware_stem_and_strides() -> None:
    cfg = MobileNetV3Config(img_size=28, in_chans=1, num_classes=10, min_feature_size=4)
    assert cfg.stem_stride == 1
    assert min(cfg.feature_sizes) >= 4
    assert cfg.feature_sizes[-1] == 4  # 28 -> 14 -> 7 -> 4, the last stride-2 block keeps stride 1
    assert [b[5] for b in cfg.blocks()].count(2) == 3


def test_width_multiplier_rounds_channels_to_multiples_of_8() -> None:
    cfg = MobileNetV3Config(width_mult=0.5)
    assert all(c % 8 == 0 and e % 8 == 0 for _, e, c, *_ in cfg.blocks())
    assert make_divisible(576 * 0.5) == 288 and make_divisible(3) == 8


@pytest.mark.parametrize(
    "kw",
    [
        {"arch": "medium"},
        {"width_mult": 0.0},
        {"width_mult": True},
        {"img_size": 0},
        {"depth": 0},
        {"depth": 12},
        {"dropout": 1.0},
        {"hidden_channels": -1},
    ],
)
def test_bad_config_raises(kw: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        MobileNetV3Config(**kw)  # type: ignore[arg-type]


def test_forward_shapes_and_taps() -> None:
    torch.manual_seed(0)
    m = MobileNetV3(MobileNetV3Config.fashion_mnist()).eval()
    x = torch.randn(3, 1, 28, 28)
    out = m.forward_features(x, taps=(0, 1, -1))
    assert torch.allclose(out.logits, m(x))
    assert sorted(out.features) == [0, 1, 3]
    assert tuple(out.features[1].shape) == (3, 24, 7, 7)
    assert [out.features[i].shape[1] for i in (0, 1, 3)] == [m.block_channels[i] for i in (0, 1, 3)]
    with pytest.raises(InvalidInputError, match="tap"):
        m.forward_features(x, taps=(4,))
    with pytest.raises(DimensionMismatchError, match="expected"):
        m(torch.zeros(1, 3, 28, 28))
    with pytest.raises(InvalidInputError):
        m(torch.zeros(1, 1, 28, 28, dtype=torch.int64))


def test_se_and_hardswish_are_used() -> None:
    m = MobileNetV3(MobileNetV3Config.fashion_mnist())
    kinds = {type(x).__name__ for x in m.modules()}
    assert {"SqueezeExcite", "Hardswish", "HardSigmoid"} <= kinds


def test_fuse_bn_keeps_the_function() -> None:
    torch.manual_seed(0)
    m = MobileNetV3(MobileNetV3Config.fashion_mnist())
    # non-trivial BN statistics
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.randn(16, 1, 28, 28) * 2 + 0.5)
    m.eval()
    fused = m.fuse_bn()
    x = torch.randn(8, 1, 28, 28)
    assert torch.allclose(fused(x), m(x), atol=1e-5)
    assert not any(isinstance(x, nn.BatchNorm2d) for x in fused.modules())
    assert any(isinstance(x, nn.BatchNorm2d) for x in m.modules())  # the original is untouched


def test_save_load_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    m = MobileNetV3(MobileNetV3Config.fashion_mnist(width_mult=0.5)).eval()
    back = load_model(save_model(m, tmp_path / "m"))
    assert isinstance(back, MobileNetV3) and back.config == m.config
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(back(x), m(x))


def test_onnx_export_parity_batch_1_and_32(tmp_path: Path) -> None:
    torch.manual_seed(0)
    m = MobileNetV3(MobileNetV3Config.fashion_mnist()).eval()
    p = export_onnx(m, tmp_path / "s.onnx")
    res = onnx_parity(m, p, torch.randn(32, 1, 28, 28), batches=(1, 32))
    assert [r.batch for r in res] == [1, 32]
    assert all(r.max_abs_diff <= 1e-4 and r.top1_agreement == 1.0 for r in res)
