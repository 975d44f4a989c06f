"""Accuracy vs throughput on Fashion-MNIST: plain ViT, fine-tuned token pruning, training-free merging.

Variants of the trained Fashion-MNIST ViT (``~/.cache/mlsys/vision/fmnist_vit``, written by
``train_fmnist.py``):

* ``plain``: the teacher, all 196 patch tokens in every block;
* ``pruned rho=0.7``: the fine-tuned DynamicTokenPruning student (``fmnist_vit_prune0.7``);
* ``pruned rho=0.7, untrained scorer``: the same schedule with random scorers and no fine-tuning
  (what the learned scorer buys);
* ``merged r=...``: ToMe-style bipartite merging of r tokens per block, no training.

Accuracy on the first ``N_EVAL`` test images; throughput at batch 32 with all variants timed in turn
(interleaved). Writes ``~/.cache/mlsys/vision/bench/tradeoff.json`` and
``accuracy_vs_throughput.png`` (copied into benchmarks/vision/ for the README). Smoke mode: a
tiny random model on generated data, which only checks that the code runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import SMOKE, interleaved, shared_data_root, size
from mlsys.common.data import cache_root
from mlsys.vision import (
    DynamicTokenPruning,
    TokenMerging,
    ViT,
    ViTConfig,
    evaluate,
    images_to_tensor,
    load_model,
)

CACHE = cache_root() / "vision"
THREADS = int(os.environ.get("MLSYS_BENCH_THREADS", "1"))
N_EVAL = size(2000, 64)
BATCH = size(32, 8)
REPEATS = size(5, 1)
MERGE_R = (4, 8, 16, 24) if not SMOKE else (2, 4)
MEAN, STD = 0.2860, 0.3530


def _setup() -> tuple[dict[str, torch.nn.Module], torch.Tensor, torch.Tensor, str]:
    torch.manual_seed(0)
    if SMOKE:
        vit = ViT(
            ViTConfig(
                img_size=28, patch_size=4, in_chans=1, num_classes=10, embed_dim=16, depth=2, num_heads=2
            )
        )
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(N_EVAL, 1, 28, 28, generator=g), torch.randint(0, 10, (N_EVAL,), generator=g)
        models: dict[str, torch.nn.Module] = {"plain": vit.eval()}
        models["pruned rho=0.7, untrained scorer"] = DynamicTokenPruning.from_vit(vit, keep_ratio=0.7).eval()
        for r in MERGE_R:
            models[f"merged r={r}"] = TokenMerging(vit, r).eval()
        return models, x, y, "smoke (random)"
    teacher_dir = CACHE / "fmnist_vit"
    root = shared_data_root() / "fashion-mnist"
    if not (teacher_dir / "manifest.json").exists() or not root.is_dir():
        pytest.skip(
            f"needs the trained model at {teacher_dir} (run benchmarks/vision/train_fmnist.py) and {root}"
        )
    from mlsys.common.data import load_fashion_mnist

    d = load_fashion_mnist(root)
    x = images_to_tensor(d.x_test[:N_EVAL], MEAN, STD)
    y = torch.from_numpy(d.y_test[:N_EVAL])
    vit = load_model(teacher_dir)
    assert isinstance(vit, ViT)
    models = {"plain": vit}
    student_dir = CACHE / "fmnist_vit_prune0.7"
    if (student_dir / "manifest.json").exists():
        models["pruned rho=0.7"] = load_model(student_dir)
    models["pruned rho=0.7, untrained scorer"] = DynamicTokenPruning.from_vit(vit, keep_ratio=0.7).eval()
    for r in MERGE_R:
        models[f"merged r={r}"] = TokenMerging(vit, r).eval()
    return models, x, y, "trained"


def _plot(rows: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    groups = {
        "plain ViT": [k for k in rows if k == "plain"],
        "DynamicTokenPruning (fine-tuned)": [k for k in rows if k == "pruned rho=0.7"],
        "pruning, untrained scorer": [k for k in rows if "untrained" in k],
        "token merging (no training)": [k for k in rows if k.startswith("merged")],
    }
    markers = {
        "plain ViT": "o",
        "DynamicTokenPruning (fine-tuned)": "*",
        "pruning, untrained scorer": "x",
        "token merging (no training)": "s",
    }
    for label, keys in groups.items():
        if not keys:
            continue
        xs = [rows[k]["throughput_ratio"] for k in keys]
        ys = [100 * rows[k]["accuracy"] for k in keys]
        ax.plot(
            xs, ys, marker=markers[label], linestyle="-" if len(keys) > 1 else "", markersize=9, label=label
        )
        for k, xv, yv in zip(keys, xs, ys):
            if k.startswith("merged"):
                ax.annotate(k.split()[-1], (xv, yv), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("throughput at batch 32, relative to the plain ViT (interleaved)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Fashion-MNIST ViT (196 tokens, 6 blocks): accuracy vs throughput")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def test_accuracy_vs_throughput(benchmark: Any) -> None:
    torch.set_num_threads(THREADS)
    models, x, y, weights = _setup()
    xb = x[:BATCH]
    with torch.inference_mode():
        times = interleaved({k: (lambda m=m: m(xb)) for k, m in models.items()}, REPEATS)
    base = float(np.median(times["plain"]))
    rows: dict[str, dict[str, float]] = {}
    for k, m in models.items():
        rows[k] = {
            "accuracy": evaluate(m, x, y, batch_size=250).accuracy,
            "throughput_img_s": BATCH / float(np.median(times[k])),
            "throughput_ratio": base / float(np.median(times[k])),
        }
        if isinstance(m, TokenMerging):
            rows[k]["tokens_last_block"] = float(m.tokens_per_block()[-1])
    plain_acc = rows["plain"]["accuracy"]
    benchmark.extra_info["ratios"] = {
        f"{k}_vs_plain": 1 / r["throughput_ratio"] for k, r in rows.items() if k != "plain"
    }
    benchmark.extra_info["accuracy"] = {k: r["accuracy"] for k, r in rows.items()}
    print(
        f"\naccuracy ({weights}, {len(y)} test images) vs throughput (batch {BATCH}, {THREADS} threads, interleaved)"
    )
    print(f"{'variant':<36} {'acc %':>7} {'d pts':>7} {'img/s':>8} {'x plain':>8}")
    for k, r in rows.items():
        print(
            f"{k:<36} {100 * r['accuracy']:7.2f} {100 * (r['accuracy'] - plain_acc):7.2f} "
            f"{r['throughput_img_s']:8.1f} {r['throughput_ratio']:8.2f}"
        )
    with torch.inference_mode():
        benchmark.pedantic(models["plain"], args=(xb,), rounds=1, iterations=1)
    if not SMOKE:
        out = CACHE / "bench"
        out.mkdir(parents=True, exist_ok=True)
        (out / "tradeoff.json").write_text(
            json.dumps(
                {"rows": rows, "n_eval": len(y), "threads": THREADS, "load_average": os.getloadavg()},
                indent=2,
            )
        )
        _plot(rows, out / "accuracy_vs_throughput.png")
        if "pruned rho=0.7" in rows:
            assert rows["pruned rho=0.7"]["throughput_ratio"] > 1.0
