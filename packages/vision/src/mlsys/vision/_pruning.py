"""Dynamic token pruning (DynamicViT-style) for :class:`~mlsys.vision.ViT`.

A light predictor per pruning stage scores every remaining patch token from its own (local)
features and the mean of the kept tokens (global features) and decides keep/drop.

* **Training** keeps tensor shapes fixed: decisions are sampled with a straight-through
  Gumbel-Softmax, multiplied into the previous stage's decisions, and applied as an attention mask
  (a query attends to kept keys and to itself). :class:`PruningLoss` adds a keep-ratio loss and
  self-distillation to the unpruned teacher (KL on logits, optional MSE on the kept final tokens).
* **Inference** drops tokens for real: ``mode="topk"`` keeps a fixed number per stage (batch
  friendly), ``mode="threshold"`` keeps the tokens whose keep probability reaches a threshold
  (variable count, batch size 1).

The default schedule prunes after blocks ``depth/4, depth/2, 3*depth/4`` (floored; 3/6/9 for 12
blocks, 1/3/4 for 6) keeping ``rho, rho**2, rho**3`` of the patch tokens (70/49/34% for rho=0.7).
The CLS token is never pruned.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlsys.common.errors import InvalidInputError
from mlsys.vision._vit import ViT, ViTConfig

__all__ = [
    "DynamicTokenPruning",
    "PruningConfig",
    "PruningLoss",
    "PruningOutput",
    "TokenScorer",
    "default_prune_after",
]


def default_prune_after(depth: int) -> tuple[int, ...]:
    """Blocks after which to prune, proportional to DynamicViT's 3/6/9 of 12.

    Example:
        >>> default_prune_after(12), default_prune_after(6)
        ((3, 6, 9), (1, 3, 4))
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 2:
        raise InvalidInputError(f"pruning needs a ViT with at least 2 blocks, got depth {depth!r}")
    cands = sorted({max(1, min(depth - 1, (depth * k) // 4)) for k in (1, 2, 3)})
    return tuple(cands)


@dataclass(frozen=True)
class PruningConfig:
    """Configuration of :class:`DynamicTokenPruning`.

    Args:
        vit: the backbone's configuration.
        keep_ratio: rho; stage ``s`` (1-based) keeps ``rho**s`` of the original patch tokens.
        prune_after: 1-based block numbers after which a pruning stage runs (strictly increasing,
            each in ``[1, depth - 1]``); None = :func:`default_prune_after`.
        mode: ``"topk"`` (fixed count per stage) or ``"threshold"`` (keep probability >= threshold,
            batch size 1) for inference.
        threshold: the keep-probability threshold of ``mode="threshold"``.

    Example:
        >>> cfg = PruningConfig(ViTConfig.vit_small_patch16_224(), keep_ratio=0.7)
        >>> cfg.prune_after, cfg.keep_counts
        ((3, 6, 9), (137, 96, 67))
    """

    vit: ViTConfig
    keep_ratio: float = 0.7
    prune_after: tuple[int, ...] | None = None
    mode: Literal["topk", "threshold"] = "topk"
    threshold: float = 0.5
    _stages: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.vit, ViTConfig):
            raise InvalidInputError(f"PruningConfig.vit must be a ViTConfig, got {type(self.vit).__name__}")
        if not isinstance(self.keep_ratio, (int, float)) or not 0.0 < self.keep_ratio <= 1.0:
            raise InvalidInputError(f"PruningConfig.keep_ratio must be in (0, 1], got {self.keep_ratio!r}")
        stages = default_prune_after(self.vit.depth) if self.prune_after is None else tuple(self.prune_after)
        if not stages:
            raise InvalidInputError("PruningConfig.prune_after must name at least one block")
        if any(isinstance(b, bool) or not isinstance(b, int) for b in stages):
            raise InvalidInputError(f"PruningConfig.prune_after must hold ints, got {stages!r}")
        if list(stages) != sorted(set(stages)) or stages[0] < 1 or stages[-1] > self.vit.depth - 1:
            raise InvalidInputError(
                f"PruningConfig.prune_after must be strictly increasing block numbers in "
                f"[1, {self.vit.depth - 1}], got {stages!r}"
            )
        if self.mode not in ("topk", "threshold"):
            raise InvalidInputError(f"PruningConfig.mode must be 'topk' or 'threshold', got {self.mode!r}")
        if not isinstance(self.threshold, (int, float)) or not 0.0 < self.threshold < 1.0:
            raise InvalidInputError(f"PruningConfig.threshold must be in (0, 1), got {self.threshold!r}")
        object.__setattr__(self, "prune_after", stages)
        object.__setattr__(self, "_stages", stages)

    @property
    def keep_ratios(self) -> tuple[float, ...]:
        """Fraction of the original patch tokens kept after each stage: rho, rho**2, ..."""
        return tuple(float(self.keep_ratio) ** (s + 1) for s in range(len(self._stages)))

    @property
    def keep_counts(self) -> tuple[int, ...]:
        """Patch tokens kept after each stage in top-k mode (at least 1)."""
        n = self.vit.num_patches
        return tuple(max(1, round(n * r)) for r in self.keep_ratios)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (the backbone config nested under ``"vit"``)."""
        return {
            "vit": self.vit.to_dict(),
            "keep_ratio": self.keep_ratio,
            "prune_after": list(self._stages),
            "mode": self.mode,
            "threshold": self.threshold,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PruningConfig:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        vit = ViTConfig(**d.pop("vit"))
        pa = d.pop("prune_after", None)
        return cls(vit=vit, prune_after=tuple(pa) if pa is not None else None, **d)


class TokenScorer(nn.Module):
    """DynamicViT's prediction module: keep/drop log-probabilities from local + global features.

    ``forward(tokens (B, N, D), policy (B, N)) -> (B, N, 2)`` log-probabilities, index 0 = keep.
    The global feature is the policy-weighted mean of the tokens, so dropped tokens (policy 0) do
    not influence it.
    """

    def __init__(self, dim: int, keep_prior: float = 0.5) -> None:
        super().__init__()
        if dim < 4:
            raise InvalidInputError(f"TokenScorer needs embed_dim >= 4, got {dim}")
        if not 0.0 < keep_prior <= 1.0:
            raise InvalidInputError(f"TokenScorer.keep_prior must be in (0, 1], got {keep_prior}")
        self.in_proj = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU())
        half = dim // 2
        self.split = half
        self.out = nn.Sequential(
            nn.Linear(dim, half),
            nn.GELU(),
            nn.Linear(half, max(1, dim // 4)),
            nn.GELU(),
            nn.Linear(max(1, dim // 4), 2),
        )
        # Start at the target keep rate: keep probability = keep_prior before any training, so the
        # Gumbel decisions of the first fine-tuning steps already prune as much as inference will.
        last = self.out[-1]
        assert isinstance(last, nn.Linear)
        p = min(keep_prior, 0.999)
        with torch.no_grad():
            last.bias.copy_(torch.tensor([math.log(p / (1.0 - p)), 0.0]))

    def forward(self, tokens: Tensor, policy: Tensor | None = None) -> Tensor:
        """Keep/drop log-probabilities ``(batch, tokens, 2)`` of ``tokens``; ``policy`` masks the tokens
        already dropped out of the global context.
        """
        h = self.in_proj(tokens)
        local, glob = h[..., : self.split], h[..., self.split :]
        if policy is None:
            g = glob.mean(dim=1, keepdim=True)
        else:
            w = policy[..., None].to(glob.dtype)
            g = (glob * w).sum(dim=1, keepdim=True) / w.sum(dim=1, keepdim=True).clamp_min(1e-6)
        return F.log_softmax(self.out(torch.cat([local, g.expand_as(glob)], dim=-1)), dim=-1)


@dataclass
class PruningOutput:
    """What the pruning forwards return.

    Attributes:
        logits: ``(B, num_classes)``.
        tokens: final normalised tokens; masked forward: ``(B, 1 + N, D)`` (all positions);
            pruned forward: ``(B, 1 + n_kept, D)``.
        policies: masked forward: per stage ``(B, N)`` keep decisions (cumulative, 1 = kept).
        kept_indices: pruned forward: per stage ``(B, n_s)`` original patch indices (0-based,
            ascending) of the tokens kept.
    """

    logits: Tensor
    tokens: Tensor
    policies: list[Tensor] = field(default_factory=list)
    kept_indices: list[Tensor] = field(default_factory=list)


class DynamicTokenPruning(nn.Module):
    """A :class:`ViT` with DynamicViT-style token pruning.

    ``forward(x)`` returns logits: in training mode through the masked forward with Gumbel-Softmax
    decisions (fixed shapes, differentiable), in eval mode through the pruned forward (tokens
    really dropped). Build one from a trained ViT with :meth:`from_vit` and fine-tune it with
    :class:`PruningLoss`.

    Example:
        >>> import torch
        >>> vit = ViT(ViTConfig(img_size=8, patch_size=2, in_chans=1, num_classes=3, embed_dim=16,
        ...                     depth=4, num_heads=2))
        >>> m = DynamicTokenPruning.from_vit(vit, keep_ratio=0.5).eval()
        >>> out = m.forward_pruned(torch.zeros(2, 1, 8, 8))
        >>> [tuple(i.shape) for i in out.kept_indices]
        [(2, 8), (2, 4), (2, 2)]
    """

    def __init__(self, config: PruningConfig, backbone: ViT | None = None) -> None:
        super().__init__()
        if not isinstance(config, PruningConfig):
            raise InvalidInputError(f"config must be a PruningConfig, got {type(config).__name__}")
        if backbone is not None and backbone.config != config.vit:
            raise InvalidInputError(
                f"backbone config {backbone.config} does not match PruningConfig.vit {config.vit}"
            )
        self.config = config
        self.backbone = backbone if backbone is not None else ViT(config.vit)
        self.scorers = nn.ModuleList(
            TokenScorer(config.vit.embed_dim, keep_prior=config.keep_ratio) for _ in config.keep_ratios
        )
        # 0-based index of the block *before* which stage s runs.
        self._stage_at = {b: s for s, b in enumerate(config._stages)}

    @classmethod
    def from_vit(
        cls,
        vit: ViT,
        *,
        keep_ratio: float = 0.7,
        prune_after: Sequence[int] | None = None,
        mode: Literal["topk", "threshold"] = "topk",
        threshold: float = 0.5,
        copy_weights: bool = True,
    ) -> DynamicTokenPruning:
        """Wrap ``vit`` (a deep copy unless ``copy_weights=False``) with fresh token scorers."""
        if not isinstance(vit, ViT):
            raise InvalidInputError(f"vit must be a ViT, got {type(vit).__name__}")
        cfg = PruningConfig(
            vit.config,
            keep_ratio=keep_ratio,
            prune_after=tuple(prune_after) if prune_after is not None else None,
            mode=mode,
            threshold=threshold,
        )
        backbone = vit
        if copy_weights:
            backbone = copy.deepcopy(vit)
            for p in backbone.parameters():  # the source may be a frozen teacher
                p.requires_grad_(True)
        return cls(cfg, backbone)

    # -- masked (training-mode) forward --------------------------------------------------------
    def forward_masked(self, x: Tensor, *, sample: bool | None = None, tau: float = 1.0) -> PruningOutput:
        """Masked forward with fixed shapes.

        Args:
            x: images ``(B, C, H, W)``.
            sample: draw decisions with straight-through Gumbel-Softmax (differentiable); False =
                deterministic top-k decisions (the same tokens the top-k pruned forward keeps).
                None = sample in training mode, deterministic in eval mode.
            tau: Gumbel-Softmax temperature.
        """
        sample = self.training if sample is None else sample
        bb = self.backbone
        h = bb.embed(x)
        b, n = h.shape[0], h.shape[1] - 1
        prev = torch.ones(b, n, dtype=h.dtype, device=h.device)
        ones_cls = torch.ones(b, 1, dtype=h.dtype, device=h.device)
        policies: list[Tensor] = []
        full: Tensor | None = None
        for i, blk in enumerate(bb.blocks):
            s = self._stage_at.get(i)
            if s is not None:
                logp = self.scorers[s](h[:, 1:], prev)
                if sample:
                    hard = F.gumbel_softmax(logp, tau=tau, hard=True)[..., 0] * prev
                else:
                    k = self.config.keep_counts[s]
                    score = logp[..., 0].masked_fill(prev <= 0, float("-inf"))
                    top = score.topk(k, dim=1).indices
                    hard = torch.zeros_like(prev).scatter(1, top, 1.0)
                prev = hard
                policies.append(hard)
                full = torch.cat([ones_cls, prev], dim=1)
            h = blk(h, policy=full)
        tokens = bb.norm(h)
        return PruningOutput(logits=bb.head(tokens[:, 0]), tokens=tokens, policies=policies)

    # -- pruned (inference) forward -------------------------------------------------------------
    def forward_pruned(self, x: Tensor) -> PruningOutput:
        """Inference forward that drops tokens for real (``config.mode`` decides how many)."""
        bb = self.backbone
        cfg = self.config
        h = bb.embed(x)
        b, n = h.shape[0], h.shape[1] - 1
        if cfg.mode == "threshold" and b != 1:
            raise InvalidInputError(
                f"mode='threshold' keeps a variable number of tokens per image and needs batch size 1, "
                f"got {b}; use mode='topk' for batches"
            )
        idx = torch.arange(n, device=h.device).expand(b, n)
        kept: list[Tensor] = []
        for i, blk in enumerate(bb.blocks):
            s = self._stage_at.get(i)
            if s is not None:
                keep_logp = self.scorers[s](h[:, 1:])[..., 0]
                if cfg.mode == "topk":
                    k = cfg.keep_counts[s]  # counts never increase, so k <= tokens left
                    sel = keep_logp.topk(k, dim=1).indices.sort(dim=1).values
                else:
                    mask = keep_logp[0].exp() >= cfg.threshold
                    if not bool(mask.any()):  # keep at least the most confident token
                        mask[keep_logp[0].argmax()] = True
                    sel = mask.nonzero().flatten()[None]
                patches = torch.gather(h[:, 1:], 1, sel[..., None].expand(-1, -1, h.shape[2]))
                h = torch.cat([h[:, :1], patches], dim=1)
                idx = torch.gather(idx, 1, sel)
                kept.append(idx)
            h = blk(h)
        tokens = bb.norm(h)
        return PruningOutput(logits=bb.head(tokens[:, 0]), tokens=tokens, kept_indices=kept)

    def forward(self, x: Tensor) -> Tensor:
        """Logits: masked Gumbel forward in training mode, pruned forward in eval mode."""
        if self.training:
            return self.forward_masked(x).logits
        return self.forward_pruned(x).logits


class PruningLoss:
    """DynamicViT's objective for :class:`~mlsys.vision.Trainer`: ``loss_fn(model, x, y)``.

    ``CE(y) + ratio_weight * keep-ratio MSE + distill_weight * KL(teacher || student) +
    token_weight * MSE(kept final tokens, teacher's)``, with the teacher frozen in eval mode.

    Args:
        teacher: the unpruned ViT (not modified; gradients are never computed for it).
        ratio_weight: weight of the keep-ratio loss (mean over stages of (kept fraction - target)^2).
        distill_weight: weight of the logit KL divergence (temperature ``temperature``).
        token_weight: weight of the token distillation (0 disables it).
        label_smoothing: of the cross-entropy.

    Example:
        >>> import torch
        >>> vit = ViT(ViTConfig(img_size=8, patch_size=2, in_chans=1, num_classes=3, embed_dim=16,
        ...                     depth=4, num_heads=2))
        >>> student = DynamicTokenPruning.from_vit(vit).train()
        >>> loss, logits = PruningLoss(vit)(student, torch.randn(2, 1, 8, 8), torch.tensor([0, 1]))
        >>> logits.shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        teacher: ViT,
        *,
        ratio_weight: float = 2.0,
        distill_weight: float = 0.5,
        token_weight: float = 0.5,
        temperature: float = 1.0,
        label_smoothing: float = 0.0,
    ) -> None:
        if not isinstance(teacher, ViT):
            raise InvalidInputError(f"teacher must be a ViT, got {type(teacher).__name__}")
        for name, v in (
            ("ratio_weight", ratio_weight),
            ("distill_weight", distill_weight),
            ("token_weight", token_weight),
        ):
            if v < 0:
                raise InvalidInputError(f"PruningLoss.{name} must be >= 0, got {v}")
        if not temperature > 0:
            raise InvalidInputError(f"PruningLoss.temperature must be > 0, got {temperature}")
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.ratio_weight = ratio_weight
        self.distill_weight = distill_weight
        self.token_weight = token_weight
        self.temperature = temperature
        self.label_smoothing = label_smoothing
        self.last: dict[str, float] = {}

    def to(self, device: str | torch.device | None) -> PruningLoss:
        """Move the teacher to ``device`` (resolved by :func:`mlsys.common.devices.resolve_device`);
        :class:`~mlsys.vision.Trainer` calls this with its own device. Returns ``self``."""
        from mlsys.common.devices import resolve_device

        self.teacher.to(resolve_device(device))
        return self

    def __call__(self, model: Any, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        if not isinstance(model, DynamicTokenPruning):
            raise InvalidInputError(f"PruningLoss trains a DynamicTokenPruning, got {type(model).__name__}")
        out = model.forward_masked(x)
        ce = F.cross_entropy(out.logits, y, label_smoothing=self.label_smoothing)
        targets = model.config.keep_ratios
        ratio = torch.stack([((p.mean(dim=1) - r) ** 2).mean() for p, r in zip(out.policies, targets)]).mean()
        loss = ce + self.ratio_weight * ratio
        logs = {"ce": float(ce.detach()), "ratio": float(ratio.detach())}
        if self.distill_weight > 0 or self.token_weight > 0:
            with torch.no_grad():
                t = self.teacher.forward_features(x)
                t_logits = self.teacher.head(t.tokens[:, 0])
            if self.distill_weight > 0:
                temp = self.temperature
                kl = F.kl_div(
                    F.log_softmax(out.logits / temp, dim=-1),
                    F.log_softmax(t_logits / temp, dim=-1),
                    reduction="batchmean",
                    log_target=True,
                ) * (temp * temp)
                loss = loss + self.distill_weight * kl
                logs["kl"] = float(kl.detach())
            if self.token_weight > 0 and out.policies:
                mask = out.policies[-1][..., None]
                diff = ((out.tokens[:, 1:] - t.tokens[:, 1:]) ** 2) * mask
                tok = diff.sum() / (mask.sum() * out.tokens.shape[-1]).clamp_min(1.0)
                loss = loss + self.token_weight * tok
                logs["token"] = float(tok.detach())
        self.last = logs
        return loss, out.logits
