"""Issue 21: devices, GPU-shaped token reduction, the InferencePipeline GPU path, gpu_bench.

CPU tests check what can be checked without a GPU (typed device errors, no data-dependent-shape op
in the traced forwards, the bucket/padding logic, outputs unchanged). ``@pytest.mark.gpu`` tests
run only where CUDA is present (``bash benchmarks/gpu_run.sh`` runs them on the GPU machine).
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from mlsys.common.errors import DeviceMismatchError, DeviceUnavailableError, InvalidInputError
from mlsys.vision import (
    DynamicTokenPruning,
    ImageDecodeError,
    InferencePipeline,
    PreprocessConfig,
    PruningLoss,
    TokenMerging,
    TrainConfig,
    Trainer,
    ViT,
    ViTConfig,
    bucket_for,
    check_onnx_parity,
    export_onnx,
)

REPO = Path(__file__).resolve().parents[2]
CUDA = torch.cuda.is_available()
gpu = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (run by benchmarks/gpu_run.sh on the device)")
GRAY = PreprocessConfig(resize=16, crop=16, mean=(0.5,), std=(0.5,), channels=1)
DATA_DEPENDENT = ("nonzero", "masked_select", "_local_scalar_dense", "item", "unique", "masked_scatter")


def _variants(vit: ViT) -> dict[str, nn.Module]:
    return {
        "plain": vit,
        "pruned": DynamicTokenPruning.from_vit(vit, keep_ratio=0.6).eval(),
        "merged": TokenMerging(vit, 6).eval(),
    }


def _graph_ops(model: nn.Module, x: torch.Tensor) -> list[str]:
    """ATen ops of the forward exported with static input shapes; a node whose output shape is
    symbolic (a size that depends on data: boolean indexing, nonzero) is reported as ``dynamic:<op>``."""
    ep = torch.export.export(model, (x,))
    out = []
    for n in ep.graph.nodes:
        if n.op != "call_function":
            continue
        val = n.meta.get("val")
        dynamic = isinstance(val, torch.Tensor) and any(not isinstance(d, int) for d in val.shape)
        out.append(("dynamic:" if dynamic else "") + str(n.target))
    return out


def _data_dependent(ops: list[str]) -> list[str]:
    return [
        o
        for o in ops
        if o.startswith("dynamic:")
        or any(f"aten.{d}." in o or o.endswith(f"aten.{d}") for d in DATA_DEPENDENT)
    ]


# -- token reduction: outputs unchanged, static shapes, no data-dependent op ---------------------
# Logits of the implementation before issue 21 (git f3d78b7) for this seeded model and input:
# the rewritten merge (sizes moved as one extra channel) must give the same numbers.
BEFORE = {
    "merged": [0.072155, -0.056347, 0.081112, 0.03139, 0.079959],
    "pruned": [0.115815, -0.063054, 0.063946, 0.043004, 0.093322],
}


def test_pruned_and_merged_logits_equal_the_previous_implementation() -> None:
    torch.manual_seed(0)
    vit = ViT(
        ViTConfig(img_size=16, patch_size=2, in_chans=1, num_classes=5, embed_dim=32, depth=6, num_heads=4)
    ).eval()
    x = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for name, m in (
            ("merged", TokenMerging(vit, 6)),
            ("pruned", DynamicTokenPruning.from_vit(vit, keep_ratio=0.6).eval()),
        ):
            np.testing.assert_allclose(m(x)[0].numpy(), BEFORE[name], atol=2e-6)


def test_traced_forwards_hold_no_data_dependent_shape_op(tiny_vit: ViT) -> None:
    x = torch.randn(2, 1, 16, 16)
    for name, m in _variants(tiny_vit).items():
        ops = _graph_ops(m, x)
        assert ops, name
        assert _data_dependent(ops) == [], (name, _data_dependent(ops))
        # static shapes: the exported output has a fixed (batch, classes) shape

    # the check can fail: threshold-mode pruning (documented as data dependent) cannot be traced
    # with static shapes, and a boolean-mask op shows up as nonzero / masked_select
    class Masked(nn.Module):
        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return t[t > 0]

    assert _data_dependent(_graph_ops(Masked(), x))
    with pytest.raises(Exception):  # noqa: B017 - torch raises one of several internal errors
        torch.export.export(DynamicTokenPruning.from_vit(tiny_vit, mode="threshold").eval(), (x[:1],))


def test_merge_keeps_sizes_and_mass_under_bf16_autocast(tiny_vit: ViT) -> None:
    """Under CPU bf16 autocast the proportional-attention bias is cast to the compute dtype once
    (no mixed-dtype attention) and the merged model still runs and agrees with fp32 on top-1."""
    x = torch.randn(8, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    m = TokenMerging(tiny_vit, 6)
    with torch.inference_mode():
        ref = m(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = m(x)
    assert low.shape == ref.shape and torch.isfinite(low).all()
    assert (low.float() - ref).abs().max() < 0.05


@pytest.mark.slow
def test_fullgraph_compile_of_plain_pruned_merged() -> None:
    """torch.compile(fullgraph=True) raises on any graph break; 30-110 s of compilation on the
    shared 2 cores (load 2-13), hence slow."""
    torch.manual_seed(0)
    vit = ViT(
        ViTConfig(img_size=8, patch_size=2, in_chans=1, num_classes=3, embed_dim=16, depth=2, num_heads=2)
    ).eval()
    x = torch.randn(2, 1, 8, 8)
    for m in (
        vit,
        DynamicTokenPruning.from_vit(vit, keep_ratio=0.6, prune_after=(1,)).eval(),
        TokenMerging(vit, 3),
    ):
        torch._dynamo.reset()
        with torch.no_grad():
            np.testing.assert_allclose(torch.compile(m, fullgraph=True)(x).numpy(), m(x).numpy(), atol=1e-5)


# -- devices: typed errors ---------------------------------------------------------------------
@pytest.mark.skipif(CUDA, reason="checks the error raised where there is no GPU")
def test_cuda_without_gpu_is_a_typed_error_naming_what_was_found(tiny_vit: ViT) -> None:
    with pytest.raises(DeviceUnavailableError, match="CUDA is not available"):
        Trainer(tiny_vit, TrainConfig(epochs=1), device="cuda")
    with pytest.raises(DeviceUnavailableError, match="CUDA"):
        InferencePipeline(GRAY, tiny_vit, device="cuda:0")
    tr = Trainer(tiny_vit, TrainConfig(epochs=1), device="auto", precision="fp16")
    assert tr.device.type == "cpu" and tr.precision_fallback is not None and "fp32" in tr.precision_fallback
    pipe = InferencePipeline(GRAY, tiny_vit, precision="fp16", cuda_graphs=True)
    assert pipe.cuda_graphs is False and len(pipe.fallbacks) == 2 and pipe.batch_buckets is None
    with pytest.raises(InvalidInputError, match="device"):
        Trainer(tiny_vit, TrainConfig(epochs=1), device=3.5)  # type: ignore[arg-type]
    with pytest.raises(DeviceUnavailableError):
        PruningLoss(tiny_vit).to("cuda")  # (freezes tiny_vit as a teacher: keep it last)


def test_model_and_input_on_different_devices_is_a_clear_error(tiny_vit: ViT) -> None:
    x = torch.zeros(2, 1, 16, 16, device="meta")
    for m in _variants(tiny_vit).values():
        with pytest.raises(DeviceMismatchError, match="model is on cpu"):
            m(x)


def test_trainer_records_device_and_bf16_autocast_trains_on_cpu(tiny_config: Any) -> None:
    torch.manual_seed(0)
    m = ViT(tiny_config(depth=1))
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 1, 16, 16, generator=g), torch.randint(0, 5, (32,), generator=g)
    hist = Trainer(
        m, TrainConfig(epochs=2, batch_size=8, warmup_steps=2), precision="bf16", progress=False
    ).fit(x, y, x, y)
    assert hist.device == "cpu" and hist.precision == "bfloat16" and hist.precision_fallback is None
    assert all(np.isfinite(e["train_loss"]) for e in hist.epochs)
    assert hist.epochs[-1]["train_loss"] < hist.epochs[0]["train_loss"] + 0.5


def test_trainer_on_cpu_is_unchanged_by_the_device_option(tiny_config: Any) -> None:
    """device="cpu" (explicit) and the default give bit-identical training (same seeded draws)."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(24, 1, 16, 16, generator=g), torch.randint(0, 5, (24,), generator=g)
    weights = []
    for kw in ({}, {"device": "cpu"}, {"device": "auto"} if not CUDA else {"device": "cpu"}):
        torch.manual_seed(0)
        m = ViT(tiny_config(depth=1))
        Trainer(m, TrainConfig(epochs=1, batch_size=8, patch_dropout=0.3), progress=False, **kw).fit(x, y)
        weights.append(torch.cat([p.detach().flatten() for p in m.parameters()]))
    assert torch.equal(weights[0], weights[1]) and torch.equal(weights[0], weights[2])


