"""Training utilities for the package's models: a seeded trainer, augmentation, evaluation.

The trainer is deliberately small: AdamW with linear warmup and cosine decay, optional patch
dropout (drop a random subset of patch tokens per step, which makes ViT training proportionally
cheaper), gradient clipping, a tqdm progress bar, per-epoch checkpoints that can be resumed, and a
time limit. The loss is pluggable so the same loop fine-tunes pruned models with distillation.
"""

from __future__ import annotations

import contextlib
import math
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlsys.common._display import TabularDisplay
from mlsys.common.devices import Precision, resolve_device, resolve_precision
from mlsys.common.errors import DimensionMismatchError, InvalidInputError
from mlsys.common.validation import as_array, check_k

__all__ = [
    "EvalResult",
    "LossFn",
    "RandomCropFlip",
    "TrainConfig",
    "TrainHistory",
    "Trainer",
    "evaluate",
    "images_to_tensor",
]

LossFn = Callable[[nn.Module, Tensor, Tensor], tuple[Tensor, Tensor]]
"""``loss_fn(model, x, y) -> (loss, logits)``: the training objective of one batch."""


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def images_to_tensor(
    images: np.ndarray, mean: float | tuple[float, ...], std: float | tuple[float, ...]
) -> Tensor:
    """Convert uint8 images ``(n, H, W)`` or ``(n, C, H, W)`` to a normalised float32 tensor ``(n, C, H, W)``.

    Example:
        >>> import numpy as np
        >>> images_to_tensor(np.full((2, 4, 4), 255, np.uint8), 0.5, 0.5)[0, 0, 0, 0].item()
        1.0
    """
    arr = as_array(images, name="images")
    if arr.dtype != np.uint8:
        raise InvalidInputError(f"images must be uint8, got dtype {arr.dtype}")
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4:
        raise InvalidInputError(f"images must have shape (n, H, W) or (n, C, H, W), got {arr.shape}")
    c = arr.shape[1]
    try:
        mean_c = np.broadcast_to(as_array(mean, dtype=np.float32, name="mean"), (c,)).copy()
        std_c = np.broadcast_to(as_array(std, dtype=np.float32, name="std"), (c,)).copy()
    except ValueError as exc:  # broadcast failure (InvalidInputError is a ValueError too)
        if isinstance(exc, InvalidInputError):
            raise
        raise InvalidInputError(f"mean and std must have 1 or {c} values: {exc}") from exc
    m = torch.tensor(mean_c).view(1, c, 1, 1)
    s = torch.tensor(std_c).view(1, c, 1, 1)
    return ((torch.from_numpy(np.ascontiguousarray(arr)).float() / 255.0) - m) / s


