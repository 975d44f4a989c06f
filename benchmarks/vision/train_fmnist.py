"""Train the Fashion-MNIST ViT teacher (and, with --prune, fine-tune its token-pruned student).

Writes checkpoints under ~/.cache/mlsys/vision/ (never into the repository or the data folder):

    python benchmarks/vision/train_fmnist.py                  # teacher -> ~/.cache/mlsys/vision/fmnist_vit
    python benchmarks/vision/train_fmnist.py --prune 0.7      # student -> ~/.cache/mlsys/vision/fmnist_vit_prune0.7
    python benchmarks/vision/train_fmnist.py --prune 0.7 --init-student DIR   # another round from a saved student

benchmarks/vision/README.md gives the exact recipes behind its figures (teacher 8 epochs; student
two rounds, ~3.1 epochs in all).

Each run records its configuration, thread count, wall and CPU time and test accuracy in
``result.json`` next to the checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from mlsys.common.data import cache_root, load_fashion_mnist
from mlsys.vision import (
    DynamicTokenPruning,
    PruningLoss,
    RandomCropFlip,
    TrainConfig,
    Trainer,
    ViT,
    ViTConfig,
    evaluate,
    images_to_tensor,
    load_model,
    save_model,
)

CACHE = cache_root() / "vision"
MEAN, STD = 0.2860, 0.3530


def _ints(text: str) -> tuple[int, ...]:
    """A comma-separated list of ints from the command line ('' -> ())."""
    return tuple(int(c) for c in text.split(",") if c.strip())


def load_data(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    d = load_fashion_mnist(root)
    return d.x_train, d.y_train, d.x_test, d.y_test


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "data" / "fashion-mnist"
    )
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument(
        "--stem",
        default="32,32",
        help="comma-separated widths of the 3x3 conv stem ('' = plain patch embedding)",
    )
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--patch-dropout", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--time-limit-min", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-subset", type=int, default=0)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument(
        "--prune", type=float, default=None, help="fine-tune a pruned student with this keep ratio"
    )
    ap.add_argument("--teacher", type=Path, default=CACHE / "fmnist_vit")
    ap.add_argument("--scorer-lr-scale", type=float, default=1.0)
    ap.add_argument(
        "--prune-after",
        default="",
        help="comma-separated 1-based blocks after which to prune ('' = default_prune_after(depth))",
    )
    ap.add_argument(
        "--init-student", type=Path, default=None, help="continue fine-tuning this saved pruned student"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    x_tr, y_tr, x_te, y_te = load_data(args.data)
    if args.train_subset:
        x_tr, y_tr = x_tr[: args.train_subset], y_tr[: args.train_subset]
    xt, yt = images_to_tensor(x_tr, MEAN, STD), torch.from_numpy(y_tr.astype(np.int64))
    xv, yv = images_to_tensor(x_te, MEAN, STD), torch.from_numpy(y_te.astype(np.int64))

    if args.prune is not None:
        fine_tune_pruned(args, xt, yt, xv, yv)
        return
    out = args.out or CACHE / "fmnist_vit"
    cfg = ViTConfig.fashion_mnist(
        embed_dim=args.dim, depth=args.depth, num_heads=args.heads, stem_channels=_ints(args.stem)
    )
    torch.manual_seed(args.seed)
    model = ViT(cfg)
    tcfg = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch,
        lr=args.lr,
        warmup_steps=100,
        patch_dropout=args.patch_dropout,
        seed=args.seed,
        time_limit_s=args.time_limit_min * 60,
    )
    aug = RandomCropFlip(pad=2, flip=True, fill=(0.0 - MEAN) / STD)
    trainer = Trainer(
        model,
        tcfg,
        augment=aug,
        checkpoint_dir=out / "checkpoint",
        progress=args.progress,
        log=lambda line: print(line, flush=True),
    )
    t0 = time.perf_counter()
    hist = trainer.fit(xt, yt, xv[:2000], yv[:2000], resume=args.resume, eval_every_steps=200)
    res = evaluate(model, xv, yv)
    result = {
        "vit_config": cfg.to_dict(),
        "train_config": tcfg.to_dict(),
        "augment": {"pad": 2, "flip": True},
        "threads": torch.get_num_threads(),
        "train_wall_seconds": hist.wall_seconds,
        "train_cpu_seconds": hist.cpu_seconds,
        "stopped_early": hist.stopped_early,
        "test_accuracy": res.accuracy,
        "test_loss": res.loss,
        "history": hist.epochs,
        "load_average": os.getloadavg(),
        "total_wall_seconds": time.perf_counter() - t0,
    }
    save_model(model, out, extra=result)
    (out / "result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "history"}, indent=2))


def fine_tune_pruned(
    args: argparse.Namespace, xt: torch.Tensor, yt: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor
) -> None:
    """DynamicViT fine-tuning of a pruned student from the trained teacher (distillation + keep-ratio loss)."""
    teacher = load_model(args.teacher)
    assert isinstance(teacher, ViT)
    teacher_result = json.loads((args.teacher / "result.json").read_text())
    out = args.out or CACHE / f"fmnist_vit_prune{args.prune}"
    torch.manual_seed(args.seed)
    student = DynamicTokenPruning.from_vit(
        teacher, keep_ratio=args.prune, prune_after=_ints(args.prune_after) or None
    )
    untuned = evaluate(student.eval(), xv[:2000], yv[:2000])  # random scorers, top-k pruning, no fine-tuning
    previous: dict[str, object] | None = None
    if args.init_student is not None:  # a second fine-tuning round, from a saved student
        init = load_model(args.init_student)
        assert isinstance(init, DynamicTokenPruning) and init.config == student.config
        student = init
        previous = json.loads((args.init_student / "result.json").read_text())
        previous.pop("history", None)
    loss = PruningLoss(teacher, ratio_weight=2.0, distill_weight=0.5, token_weight=0.5)
    tcfg = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch,
        lr=args.lr,
        min_lr=args.lr / 10,
        warmup_steps=10,
        seed=args.seed,
        time_limit_s=args.time_limit_min * 60,
    )
    aug = RandomCropFlip(pad=2, flip=True, fill=(0.0 - MEAN) / STD)
    trainer = Trainer(
        student,
        tcfg,
        lr_scale={"scorers.": args.scorer_lr_scale},
        loss_fn=loss,
        augment=aug,
        checkpoint_dir=out / "checkpoint",
        progress=args.progress,
        log=lambda line: print(line, flush=True),
    )
    hist = trainer.fit(xt, yt, xv[:1000], yv[:1000], eval_every_steps=50)
    res = evaluate(student, xv, yv)
    result = {
        "pruning_config": student.config.to_dict(),
        "train_config": tcfg.to_dict(),
        "train_images": int(xt.shape[0]),
        "scorer_lr_scale": args.scorer_lr_scale,
        "loss_weights": {"ratio": 2.0, "distill_kl": 0.5, "token": 0.5},
        "threads": torch.get_num_threads(),
        "train_wall_seconds": hist.wall_seconds,
        "train_cpu_seconds": hist.cpu_seconds,
        "test_accuracy": res.accuracy,
        "teacher_test_accuracy": teacher_result["test_accuracy"],
        "accuracy_drop_points": 100 * (teacher_result["test_accuracy"] - res.accuracy),
        "untuned_accuracy_first_2000": untuned.accuracy,
        "previous_round": previous,
        "last_loss_terms": loss.last,
        "history": hist.epochs,
        "load_average": os.getloadavg(),
    }
    save_model(student, out, extra=result)
    (out / "result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "history"}, indent=2), flush=True)


if __name__ == "__main__":
    main()