# -- InferencePipeline: buckets, padding, chunks ------------------------------------------------
def _png(seed: int, size: int = 10) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


class _Recorder(nn.Module):
    """Wraps a model and records the batch size of every forward."""

    def __init__(self, inner: ViT) -> None:
        super().__init__()
        self.backbone = inner
        self.calls: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(int(x.shape[0]))
        return self.backbone(x)


def test_bucket_for() -> None:
    assert [bucket_for(n, (1, 2, 4, 8)) for n in (1, 2, 3, 4, 5, 8, 9, 100)] == [1, 2, 4, 4, 8, 8, 8, 8]
    with pytest.raises(InvalidInputError):
        bucket_for(0, (1, 2))
    with pytest.raises(InvalidInputError, match="strictly increasing"):
        InferencePipeline(
            GRAY, ViT(ViTConfig(img_size=16, patch_size=4, in_chans=1, num_classes=2)), batch_buckets=(4, 2)
        )


def test_bucketed_padding_gives_the_unpadded_results(tiny_vit: ViT) -> None:
    images = [_png(i) for i in range(11)]
    ref = InferencePipeline(GRAY, tiny_vit).predict_batch(images)
    rec = _Recorder(tiny_vit)
    pipe = InferencePipeline(GRAY, rec, batch_buckets=(1, 4, 8))
    out = pipe.predict_batch(images)
    assert rec.calls == [8, 4]  # 11 = a chunk of 8 + 3 padded to 4
    np.testing.assert_allclose(out.probs, ref.probs, rtol=1e-5, atol=1e-6)
    assert np.array_equal(out.top_ids, ref.top_ids)
    rec.calls.clear()
    single = pipe.predict(images[3])
    assert rec.calls == [1] and np.array_equal(single.ids, ref.top_ids[3])
    rec.calls.clear()
    pipe.predict_batch(images[:3])
    assert rec.calls == [4]  # padded: the rows of zeros are dropped from the result
    rec.calls.clear()
    pipe.warmup()
    assert rec.calls == [1, 4, 8]
    assert pipe.stats()["model"].count >= 3