@dataclass(frozen=True)
class RandomCropFlip:
    """Batch augmentation: pad by ``pad`` pixels (value ``fill``), random crop back, random h-flip.

    Example:
        >>> import torch
        >>> aug = RandomCropFlip(pad=2, flip=True)
        >>> aug(torch.zeros(3, 1, 8, 8), torch.Generator().manual_seed(0)).shape
        torch.Size([3, 1, 8, 8])
    """

    pad: int = 2
    flip: bool = True
    fill: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.pad, bool) or not isinstance(self.pad, int) or self.pad < 0:
            raise InvalidInputError(f"RandomCropFlip.pad must be a non-negative int, got {self.pad!r}")

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Augment a batch ``(B, C, H, W)``; the draws come from ``generator`` only."""
        b, _c, h, w = x.shape
        if self.pad:
            p = self.pad
            padded = F.pad(x, (p, p, p, p), value=self.fill)
            oy = torch.randint(0, 2 * p + 1, (b,), generator=generator)
            ox = torch.randint(0, 2 * p + 1, (b,), generator=generator)
            rows = (oy[:, None] + torch.arange(h))[:, :, None]
            cols = (ox[:, None] + torch.arange(w))[:, None, :]
            x = padded[torch.arange(b)[:, None, None], :, rows, cols].permute(0, 3, 1, 2).contiguous()
        if self.flip:
            mask = torch.rand(b, generator=generator) < 0.5
            x = torch.where(mask[:, None, None, None], x.flip(-1), x)
        return x


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :class:`Trainer`.

    Args:
        epochs: passes over the training set (the cosine schedule spans all of them).
        batch_size: examples per step.
        lr: peak learning rate (AdamW).
        min_lr: learning rate at the end of the cosine decay.
        weight_decay: AdamW weight decay (not applied to biases, norms, position/CLS embeddings).
        warmup_steps: linear warmup steps.
        label_smoothing: cross-entropy label smoothing of the default loss.
        grad_clip: max global gradient norm, or None.
        patch_dropout: fraction of patch tokens dropped at random per example and step (ViT only,
            default loss only); 0 disables it. Evaluation always sees all tokens.
        seed: seeds shuffling, augmentation and ``torch.manual_seed`` (dropout, Gumbel noise).
        eval_batch_size: batch size of evaluation.
        time_limit_s: stop (after checkpointing) once training has run this long; the interrupted
            epoch counts as done, so ``resume`` continues with the next one. None = no limit.

    Example:
        >>> TrainConfig(epochs=2, lr=1e-3).batch_size
        128
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    warmup_steps: int = 100
    label_smoothing: float = 0.0
    grad_clip: float | None = 1.0
    patch_dropout: float = 0.0
    seed: int = 0
    eval_batch_size: int = 512
    time_limit_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise InvalidInputError(f"TrainConfig.{name} must be a positive int, got {v!r}")
        if (
            isinstance(self.warmup_steps, bool)
            or not isinstance(self.warmup_steps, int)
            or self.warmup_steps < 0
        ):
            raise InvalidInputError(
                f"TrainConfig.warmup_steps must be an int >= 0, got {self.warmup_steps!r}"
            )
        if not self.lr > 0 or not 0 <= self.min_lr <= self.lr:
            raise InvalidInputError(
                f"TrainConfig needs lr > 0 and 0 <= min_lr <= lr, got {self.lr}, {self.min_lr}"
            )
        if self.weight_decay < 0:
            raise InvalidInputError(f"TrainConfig.weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.label_smoothing < 1:
            raise InvalidInputError(
                f"TrainConfig.label_smoothing must be in [0, 1), got {self.label_smoothing}"
            )
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise InvalidInputError(f"TrainConfig.grad_clip must be > 0 or None, got {self.grad_clip}")
        if not 0 <= self.patch_dropout < 1:
            raise InvalidInputError(f"TrainConfig.patch_dropout must be in [0, 1), got {self.patch_dropout}")
        if self.time_limit_s is not None and not self.time_limit_s > 0:
            raise InvalidInputError(f"TrainConfig.time_limit_s must be > 0 or None, got {self.time_limit_s}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the fields."""
        return asdict(self)


@dataclass
class EvalResult(TabularDisplay):
    """Accuracy and mean cross-entropy of a classifier on a labelled set.

    A one-row HTML table in a notebook; :meth:`to_pandas` gives that row, values exact.
    """

    accuracy: float
    loss: float
    n: int

    _pandas_extra = "mlsys-vision[pandas]"


