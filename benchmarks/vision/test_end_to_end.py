"""End-to-end inference on real image files: PIL vs OpenCV preprocessing, torch vs ONNX Runtime.

Fashion-MNIST test images are upscaled 4x (112x112, bicubic) -- like camera images that are larger
than the model input -- and written as PNG and JPEG (quality 90) files to a temporary folder. Each
pipeline reads the file, decodes, resizes the shorter side to 28, center-crops 28x28, normalizes,
runs the Fashion-MNIST ViT (the trained teacher from ``~/.cache/mlsys/vision`` when present, else
random weights) and applies softmax + top-3. The single-image path is timed per file with the
backends interleaved (the order alternates per file); the batch path runs batches of 32.

Printed: per-stage p50/p95/p99 for each backend and format, the dominant stage, the OpenCV/PIL
ratios (sum of the preprocessing stages' p50, and end-to-end p50), the pixel agreement of the two backends (against
``BACKEND_TOLERANCE``), top-1 agreement and accuracy. Smoke mode: 8 generated images.
Figures: benchmarks/vision/README.md.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from conftest import SMOKE, shared_data_root, size
from mlsys.common.data import cache_root
from mlsys.common.profiling import LatencyProfiler
from mlsys.vision import (
    BACKEND_TOLERANCE,
    InferencePipeline,
    PreprocessConfig,
    Preprocessor,
    ViT,
    ViTConfig,
    export_onnx,
    load_model,
    onnx_session,
)

CACHE = cache_root() / "vision"
THREADS = int(os.environ.get("MLSYS_BENCH_THREADS", "1"))
N_IMAGES = size(300, 8)
MEAN, STD = 0.2860, 0.3530
PRE_STAGES = ("decode", "resize", "crop", "normalize")
STAGES = (*PRE_STAGES, "model", "postprocess")


def _images() -> tuple[np.ndarray, np.ndarray, str]:
    root = shared_data_root() / "fashion-mnist"
    if root.is_dir():
        from mlsys.common.data import load_fashion_mnist

        d = load_fashion_mnist(root)
        rng = np.random.default_rng(0)
        idx = rng.choice(d.x_test.shape[0], N_IMAGES, replace=False)
        return d.x_test[idx], d.y_test[idx], "Fashion-MNIST test"
    # No data set: smooth generated images (7x7 noise upscaled bicubically), photo-like enough for
    # the backend-agreement tolerance, which does not hold for pixel-level white noise.
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, (N_IMAGES, 7, 7), dtype=np.uint8)
    smooth = np.stack(
        [np.asarray(Image.fromarray(c).resize((28, 28), Image.Resampling.BICUBIC)) for c in coarse]
    )
    return smooth, rng.integers(0, 10, N_IMAGES), "generated"


def _model() -> tuple[ViT, str]:
    path = CACHE / "fmnist_vit"
    if not SMOKE and (path / "manifest.json").exists():
        m = load_model(path)
        assert isinstance(m, ViT)
        return m, "trained"
    torch.manual_seed(0)
    if SMOKE:
        tiny = ViTConfig(
            img_size=28, patch_size=7, in_chans=1, num_classes=10, embed_dim=16, depth=1, num_heads=2
        )
        return ViT(tiny).eval(), "random weights (tiny)"
    return ViT(ViTConfig.fashion_mnist()).eval(), "random weights"


def _write_files(images: np.ndarray, folder: Path) -> dict[str, list[Path]]:
    files: dict[str, list[Path]] = {"png": [], "jpeg": []}
    for i, img in enumerate(images):
        big = Image.fromarray(img).resize((112, 112), Image.Resampling.BICUBIC)
        for fmt, ext, kw in (("png", "png", {}), ("jpeg", "jpg", {"quality": 90})):
            p = folder / f"{i:05d}.{ext}"
            buf = io.BytesIO()
            big.save(buf, "PNG" if fmt == "png" else "JPEG", **kw)
            p.write_bytes(buf.getvalue())
            files[fmt].append(p)
    return files


def _config(backend: str) -> PreprocessConfig:
    return PreprocessConfig(resize=28, crop=28, mean=(MEAN,), std=(STD,), channels=1, backend=backend)  # type: ignore[arg-type]


def _table(name: str, stats: dict[str, Any]) -> str:
    lines = [f"{name:<28} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'share':>6}"]
    end = stats["end_to_end"]
    for s in (*STAGES, "end_to_end"):
        st = stats[s]
        share = f"{100 * st.total / end.total:5.1f}%" if s != "end_to_end" else ""
        lines.append(f"  {s:<26} {1e3 * st.p50:8.3f} {1e3 * st.p95:8.3f} {1e3 * st.p99:8.3f} {share:>6}")
    return "\n".join(lines)


def test_end_to_end_pil_vs_opencv(benchmark: Any) -> None:
    torch.set_num_threads(THREADS)
    images, labels, source = _images()
    model, weights = _model()
    results: dict[str, Any] = {
        "images": len(images),
        "source": source,
        "weights": weights,
        "threads": THREADS,
    }
    with tempfile.TemporaryDirectory() as tmp:
        files = _write_files(images, Path(tmp))
        onnx_path = export_onnx(model, Path(tmp) / "vit.onnx")
        sess = onnx_session(onnx_path, threads=THREADS)
        variants = {
            "pil": lambda: InferencePipeline(_config("pil"), model, top_k=3, profiler=LatencyProfiler()),
            "opencv": lambda: InferencePipeline(
                _config("opencv"), model, top_k=3, profiler=LatencyProfiler()
            ),
            "opencv+onnxruntime": lambda: InferencePipeline(
                _config("opencv"), sess, top_k=3, profiler=LatencyProfiler()
            ),
        }
        for fmt, paths in files.items():
            pipes = {k: make() for k, make in variants.items()}
            preds: dict[str, list[int]] = {k: [] for k in pipes}
            for p in paths[:3]:  # warm-up, then reset
                for pipe in pipes.values():
                    pipe.predict(p)
            for pipe in pipes.values():
                pipe.profiler.reset()
            names = list(pipes)
            for i, p in enumerate(paths):
                order = names if i % 2 == 0 else names[::-1]
                for k in order:
                    preds[k].append(int(pipes[k].predict(p).ids[0]))
            fmt_res: dict[str, Any] = {}
            for k, pipe in pipes.items():
                st = pipe.stats()
                print(f"\n{fmt.upper()} / {k}: {len(paths)} files, single-image path, threads {pipe.threads}")
                print(_table(k, st))
                print(f"  dominant stage: {pipe.dominant_stage()}")
                fmt_res[k] = {
                    "stages": {
                        s: {q: 1e3 * getattr(st[s], q) for q in ("p50", "p95", "p99", "mean")}
                        for s in (*STAGES, "end_to_end")
                    },
                    "preprocess_p50_ms": 1e3 * sum(st[s].p50 for s in PRE_STAGES),
                    "dominant_stage": pipe.dominant_stage(),
                    "accuracy": float(np.mean(np.array(preds[k]) == labels)),
                    "threads": pipe.threads,
                }
            pil, cv = fmt_res["pil"], fmt_res["opencv"]
            fmt_res["opencv_preprocess_speedup"] = pil["preprocess_p50_ms"] / cv["preprocess_p50_ms"]
            fmt_res["opencv_end_to_end_p50_speedup"] = (
                pil["stages"]["end_to_end"]["p50"] / cv["stages"]["end_to_end"]["p50"]
            )
            fmt_res["top1_agreement_pil_opencv"] = float(
                np.mean(np.array(preds["pil"]) == np.array(preds["opencv"]))
            )
            fmt_res["top1_agreement_torch_onnx"] = float(
                np.mean(np.array(preds["opencv"]) == np.array(preds["opencv+onnxruntime"]))
            )
            # pixel agreement of the two backends (uint8 after resize + crop)
            pa, pb = Preprocessor(_config("pil")), Preprocessor(_config("opencv"))
            diffs = [np.abs(pa.image(p).astype(int) - pb.image(p)) for p in paths]
            fmt_res["pixel_mean_abs_diff"] = float(np.mean([d.mean() for d in diffs]))
            fmt_res["pixel_max_abs_diff"] = float(max(d.max() for d in diffs))
            results[fmt] = fmt_res
            print(
                f"\n{fmt.upper()}: OpenCV/PIL preprocessing speedup {fmt_res['opencv_preprocess_speedup']:.2f}x, "
                f"end-to-end p50 speedup {fmt_res['opencv_end_to_end_p50_speedup']:.2f}x; pixels differ by "
                f"{fmt_res['pixel_mean_abs_diff']:.2f} mean / {fmt_res['pixel_max_abs_diff']:.0f} max levels "
                f"(tolerance {BACKEND_TOLERANCE}); top-1 agreement PIL/OpenCV "
                f"{fmt_res['top1_agreement_pil_opencv']:.3f}, torch/ORT {fmt_res['top1_agreement_torch_onnx']:.3f}; "
                f"accuracy ({weights}) "
                + ", ".join(f"{k} {v['accuracy']:.3f}" for k, v in fmt_res.items() if isinstance(v, dict))
            )
            assert fmt_res["pixel_mean_abs_diff"] <= BACKEND_TOLERANCE["mean_abs"]
            assert fmt_res["pixel_max_abs_diff"] <= BACKEND_TOLERANCE["max_abs"]
        # batch path, batch 32, both backends interleaved
        batch = files["jpeg"][: min(32, len(files["jpeg"]))]
        bpipes = {k: variants[k]() for k in ("pil", "opencv")}
        for _ in range(size(5, 1)):
            for pipe in bpipes.values():
                pipe.predict_batch(batch)
        results["batch32"] = {
            k: {s: 1e3 * pipe.stats()[s].p50 for s in (*STAGES, "end_to_end")} for k, pipe in bpipes.items()
        }
        print(f"\nJPEG batch of {len(batch)} (p50 ms): " + json.dumps(results["batch32"], indent=1))
        with torch.inference_mode():
            benchmark.pedantic(bpipes["opencv"].predict_batch, args=(batch,), rounds=1, iterations=1)
    results["load_average"] = os.getloadavg()
    benchmark.extra_info["ratios"] = {  # OpenCV time / PIL time (p50s), per format
        f"opencv_vs_pil.{fmt}.{part}": 1 / results[fmt][key]
        for fmt in ("png", "jpeg")
        for part, key in (
            ("preprocess", "opencv_preprocess_speedup"),
            ("end_to_end", "opencv_end_to_end_p50_speedup"),
        )
    }
    if not SMOKE:
        (CACHE / "bench").mkdir(parents=True, exist_ok=True)
        (CACHE / "bench" / "end_to_end.json").write_text(json.dumps(results, indent=2))
        for fmt in ("png", "jpeg"):
            assert results[fmt]["opencv_preprocess_speedup"] > 1.0, results[fmt]
