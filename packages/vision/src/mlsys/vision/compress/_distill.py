"""Knowledge distillation: Hinton output distillation and intermediate-feature matching.

Both losses follow the :class:`~mlsys.vision.Trainer` loss protocol ``loss_fn(model, x, y) ->
(loss, logits)`` and are ``nn.Module`` s: the trainer optimises their trainable parameters (the
projection heads of :class:`FeatureDistillation`) with the model's, and checkpoints them.

The teacher's outputs can come from a live teacher (any augmentation is then seen by both) or from
a :class:`TeacherCache` computed once over the (unaugmented) training set: the trainer tells the
loss which rows of the training set a batch holds through ``on_batch(indices)``, and the loss reads
the teacher's logits and features from the cache, so a CPU epoch costs only the student's forward
and backward.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlsys.common.errors import CorruptFileError, DimensionMismatchError, InvalidInputError

__all__ = ["FeatureDistillation", "OutputDistillation", "TeacherCache", "precompute_teacher"]

_POOLINGS = ("cls", "mean")


def _data_fingerprint(x: Tensor) -> str:
    """sha256 of the shape and bytes of a float tensor (identifies the training set of a cache)."""
    h = hashlib.sha256(repr(tuple(x.shape)).encode())
    h.update(x.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@dataclass
class TeacherCache:
    """A teacher's logits ``(n, classes)`` and pooled block features ``{block: (n, D)}`` over a
    training set, in the set's row order.

    Attributes:
        logits: teacher logits per training image.
        features: teacher features per 0-based block index (CLS token or mean patch token after
            that block, before the final norm).
        pooling: ``"cls"`` or ``"mean"``.
        fingerprint: sha256 of the training tensor the cache was computed from.
    """

    logits: Tensor
    features: dict[int, Tensor]
    pooling: str
    fingerprint: str

    def __len__(self) -> int:
        return int(self.logits.shape[0])

    def check_data(self, x: Tensor) -> None:
        """Raise :class:`InvalidInputError` unless ``x`` is the tensor the cache was computed from."""
        if x.shape[0] != len(self):
            raise DimensionMismatchError(
                f"the teacher cache has {len(self)} rows but the data has {x.shape[0]}"
            )
        if _data_fingerprint(x) != self.fingerprint:
            raise InvalidInputError("the teacher cache was computed from other images (fingerprint mismatch)")

    def save(self, path: str | Path) -> Path:
        """Write the cache to one safetensors file (metadata: pooling, blocks, fingerprint)."""
        from safetensors.torch import save_file

        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        tensors = {"logits": self.logits.contiguous()}
        tensors.update({f"block{b}": f.contiguous() for b, f in self.features.items()})
        meta = {
            "pooling": self.pooling,
            "fingerprint": self.fingerprint,
            "blocks": json.dumps(sorted(self.features)),
        }
        tmp = out.with_suffix(out.suffix + ".tmp")
        save_file(tensors, str(tmp), metadata=meta)
        tmp.replace(out)
        return out

    @classmethod
    def load(cls, path: str | Path) -> TeacherCache:
        """Read a cache written by :meth:`save` (:class:`CorruptFileError` when it is not one)."""
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                blocks = json.loads(meta["blocks"])
                logits = f.get_tensor("logits")
                feats = {int(b): f.get_tensor(f"block{b}") for b in blocks}
        except (OSError, KeyError, ValueError, json.JSONDecodeError) as exc:
            raise CorruptFileError(
                f"{path} is not a teacher cache written by TeacherCache.save: {exc}"
            ) from exc
        except Exception as exc:  # safetensors' own SafetensorError has no public base class
            raise CorruptFileError(f"{path} is not a readable safetensors file: {exc}") from exc
        return cls(logits, feats, meta["pooling"], meta["fingerprint"])


def _teacher_blocks(teacher: nn.Module) -> int:
    from mlsys.vision._vit import ViT

    if not isinstance(teacher, ViT):
        raise InvalidInputError(
            f"the teacher must be a ViT (block features are read from it), got {type(teacher).__name__}"
        )
    return int(teacher.config.depth)


def _check_blocks(blocks: Sequence[int], depth: int, what: str) -> tuple[int, ...]:
    out = []
    for b in blocks:
        if isinstance(b, bool) or not isinstance(b, int) or not -depth <= b < depth:
            raise InvalidInputError(f"{what} {b!r} is not a block index in [-{depth}, {depth})")
        out.append(b % depth)
    return tuple(out)


def _pool_tokens(tokens: Tensor, pooling: str) -> Tensor:
    return tokens[:, 0] if pooling == "cls" else tokens[:, 1:].mean(dim=1)


@torch.no_grad()  # not inference_mode: the outputs enter the student's autograd graph as targets
def _teacher_outputs(
    teacher: nn.Module, x: Tensor, blocks: tuple[int, ...], pooling: str
) -> tuple[Tensor, dict[int, Tensor]]:
    feats = teacher.forward_features(x, return_tokens=pooling == "mean")  # type: ignore[operator]
    logits = teacher.head(feats.tokens[:, 0])  # type: ignore[operator]
    if pooling == "cls":
        per = {b: feats.cls_per_layer[b] for b in blocks}
    else:
        per = {b: _pool_tokens(feats.tokens_per_layer[b], pooling) for b in blocks}
    return logits, per


def precompute_teacher(
    teacher: nn.Module,
    x: Tensor,
    *,
    blocks: Sequence[int] = (),
    pooling: str = "cls",
    batch_size: int = 512,
    path: str | Path | None = None,
) -> TeacherCache:
    """Run ``teacher`` (a :class:`~mlsys.vision.ViT`) once over ``x`` and keep its logits and block features.

    With ``path``, a cache already there for the same images and blocks is loaded instead, and a
    new one is written there.

    Example:
        >>> import torch
        >>> from mlsys.vision import ViT, ViTConfig
        >>> t = ViT(ViTConfig(img_size=8, patch_size=4, in_chans=1, num_classes=3, embed_dim=8,
        ...                   depth=2, num_heads=2))
        >>> c = precompute_teacher(t, torch.randn(5, 1, 8, 8), blocks=(0, 1))
        >>> tuple(c.logits.shape), tuple(c.features[1].shape)
        ((5, 3), (5, 8))
    """
    depth = _teacher_blocks(teacher)
    if pooling not in _POOLINGS:
        raise InvalidInputError(f"pooling must be one of {_POOLINGS}, got {pooling!r}")
    if not isinstance(x, Tensor) or x.ndim != 4 or not x.is_floating_point():
        raise InvalidInputError(
            f"x must be a float tensor (n, C, H, W), got {getattr(x, 'shape', type(x).__name__)}"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise InvalidInputError(f"batch_size must be a positive int, got {batch_size!r}")
    bl = _check_blocks(blocks, depth, "teacher block")
    fp = _data_fingerprint(x)
    if path is not None and Path(path).is_file():
        cached = TeacherCache.load(path)
        if cached.fingerprint == fp and cached.pooling == pooling and set(bl) <= set(cached.features):
            return cached
    was_training = teacher.training
    teacher.eval()
    logits: list[Tensor] = []
    feats: dict[int, list[Tensor]] = {b: [] for b in bl}
    try:
        for i in range(0, x.shape[0], batch_size):
            lo, per = _teacher_outputs(teacher, x[i : i + batch_size], bl, pooling)
            logits.append(lo.float().cpu())
            for b in bl:
                feats[b].append(per[b].float().cpu())
    finally:
        teacher.train(was_training)
    cache = TeacherCache(torch.cat(logits), {b: torch.cat(v) for b, v in feats.items()}, pooling, fp)
    if path is not None:
        cache.save(path)
    return cache


def _check_prob(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
        raise InvalidInputError(f"{name} must be a number in [0, 1], got {v!r}")
    return float(v)


class _TeacherSource(nn.Module):
    """The teacher (frozen, in eval mode) or a cache indexed by the trainer's batch indices."""

    def __init__(self, teacher: nn.Module | None, cache: TeacherCache | None) -> None:
        super().__init__()
        if teacher is None and cache is None:
            raise InvalidInputError("pass a teacher, a TeacherCache, or both")
        if teacher is not None and not isinstance(teacher, nn.Module):
            raise InvalidInputError(f"teacher must be a torch.nn.Module, got {type(teacher).__name__}")
        if cache is not None and not isinstance(cache, TeacherCache):
            raise InvalidInputError(f"cache must be a TeacherCache, got {type(cache).__name__}")
        self.teacher = teacher.eval().requires_grad_(False) if teacher is not None else None
        self.cache = cache
        self._indices: Tensor | None = None

    def train(self, mode: bool = True) -> _TeacherSource:
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # the teacher never trains (BatchNorm statistics, dropout)
        return self

    def on_batch(self, indices: Tensor) -> None:
        """Called by :class:`~mlsys.vision.Trainer` with the training-set rows of the next batch."""
        self._indices = indices

    def _rows(self, n: int) -> Tensor:
        idx = self._indices
        if idx is None or idx.shape[0] != n:
            raise InvalidInputError(
                "a cached teacher needs the batch's training-set indices: train with mlsys.vision.Trainer "
                "(it calls on_batch) or call on_batch(indices) before the loss"
            )
        return idx

    def teacher_outputs(
        self, x: Tensor, blocks: tuple[int, ...], pooling: str
    ) -> tuple[Tensor, dict[int, Tensor]]:
        if self.cache is not None:
            idx = self._rows(x.shape[0]).cpu()
            missing = [b for b in blocks if b not in self.cache.features]
            if missing:
                raise InvalidInputError(f"the teacher cache has no features of blocks {missing}")
            dev = x.device
            return self.cache.logits[idx].to(dev), {b: self.cache.features[b][idx].to(dev) for b in blocks}
        assert self.teacher is not None
        if blocks:
            return _teacher_outputs(self.teacher, x, blocks, pooling)
        with torch.no_grad():
            return self.teacher(x), {}


