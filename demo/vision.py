"""mlsys.vision tour: profiled end-to-end inference, token pruning and merging, ONNX export.

Uses the Fashion-MNIST test set from the shared data folder and the trained ViT from
``~/.cache/mlsys/vision`` (``benchmarks/vision/train_fmnist.py``) when they exist; otherwise
generated images and random weights (reported).
"""

from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mlsys.common.data import FASHION_MNIST_CLASSES, cache_root, data_root, load_fashion_mnist
from mlsys.vision import (
    DynamicTokenPruning,
    InferencePipeline,
    PreprocessConfig,
    TokenMerging,
    ViT,
    ViTConfig,
    check_onnx_parity,
    evaluate,
    export_onnx,
    images_to_tensor,
    load_model,
    onnx_session,
)

CACHE = cache_root() / "vision"
MEAN, STD = 0.2860, 0.3530


def _data(n: int) -> tuple[np.ndarray, np.ndarray, str]:
    root = data_root() / "fashion-mnist"
    if root.is_dir():
        d = load_fashion_mnist(root)
        return d.x_test[:n], d.y_test[:n], f"Fashion-MNIST test set ({root})"
    rng = np.random.default_rng(0)
    return (
        rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n),
        "generated images (data set absent)",
    )


def _models() -> tuple[ViT, torch.nn.Module, str]:
    if (CACHE / "fmnist_vit" / "manifest.json").exists():
        vit = load_model(CACHE / "fmnist_vit")
        assert isinstance(vit, ViT)
        student_dir = CACHE / "fmnist_vit_prune0.7"
        if (student_dir / "manifest.json").exists():
            return vit, load_model(student_dir), "trained teacher + fine-tuned pruned student (cache)"
        return (
            vit,
            DynamicTokenPruning.from_vit(vit, keep_ratio=0.7).eval(),
            "trained teacher, untrained scorer",
        )
    torch.manual_seed(0)
    vit = ViT(ViTConfig.fashion_mnist()).eval()
    return vit, DynamicTokenPruning.from_vit(vit, keep_ratio=0.7).eval(), "random weights (no cached model)"


def _throughput(models: dict[str, torch.nn.Module], x: torch.Tensor, repeats: int = 3) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in models}
    with torch.inference_mode():
        for m in models.values():
            m(x)
        for _ in range(repeats):
            for k, m in models.items():
                t0 = time.perf_counter()
                m(x)
                times[k].append(time.perf_counter() - t0)
    return {k: x.shape[0] / float(np.median(v)) for k, v in times.items()}


def main() -> None:
    torch.set_num_threads(1)  # a shared machine: one thread gives stable latencies
    images, labels, source = _data(500)
    vit, pruned, weights = _models()
    print(f"data: {source}; models: {weights}")

    # 1. end-to-end pipeline on image files, PIL vs OpenCV, every stage profiled
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, img in enumerate(images[:48]):
            buf = io.BytesIO()
            Image.fromarray(img).resize((112, 112), Image.Resampling.BICUBIC).save(buf, "JPEG", quality=90)
            p = Path(tmp) / f"{i}.jpg"
            p.write_bytes(buf.getvalue())
            paths.append(p)
        pipes = {
            b: InferencePipeline(
                PreprocessConfig(resize=28, crop=28, mean=(MEAN,), std=(STD,), channels=1, backend=b),  # type: ignore[arg-type]
                vit,
                labels=FASHION_MNIST_CLASSES,
                top_k=3,
            )
            for b in ("pil", "opencv")
        }
        preds: dict[str, list[int]] = {b: [] for b in pipes}
        for p in paths:
            for b, pipe in pipes.items():
                preds[b].append(int(pipe.predict(p).ids[0]))
        for b, pipe in pipes.items():
            acc = float(np.mean(np.array(preds[b]) == labels[: len(paths)]))
            print(
                f"\n--- {b}: {len(paths)} JPEG files (112x112 -> 28x28), single-image path, accuracy {acc:.3f}"
            )
            print(pipe.report())
        pre = {
            b: sum(pipes[b].stats()[s].p50 for s in ("decode", "resize", "crop", "normalize")) for b in pipes
        }
        print(
            f"\npreprocessing p50 PIL {1e3 * pre['pil']:.3f} ms vs OpenCV {1e3 * pre['opencv']:.3f} ms -> {pre['pil'] / pre['opencv']:.2f}x"
        )
        print(
            f"top-1 agreement PIL/OpenCV: {np.mean(np.array(preds['pil']) == np.array(preds['opencv'])):.3f}"
        )
        onnx_path = export_onnx(vit, Path(tmp) / "vit.onnx")
        diff = check_onnx_parity(vit, onnx_session(onnx_path, threads=1))
        print(f"ONNX export: max |logit diff| vs torch = {diff:.2e}")

    # 2. token pruning and merging: accuracy and throughput side by side
    x = images_to_tensor(images, MEAN, STD)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    models = {"plain": vit, "pruned rho=0.7": pruned, "merged r=8": TokenMerging(vit, 8).eval()}
    thr = _throughput(models, x[:32])
    print(
        f"\naccuracy on {len(y)} test images and throughput at batch 32 (interleaved, {torch.get_num_threads()} threads)"
    )
    for k, m in models.items():
        acc = evaluate(m, x, y, batch_size=250).accuracy
        print(f"  {k:<16} accuracy {acc:.3f}   {thr[k]:7.1f} img/s   {thr[k] / thr['plain']:.2f}x")


if __name__ == "__main__":
    main()
