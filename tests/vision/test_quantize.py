"""Quantization: onnxruntime INT8 (dynamic, static QDQ), the mixed policy (torch fake-quant and
ONNX QDQ + MatMulNBits), SmoothQuant, sensitivity, and the bad inputs of all of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mlsys.common.errors import CorruptFileError, DimensionMismatchError, InvalidInputError, UnknownNameError
from mlsys.vision import (
    DynamicTokenPruning,
    InferencePipeline,
    OnnxExportError,
    PreprocessConfig,
    TokenMerging,
    ViT,
    ViTConfig,
    export_onnx,
    onnx_session,
)
from mlsys.vision.compress import (
    CalibrationData,
    MixedPrecisionPolicy,
    MobileNetV3,
    MobileNetV3Config,
    fake_quantize,
    fuse_attention_onnx,
    load_onnx,
    onnx_layers,
    onnx_parity,
    quant_dequant_weight,
    quantize_mixed_onnx,
    quantize_onnx,
    quantized_layers,
    sensitivity_report,
    smooth_quant,
    split_qkv,
)

pytest.importorskip("onnxruntime")


def _vit(**kw: object) -> ViT:
    torch.manual_seed(0)
    base: dict[str, object] = dict(
        img_size=16, patch_size=4, in_chans=1, num_classes=5, embed_dim=64, depth=2, num_heads=2
    )
    base.update(kw)
    return ViT(ViTConfig(**base)).eval()  # type: ignore[arg-type]


@pytest.fixture
def vit_onnx(tmp_path: Path) -> tuple[ViT, Path]:
    m = split_qkv(_vit())
    assert isinstance(m, ViT)
    return m, export_onnx(m, tmp_path / "vit.onnx")


def _images(n: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, size, size, generator=g)


# ------------------------------------------------------------------------------ calibration data
def test_calibration_data_batches_and_errors() -> None:
    cal = CalibrationData(np.zeros((70, 1, 16, 16), np.float32), batch_size=16, min_batches=4)
    assert len(cal) == 4 and all(b.shape == (16, 1, 16, 16) for b in cal.batches())
    with pytest.raises(InvalidInputError, match="at least 4 batches"):
        CalibrationData(np.zeros((63, 1, 16, 16), np.float32), batch_size=16, min_batches=4)
    with pytest.raises(DimensionMismatchError, match=r"\(n, C, H, W\)"):
        CalibrationData(np.zeros((64, 16, 16), np.float32))
    with pytest.raises(DimensionMismatchError, match="expects"):
        CalibrationData(np.zeros((64, 3, 16, 16), np.float32), batch_size=16, input_shape=(1, 16, 16))
    with pytest.raises(InvalidInputError, match="float"):
        CalibrationData(np.zeros((64, 1, 16, 16), np.uint8))
    bad = np.zeros((64, 1, 16, 16), np.float32)
    bad[3, 0, 0, 0] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        CalibrationData(bad, batch_size=16)


def test_static_quantization_refuses_calibration_of_the_wrong_shape(
    vit_onnx: tuple[ViT, Path], tmp_path: Path
) -> None:
    _, p = vit_onnx
    cal = CalibrationData(_images(64, size=8), batch_size=16)
    with pytest.raises(DimensionMismatchError, match="expects input 'images'"):
        quantize_onnx(p, tmp_path / "q.onnx", mode="static", calibration=cal)
    with pytest.raises(InvalidInputError, match="calibration"):
        quantize_onnx(p, tmp_path / "q.onnx", mode="static")
    with pytest.raises(UnknownNameError):
        quantize_onnx(p, tmp_path / "q.onnx", mode="int3")


# ------------------------------------------------------------------------------ INT8 onnxruntime
@pytest.mark.parametrize(
    ("mode", "method"),
    [("dynamic", "minmax"), ("static", "minmax"), ("static", "percentile"), ("static", "entropy")],
)
def test_int8_quantization_is_close_to_fp32(
    vit_onnx: tuple[ViT, Path], tmp_path: Path, mode: str, method: str
) -> None:
    m, p = vit_onnx
    x = _images(128)
    cal = CalibrationData(x[:64], batch_size=16)
    q = quantize_onnx(p, tmp_path / f"{mode}_{method}.onnx", mode=mode, calibration=cal, method=method)
    kinds = quantized_layers(q)
    kinds_of = {n.name: n.op_type for n in load_onnx(p).graph.node}
    weight_nodes = [n for v in onnx_layers(p).values() for n in v]
    # static: every weight layer runs in INT8; dynamic: every MatMul/Gemm, Conv stays in float
    # (ConvInteger is slower than the float Conv)
    want = [n for n in weight_nodes if mode == "static" or kinds_of[n] != "Conv"]
    assert len(kinds) == len(want) >= 1
    assert set(kinds.values()) == {"int8"}
    ref = m(x[64:]).detach().numpy()
    got = onnx_session(q, threads=1).run(None, {"images": x[64:].numpy()})[0]
    rel = np.abs(got - ref).max() / np.abs(ref).max()
    assert rel < 0.15, rel
    assert q.stat().st_size < 0.6 * p.stat().st_size


def test_dynamic_quantization_can_still_quantize_convolutions(
    vit_onnx: tuple[ViT, Path], tmp_path: Path
) -> None:
    _, p = vit_onnx
    q = quantize_onnx(p, tmp_path / "q.onnx", mode="dynamic", op_types=("Conv", "MatMul", "Gemm"))
    assert len(quantized_layers(q)) == sum(len(v) for v in onnx_layers(p).values())
    assert "ConvInteger" in {n.op_type for n in load_onnx(q).graph.node}


@pytest.mark.parametrize("stem", [False, True])
def test_attention_fusion_keeps_the_function_and_quantizes_to_qattention(tmp_path: Path, stem: bool) -> None:
    m = _vit(stem_channels=(8, 8)) if stem else _vit()
    p = export_onnx(m, tmp_path / "vit.onnx")
    f = fuse_attention_onnx(p, tmp_path / "fused.onnx")
    ops = [n.op_type for n in load_onnx(f).graph.node]
    assert ops.count("Attention") == 2 and "Softmax" not in ops
    assert len(ops) <= len(load_onnx(p).graph.node) - 2 * 25  # ~30 nodes per block become one
    x = _images(64, seed=1)
    ref = m(x).detach().numpy()
    for batch in (1, 64):  # the dynamic batch axis survives the fusion
        got = onnx_session(f, threads=1).run(None, {"images": x[:batch].numpy()})[0]
        assert np.abs(got - ref[:batch]).max() < 1e-4
    q = quantize_onnx(p, tmp_path / "q.onnx", mode="dynamic", fuse_attention=True)
    qops = [n.op_type for n in load_onnx(q).graph.node]
    assert qops.count("QAttention") == 2 and "Attention" not in qops
    qattn = [n.name for n in load_onnx(q).graph.node if n.op_type == "QAttention"]
    assert all(quantized_layers(q).get(name) == "int8" for name in qattn)  # counted as INT8 layers
    got = onnx_session(q, threads=1).run(None, {"images": x.numpy()})[0]
    assert np.abs(got - ref).max() / np.abs(ref).max() < 0.15
    assert (got.argmax(-1) == ref.argmax(-1)).mean() > 0.85
    # static QDQ over the fused graph: the Attention node stays in float, the rest is INT8
    cal = CalibrationData(x, batch_size=16)
    s = quantize_onnx(p, tmp_path / "s.onnx", calibration=cal, fuse_attention=True)
    assert "Attention" in {n.op_type for n in load_onnx(s).graph.node}
    got = onnx_session(s, threads=1).run(None, {"images": x.numpy()})[0]
    assert np.abs(got - ref).max() / np.abs(ref).max() < 0.15


def test_attention_fusion_refuses_a_graph_without_fusable_attention(
    vit_onnx: tuple[ViT, Path], tmp_path: Path
) -> None:
    _, split = vit_onnx  # split q/k/v projections: no single qkv MatMul to fuse
    with pytest.raises(InvalidInputError, match="no ViT self-attention"):
        fuse_attention_onnx(split, tmp_path / "f.onnx")
    torch.manual_seed(0)
    s = export_onnx(MobileNetV3(MobileNetV3Config.fashion_mnist()).eval(), tmp_path / "s.onnx")
    with pytest.raises(InvalidInputError, match="no ViT self-attention"):
        quantize_onnx(s, tmp_path / "q.onnx", mode="dynamic", fuse_attention=True)


def test_static_int8_of_the_mobilenet_student(tmp_path: Path) -> None:
    torch.manual_seed(0)
    s = MobileNetV3(MobileNetV3Config.fashion_mnist()).eval()
    p = export_onnx(s, tmp_path / "s.onnx")
    x = torch.randn(96, 1, 28, 28)
    q = quantize_onnx(p, tmp_path / "s8.onnx", calibration=CalibrationData(x[:64], batch_size=16))
    convs = [n for n, k in quantized_layers(q).items() if k == "int8"]
    # every convolution (BN folded by the exporter) and the classifier: 17 Conv + 1 Gemm
    assert len(convs) == sum(len(v) for v in onnx_layers(p).values()) == 18
    got = onnx_session(q, threads=1).run(None, {"images": x[64:].numpy()})[0]
    assert got.shape == (32, 10) and np.isfinite(got).all()


# ------------------------------------------------------------------------------------- policies
def test_policy_resolves_exactly_the_named_layers() -> None:
    m = split_qkv(_vit())
    bits = MixedPrecisionPolicy.vit_qk8_v4_ffn4().resolve(m)
    assert bits == {
        **{f"blocks.{i}.attn.qkv.{n}": 8 for i in (0, 1) for n in "qk"},
        **{f"blocks.{i}.attn.qkv.v": 4 for i in (0, 1)},
        **{f"blocks.{i}.mlp.fc{j}": 4 for i in (0, 1) for j in (1, 2)},
    }
    by_type = MixedPrecisionPolicy((("type:Conv2d", 8),)).resolve(m)
    assert by_type == {"patch_embed.proj": 8}


def test_fake_quantize_of_the_mobilenet_student_including_its_stem() -> None:
    # the stem's conv is wrapped too: the model's input check must not read stem[0].weight
    torch.manual_seed(0)
    s = MobileNetV3(MobileNetV3Config.fashion_mnist()).eval()
    bits = MixedPrecisionPolicy((("type:Conv2d", 8),)).resolve(s)
    assert "stem.0" in bits and len(bits) == 17
    x = torch.randn(16, 1, 28, 28)
    fq = fake_quantize(s, bits, calibration=x)
    with torch.no_grad():
        out, ref = fq(x), s(x)
    assert out.shape == ref.shape == (16, 10)
    assert 0 < float((out - ref).abs().max()) < 0.5 * float(ref.abs().max())  # quantized, not broken


def test_policy_naming_no_layer_is_refused() -> None:
    with pytest.raises(UnknownNameError, match="split_qkv"):
        MixedPrecisionPolicy.vit_qk8_v4_ffn4().resolve(_vit())  # qkv not split: no qkv.q
    with pytest.raises(UnknownNameError, match=r"blocks\.\*\.ffn"):
        MixedPrecisionPolicy((("blocks.*.mlp.fc1", 4), ("blocks.*.ffn", 4))).resolve(_vit())
    with pytest.raises(InvalidInputError):
        MixedPrecisionPolicy((("x", 3),))
    with pytest.raises(InvalidInputError):
        MixedPrecisionPolicy(())
    with pytest.raises(UnknownNameError):
        fake_quantize(_vit(), {"blocks.9.mlp.fc1": 4})


def test_fake_quant_touches_exactly_the_policy_layers() -> None:
    m = split_qkv(_vit())
    x = _images(64)
    pol = MixedPrecisionPolicy.vit_qk8_v4_ffn4()
    fq = fake_quantize(m, pol, calibration=x)
    wrapped = {n for n, mod in fq.named_modules() if type(mod).__name__ == "_QuantWrapped"}
    assert wrapped == set(pol.resolve(m))
    orig = dict(m.named_parameters())
    for name, p in fq.named_parameters():
        src = name.replace(".layer.", ".")
        layer = src.rsplit(".", 1)[0]
        changed = not torch.equal(p, orig[src])
        assert changed == (layer in wrapped and src.endswith("weight")), name
    # INT8 activations only where the policy says INT8
    acts = {n.rsplit(".", 1)[0] for n, mod in fq.named_modules() if type(mod).__name__ == "FakeQuantInput"}
    assert acts == {k for k, b in pol.resolve(m).items() if b == 8}
    assert (fq(x) - m(x)).abs().max() < 0.5 * m(x).abs().max()


def test_onnx_mixed_quantizes_exactly_the_policy_layers(vit_onnx: tuple[ViT, Path], tmp_path: Path) -> None:
    m, p = vit_onnx
    x = _images(96)
    bits = MixedPrecisionPolicy.vit_qk8_v4_ffn4().resolve(m)
    res = quantize_mixed_onnx(
        p, tmp_path / "mixed.onnx", bits, calibration=CalibrationData(x[:64], batch_size=16)
    )
    kinds = quantized_layers(res.path)
    layers = onnx_layers(p)
    want8 = {n for k, b in bits.items() if b == 8 for n in layers[k]}
    want4 = {n + "_Q4" for k, b in bits.items() if b == 4 for n in layers[k]}
    assert {n for n, k in kinds.items() if k == "int8"} == want8
    assert {n for n, k in kinds.items() if k == "int4"} == want4
    # the layers outside the policy (patch embedding, attention proj, head) stay FP32 MatMul/Conv/Gemm
    g = load_onnx(res.path).graph
    fp32 = {n.name for n in g.node if n.op_type in ("MatMul", "Conv", "Gemm") and n.name not in kinds}
    for k in ("patch_embed.proj", "blocks.0.attn.proj", "blocks.1.attn.proj", "head"):
        assert set(layers[k]) <= fp32
    got = onnx_session(res.path, threads=1).run(None, {"images": x[64:].numpy()})[0]
    ref = m(x[64:]).detach().numpy()
    assert np.abs(got - ref).max() < 0.3 * np.abs(ref).max()
    assert res.path.stat().st_size < p.stat().st_size


def test_ort_int4_nodes_to_include_alone_quantizes_every_matmul(vit_onnx: tuple[ViT, Path]) -> None:
    """The trap guarded by quantize_mixed_onnx, shown on the installed onnxruntime."""
    nb = pytest.importorskip("onnxruntime.quantization.matmul_nbits_quantizer")
    _, p = vit_onnx
    one = onnx_layers(p)["blocks.0.mlp.fc1"][0]
    q = nb.MatMulNBitsQuantizer(
        load_onnx(p), nodes_to_include=[one], algo_config=nb.DefaultWeightOnlyQuantConfig(block_size=32)
    )
    q.process()
    n4 = sum(1 for n in q.model.model.graph.node if n.op_type == "MatMulNBits")
    if n4 == 1:
        pytest.skip("this onnxruntime restricts nodes_to_include as documented")
    assert n4 > 1


def test_weight_fake_quant_levels_and_observers() -> None:
    torch.manual_seed(0)
    w = torch.randn(8, 64)
    w[0, 0] = 20.0  # an outlier
    q8 = quant_dequant_weight(w, 8)
    assert all(len(torch.unique(r)) <= 256 for r in q8)
    q4 = quant_dequant_weight(w, 4, group_size=32)
    for r in q4:
        for g in r.split(32):
            assert len(torch.unique(g)) <= 16
    err = {
        o: float(((quant_dequant_weight(w, 4, observer=o) - w) ** 2).sum())
        for o in ("minmax", "percentile", "mse")
    }
    assert err["mse"] <= err["minmax"]
    assert err["percentile"] < err["minmax"]  # clipping the outlier row helps its other 63 weights


def test_smooth_quant_keeps_fp32_and_tames_outlier_channels() -> None:
    m = split_qkv(_vit())
    with torch.no_grad():
        for blk in m.blocks:  # type: ignore[attr-defined]
            blk.norm1.weight[3] = 40.0  # an activation outlier channel, as in LLMs
    x = _images(64)
    sm = smooth_quant(m, x, alpha=0.5)
    assert torch.allclose(sm(x), m(x), atol=1e-4)

    def act_ratio(model: nn.Module) -> float:
        seen: list[torch.Tensor] = []
        h = model.blocks[0].norm1.register_forward_hook(lambda _m, _a, y: seen.append(y))  # type: ignore[index,union-attr]
        model(x)
        h.remove()
        a = seen[0].abs().reshape(-1, seen[0].shape[-1]).amax(0)
        return float(a.max() / a.median())

    assert act_ratio(sm) < 0.5 * act_ratio(m)
    with pytest.raises(InvalidInputError):
        smooth_quant(nn.Linear(2, 2), x)


def test_sensitivity_report_covers_and_sorts() -> None:
    m = split_qkv(_vit())
    x = _images(64)
    y = m(x).argmax(-1)
    rep = sensitivity_report(m, x, y, bits=4, layers=["blocks.0.mlp.fc1", "head", "blocks.1.attn.qkv.q"])
    assert {r.layer for r in rep} == {"blocks.0.mlp.fc1", "head", "blocks.1.attn.qkv.q"}
    assert [r.drop for r in rep] == sorted((r.drop for r in rep), reverse=True)
    assert all(abs(r.drop - 100 * (1 - r.accuracy)) < 1e-9 for r in rep)  # y = the float model's labels


# --------------------------------------------------------------------------- ONNX: files, parity
def test_truncated_onnx_is_a_typed_error(vit_onnx: tuple[ViT, Path], tmp_path: Path) -> None:
    _, p = vit_onnx
    data = p.read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match=r"cut\.onnx"):
        load_onnx(cut)
    with pytest.raises(CorruptFileError, match=r"cut\.onnx"):
        onnx_session(cut)
    with pytest.raises(CorruptFileError):
        quantize_onnx(cut, tmp_path / "q.onnx", mode="dynamic")
    with pytest.raises(CorruptFileError):
        onnx_session(tmp_path / "missing.onnx")


def test_pipeline_refuses_onnx_with_another_input_name_or_shape(
    vit_onnx: tuple[ViT, Path], tmp_path: Path
) -> None:
    _, p = vit_onnx
    pre = PreprocessConfig(resize=16, crop=16, mean=(0.5,), std=(0.5,), channels=1)
    sess = onnx_session(p)
    InferencePipeline(pre, sess, input_name="images")
    with pytest.raises(InvalidInputError, match="named 'images'"):
        InferencePipeline(pre, sess, input_name="pixel_values")
    with pytest.raises(DimensionMismatchError, match="16x16"):
        InferencePipeline(PreprocessConfig(resize=32, crop=32, mean=(0.5,), std=(0.5,), channels=1), sess)
    flat = export_onnx(
        nn.Sequential(nn.Flatten(), nn.Linear(256, 5)), tmp_path / "flat.onnx", example=torch.zeros(1, 256)
    )
    with pytest.raises(DimensionMismatchError, match="batch, channels, height, width"):
        InferencePipeline(pre, onnx_session(flat))


def test_export_of_an_unsupported_module_names_it(tmp_path: Path) -> None:
    class Spectrum(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.fft.rfft(x, dim=-1).abs()

    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sequential(nn.ReLU(), Spectrum()), nn.Flatten())
    with pytest.raises(OnnxExportError, match=r"'1\.1' \(Spectrum\)"):
        export_onnx(net, tmp_path / "bad.onnx", example=torch.zeros(1, 1, 8, 8))
    assert not (tmp_path / "bad.onnx").exists()


@pytest.mark.parametrize("kind", ["plain", "split", "pruned", "merged"])
def test_fp32_exports_pass_parity_at_batch_1_and_32(kind: str, tmp_path: Path) -> None:
    m: nn.Module = _vit(depth=4)
    if kind == "split":
        m = split_qkv(m)
    elif kind == "pruned":
        m = DynamicTokenPruning.from_vit(m, keep_ratio=0.7).eval()  # type: ignore[arg-type]
    elif kind == "merged":
        m = TokenMerging(m, r=2).eval()  # type: ignore[arg-type]
    p = export_onnx(m, tmp_path / f"{kind}.onnx")
    res = onnx_parity(m, p, _images(32, seed=3), batches=(1, 32))
    assert [(r.batch, r.top1_agreement) for r in res] == [(1, 1.0), (32, 1.0)]
    assert max(r.max_abs_diff for r in res) <= 1e-4
