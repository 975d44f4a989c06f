"""Distil the Fashion-MNIST ViT teacher into the MobileNetV3 student: no KD, output KD, feature KD.

Resumable: each (method, seed) run checkpoints every epoch under
``~/.cache/mlsys/vision/students/<method>_s<seed>/`` and a finished run (``result.json``) is
skipped. The teacher's logits and block features over the 60,000 (unaugmented) training images
are computed once and cached next to the teacher (keyed by the teacher's weights), so an epoch
costs only the student's forward and backward::

    python benchmarks/vision/distill_fmnist.py                           # 3 methods x 3 seeds
    python benchmarks/vision/distill_fmnist.py --methods feature --seeds 0
    python benchmarks/vision/distill_fmnist.py --summary                 # the table only
    python benchmarks/vision/distill_fmnist.py --tune                    # KD settings on a held-out split

``--tune`` chooses the KD settings on a validation split carved from the training images (the
last ``--holdout`` images of a seeded shuffle; the student trains on the rest and the test set is
never read): output KD's temperature and alpha over a grid, then feature KD's feature weight on
top of the chosen output KD. It prints the command of the final 3-seed run with the chosen
settings.

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
TUNE_TEMPERATURES, TUNE_ALPHAS, TUNE_FEATURE_WEIGHTS = (2.0, 4.0, 8.0), (0.3, 0.6, 0.9), (0.3, 1.0, 3.0)
HOLDOUT_SEED = 12345


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
    out = _run_dir(args, method, seed)
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
    # monitoring only (nothing is chosen on it): the first 2,000 test images, or the held-out split
    hist = trainer.fit(xt, yt, xv[:2000], yv[:2000], resume=True, eval_every_steps=150)
    res = evaluate(student, xv, yv)  # with --holdout, (xv, yv) IS the held-out training split
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
        "split": "holdout" if args.holdout else "test",
        ("val_accuracy" if args.holdout else "test_accuracy"): res.accuracy,
        ("val_loss" if args.holdout else "test_loss"): res.loss,
        "history": hist.epochs,
        "load_average": os.getloadavg(),
    }
    save_model(student, out, extra={k: v for k, v in result.items() if k != "history"})
    (out / "result.json").write_text(json.dumps(result, indent=2))
    split = "held-out" if args.holdout else "test"
    print(f"[{method} s{seed}] {split} accuracy {res.accuracy:.4f} in {hist.wall_seconds:.0f} s", flush=True)
    return result


def _run_dir(args: argparse.Namespace, method: str, seed: int) -> Path:
    """Where a run lives: ``<method>_s<seed>``, or with its KD settings in the name (``--tune``)."""
    name = f"{method}_{_tag(args, method)}_s{seed}" if args.tag_runs else f"{method}_s{seed}"
    return args.out_root / name


def _tagged(args: argparse.Namespace, **kw: float) -> argparse.Namespace:
    """``args`` with the KD settings ``kw`` and run directories named by setting."""
    return argparse.Namespace(**{**vars(args), **kw, "tag_runs": True})


def _tag(args: argparse.Namespace, method: str) -> str:
    if method == "none":
        return "ce"
    tag = f"T{args.temperature:g}_a{args.alpha:g}"
    return tag + (f"_f{args.feature_weight:g}" if method == "feature" else "")


def tune(args: argparse.Namespace, data: tuple[torch.Tensor, ...], cache: object) -> dict:
    """Grid over the KD settings on the held-out split (seed ``args.seeds[0]``)."""
    seed = args.seeds[0]
    rows = []

    def run(method: str, **kw: float) -> float:
        a = _tagged(args, **kw)
        r = run_one(a, method, seed, data, cache)
        rows.append(
            {
                "method": method,
                **{k: getattr(a, k) for k in ("temperature", "alpha", "feature_weight")},
                "val_accuracy": r["val_accuracy"],
            }
        )
        return float(r["val_accuracy"])

    # --shard K/N: this process runs every N-th grid point (resumable runs: a later unsharded
    # --tune finds them all done and only reports); a stage stops when another shard's run is missing
    k, n = args.shard
    jobs = 0

    def stage(points: list[tuple[str, dict[str, float]]]) -> list[float] | None:
        nonlocal jobs
        got: list[float | None] = []
        for method, kw in points:
            mine = jobs % n == k
            jobs += 1
            done = (_run_dir(_tagged(args, **kw), method, seed) / "result.json").is_file()
            got.append(run(method, **kw) if mine or done else None)
        return None if any(g is None for g in got) else [float(g) for g in got if g is not None]

    grid = [(t, al) for t in TUNE_TEMPERATURES for al in TUNE_ALPHAS]
    first = stage([("none", {}), *(("output", {"temperature": t, "alpha": al}) for t, al in grid)])
    if first is None:
        print(f"shard {k}/{n}: output stage done; waiting for the other shards", flush=True)
        return {}
    best_out = grid[int(np.argmax(first[1:]))]
    second = stage(
        [
            ("feature", {"temperature": best_out[0], "alpha": best_out[1], "feature_weight": fw})
            for fw in TUNE_FEATURE_WEIGHTS
        ]
    )
    if second is None:
        print(f"shard {k}/{n}: feature stage done; waiting for the other shards", flush=True)
        return {}
    best_fw = TUNE_FEATURE_WEIGHTS[int(np.argmax(second))]
    print("| method | T | alpha | feature weight | held-out accuracy |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        kd = r["method"] != "none"
        fw = f"{r['feature_weight']:g}" if r["method"] == "feature" else "-"
        print(
            f"| {r['method']} | {r['temperature']:g} | {r['alpha']:g} | {fw} | {100 * r['val_accuracy']:.2f}% |"
            if kd
            else f"| none | - | - | - | {100 * r['val_accuracy']:.2f}% |"
        )
    chosen = {"temperature": best_out[0], "alpha": best_out[1], "feature_weight": best_fw}
    print(f"chosen on the held-out split: {chosen}")
    print(
        "final run: python benchmarks/vision/distill_fmnist.py --out-root ~/.cache/mlsys/vision/students_tuned "
        f"--temperature {best_out[0]:g} --alpha {best_out[1]:g} --feature-weight {best_fw:g}"
    )
    out = {"rows": rows, "chosen": chosen, "holdout": args.holdout, "seed": seed}
    (args.out_root / "tune.json").write_text(json.dumps(out, indent=2))
    return out


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
    ap.add_argument("--tune", action="store_true", help="choose the KD settings on a held-out split")
    ap.add_argument(
        "--holdout", type=int, default=0, help="held-out training images (default 6000 with --tune)"
    )
    ap.add_argument(
        "--shard",
        type=lambda t: tuple(int(v) for v in t.split("/")),
        default=(0, 1),
        help="K/N: with --tune, run every N-th setting from the K-th (0-based), for N processes",
    )
    args = ap.parse_args()
    args.tag_runs = False
    if args.tune:
        args.holdout = args.holdout or 6000
        if args.out_root == CACHE / "students":
            args.out_root = CACHE / "students_holdout"
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
    if args.holdout:  # the test set is dropped: validation comes from the training images
        perm = torch.randperm(xt.shape[0], generator=torch.Generator().manual_seed(HOLDOUT_SEED))
        fit, held = perm[: -args.holdout].sort().values, perm[-args.holdout :].sort().values
        xt, yt, xv, yv = xt[fit], yt[fit], xt[held], yt[held]
    cache = None
    if args.tune or any(m != "none" for m in methods):
        teacher = load_model(args.teacher)
        assert isinstance(teacher, ViT)
        path = teacher_cache(args.teacher, teacher, xt)
        if args.holdout:
            path = path.with_name(path.stem + f"_holdout{args.holdout}" + path.suffix)
        t0 = time.perf_counter()
        cache = precompute_teacher(teacher, xt, blocks=TEACHER_BLOCKS, path=path)
        print(f"teacher cache {path.name}: {time.perf_counter() - t0:.0f} s", flush=True)
    if args.tune:
        tune(args, (xt, yt, xv, yv), cache)
        return
    for seed in args.seeds:  # seeds outermost: a partial run still gives every method one seed
        for method in methods:
            run_one(args, method, seed, (xt, yt, xv, yv), cache)
    summary(args)


if __name__ == "__main__":
    main()
