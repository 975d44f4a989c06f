"""Distil the Fashion-MNIST ViT teacher into the MobileNetV3 student: no KD, output KD, feature KD.

Resumable: each (method, seed) run checkpoints every epoch under
``~/.cache/mlsys/vision/students/<method>_s<seed>/`` and a finished run (``result.json``) is
skipped. The teacher's logits and block features over the 60,000 (unaugmented) training images
are computed once and cached next to the teacher (keyed by the teacher's weights), so an epoch
costs only the student's forward and backward::

    python benchmarks/vision/distill_fmnist.py                           # 3 methods x 3 seeds
    python benchmarks/vision/distill_fmnist.py --methods feature --seeds 0
    python benchmarks/vision/distill_fmnist.py --summary                 # the table only

All three methods train the same student, with the same data order, schedule and no augmentation
(the cached teacher saw unaugmented images); ``feature`` = output KD + feature matching.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from mlsys.common.data import cache_root, load_fashion_mnist
from mlsys.vision import TrainConfig, Trainer, ViT, evaluate, images_to_tensor, load_model, save_model
from mlsys.vision.compress import (
    FeatureDistillation,
    MobileNetV3,
    MobileNetV3Config,
    OutputDistillation,
    count_parameters,
    precompute_teacher,
)

CACHE = cache_root() / "vision"
MEAN, STD = 0.2860, 0.3530
METHODS = ("none", "output", "feature")
STUDENT_TAPS, TEACHER_BLOCKS = (1, 3), (2, 5)


def _ints(text: str) -> list[int]:
    return [int(c) for c in text.split(",") if c.strip()]


def teacher_cache(teacher_dir: Path, teacher: ViT, xt: torch.Tensor) -> Path:
    manifest = json.loads((teacher_dir / "manifest.json").read_text())
    key = manifest["files"]["model.safetensors"][:12]
    return teacher_dir / f"teacher_cache_{key}_cls_{'-'.join(map(str, TEACHER_BLOCKS))}.safetensors"


def run_one(
    args: argparse.Namespace, method: str, seed: int, data: tuple[torch.Tensor, ...], cache: object
) -> dict:
    xt, yt, xv, yv = data
    out = args.out_root / f"{method}_s{seed}"
    if (out / "result.json").is_file():
        return json.loads((out / "result.json").read_text())
    torch.manual_seed(seed)
    student = MobileNetV3(MobileNetV3Config.fashion_mnist())
    loss = None
    if method == "output":
        loss = OutputDistillation(cache=cache, temperature=args.temperature, alpha=args.alpha)  # type: ignore[arg-type]
    elif method == "feature":
        loss = FeatureDistillation(
            student,
            cache=cache,  # type: ignore[arg-type]
            student_taps=STUDENT_TAPS,
            teacher_blocks=TEACHER_BLOCKS,
            weight=args.feature_weight,
            task_loss=OutputDistillation(cache=cache, temperature=args.temperature, alpha=args.alpha),  # type: ignore[arg-type]
        )
    tcfg = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch,
        lr=args.lr,
        warmup_steps=100,
        seed=seed,
        time_limit_s=args.time_limit_min * 60,
    )
    trainer = Trainer(
        student,
        tcfg,
        loss_fn=loss,
        checkpoint_dir=out / "checkpoint",
        progress=False,
        log=lambda line: print(f"[{method} s{seed}] {line}", flush=True),
    )
    hist = trainer.fit(xt, yt, xv[:2000], yv[:2000], resume=True, eval_every_steps=150)
    res = evaluate(student, xv, yv)
    result = {
        "method": method,
        "seed": seed,
        "student_config": student.config.to_dict(),
        "student_params": count_parameters(student),
        "train_config": tcfg.to_dict(),
        "kd": {
            "temperature": args.temperature,
            "alpha": args.alpha,
            "feature_weight": args.feature_weight,
            "student_taps": list(STUDENT_TAPS),
            "teacher_blocks": list(TEACHER_BLOCKS),
        }
        if method != "none"
        else None,
        "threads": torch.get_num_threads(),
        "train_wall_seconds": hist.wall_seconds,
        "train_cpu_seconds": hist.cpu_seconds,
        "stopped_early": hist.stopped_early,
        "test_accuracy": res.accuracy,
        "test_loss": res.loss,
        "history": hist.epochs,
        "load_average": os.getloadavg(),
    }
    save_model(student, out, extra={k: v for k, v in result.items() if k != "history"})
    (out / "result.json").write_text(json.dumps(result, indent=2))
    print(f"[{method} s{seed}] test accuracy {res.accuracy:.4f} in {hist.wall_seconds:.0f} s", flush=True)
    return result


def summary(args: argparse.Namespace) -> dict:
    teacher = (
        json.loads((args.teacher / "result.json").read_text())
        if (args.teacher / "result.json").is_file()
        else {}
    )
    rows = {}
    for method in METHODS:
        accs, walls, loads = [], [], []
        for seed in args.seeds:
            p = args.out_root / f"{method}_s{seed}" / "result.json"
            if p.is_file():
                r = json.loads(p.read_text())
                accs.append(100 * r["test_accuracy"])
                walls.append(r["train_wall_seconds"])
                loads.append(r["load_average"][0])
        if accs:
            rows[method] = {
                "seeds": len(accs),
                "accuracies": accs,
                "mean": statistics.mean(accs),
                "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                "min": min(accs),
                "max": max(accs),
                "wall_seconds_mean": statistics.mean(walls),
                "load_average_1min": loads,
            }
    t_acc = 100 * teacher.get("test_accuracy", float("nan"))
    print(f"teacher test accuracy {t_acc:.2f}%")
    print(
        "| student (MobileNetV3, 27,274 params) | seeds | test accuracy mean +- std | min / max | drop vs teacher | train wall s |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for method, r in rows.items():
        print(
            f"| {method} | {r['seeds']} | {r['mean']:.2f} +- {r['std']:.2f} | {r['min']:.2f} / {r['max']:.2f} | "
            f"{t_acc - r['mean']:+.2f} | {r['wall_seconds_mean']:.0f} |"
        )
    out = {"teacher_accuracy": t_acc, "methods": rows}
    (args.out_root / "summary.json").write_text(json.dumps(out, indent=2))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "data" / "fashion-mnist"
    )
    ap.add_argument("--teacher", type=Path, default=CACHE / "fmnist_vit")
    ap.add_argument("--out-root", type=Path, default=CACHE / "students")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--seeds", type=_ints, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=4e-3)
    ap.add_argument("--temperature", type=float, default=4.0)
    ap.add_argument("--alpha", type=float, default=0.7)
    ap.add_argument("--feature-weight", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--time-limit-min", type=float, default=15.0)
    ap.add_argument("--summary", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.out_root.mkdir(parents=True, exist_ok=True)
    if args.summary:
        summary(args)
        return
    methods = [m for m in args.methods.split(",") if m]
    if any(m not in METHODS for m in methods):
        raise SystemExit(f"--methods must be a subset of {METHODS}")
    d = load_fashion_mnist(args.data)
    xt = images_to_tensor(d.x_train, MEAN, STD)
    yt = torch.from_numpy(d.y_train.astype(np.int64))
    xv = images_to_tensor(d.x_test, MEAN, STD)
    yv = torch.from_numpy(d.y_test.astype(np.int64))
    cache = None
    if any(m != "none" for m in methods):
        teacher = load_model(args.teacher)
        assert isinstance(teacher, ViT)
        path = teacher_cache(args.teacher, teacher, xt)
        t0 = time.perf_counter()
        cache = precompute_teacher(teacher, xt, blocks=TEACHER_BLOCKS, path=path)
        print(f"teacher cache {path.name}: {time.perf_counter() - t0:.0f} s", flush=True)
    for seed in args.seeds:  # seeds outermost: a partial run still gives every method one seed
        for method in methods:
            run_one(args, method, seed, (xt, yt, xv, yv), cache)
    summary(args)


if __name__ == "__main__":
    main()
