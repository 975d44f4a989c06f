"""Compression figures of issue 15: student vs teacher, INT8 and mixed INT8/INT4, one table from
image file to label, and the accuracy-vs-latency plot.

Needs the teacher (``train_fmnist.py``) and a distilled student (``distill_fmnist.py``) under
``~/.cache/mlsys/vision/``. Every step is resumable (its JSON is kept under
``~/.cache/mlsys/vision/bench_compress/`` and skipped when present, ``--force`` redoes it), and
every timed backend runs in its own process with a fixed thread count (torch and onnxruntime
thread pools never share a process); the machine's load average is recorded with each figure::

    python benchmarks/vision/compress_bench.py prepare     # ONNX exports, parity, INT8, mixed
    python benchmarks/vision/compress_bench.py accuracy    # test-set accuracy, mixed fake-quant, sensitivity
    python benchmarks/vision/compress_bench.py latency     # batch-1 / batch-32 model latency, 1 and 2 threads
    python benchmarks/vision/compress_bench.py e2e         # image file -> label through InferencePipeline
    python benchmarks/vision/compress_bench.py select      # choose_onnx_model: what to deploy, on this machine
    python benchmarks/vision/compress_bench.py int8-shapes # INT8 speed-up vs ViT width (random weights)
    python benchmarks/vision/compress_bench.py report      # markdown tables + accuracy_vs_latency_compress.png
    python benchmarks/vision/compress_bench.py all
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlsys.common.data import cache_root, load_fashion_mnist
from mlsys.vision import (
    DynamicTokenPruning,
    InferencePipeline,
    PreprocessConfig,
    ViT,
    ViTConfig,
    evaluate,
    export_onnx,
    images_to_tensor,
    load_model,
    onnx_session,
)
from mlsys.vision.compress import (
    CalibrationData,
    MixedPrecisionPolicy,
    MobileNetV3,
    MobileNetV3Config,
    choose_onnx_model,
    count_parameters,
    fake_quantize,
    fuse_attention_onnx,
    onnx_parity,
    quantize_mixed_onnx,
    quantize_onnx,
    quantized_layers,
    sensitivity_report,
    smooth_quant,
    split_qkv,
)

CACHE = cache_root() / "vision"
# overridable for a dry run on other checkpoints (the subprocesses inherit the environment)
OUT = Path(os.environ.get("MLSYS_COMPRESS_OUT", str(CACHE / "bench_compress")))
TEACHER_DIR = Path(os.environ.get("MLSYS_TEACHER_DIR", str(CACHE / "fmnist_vit")))
STUDENT_DIR = Path(os.environ.get("MLSYS_STUDENT_DIR", str(CACHE / "students" / "feature_s0")))
MEAN, STD = 0.2860, 0.3530
DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "fashion-mnist"
HERE = Path(__file__).resolve().parent
N_FILES = 1000

ONNX_FILES = {
    "teacher_onnx": "teacher_fp32.onnx",
    "teacher_int8_dynamic": "teacher_int8_dynamic.onnx",
    # the teacher with each self-attention fused into one com.microsoft Attention node: the FP32
    # baseline of that graph, and its dynamic INT8 (QAttention + DynamicQuantizeMatMul)
    "teacher_fused_fp32": "teacher_fused_fp32.onnx",
    "teacher_int8_attn": "teacher_int8_dynamic_attn.onnx",
    "teacher_int8_static": "teacher_int8_static.onnx",
    "teacher_mixed": "teacher_mixed_qk8_v4_ffn4.onnx",
    "pruned_onnx": "pruned_fp32.onnx",
    "student_onnx": "student_fp32.onnx",
    "student_int8_static": "student_int8_static.onnx",
    "student_int8_dynamic": "student_int8_dynamic.onnx",
}


def _data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, Any]:
    d = load_fashion_mnist(DATA)
    xt = images_to_tensor(d.x_train, MEAN, STD)
    yt = torch.from_numpy(d.y_train.astype(np.int64))
    xv = images_to_tensor(d.x_test, MEAN, STD)
    yv = torch.from_numpy(d.y_test.astype(np.int64))
    return xt, yt, xv, yv, d


def _teacher() -> ViT:
    m = load_model(TEACHER_DIR)
    assert isinstance(m, ViT)
    return m.eval()


def _student() -> MobileNetV3:
    m = load_model(STUDENT_DIR)
    assert isinstance(m, MobileNetV3)
    return m.eval()


def _pruned(teacher: ViT) -> tuple[DynamicTokenPruning, str]:
    tuned = CACHE / "fmnist_vit_prune0.7"
    if (tuned / "manifest.json").is_file():
        m = load_model(tuned)
        if isinstance(m, DynamicTokenPruning):
            return m.eval(), "fine-tuned pruned student (fmnist_vit_prune0.7)"
    torch.manual_seed(0)
    return (
        DynamicTokenPruning.from_vit(teacher, keep_ratio=0.7).eval(),
        "teacher pruned with DynamicTokenPruning(keep_ratio=0.7), scorers NOT fine-tuned (no fine-tuned pruned student cached)",
    )


def _load_json(name: str) -> dict[str, Any] | None:
    p = OUT / name
    return json.loads(p.read_text()) if p.is_file() else None


def _save_json(name: str, obj: dict[str, Any]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / name).write_text(json.dumps(obj, indent=2))


# --------------------------------------------------------------------------------------- prepare
def prepare(force: bool) -> dict[str, Any]:
    if not force and (got := _load_json("prepare.json")) is not None:
        return got
    torch.set_num_threads(2)
    xt, _yt, xv, _yv, _ = _data()
    teacher, student = _teacher(), _student()
    pruned, pruned_note = _pruned(teacher)
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    cal_x = xt[torch.from_numpy(rng.choice(xt.shape[0], 512, replace=False))]
    cal = CalibrationData(cal_x, batch_size=32, min_batches=8, input_shape=(1, 28, 28))
    res: dict[str, Any] = {"pruned_note": pruned_note, "parity": {}, "files": {}, "quantized_nodes": {}}
    res["params"] = {
        "teacher": count_parameters(teacher),
        "student": count_parameters(student),
        "pruned": count_parameters(pruned),
    }
    split = split_qkv(teacher)
    for name, model in (("teacher_onnx", teacher), ("pruned_onnx", pruned), ("student_onnx", student)):
        p = export_onnx(model, OUT / ONNX_FILES[name])
        res["parity"][name] = [r.__dict__ for r in onnx_parity(model, p, xv[:32], batches=(1, 32))]
    t_fp32, s_fp32 = OUT / ONNX_FILES["teacher_onnx"], OUT / ONNX_FILES["student_onnx"]
    t0 = time.perf_counter()
    quantize_onnx(t_fp32, OUT / ONNX_FILES["teacher_int8_dynamic"], mode="dynamic")
    fuse_attention_onnx(t_fp32, OUT / ONNX_FILES["teacher_fused_fp32"])
    quantize_onnx(t_fp32, OUT / ONNX_FILES["teacher_int8_attn"], mode="dynamic", fuse_attention=True)
    quantize_onnx(
        t_fp32, OUT / ONNX_FILES["teacher_int8_static"], mode="static", calibration=cal, method="percentile"
    )
    quantize_onnx(
        s_fp32, OUT / ONNX_FILES["student_int8_static"], mode="static", calibration=cal, method="minmax"
    )
    quantize_onnx(s_fp32, OUT / ONNX_FILES["student_int8_dynamic"], mode="dynamic")
    # the mixed policy needs separate q/k/v projections: export the split teacher (same function)
    split_path = export_onnx(split, OUT / "teacher_split_fp32.onnx")
    res["parity"]["teacher_split_onnx"] = [r.__dict__ for r in onnx_parity(split, split_path, xv[:32])]
    bits = MixedPrecisionPolicy.vit_qk8_v4_ffn4().resolve(split)
    mixed = quantize_mixed_onnx(split_path, OUT / ONNX_FILES["teacher_mixed"], bits, calibration=cal)
    res["mixed_bits"] = bits
    res["quantize_seconds"] = time.perf_counter() - t0
    for name, f in ONNX_FILES.items():
        res["files"][name] = (OUT / f).stat().st_size
        kinds = quantized_layers(OUT / f)
        res["quantized_nodes"][name] = {
            "int8": sum(k == "int8" for k in kinds.values()),
            "int4": sum(k == "int4" for k in kinds.values()),
        }
    res["mixed_int4_nodes"] = mixed.int4_nodes
    res["mixed_int8_nodes"] = mixed.int8_nodes
    res["load_average"] = os.getloadavg()
    _save_json("prepare.json", res)
    return res


# -------------------------------------------------------------------------------------- accuracy
def _onnx_accuracy(path: Path, xv: torch.Tensor, yv: torch.Tensor) -> float:
    sess = onnx_session(path, threads=2)
    name = sess.get_inputs()[0].name
    correct = 0
    for i in range(0, xv.shape[0], 500):
        out = sess.run(None, {name: xv[i : i + 500].numpy()})[0]
        correct += int((out.argmax(-1) == yv[i : i + 500].numpy()).sum())
    return correct / xv.shape[0]


def accuracy(force: bool) -> dict[str, Any]:
    if not force and (got := _load_json("accuracy.json")) is not None:
        return got
    torch.set_num_threads(2)
    xt, _yt, xv, yv, _ = _data()
    teacher, student = _teacher(), _student()
    pruned, _ = _pruned(teacher)
    res: dict[str, Any] = {"test_images": int(xv.shape[0])}
    res["torch"] = {
        "teacher_torch": evaluate(teacher, xv, yv).accuracy,
        "student_torch": evaluate(student, xv, yv).accuracy,
        "pruned_torch": evaluate(pruned, xv, yv).accuracy,
    }
    res["onnx"] = {name: _onnx_accuracy(OUT / f, xv, yv) for name, f in ONNX_FILES.items()}
    # the mixed policy in torch (fake-quant), with and without outlier handling
    rng = np.random.default_rng(0)
    cal_x = xt[torch.from_numpy(rng.choice(xt.shape[0], 512, replace=False))]
    split = split_qkv(teacher)
    pol = MixedPrecisionPolicy.vit_qk8_v4_ffn4()
    fq: dict[str, float] = {}
    for observer in ("minmax", "percentile", "mse"):
        fq[f"mixed_{observer}"] = evaluate(
            fake_quantize(split, pol, calibration=cal_x, observer=observer), xv, yv
        ).accuracy
    smoothed = smooth_quant(split, cal_x, alpha=0.5)
    fq["mixed_smoothquant_minmax"] = evaluate(
        fake_quantize(smoothed, pol, calibration=cal_x), xv, yv
    ).accuracy
    all8 = {n: 8 for n in pol.resolve(split)}
    fq["int8_same_layers_minmax"] = evaluate(fake_quantize(split, all8, calibration=cal_x), xv, yv).accuracy
    res["fake_quant"] = fq
    # per-layer sensitivity (INT4 weights, one layer at a time, the first 1,000 test images)
    t0 = time.perf_counter()
    sens = sensitivity_report(split, xv[:1000], yv[:1000], bits=4, calibration=cal_x)
    res["sensitivity_int4"] = [s.__dict__ for s in sens]
    res["sensitivity_seconds"] = time.perf_counter() - t0
    res["load_average"] = os.getloadavg()
    _save_json("accuracy.json", res)
    return res


# -------------------------------------------------------------------------------------- latency
LAT_BACKENDS = (
    "teacher_torch",
    "student_torch",
    "student_torch_fused",
    "teacher_onnx",
    "student_onnx",
    "teacher_int8_dynamic",
    "teacher_int8_static",
    "teacher_mixed",
    "teacher_fused_fp32",
    "teacher_int8_attn",
    "student_int8_static",
    "student_int8_dynamic",
)


def _runner(backend: str, threads: int) -> Any:
    """A function images (B, 1, 28, 28) float32 -> logits, for one backend."""
    if backend.endswith("_torch") or backend == "student_torch_fused":
        torch.set_num_threads(threads)
        if backend.startswith("teacher"):
            m: torch.nn.Module = _teacher()
        else:
            s = _student()
            m = s.fuse_bn() if backend.endswith("fused") else s

        def run(x: np.ndarray) -> Any:
            with torch.inference_mode():
                return m(torch.from_numpy(x)).numpy()

        return run
    sess = onnx_session(OUT / ONNX_FILES[backend], threads=threads)
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})[0]


def latency_worker(backend: str, threads: int, n1: int, n32: int) -> dict[str, Any]:
    d = load_fashion_mnist(DATA)
    x = images_to_tensor(d.x_test[:512], MEAN, STD).numpy()
    run = _runner(backend, threads)
    for i in range(20):
        run(x[i : i + 1])
    t1 = []
    for i in range(n1):
        xi = x[i % 512 : i % 512 + 1]
        t0 = time.perf_counter()
        run(xi)
        t1.append(time.perf_counter() - t0)
    run(x[:32])
    t32 = []
    for i in range(n32):
        xb = x[(i * 32) % 480 : (i * 32) % 480 + 32]
        t0 = time.perf_counter()
        run(xb)
        t32.append(time.perf_counter() - t0)
    a1 = np.array(t1) * 1e3
    return {
        "backend": backend,
        "threads": threads,
        "b1_p50_ms": float(np.percentile(a1, 50)),
        "b1_p99_ms": float(np.percentile(a1, 99)),
        "b32_img_per_s": float(32 / np.median(t32)),
        "load_average": os.getloadavg(),
    }


def _subprocess(args: list[str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def latency(force: bool, rounds: int) -> dict[str, Any]:
    if not force and (got := _load_json("latency.json")) is not None:
        return got
    runs: list[dict[str, Any]] = []
    for r in range(rounds):  # backends interleaved within each round
        for threads in (1, 2):
            for b in LAT_BACKENDS:
                got = _subprocess(["worker-latency", b, str(threads)])
                got["round"] = r
                runs.append(got)
                print(json.dumps(got), flush=True)
    summary: dict[str, Any] = {}
    for threads in (1, 2):
        for b in LAT_BACKENDS:
            rs = [x for x in runs if x["backend"] == b and x["threads"] == threads]
            summary[f"{b}@{threads}"] = {
                "b1_p50_ms": float(np.median([x["b1_p50_ms"] for x in rs])),
                "b1_p99_ms": float(np.median([x["b1_p99_ms"] for x in rs])),
                "b32_img_per_s": float(np.median([x["b32_img_per_s"] for x in rs])),
                "load_average_1min": [x["load_average"][0] for x in rs],
            }
    res = {"rounds": rounds, "runs": runs, "summary": summary}
    _save_json("latency.json", res)
    return res


# ------------------------------------------------------------------------------------------ e2e
E2E_BACKENDS = (
    "teacher_torch",
    "teacher_onnx",
    "pruned_onnx",
    "student_onnx",
    "student_int8_static",
    "teacher_int8_dynamic",
    "teacher_int8_attn",
)


def _write_files() -> tuple[list[Path], np.ndarray]:
    from PIL import Image

    folder = OUT / "images"
    labels_path = folder / "labels.json"
    d = load_fashion_mnist(DATA)
    rng = np.random.default_rng(0)
    idx = rng.choice(d.x_test.shape[0], N_FILES, replace=False)
    paths = [folder / f"{i:05d}.png" for i in idx]
    if not labels_path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        for i, p in zip(idx, paths, strict=True):
            Image.fromarray(d.x_test[i]).save(p)
        labels_path.write_text(json.dumps(d.y_test[idx].tolist()))
    return paths, np.array(json.loads(labels_path.read_text()))


def e2e_worker(backend: str, threads: int) -> dict[str, Any]:
    paths, labels = _write_files()
    if backend.endswith("_torch"):
        torch.set_num_threads(threads)
        model: Any = _teacher() if backend.startswith("teacher") else _student()
        size_bytes = (
            ((TEACHER_DIR if backend.startswith("teacher") else STUDENT_DIR) / "model.safetensors")
            .stat()
            .st_size
        )
    else:
        model = onnx_session(OUT / ONNX_FILES[backend], threads=threads)
        size_bytes = (OUT / ONNX_FILES[backend]).stat().st_size
    pre = PreprocessConfig(resize=28, crop=28, mean=(MEAN,), std=(STD,), channels=1, backend="opencv")
    pipe = InferencePipeline(
        pre, model, top_k=1, input_name="images" if not backend.endswith("_torch") else None
    )
    for p in paths[:20]:
        pipe.predict(p)
    pipe.profiler.reset() if hasattr(pipe.profiler, "reset") else None
    lat, preds = [], []
    for p in paths:
        t0 = time.perf_counter()
        pred = pipe.predict(p)
        lat.append(time.perf_counter() - t0)
        preds.append(int(pred.ids[0]))
    t_batches = []
    for i in range(0, len(paths) - 31, 32):
        t0 = time.perf_counter()
        pipe.predict_batch(paths[i : i + 32])
        t_batches.append(time.perf_counter() - t0)
    a = np.array(lat) * 1e3
    return {
        "backend": backend,
        "threads": threads,
        "files": len(paths),
        "accuracy": float((np.array(preds) == labels).mean()),
        "file_bytes": size_bytes,
        "p50_ms": float(np.percentile(a, 50)),
        "p99_ms": float(np.percentile(a, 99)),
        "b32_img_per_s": float(32 / np.median(t_batches)),
        "load_average": os.getloadavg(),
    }


def e2e(force: bool, rounds: int) -> dict[str, Any]:
    if not force and (got := _load_json("e2e.json")) is not None:
        return got
    _write_files()
    runs = []
    for r in range(rounds):
        for b in E2E_BACKENDS:
            got = _subprocess(["worker-e2e", b, "1"])
            got["round"] = r
            runs.append(got)
            print(json.dumps(got), flush=True)
    summary = {}
    for b in E2E_BACKENDS:
        rs = [x for x in runs if x["backend"] == b]
        summary[b] = {
            k: float(np.median([x[k] for x in rs])) for k in ("accuracy", "p50_ms", "p99_ms", "b32_img_per_s")
        }
        summary[b]["file_bytes"] = rs[0]["file_bytes"]
        summary[b]["load_average_1min"] = [x["load_average"][0] for x in rs]
    res = {"rounds": rounds, "runs": runs, "summary": summary}
    _save_json("e2e.json", res)
    return res


# ---------------------------------------------------------------------------------------- select
SELECT_GROUPS = {
    "teacher": (
        "teacher_onnx",
        "teacher_fused_fp32",
        "teacher_int8_dynamic",
        "teacher_int8_attn",
        "teacher_int8_static",
        "teacher_mixed",
    ),
    "student": ("student_onnx", "student_int8_static", "student_int8_dynamic"),
}


def select(force: bool, rounds: int) -> dict[str, Any]:
    """``choose_onnx_model`` over each model's FP32 export (the baseline) and its variants, with the
    10,000 test images and labels, at 1 and 2 threads."""
    if not force and (got := _load_json("select.json")) is not None:
        return got
    _, _, xv, yv, _ = _data()
    res: dict[str, Any] = {}
    for threads in (1, 2):
        for group, names in SELECT_GROUPS.items():
            choice = choose_onnx_model(
                {n: OUT / ONNX_FILES[n] for n in names},
                xv,
                yv,
                threads=threads,
                batch_sizes=(1, 32),
                calls=300,
                rounds=rounds,
            )
            print(f"{group} @ {threads} thread(s): {choice.summary()}", flush=True)
            res[f"{group}@{threads}"] = choice.to_dict()
            _save_json("select.json", res)
    return res


# speed only (random weights): where does onnxruntime's INT8 pay? The teacher's shape against the
# standard small ViTs at 224 px, the same four graphs each
INT8_SHAPES = {
    "teacher shape: width 64, 6 blocks, 197 tokens": (ViTConfig.fashion_mnist, (1, 28, 28), 300),
    "ViT-Ti/16: width 192, 12 blocks, 197 tokens": (
        lambda: ViTConfig(
            img_size=224, patch_size=16, in_chans=3, num_classes=1000, embed_dim=192, depth=12, num_heads=3
        ),
        (3, 224, 224),
        100,
    ),
    "ViT-S/16: width 384, 12 blocks, 197 tokens": (ViTConfig.vit_small_patch16_224, (3, 224, 224), 40),
}


# the student's shape against MobileNetV3 variants with more work per node (the same 4 blocks
# keeping larger feature maps, or twice as wide): does INT8 pay once the convolutions are larger?
STUDENT_SHAPES = {
    "student: 4 blocks, down to 7x7 (the shipped config)": {},
    "student, down to 14x14 only": {"min_feature_size": 14},
    "student, no downsampling (28x28)": {"min_feature_size": 28},
    "student, width x2, down to 14x14": {"width_mult": 2.0, "min_feature_size": 14},
}


def int8_shapes(force: bool, rounds: int) -> dict[str, Any]:
    if not force and (got := _load_json("int8_shapes.json")) is not None:
        return got
    res: dict[str, Any] = {}
    d = OUT / "shapes"
    for i, (label, (make, shape, calls)) in enumerate(INT8_SHAPES.items()):
        torch.manual_seed(0)
        fp32 = export_onnx(ViT(make()).eval(), d / f"s{i}_fp32.onnx")
        files = {
            "fp32": fp32,
            "fused_fp32": fuse_attention_onnx(fp32, d / f"s{i}_fused.onnx"),
            "int8_dynamic": quantize_onnx(fp32, d / f"s{i}_int8.onnx", mode="dynamic"),
            "int8_attn": quantize_onnx(fp32, d / f"s{i}_int8_attn.onnx", mode="dynamic", fuse_attention=True),
        }
        x = torch.randn(64, *shape, generator=torch.Generator().manual_seed(0))
        # random weights: agreement is not a quality measure here, speed is all this step reports
        choice = choose_onnx_model(files, x, calls=calls, rounds=rounds, min_agreement=0.0)
        print(f"{label}: {choice.summary()}", flush=True)
        res[label] = choice.to_dict()
        _save_json("int8_shapes.json", res)
    x = torch.randn(512, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    cal = CalibrationData(x[:256], batch_size=32, min_batches=8, input_shape=(1, 28, 28))
    for i, (label, kw) in enumerate(STUDENT_SHAPES.items()):
        torch.manual_seed(0)
        student = MobileNetV3(MobileNetV3Config.fashion_mnist(**kw)).eval()
        fp32 = export_onnx(student, d / f"m{i}_fp32.onnx")
        files = {
            "fp32": fp32,
            "int8_static": quantize_onnx(fp32, d / f"m{i}_int8_static.onnx", mode="static", calibration=cal),
            "int8_dynamic_conv": quantize_onnx(
                fp32, d / f"m{i}_int8_dynamic.onnx", mode="dynamic", op_types=("Conv", "MatMul", "Gemm")
            ),
        }
        choice = choose_onnx_model(files, x[256:], calls=300, rounds=rounds, min_agreement=0.0)
        print(f"{label} ({count_parameters(student):,} params): {choice.summary()}", flush=True)
        res[f"{label} ({count_parameters(student):,} params)"] = choice.to_dict()
        _save_json("int8_shapes.json", res)
    return res


def _loads_before_after(choice: dict[str, Any]) -> str:
    """The 1-minute load averages before and after a ``DeploymentChoice`` (``to_dict``) was measured."""
    return ", ".join(f"{v:.1f}" for v in choice["load_average"][::3])


def _shapes_report(res: dict[str, Any]) -> None:
    print("\n| shape (random weights) | graph | b=1 p50 ms | x FP32 | x fused FP32 | load (before, after) |")
    print("| --- | --- | ---: | ---: | ---: | --- |")
    for label, d in res.items():
        by = {c["name"]: c for c in d["candidates"]}
        fused = by["fused_fp32"]["p50_ms"]["1"] if "fused_fp32" in by else None
        loads = _loads_before_after(d)
        for c in d["candidates"]:
            p = c["p50_ms"]["1"]
            xf = f"{fused / p:.2f}x" if fused else "-"
            print(f"| {label} | {c['name']} | {p:.3f} | {c['speedup']:.2f}x | {xf} | {loads} |")


def _select_report(sel: dict[str, Any]) -> None:
    print(
        "\n| model | threads | b=1 p50 ms | b=1 p99 ms | b=32 img/s | speed-up b=1 | accuracy | drop (points) "
        "| KiB | decision | load (before, after) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
    for key, d in sel.items():
        threads = key.split("@")[1]
        loads = _loads_before_after(d)
        for c in d["candidates"]:
            name = f"**{c['name']}**" if c["name"] == d["chosen"] else c["name"]
            print(
                f"| {name} | {threads} | {c['p50_ms']['1']:.3f} | {c['p99_ms']['1']:.3f} | "
                f"{32e3 / c['p50_ms']['32']:.0f} | {c['speedup']:.2f}x | {100 * c['accuracy']:.2f}% | "
                f"{c['accuracy_drop']:+.2f} | {c['file_bytes'] / 1024:.0f} | {c['reason']} | {loads} |"
            )


# ---------------------------------------------------------------------------------------- report
def report() -> None:
    prep, acc, lat, e = (_load_json(n) for n in ("prepare.json", "accuracy.json", "latency.json", "e2e.json"))
    if (sel := _load_json("select.json")) is not None:
        _select_report(sel)
    if (shapes := _load_json("int8_shapes.json")) is not None:
        _shapes_report(shapes)
    if prep:
        pt, ps = prep["params"]["teacher"], prep["params"]["student"]
        print(f"params: teacher {pt:,}, student {ps:,} ({pt / ps:.2f}x fewer); pruned: {prep['pruned_note']}")
        print("parity (max abs diff, top-1 agreement) at batch 1 / 32:")
        for k, v in prep["parity"].items():
            print(
                f"  {k}: "
                + ", ".join(f"b{r['batch']} {r['max_abs_diff']:.2e} {r['top1_agreement']:.3f}" for r in v)
            )
        print("files:", {k: f"{v / 1024:.1f} KiB" for k, v in prep["files"].items()})
        print("quantized nodes:", prep["quantized_nodes"])
    if lat:
        s = lat["summary"]
        print("\n| model | threads | b=1 p50 ms | b=1 p99 ms | b=32 img/s | load (1 min) |")
        print("| --- | ---: | ---: | ---: | ---: | --- |")
        for k, v in s.items():
            b, t = k.split("@")
            loads = ", ".join(f"{x:.1f}" for x in v["load_average_1min"])
            print(
                f"| {b} | {t} | {v['b1_p50_ms']:.3f} | {v['b1_p99_ms']:.3f} | {v['b32_img_per_s']:.0f} | {loads} |"
            )
        for t in (1, 2):
            tt, st = s[f"teacher_torch@{t}"]["b1_p50_ms"], s[f"student_torch@{t}"]["b1_p50_ms"]
            sf = s[f"student_torch_fused@{t}"]["b1_p50_ms"]
            to, so = s[f"teacher_onnx@{t}"]["b1_p50_ms"], s[f"student_onnx@{t}"]["b1_p50_ms"]
            print(
                f"{t} thread(s): batch-1 teacher/student torch {tt / st:.2f}x (fused {tt / sf:.2f}x), ONNX Runtime {to / so:.2f}x"
            )
            for m in ("teacher_int8_dynamic", "teacher_int8_static", "teacher_mixed", "teacher_int8_attn"):
                if f"{m}@{t}" in s:
                    print(f"  {m}: {to / s[f'{m}@{t}']['b1_p50_ms']:.2f}x over teacher FP32 ONNX at batch 1")
            if f"teacher_int8_attn@{t}" in s and f"teacher_fused_fp32@{t}" in s:
                tf, ta = s[f"teacher_fused_fp32@{t}"]["b1_p50_ms"], s[f"teacher_int8_attn@{t}"]["b1_p50_ms"]
                print(f"  teacher_int8_attn: {tf / ta:.2f}x over the same attention-fused graph in FP32")
            for m in ("student_int8_static", "student_int8_dynamic"):
                print(f"  {m}: {so / s[f'{m}@{t}']['b1_p50_ms']:.2f}x over student FP32 ONNX at batch 1")
    if acc:
        print("\naccuracy (10,000 test images):", json.dumps({**acc["torch"], **acc["onnx"]}, indent=1))
        print("fake-quant:", json.dumps(acc["fake_quant"], indent=1))
        print("sensitivity (INT4, worst 8):")
        for r in acc["sensitivity_int4"][:8]:
            print(f"  {r['layer']}: {100 * r['accuracy']:.2f}% (drop {r['drop']:.2f})")
    if e:
        print(
            "\n| model | accuracy (files) | file size KiB | p50 ms/image | p99 ms/image | img/s at b=32 | load |"
        )
        print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
        for b, v in e["summary"].items():
            loads = ", ".join(f"{x:.1f}" for x in v["load_average_1min"])
            print(
                f"| {b} | {100 * v['accuracy']:.2f}% | {v['file_bytes'] / 1024:.1f} | {v['p50_ms']:.3f} | "
                f"{v['p99_ms']:.3f} | {v['b32_img_per_s']:.0f} | {loads} |"
            )
        _plot(e, acc)


def _plot(e: dict[str, Any], acc: dict[str, Any] | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    # the teacher's variants sit close together: labels staggered up and down, in latency order
    for i, (b, v) in enumerate(sorted(e["summary"].items(), key=lambda t: t[1]["p50_ms"])):
        ax.scatter(v["p50_ms"], 100 * v["accuracy"], s=40)
        dy = (-14, 6, 18, 30)[i % 4]
        ax.annotate(
            b, (v["p50_ms"], 100 * v["accuracy"]), textcoords="offset points", xytext=(-20, dy), fontsize=8
        )
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator([0.1, 0.2, 0.5, 1, 2, 5]))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.margins(x=0.15, y=0.15)
    ax.set_xlabel("p50 latency per image, file -> label (ms, 1 thread, log scale)")
    ax.set_ylabel(f"accuracy on {N_FILES} test files (%)")
    ax.set_title("Fashion-MNIST: accuracy vs latency, end to end")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(HERE / "accuracy_vs_latency_compress.png", dpi=110)
    print(f"plot: {HERE / 'accuracy_vs_latency_compress.png'}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "step",
        choices=[
            "prepare",
            "accuracy",
            "latency",
            "e2e",
            "select",
            "int8-shapes",
            "report",
            "all",
            "worker-latency",
            "worker-e2e",
        ],
    )
    ap.add_argument("args", nargs="*")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--n1", type=int, default=300)
    ap.add_argument("--n32", type=int, default=15)
    a = ap.parse_args()
    if a.step == "worker-latency":
        print(json.dumps(latency_worker(a.args[0], int(a.args[1]), a.n1, a.n32)))
        return
    if a.step == "worker-e2e":
        print(json.dumps(e2e_worker(a.args[0], int(a.args[1]))))
        return
    if a.step in ("prepare", "all"):
        prepare(a.force)
    if a.step in ("accuracy", "all"):
        accuracy(a.force)
    if a.step in ("latency", "all"):
        latency(a.force, a.rounds)
    if a.step in ("e2e", "all"):
        e2e(a.force, a.rounds)
    if a.step in ("select", "all"):
        select(a.force, max(3, a.rounds))
    if a.step in ("int8-shapes", "all"):
        int8_shapes(a.force, max(3, a.rounds))
    report()


if __name__ == "__main__":
    main()