@dataclass
class TrainHistory:
    """Per-epoch records of a :meth:`Trainer.fit` run."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    threads: int = 0
    device: str = "cpu"
    precision: str = "fp32"
    precision_fallback: str | None = None


def _check_xy(x: Tensor, y: Tensor, name: str) -> None:
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise InvalidInputError(
            f"{name}: x and y must be torch tensors, got {type(x).__name__}, {type(y).__name__}"
        )
    if x.ndim != 4 or not x.is_floating_point():
        raise InvalidInputError(
            f"{name}: x must be a float tensor (n, C, H, W), got {tuple(x.shape)} {x.dtype}"
        )
    if y.ndim != 1 or y.dtype != torch.int64:
        raise InvalidInputError(f"{name}: y must be an int64 tensor (n,), got {tuple(y.shape)} {y.dtype}")
    if x.shape[0] != y.shape[0]:
        raise DimensionMismatchError(f"{name}: {x.shape[0]} images but {y.shape[0]} labels")
    if x.shape[0] == 0:
        raise InvalidInputError(f"{name}: empty data set")


@torch.inference_mode()
def evaluate(model: nn.Module, x: Tensor, y: Tensor, *, batch_size: int = 512) -> EvalResult:
    """Accuracy and mean cross-entropy of ``model`` on ``(x, y)``, in eval mode (the mode is restored).

    Example:
        >>> import torch
        >>> from mlsys.vision import ViT, ViTConfig
        >>> m = ViT(ViTConfig(img_size=8, patch_size=4, in_chans=1, num_classes=2, embed_dim=8,
        ...                   depth=1, num_heads=2))
        >>> r = evaluate(m, torch.zeros(5, 1, 8, 8), torch.zeros(5, dtype=torch.int64))
        >>> r.n
        5
    """
    _check_xy(x, y, "evaluate")
    batch_size = check_k(batch_size, name="batch_size", limit="max_batch")
    was_training = model.training
    model.eval()
    device = _model_device(model)
    # sums stay on the model's device: one synchronisation at the end, not two per batch
    correct = torch.zeros((), dtype=torch.int64, device=device)
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    try:
        for i in range(0, x.shape[0], batch_size):
            xb = _to_device(x[i : i + batch_size], device)
            yb = _to_device(y[i : i + batch_size], device)
            logits = model(xb)
            total_loss += F.cross_entropy(logits.float(), yb, reduction="sum").double()
            correct += (logits.argmax(-1) == yb).sum()
    finally:
        model.train(was_training)
    n = int(x.shape[0])
    return EvalResult(accuracy=int(correct) / n, loss=float(total_loss) / n, n=n)


def _model_device(model: nn.Module) -> torch.device:
    """The device of the first parameter (or buffer); the CPU for a module without either."""
    for p in model.parameters():
        return p.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def _to_device(t: Tensor, device: torch.device) -> Tensor:
    """Copy a host tensor to ``device``: through pinned memory and without blocking for CUDA."""
    if t.device == device:
        return t
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


class Trainer:
    """Seeded training loop for image classifiers.

    Args:
        model: the module to train (its trainable parameters are optimised).
        config: hyper-parameters.
        loss_fn: ``loss_fn(model, x, y) -> (loss, logits)``; default cross-entropy (with patch
            dropout when configured and ``model`` is a :class:`~mlsys.vision.ViT`).
        augment: batch augmentation, e.g. :class:`RandomCropFlip`; None = none.
        checkpoint_dir: where each epoch's checkpoint goes (``model/`` via
            :func:`~mlsys.vision.save_model` when the model is savable, ``trainer.pt`` with
            optimizer and RNG state); None = no checkpoints.
        progress: show a tqdm bar; None = only when stderr is a terminal.
        log: called with one line per evaluation (default: tqdm.write when progress is on).
        lr_scale: learning-rate multipliers by parameter-name prefix, e.g. ``{"scorers.": 20.0}``
            to train fresh token scorers faster than a pre-trained backbone (a loss module's
            parameters are named ``loss.<name>``).
        device: where the model trains: ``"cpu"`` (the default, reproducible), ``"cuda"``,
            ``"cuda:N"`` or ``"auto"`` (a GPU when one is present), resolved by
            :func:`mlsys.common.devices.resolve_device` (a missing GPU raises
            :class:`~mlsys.common.errors.DeviceUnavailableError` naming what was found). The model,
            and the teacher of a loss with a ``to(device)`` method (:class:`~mlsys.vision.PruningLoss`),
            are moved there; the data stays on the host, where shuffling and augmentation draw
            from the seeded CPU generator (the same draws on every device), and each batch is
            copied through pinned memory without blocking.
        precision: ``"fp32"`` (default), ``"bf16"`` or ``"fp16"`` autocast (fp16 with a gradient
            scaler); what the device cannot run falls back to fp32, stated in
            :attr:`precision_fallback` and in the history.

    A ``loss_fn`` that is an ``nn.Module`` (:class:`~mlsys.vision.compress.FeatureDistillation`)
    has its trainable parameters optimised with the model's and saved in ``trainer.pt``; a
    ``loss_fn`` with an ``on_batch(indices)`` method is told the training-set rows of each batch
    before its call (a cached teacher reads its outputs by row).

    Example:
        >>> import torch
        >>> from mlsys.vision import ViT, ViTConfig
        >>> m = ViT(ViTConfig(img_size=8, patch_size=4, in_chans=1, num_classes=2, embed_dim=8,
        ...                   depth=1, num_heads=2))
        >>> x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 2, (16,))
        >>> hist = Trainer(m, TrainConfig(epochs=1, batch_size=8), progress=False).fit(x, y)
        >>> len(hist.epochs)
        1
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        *,
        loss_fn: LossFn | None = None,
        augment: Callable[[Tensor, torch.Generator], Tensor] | None = None,
        checkpoint_dir: str | Path | None = None,
        progress: bool | None = None,
        log: Callable[[str], None] | None = None,
        lr_scale: dict[str, float] | None = None,
        device: str | torch.device | None = "cpu",
        precision: str = "fp32",
    ) -> None:
        if not isinstance(config, TrainConfig):
            raise InvalidInputError(f"config must be a TrainConfig, got {type(config).__name__}")
        self.device = resolve_device(device)
        self.precision: Precision = resolve_precision(precision, self.device)
        model.to(self.device)
        if loss_fn is not None and callable(getattr(loss_fn, "to", None)):
            loss_fn.to(self.device)  # type: ignore[attr-defined]
        self._scaler = (
            torch.amp.GradScaler("cuda")
            if self.precision.autocast and self.precision.dtype_name == "float16"
            else None
        )
        self.model = model
        self.config = config
        self.loss_fn = loss_fn
        self.augment = augment
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.progress = sys.stderr.isatty() if progress is None else progress
        self._log = log
        scales = dict(lr_scale or {})
        if any(not v > 0 for v in scales.values()):
            raise InvalidInputError(f"lr_scale multipliers must be > 0, got {scales}")
        groups: dict[tuple[bool, float], list[nn.Parameter]] = {}
        named = list(model.named_parameters())
        if isinstance(loss_fn, nn.Module):  # e.g. the projection heads of FeatureDistillation
            named += [("loss." + n, p) for n, p in loss_fn.named_parameters() if p.requires_grad]
        for name, p in named:
            if not p.requires_grad:
                continue
            no_wd = p.ndim <= 1 or name.endswith(("pos_embed", "cls_token"))
            scale = next((v for k, v in scales.items() if name.startswith(k)), 1.0)
            groups.setdefault((no_wd, scale), []).append(p)
        if not groups:
            raise InvalidInputError("model has no trainable parameters")
        self.optimizer = torch.optim.AdamW(
            [
                {"params": ps, "weight_decay": 0.0 if no_wd else config.weight_decay, "lr_scale": scale}
                for (no_wd, scale), ps in groups.items()
            ],
            lr=config.lr,
        )
        self.step = 0
        self.epoch = 0
        self.generator = torch.Generator().manual_seed(config.seed)
        self.history = TrainHistory()

    # -- loss -------------------------------------------------------------------------------
    def _default_loss(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        from mlsys.vision._vit import ViT

        p = self.config.patch_dropout
        if p > 0 and isinstance(model, ViT):
            h = model.embed(x)
            n = h.shape[1] - 1
            keep = max(1, round(n * (1.0 - p)))
            idx = torch.rand(h.shape[0], n, generator=self.generator).argsort(dim=1)[:, :keep] + 1
            idx = _to_device(idx, h.device)
            patches = torch.gather(h, 1, idx[:, :, None].expand(-1, -1, h.shape[2]))
            logits = model.forward_tokens(torch.cat([h[:, :1], patches], dim=1))
        else:
            logits = model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.config.label_smoothing)
        return loss, logits

    def _lr_at(self, step: int, total: int) -> float:
        cfg = self.config
        if step < cfg.warmup_steps:
            return cfg.lr * (step + 1) / cfg.warmup_steps
        t = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
        return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, t)))

    @property
    def precision_fallback(self) -> str | None:
        """None when training runs in the requested precision, else the sentence saying what runs."""
        return self.precision.fallback

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        p = self.precision
        if not p.autocast:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=p.dtype)

    # -- checkpoints ------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        """Write the model and the trainer state to ``checkpoint_dir`` (no-op without one)."""
        if self.checkpoint_dir is None:
            return
        from mlsys.vision._persist import save_model

        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        save_model(self.model, self.checkpoint_dir / "model", extra={"epoch": self.epoch, "step": self.step})
        state = {
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "history": [dict(e) for e in self.history.epochs],
            "wall_seconds": self.history.wall_seconds,
            "cpu_seconds": self.history.cpu_seconds,
        }
        if isinstance(self.loss_fn, nn.Module):
            state["loss"] = {
                n: p.detach().cpu() for n, p in self.loss_fn.named_parameters() if p.requires_grad
            }
        tmp = self.checkpoint_dir / "trainer.pt.tmp"
        torch.save(state, tmp)
        tmp.replace(self.checkpoint_dir / "trainer.pt")

    def load_checkpoint(self) -> bool:
        """Resume from ``checkpoint_dir`` if it holds a checkpoint; returns whether one was loaded."""
        if self.checkpoint_dir is None or not (self.checkpoint_dir / "trainer.pt").is_file():
            return False
        from safetensors.torch import load_file

        from mlsys.vision._persist import read_manifest

        read_manifest(self.checkpoint_dir / "model")
        self.model.load_state_dict(load_file(str(self.checkpoint_dir / "model" / "model.safetensors")))
        state = torch.load(self.checkpoint_dir / "trainer.pt", weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.epoch = int(state["epoch"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.history.epochs = [dict(e) for e in state["history"]]
        self.history.wall_seconds = float(state["wall_seconds"])
        self.history.cpu_seconds = float(state["cpu_seconds"])
        if isinstance(self.loss_fn, nn.Module) and "loss" in state:
            params = dict(self.loss_fn.named_parameters())
            with torch.no_grad():
                for n, v in state["loss"].items():
                    params[n].copy_(v)
        return True

    # -- loop -------------------------------------------------------------------------------
    def fit(
        self,
        x: Tensor,
        y: Tensor,
        x_val: Tensor | None = None,
        y_val: Tensor | None = None,
        *,
        resume: bool = False,
        eval_every_steps: int = 0,
        until_epoch: int | None = None,
    ) -> TrainHistory:
        """Train on ``(x, y)``; evaluate on ``(x_val, y_val)`` after each epoch (and every
        ``eval_every_steps`` steps when > 0). Returns the history (also kept in ``self.history``).

        ``resume=True`` continues from ``checkpoint_dir``; ``until_epoch`` stops after that epoch
        (the learning-rate schedule still spans ``config.epochs``), so a job can be split.
        """
        from tqdm.auto import tqdm

        _check_xy(x, y, "fit")
        if (x_val is None) != (y_val is None):
            raise InvalidInputError("pass both x_val and y_val, or neither")
        if x_val is not None and y_val is not None:
            _check_xy(x_val, y_val, "fit (validation)")
        cfg = self.config
        torch.manual_seed(cfg.seed)
        if resume:
            self.load_checkpoint()
        loss_fn = self.loss_fn or self._default_loss
        on_batch = getattr(self.loss_fn, "on_batch", None)
        n = x.shape[0]
        steps_per_epoch = math.ceil(n / cfg.batch_size)
        total = steps_per_epoch * cfg.epochs
        t0, c0 = time.perf_counter(), _cpu_seconds()
        prior_wall = self.history.wall_seconds
        prior_cpu = self.history.cpu_seconds
        self.history.threads = torch.get_num_threads()
        self.history.device = str(self.device)
        self.history.precision = self.precision.dtype_name
        self.history.precision_fallback = self.precision.fallback
        dev = self.device
        log = self._log or (tqdm.write if self.progress else (lambda s: None))
        self.model.train()
        stop = cfg.epochs if until_epoch is None else min(cfg.epochs, until_epoch)
        while self.epoch < stop:
            perm = torch.randperm(n, generator=self.generator)
            bar = tqdm(
                range(steps_per_epoch),
                desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
                disable=not self.progress,
                leave=False,
            )
            # running sums stay on the device (no synchronisation per step on a GPU)
            run_loss_t = torch.zeros((), dtype=torch.float64, device=dev)
            run_correct_t = torch.zeros((), dtype=torch.int64, device=dev)
            seen = 0
            for i in bar:
                idx = perm[i * cfg.batch_size : (i + 1) * cfg.batch_size]
                xb, yb = x[idx], y[idx]
                if callable(on_batch):
                    on_batch(idx)
                if self.augment is not None:  # on the host, from the seeded CPU generator
                    xb = self.augment(xb, self.generator)
                xb, yb = _to_device(xb, dev), _to_device(yb, dev)
                lr = self._lr_at(self.step, total)
                for g in self.optimizer.param_groups:
                    g["lr"] = lr * g["lr_scale"]
                with self._autocast():
                    loss, logits = loss_fn(self.model, xb, yb)
                self.optimizer.zero_grad(set_to_none=True)
                if self._scaler is not None:
                    self._scaler.scale(loss).backward()
                    self._scaler.unscale_(self.optimizer)
                else:
                    loss.backward()
                if cfg.grad_clip is not None:
                    nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                if self._scaler is not None:
                    self._scaler.step(self.optimizer)
                    self._scaler.update()
                else:
                    self.optimizer.step()
                self.step += 1
                run_loss_t += loss.detach().double() * len(idx)
                run_correct_t += (logits.detach().argmax(-1) == yb).sum()
                seen += len(idx)
                if self.progress:
                    bar.set_postfix(
                        loss=f"{float(run_loss_t) / seen:.3f}",
                        acc=f"{int(run_correct_t) / seen:.3f}",
                        lr=f"{lr:.2e}",
                    )
                if (
                    eval_every_steps
                    and x_val is not None
                    and y_val is not None
                    and self.step % eval_every_steps == 0
                ):
                    r = evaluate(self.model, x_val, y_val, batch_size=cfg.eval_batch_size)
                    log(
                        f"step {self.step}: val acc {r.accuracy:.4f} loss {r.loss:.4f} ({time.perf_counter() - t0:.0f} s)"
                    )
                if cfg.time_limit_s is not None and prior_wall + time.perf_counter() - t0 > cfg.time_limit_s:
                    self.history.stopped_early = True
                    break
            self.epoch += 1
            run_loss, run_correct = float(run_loss_t), int(run_correct_t)
            record: dict[str, float] = {
                "epoch": float(self.epoch),
                "train_loss": run_loss / max(1, seen),
                "train_accuracy": run_correct / max(1, seen),
                "wall_seconds": prior_wall + time.perf_counter() - t0,
                "cpu_seconds": prior_cpu + _cpu_seconds() - c0,
            }
            if x_val is not None and y_val is not None:
                r = evaluate(self.model, x_val, y_val, batch_size=cfg.eval_batch_size)
                record["val_accuracy"], record["val_loss"] = r.accuracy, r.loss
                log(f"epoch {self.epoch}: val acc {r.accuracy:.4f} loss {r.loss:.4f}")
            self.history.epochs.append(record)
            self.history.wall_seconds = prior_wall + time.perf_counter() - t0
            self.history.cpu_seconds = prior_cpu + _cpu_seconds() - c0
            self.save_checkpoint()
            if self.history.stopped_early:
                break
        self.model.eval()
        return self.history