class OutputDistillation(nn.Module):
    """Hinton knowledge distillation: ``alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y)``.

    Args:
        teacher: the teacher model (frozen here), or None with ``cache``.
        temperature: softening temperature ``T`` (> 0).
        alpha: weight of the distillation term; 0 = plain cross-entropy (the no-KD baseline).
        cache: precomputed teacher outputs (:func:`precompute_teacher`), read by batch index.
        label_smoothing: of the cross-entropy term.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> kd = OutputDistillation(nn.Linear(4, 3), temperature=2.0, alpha=0.5)
        >>> loss, logits = kd(nn.Linear(4, 3), torch.randn(8, 4), torch.randint(0, 3, (8,)))
        >>> loss.ndim, tuple(logits.shape)
        (0, (8, 3))
    """

    def __init__(
        self,
        teacher: nn.Module | None = None,
        *,
        temperature: float = 4.0,
        alpha: float = 0.9,
        cache: TeacherCache | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
            raise InvalidInputError(f"temperature must be > 0, got {temperature!r}")
        self.temperature = float(temperature)
        self.alpha = _check_prob("alpha", alpha)
        self.label_smoothing = _check_prob("label_smoothing", label_smoothing)
        self.source = _TeacherSource(teacher, cache)

    def on_batch(self, indices: Tensor) -> None:
        """Training-set rows of the next batch (for a cached teacher); called by the trainer."""
        self.source.on_batch(indices)

    def loss_from_logits(self, logits: Tensor, y: Tensor, teacher_logits: Tensor | None) -> Tensor:
        """The combined loss given the student's and the teacher's logits."""
        ce = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        if self.alpha == 0.0 or teacher_logits is None:
            return ce
        if teacher_logits.shape != logits.shape:
            raise DimensionMismatchError(
                f"teacher logits {tuple(teacher_logits.shape)} do not match student logits {tuple(logits.shape)}"
            )
        t = self.temperature
        kd = F.kl_div(
            F.log_softmax(logits / t, dim=-1),
            F.log_softmax(teacher_logits.float() / t, dim=-1),
            reduction="batchmean",
            log_target=True,
        ) * (t * t)
        return self.alpha * kd + (1.0 - self.alpha) * ce

    def forward(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(loss, student logits)`` of one batch."""
        logits = model(x)
        t_logits = self.source.teacher_outputs(x, (), "cls")[0] if self.alpha > 0 else None
        return self.loss_from_logits(logits, y, t_logits), logits


class FeatureDistillation(nn.Module):
    """Intermediate-feature matching (FitNets-style) plus a task loss.

    Each student tap (a block output ``(B, C, H, W)``, spatially average-pooled to ``(B, C)``) goes
    through a learnable linear projection head to the teacher's width and is matched (MSE) to the
    teacher's feature at the paired block (the CLS token, or the mean patch token, after that
    block), layer-normalised without parameters so that the heads learn the scale, not the loss::

        loss = task_loss + weight * mean_k MSE(head_k(pool(s_k)), LN(t_k))

    Args:
        student: the student (a :class:`~mlsys.vision.compress.MobileNetV3`; read for its tap widths).
        teacher: the teacher :class:`~mlsys.vision.ViT` (frozen here), or None with ``cache``.
        student_taps: student block indices.
        teacher_blocks: teacher block indices, paired with ``student_taps``.
        weight: weight of the feature term.
        pooling: teacher token pooling, ``"cls"`` or ``"mean"``.
        cache: precomputed teacher outputs holding ``teacher_blocks``.
        task_loss: an :class:`OutputDistillation` (output KD on top) or None (cross-entropy).

    Example:
        >>> import torch
        >>> from mlsys.vision import ViT, ViTConfig
        >>> from mlsys.vision.compress import MobileNetV3, MobileNetV3Config
        >>> t = ViT(ViTConfig(img_size=28, patch_size=7, in_chans=1, num_classes=10, embed_dim=16,
        ...                   depth=2, num_heads=2))
        >>> s = MobileNetV3(MobileNetV3Config.fashion_mnist())
        >>> fd = FeatureDistillation(s, t, student_taps=(1, 3), teacher_blocks=(0, 1))
        >>> loss, logits = fd(s, torch.randn(4, 1, 28, 28), torch.randint(0, 10, (4,)))
        >>> sum(p.numel() for p in fd.heads.parameters())  # 24->16 and 40->16 projections
        1056
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module | None = None,
        *,
        student_taps: Sequence[int] = (1, 3),
        teacher_blocks: Sequence[int] = (2, 5),
        weight: float = 1.0,
        pooling: str = "cls",
        cache: TeacherCache | None = None,
        task_loss: OutputDistillation | None = None,
    ) -> None:
        super().__init__()
        channels = getattr(student, "block_channels", None)
        if not callable(getattr(student, "forward_features", None)) or not isinstance(channels, list):
            raise InvalidInputError(
                f"the student must expose forward_features(x, taps) and block_channels (a MobileNetV3), got {type(student).__name__}"
            )
        if pooling not in _POOLINGS:
            raise InvalidInputError(f"pooling must be one of {_POOLINGS}, got {pooling!r}")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
            raise InvalidInputError(f"weight must be >= 0, got {weight!r}")
        if len(student_taps) != len(teacher_blocks) or not student_taps:
            raise InvalidInputError(
                f"student_taps {tuple(student_taps)} and teacher_blocks {tuple(teacher_blocks)} must pair up (same non-zero length)"
            )
        if task_loss is not None and not isinstance(task_loss, OutputDistillation):
            raise InvalidInputError(
                f"task_loss must be an OutputDistillation or None, got {type(task_loss).__name__}"
            )
        self.student_taps = _check_blocks(student_taps, len(channels), "student tap")
        self.source = _TeacherSource(teacher, cache)
        if teacher is not None:
            depth = _teacher_blocks(teacher)
            dim = int(teacher.config.embed_dim)  # type: ignore[union-attr,arg-type]
        else:
            assert cache is not None
            depth = max(cache.features) + 1 if cache.features else 0
            dims = {int(f.shape[1]) for f in cache.features.values()}
            if len(dims) != 1:
                raise InvalidInputError(
                    "the teacher cache holds no block features (or features of several widths)"
                )
            dim = dims.pop()
        # without a teacher the depth is unknown: blocks must be non-negative and in the cache
        self.teacher_blocks = _check_blocks(
            teacher_blocks, max(depth, 1) if teacher is not None else 10**6, "teacher block"
        )
        if cache is not None:
            missing = [b for b in self.teacher_blocks if b not in cache.features]
            if missing:
                raise InvalidInputError(f"the teacher cache has no features of blocks {missing}")
        self.pooling = pooling
        self.weight = float(weight)
        self.task_loss = task_loss
        self.heads = nn.ModuleList(nn.Linear(channels[i], dim) for i in self.student_taps)

    def on_batch(self, indices: Tensor) -> None:
        """Training-set rows of the next batch (for a cached teacher); called by the trainer."""
        self.source.on_batch(indices)
        if self.task_loss is not None:
            self.task_loss.on_batch(indices)

    def feature_loss(self, student_feats: dict[int, Tensor], teacher_feats: dict[int, Tensor]) -> Tensor:
        """Mean over the tap pairs of the MSE between projected student and normalised teacher features."""
        terms = []
        for head, s_i, t_i in zip(self.heads, self.student_taps, self.teacher_blocks, strict=True):
            s = student_feats[s_i]
            pooled = s.mean(dim=(2, 3)) if s.ndim == 4 else s
            t = teacher_feats[t_i].float()
            terms.append(F.mse_loss(head(pooled), F.layer_norm(t, t.shape[-1:])))
        return torch.stack(terms).mean()

    def forward(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(loss, student logits)`` of one batch."""
        out = model.forward_features(x, taps=self.student_taps)  # type: ignore[operator]
        logits = out.logits
        t_logits, t_feats = self.source.teacher_outputs(x, self.teacher_blocks, self.pooling)
        task = (
            self.task_loss.loss_from_logits(logits, y, t_logits)
            if self.task_loss is not None
            else F.cross_entropy(logits, y)
        )
        return task + self.weight * self.feature_loss(out.features, t_feats), logits