# -- predict_batch(on_error=...) (issue 18) -------------------------------------------------------
def test_one_corrupt_file_costs_one_row_not_the_batch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    vit = ViT(
        ViTConfig(img_size=8, patch_size=4, in_chans=1, num_classes=3, embed_dim=8, depth=1, num_heads=2)
    )
    cfg = PreprocessConfig(resize=8, crop=8, mean=(0.5,), std=(0.5,), channels=1)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(1000):
        p = tmp_path / f"img_{i:04d}.png"
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(p)
        paths.append(p)
    bad = {17: b"", 500: paths[500].read_bytes()[:30], 999: b"\x89PNG\r\n\x1a\n garbage"}
    for i, data in bad.items():
        paths[i].write_bytes(data)
    pipe = InferencePipeline(cfg, vit, top_k=2)
    with pytest.raises(ImageDecodeError):
        pipe.predict_batch(paths)
    rec = pipe.predict_batch(paths, on_error="record")
    assert len(rec) == 997 and rec.probs.shape == (997, 3)
    assert [e.index for e in rec.errors] == sorted(bad)
    assert all(
        e.error_type == "ImageDecodeError" and e.path == str(paths[e.index]) and e.message for e in rec.errors
    )
    assert rec.input_indices is not None and set(rec.input_indices.tolist()) == set(range(1000)) - set(bad)
    rows = rec.rows()
    assert len(rows) == 1000 and [i for i, r in enumerate(rows) if not hasattr(r, "ids")] == sorted(bad)
    # each good row equals classifying that file alone
    good = [0, 18, 501, 998]
    alone = pipe.predict_batch([paths[i] for i in good])
    pos = {int(j): k for k, j in enumerate(rec.input_indices)}
    np.testing.assert_allclose(rec.probs[[pos[i] for i in good]], alone.probs, rtol=1e-5, atol=1e-6)
    skip = pipe.predict_batch(paths, on_error="skip")
    assert len(skip) == 997 and skip.errors == [] and np.array_equal(skip.probs, rec.probs)
    with pytest.raises(InvalidInputError, match="on_error"):
        pipe.predict_batch(paths[:2], on_error="ignore")  # type: ignore[arg-type]
    none = pipe.predict_batch([paths[17]], on_error="record")
    assert len(none) == 0 and len(none.errors) == 1


