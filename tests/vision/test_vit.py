from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from mlsys.common.errors import (
    CorruptFileError,
    DimensionMismatchError,
    FormatVersionError,
    InvalidInputError,
)
from mlsys.vision import DynamicTokenPruning, ViT, ViTConfig, load_model, save_model


def test_presets() -> None:
    s = ViTConfig.vit_small_patch16_224()
    assert (s.depth, s.embed_dim, s.num_heads, s.num_patches) == (12, 384, 6, 196)
    f = ViTConfig.fashion_mnist()
    assert (f.img_size, f.patch_size, f.in_chans, f.num_patches) == (28, 2, 1, 196)


@pytest.mark.parametrize(
    "kw",
    [
        {"img_size": 15},  # patch does not divide
        {"embed_dim": 30},  # not divisible by heads
        {"depth": 0},
        {"mlp_ratio": 0.0},
        {"dropout": 1.0},
        {"num_heads": True},
    ],
)
def test_config_validation(kw: dict[str, object], tiny_config: Callable[..., ViTConfig]) -> None:
    with pytest.raises(InvalidInputError):
        tiny_config(**kw)


def test_shapes_dtypes_and_features(tiny_vit: ViT) -> None:
    x = torch.randn(3, 1, 16, 16)
    logits = tiny_vit(x)
    assert logits.shape == (3, 5) and logits.dtype == torch.float32
    f = tiny_vit.forward_features(x, return_tokens=True)
    assert len(f.cls_per_layer) == 6 and len(f.tokens_per_layer) == 6
    assert f.tokens.shape == (3, 65, 32)
    assert all(c.shape == (3, 32) for c in f.cls_per_layer)
    # per-layer CLS is the CLS row of the per-layer tokens, and the head reads the final CLS
    for c, t in zip(f.cls_per_layer, f.tokens_per_layer):
        assert torch.equal(c, t[:, 0])
    torch.testing.assert_close(tiny_vit.head(f.tokens[:, 0]), logits)


def test_batch_independence(tiny_vit: ViT) -> None:
    x = torch.randn(4, 1, 16, 16)
    torch.testing.assert_close(tiny_vit(x)[1:2], tiny_vit(x[1:2]), rtol=1e-5, atol=1e-5)


def test_wrong_input_raises(tiny_vit: ViT) -> None:
    with pytest.raises(DimensionMismatchError, match="expected \\(batch, 1, 16, 16\\)"):
        tiny_vit(torch.randn(2, 3, 16, 16))
    with pytest.raises(DimensionMismatchError):
        tiny_vit(torch.randn(2, 1, 32, 32))
    with pytest.raises(InvalidInputError, match="floating-point"):
        tiny_vit(torch.zeros(2, 1, 16, 16, dtype=torch.uint8))


def test_seed_determinism(tiny_config: Callable[..., ViTConfig]) -> None:
    torch.manual_seed(3)
    a = ViT(tiny_config())
    torch.manual_seed(3)
    b = ViT(tiny_config())
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_save_load_round_trip(tiny_vit: ViT, tmp_path: Path) -> None:
    d = save_model(tiny_vit, tmp_path / "m", extra={"note": "x"})
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["class"] == "ViT" and manifest["config"] == tiny_vit.config.to_dict()
    loaded = load_model(d)
    assert isinstance(loaded, ViT) and not loaded.training
    x = torch.randn(2, 1, 16, 16)
    assert torch.equal(loaded(x), tiny_vit(x))


def test_save_load_pruned(tiny_vit: ViT, tmp_path: Path) -> None:
    m = DynamicTokenPruning.from_vit(tiny_vit, keep_ratio=0.6, prune_after=(2, 4)).eval()
    loaded = load_model(save_model(m, tmp_path / "p"))
    assert isinstance(loaded, DynamicTokenPruning) and loaded.config == m.config
    x = torch.randn(2, 1, 16, 16)
    assert torch.equal(loaded(x), m(x))


def test_load_rejects_tampering(tiny_vit: ViT, tmp_path: Path) -> None:
    d = save_model(tiny_vit, tmp_path / "m")
    w = d / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="sha256"):
        load_model(d)
    d2 = save_model(tiny_vit, tmp_path / "m2")
    m = json.loads((d2 / "manifest.json").read_text())
    m["format_version"] = 99
    (d2 / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(FormatVersionError):
        load_model(d2)
    with pytest.raises(CorruptFileError, match="manifest"):
        load_model(tmp_path / "nothing")


@pytest.mark.parametrize("stem", [(0,), (8, -1), "32", (True,)])
def test_stem_validation(stem: object, tiny_config: Callable[..., ViTConfig]) -> None:
    with pytest.raises(InvalidInputError, match="stem_channels"):
        tiny_config(stem_channels=stem)


def test_conv_stem_model(tiny_config: Callable[..., ViTConfig], tmp_path: Path) -> None:
    cfg = tiny_config(stem_channels=[8, 12])  # a list (as in a JSON manifest) becomes a tuple
    assert cfg.stem_channels == (8, 12) and cfg.num_patches == 64
    torch.manual_seed(0)
    vit = ViT(cfg)
    names = [n for n, _ in vit.patch_embed.named_parameters()]
    assert names[0] == "stem.0.weight" and "proj.weight" in names
    assert vit.patch_embed.proj.in_channels == 12
    # BatchNorm: training updates running statistics, eval mode is a deterministic function
    x = torch.randn(4, 1, 16, 16)
    vit.train()(x)
    bn = vit.patch_embed.stem[1]  # type: ignore[index]
    assert isinstance(bn, torch.nn.BatchNorm2d) and int(bn.num_batches_tracked) == 1
    vit.eval()
    torch.testing.assert_close(vit(x)[2:3], vit(x[2:3]), rtol=1e-5, atol=1e-5)
    # the stem (running statistics included) survives save/load exactly
    loaded = load_model(save_model(vit, tmp_path / "stem"))
    assert isinstance(loaded, ViT) and loaded.config == cfg
    assert torch.equal(loaded(x), vit(x))
    # pruning on a conv-stem backbone: real pruning equals the masked forward
    m = DynamicTokenPruning.from_vit(vit, keep_ratio=0.6).eval()
    with torch.no_grad():
        torch.testing.assert_close(
            m.forward_pruned(x).logits, m.forward_masked(x).logits, rtol=1e-5, atol=1e-5
        )
