"""Token pruning and token merging vs the plain ViT: throughput at batch 32, latency at batch 1.

Models (issue 7):

* ``vit-s16-224``: ViT-S/16 at 224 px (12 blocks, width 384, 6 heads, 196 patch tokens) with random
  weights -- speed does not depend on the weights. Pruned: DynamicTokenPruning, rho=0.7, top-k
  after blocks 3/6/9 (137/96/67 tokens kept). Merged: ToMe-style r=13 per block (the paper's ViT-S setting).
* ``fmnist``: the Fashion-MNIST ViT (28x28, patch 2, 196 tokens, 6 blocks) -- the trained teacher and
  fine-tuned pruned student from ``~/.cache/mlsys/vision`` when present, else random weights of the
  same shape.

Every variant is timed in turn within each repeat (interleaved), with the same thread count, and
reported as a ratio to the plain model. Smoke mode: a tiny ViT, batch 4, one repeat.
Figures: benchmarks/vision/README.md.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import torch

from conftest import SMOKE, interleaved, size
from mlsys.common.data import cache_root
from mlsys.vision import DynamicTokenPruning, TokenMerging, ViT, ViTConfig, load_model

CACHE = cache_root() / "vision"
THREADS = int(os.environ.get("MLSYS_BENCH_THREADS", "1"))
BATCH = size(32, 4)
REPEATS = size(3, 1)
BATCH1_REPEATS = size(15, 2)


def _variants(kind: str) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    if SMOKE:
        vit = ViT(
            ViTConfig(
                img_size=32, patch_size=4, in_chans=3, num_classes=10, embed_dim=32, depth=4, num_heads=2
            )
        )
        return {
            "plain": vit.eval(),
            "pruned rho=0.7": DynamicTokenPruning.from_vit(vit, keep_ratio=0.7).eval(),
            "merged r=4": TokenMerging(vit, 4).eval(),
        }
    if kind == "vit-s16-224":
        vit = ViT(ViTConfig.vit_small_patch16_224()).eval()
        return {
            "plain": vit,
            "pruned rho=0.7": DynamicTokenPruning.from_vit(vit, keep_ratio=0.7, prune_after=(3, 6, 9)).eval(),
            "merged r=13": TokenMerging(vit, 13).eval(),
        }
    teacher_dir, student_dir = CACHE / "fmnist_vit", CACHE / "fmnist_vit_prune0.7"
    vit = (
        load_model(teacher_dir)
        if (teacher_dir / "manifest.json").exists()
        else ViT(ViTConfig.fashion_mnist())
    )
    assert isinstance(vit, ViT)
    if (student_dir / "manifest.json").exists():
        pruned = load_model(student_dir)
    else:
        pruned = DynamicTokenPruning.from_vit(vit, keep_ratio=0.7)
    return {
        "plain": vit.eval(),
        "pruned rho=0.7": pruned.eval(),
        "merged r=8": TokenMerging(vit, 8).eval(),
        "merged r=16": TokenMerging(vit, 16).eval(),
    }


def _measure(kind: str) -> dict[str, Any]:
    torch.set_num_threads(THREADS)
    models = _variants(kind)
    cfg = next(iter(models.values()))
    assert isinstance(cfg, ViT)
    c, s = cfg.config.in_chans, cfg.config.img_size
    g = torch.Generator().manual_seed(0)
    xb = torch.randn(BATCH, c, s, s, generator=g)
    x1 = torch.randn(1, c, s, s, generator=g)
    out: dict[str, Any] = {"model": kind, "threads": torch.get_num_threads(), "batch": BATCH}
    with torch.inference_mode():
        tb = interleaved({k: (lambda m=m: m(xb)) for k, m in models.items()}, REPEATS)
        t1 = interleaved({k: (lambda m=m: m(x1)) for k, m in models.items()}, BATCH1_REPEATS)
    base_b, base_1 = float(np.median(tb["plain"])), float(np.median(t1["plain"]))
    rows = {}
    for k in models:
        mb, m1 = float(np.median(tb[k])), float(np.median(t1[k]))
        rows[k] = {
            "throughput_img_s": BATCH / mb,
            "throughput_ratio": base_b / mb,
            "batch1_p50_ms": 1e3 * m1,
            "batch1_p95_ms": 1e3 * float(np.percentile(t1[k], 95)),
            "batch1_speedup": base_1 / m1,
        }
    out["rows"] = rows
    out["ratios"] = {  # time of each variant / the plain model's (inverse of the speedups)
        f"{k}_vs_plain.{m}": 1 / r[s]
        for k, r in rows.items()
        if k != "plain"
        for m, s in (("batch", "throughput_ratio"), ("batch1", "batch1_speedup"))
    }
    out["load_average"] = os.getloadavg()
    print(f"\n{kind}: batch {BATCH} throughput and batch-1 latency, {out['threads']} threads, interleaved")
    print(
        f"{'variant':<16} {'img/s':>8} {'x plain':>8} {'b1 p50 ms':>10} {'b1 p95 ms':>10} {'b1 x plain':>10}"
    )
    for k, r in rows.items():
        print(
            f"{k:<16} {r['throughput_img_s']:8.1f} {r['throughput_ratio']:8.2f} {r['batch1_p50_ms']:10.2f} "
            f"{r['batch1_p95_ms']:10.2f} {r['batch1_speedup']:10.2f}"
        )
    print(f"load average {out['load_average']}")
    if not SMOKE:
        (CACHE / "bench").mkdir(parents=True, exist_ok=True)
        (CACHE / "bench" / f"speed_{kind}.json").write_text(json.dumps(out, indent=2))
    return out


def test_vit_small_pruning_speed(benchmark: Any) -> None:
    res = _measure("vit-s16-224")
    benchmark.extra_info["ratios"] = res["ratios"]
    rows = res["rows"]
    models = _variants("vit-s16-224")
    x = torch.randn(BATCH, 3, models["plain"].config.img_size, models["plain"].config.img_size)  # type: ignore[union-attr]
    with torch.inference_mode():
        benchmark.pedantic(models["pruned rho=0.7"], args=(x,), rounds=1, iterations=1)
    if not SMOKE:
        # goal 1.5x; the guard leaves room for the noise of a shared machine
        assert rows["pruned rho=0.7"]["throughput_ratio"] >= 1.3, rows
        assert rows["pruned rho=0.7"]["batch1_speedup"] >= 0.95, rows


def test_fmnist_pruning_speed(benchmark: Any) -> None:
    res = _measure("fmnist")
    benchmark.extra_info["ratios"] = res["ratios"]
    models = _variants("fmnist")
    m = models["plain"]
    assert isinstance(m, ViT)
    x = torch.randn(BATCH, m.config.in_chans, m.config.img_size, m.config.img_size)
    with torch.inference_mode():
        benchmark.pedantic(models["pruned rho=0.7"], args=(x,), rounds=1, iterations=1)
    if not SMOKE:
        assert res["rows"]["pruned rho=0.7"]["throughput_ratio"] >= 1.1, res["rows"]