# -- gpu_bench ------------------------------------------------------------------------------------
def test_gpu_bench_small_runs_on_cpu(tmp_path: Path) -> None:
    import json

    cmd = [
        sys.executable,
        str(REPO / "benchmarks" / "gpu_bench.py"),
        "--small",
        "--device",
        "cpu",
        "--out",
        str(tmp_path),
        "--sections",
        "env,throughput,launches",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    res = json.loads((tmp_path / "gpu_bench.json").read_text())
    assert res["errors"] == {}, res["errors"]
    sec = res["sections"]
    assert set(sec) == {"env", "throughput", "launches"}
    rows = sec["throughput"]["rows"]
    assert {(r["precision"], r["batch"]) for r in rows} == {
        ("fp32", 1),
        ("fp32", 4),
        ("bf16", 1),
        ("bf16", 4),
    }
    assert all(r["plain"]["x_plain"] == 1.0 and r["merged_r16"]["img_s"] > 0 for r in rows)
    launches = sec["launches"]
    assert 0 < launches["fp32.plain"]["kernel_ops"] < launches["fp32.plain"]["aten_ops"]
    assert (
        launches["bf16.merged_r8"]["kernel_ops_x_plain"] > 1
        and launches["fp32.plain"]["aten_ops_x_plain"] == 1
    )


def test_count_ops_counts_kernel_launching_ops_once() -> None:
    """The launch proxy of gpu_bench: views, no-ops and allocations launch nothing, and a composite
    op counts once, as the op that does the work (linear -> addmm -> its bias copy on the CPU)."""
    from gpu_bench import count_ops
    from torch.profiler import profile

    torch.manual_seed(0)
    lin, x = nn.Linear(4, 6), torch.randn(2, 4)

    def counts(fn: Any) -> dict[str, int]:
        with torch.inference_mode():
            fn()  # warm-up
            with profile() as prof:
                fn()
        events = list(prof.events())
        got = count_ops(events)
        assert got["aten_ops"] == sum(1 for e in events if e.name.startswith("aten::"))
        return got

    c = counts(lambda: lin(x).view(3, 4).relu())  # linear (t, addmm), view: 1 kernel; relu: 1
    assert c["kernel_ops"] == 2 and c["aten_ops"] > 5
    y = torch.randn(4, 6)
    assert counts(lambda: y.view(6, 4).t().unsqueeze(0).expand(2, -1, -1)[:, 1])["kernel_ops"] == 0
    assert counts(lambda: y.t().contiguous())["kernel_ops"] == 1  # one copy, under contiguous/clone
    assert counts(lambda: y.contiguous().to(torch.float32))["kernel_ops"] == 0  # both no-ops here
    assert counts(lambda: (y + 1).softmax(-1).sum())["kernel_ops"] == 3


# -- on a GPU -------------------------------------------------------------------------------------
@gpu
def test_gpu_forward_matches_cpu_and_makes_no_host_sync(tiny_vit: ViT) -> None:
    x = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    torch.backends.cudnn.allow_tf32 = False
    for name, m in _variants(tiny_vit).items():
        with torch.inference_mode():
            ref = m(x)
            m.to("cuda")
            xc = x.cuda()
            m(xc)
            torch.cuda.synchronize()
            for ac in (False, True):
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=ac):
                    torch.cuda.set_sync_debug_mode("error")
                    try:
                        out = m(xc)
                    finally:
                        torch.cuda.set_sync_debug_mode(0)
                if not ac:
                    assert (out.cpu() - ref).abs().max() < 1e-4, name
        m.to("cpu")


@gpu
def test_gpu_pipeline_cuda_graphs_equal_eager(tiny_vit: ViT) -> None:
    images = [_png(i) for i in range(70)]
    ref = InferencePipeline(GRAY, tiny_vit).predict_batch(images)
    for graphs in (False, True):
        pipe = InferencePipeline(GRAY, tiny_vit, device="cuda", cuda_graphs=graphs)
        assert pipe.batch_buckets is not None and pipe.fallbacks == []
        out = pipe.predict_batch(images)  # 64 + 6 padded to 8, the second chunk overlapping
        np.testing.assert_allclose(out.probs, ref.probs, rtol=1e-4, atol=1e-5)
        one = pipe.predict(images[5])
        assert np.array_equal(one.ids, ref.top_ids[5])
        bf = InferencePipeline(GRAY, tiny_vit, device="cuda", precision="bf16", cuda_graphs=graphs)
        assert (bf.predict_batch(images).top_ids[:, 0] == ref.top_ids[:, 0]).mean() > 0.9
        tiny_vit.to("cpu")


@gpu
def test_gpu_trainer_with_pruning_loss_and_onnx_export(tiny_config: Any, tmp_path: Path) -> None:
    torch.manual_seed(0)
    teacher = ViT(tiny_config(depth=2))
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 1, 16, 16, generator=g), torch.randint(0, 5, (64,), generator=g)
    hist = Trainer(teacher, TrainConfig(epochs=1, batch_size=16), device="cuda", precision="bf16").fit(
        x, y, x, y
    )
    assert hist.device.startswith("cuda") and next(teacher.parameters()).is_cuda
    student = DynamicTokenPruning.from_vit(teacher, keep_ratio=0.7)
    Trainer(student, TrainConfig(epochs=1, batch_size=16), loss_fn=PruningLoss(teacher), device="cuda").fit(
        x, y
    )
    path = export_onnx(student.eval(), tmp_path / "s.onnx")
    assert next(student.parameters()).is_cuda  # exported from a CPU copy, the model stays put
    torch.backends.cudnn.allow_tf32 = False
    assert check_onnx_parity(student, path, atol=1e-3) < 1e-3
