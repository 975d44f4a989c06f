"""A plain Vision Transformer (ViT) written for this package.

timm and torchvision cannot be installed beside the pinned CPU torch, so the model is written here:
patch embedding (a strided convolution, optionally after a small convolutional stem), a learned CLS
token and position embedding, pre-norm transformer blocks and a linear head on the final CLS token.

The blocks expose the pieces that token pruning and token merging need: attention with an additive
bias (proportional attention), attention with a keep policy (masked training of pruned models) and
the mean attention keys (the merge similarity).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlsys.common.errors import DeviceMismatchError, DimensionMismatchError, InvalidInputError

__all__ = ["ViT", "ViTConfig", "ViTFeatures"]


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidInputError(f"ViTConfig.{name} must be a positive int, got {value!r}")
    return value


@dataclass(frozen=True)
class ViTConfig:
    """Configuration of a :class:`ViT`.

    Args:
        img_size: input height and width in pixels (square inputs).
        patch_size: side of a square patch; must divide ``img_size``.
        in_chans: input channels (1 for grayscale, 3 for RGB).
        num_classes: classifier outputs.
        embed_dim: token width; must be divisible by ``num_heads``.
        depth: number of transformer blocks.
        num_heads: attention heads per block.
        mlp_ratio: hidden width of the MLP relative to ``embed_dim``.
        qkv_bias: whether the qkv projection has a bias.
        dropout: dropout on the MLP and attention output projections (training only).
        stem_channels: widths of 3x3 stride-1 convolutions (each followed by BatchNorm and GELU) run
            before the patch projection; ``()`` (the default) is the plain ViT patch embedding.
            A small stem ("early convolutions", Xiao et al. 2021) gives every token a receptive
            field wider than its patch, which makes tiny patches (2x2 pixels) learnable in a short
            CPU schedule; the token count and everything after the embedding are unchanged.

    Example:
        >>> cfg = ViTConfig(img_size=28, patch_size=2, in_chans=1, num_classes=10, embed_dim=64,
        ...                 depth=6, num_heads=4)
        >>> cfg.num_patches
        196
    """

    img_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    num_classes: int = 1000
    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    dropout: float = 0.0
    stem_channels: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        stem = self.stem_channels
        if not isinstance(stem, (tuple, list)) or any(
            isinstance(c, bool) or not isinstance(c, int) or c <= 0 for c in stem
        ):
            raise InvalidInputError(
                f"ViTConfig.stem_channels must be a sequence of positive ints, got {stem!r}"
            )
        object.__setattr__(self, "stem_channels", tuple(stem))  # lists from JSON manifests
        for name in ("img_size", "patch_size", "in_chans", "num_classes", "embed_dim", "depth", "num_heads"):
            _positive_int(name, getattr(self, name))
        if self.img_size % self.patch_size:
            raise InvalidInputError(
                f"ViTConfig.patch_size {self.patch_size} must divide img_size {self.img_size}"
            )
        if self.embed_dim % self.num_heads:
            raise InvalidInputError(
                f"ViTConfig.embed_dim {self.embed_dim} must be divisible by num_heads {self.num_heads}"
            )
        if not isinstance(self.mlp_ratio, (int, float)) or not self.mlp_ratio > 0:
            raise InvalidInputError(f"ViTConfig.mlp_ratio must be > 0, got {self.mlp_ratio!r}")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise InvalidInputError(f"ViTConfig.dropout must be in [0, 1), got {self.dropout!r}")

    @property
    def num_patches(self) -> int:
        """Number of patch tokens (without the CLS token)."""
        return (self.img_size // self.patch_size) ** 2

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.embed_dim // self.num_heads

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the fields (``stem_channels`` as a list, as JSON reads it back)."""
        d = asdict(self)
        d["stem_channels"] = list(self.stem_channels)
        return d

    @classmethod
    def vit_small_patch16_224(cls, num_classes: int = 1000) -> ViTConfig:
        """ViT-S/16 at 224 px: 12 blocks, width 384, 6 heads, 196 patch tokens."""
        return cls(img_size=224, patch_size=16, in_chans=3, num_classes=num_classes)

    @classmethod
    def fashion_mnist(
        cls,
        embed_dim: int = 64,
        depth: int = 6,
        num_heads: int = 4,
        stem_channels: tuple[int, ...] = (32, 32),
    ) -> ViTConfig:
        """The Fashion-MNIST model: 28x28x1, two 32-wide 3x3 stem convolutions, patch 2 (196 tokens),
        10 classes, mlp ratio 2."""
        return cls(
            img_size=28,
            patch_size=2,
            in_chans=1,
            num_classes=10,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=2.0,
            stem_channels=stem_channels,
        )


@dataclass
class ViTFeatures:
    """What :meth:`ViT.forward_features` returns.

    Attributes:
        tokens: final normalised tokens ``(B, 1 + N, D)``; index 0 is the CLS token.
        cls_per_layer: the CLS token after each block (before the final norm), ``depth`` tensors
            ``(B, D)``.
        tokens_per_layer: all tokens after each block, ``depth`` tensors ``(B, 1 + N, D)``
            (only filled when requested).
    """

    tokens: Tensor
    cls_per_layer: list[Tensor]
    tokens_per_layer: list[Tensor]


class Attention(nn.Module):
    """Multi-head self-attention with optional additive bias or keep policy."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)

    def _qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, n, _c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]

    def forward(
        self,
        x: Tensor,
        *,
        attn_bias: Tensor | None = None,
        policy: Tensor | None = None,
        return_keys: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend.

        Args:
            x: ``(B, N, D)`` tokens.
            attn_bias: additive logit bias broadcastable to ``(B, heads, N, N)`` (e.g. ``log(size)``
                per key for proportional attention).
            policy: ``(B, N)`` keep weights in ``[0, 1]``; a query attends only to kept keys and
                to itself (DynamicViT's masked softmax, differentiable in the policy).
            return_keys: also return the keys averaged over heads ``(B, N, head_dim)``.
        """
        b, n, c = x.shape
        q, k, v = self._qkv(x)
        if attn_bias is not None and attn_bias.dtype != q.dtype:
            # the bias in the compute dtype (q is bf16/fp16 under autocast): one cast here, and
            # scaled-dot-product attention keeps its fused kernel instead of a mixed-dtype path
            attn_bias = attn_bias.to(q.dtype)
        if policy is None:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias)
        else:
            # DynamicViT's masked softmax: key j counts for query i when j is kept, and i always
            # counts for itself (a dropped token keeps a well-defined, self-only attention):
            #   attn_ij = exp(l_ij) w_ij / sum_k exp(l_ik) w_ik,  w_ij = p_j (j != i), 1 (j == i).
            # Computed as a renormalised softmax (one fused kernel, forward and backward) so that no
            # (B, 1, N, N) weight tensor is built; the value and its gradient in p are the same.
            logits = (q * self.scale) @ k.transpose(-2, -1)
            if attn_bias is not None:
                logits = logits + attn_bias
            soft = logits.softmax(dim=-1)
            pol = policy.to(soft.dtype)
            attn = soft * pol[:, None, None, :]
            # restore the self term of dropped queries: diag += soft_ii * (1 - p_i)
            attn.diagonal(dim1=-2, dim2=-1).add_(soft.diagonal(dim1=-2, dim2=-1) * (1.0 - pol)[:, None, :])
            attn = attn / attn.sum(dim=-1, keepdim=True).clamp_min(1e-30)
            out = attn @ v
        out = out.transpose(1, 2).reshape(b, n, c)
        out = self.proj_drop(self.proj(out))
        return out, (k.mean(dim=1) if return_keys else None)


class Mlp(nn.Module):
    """Two-layer GELU MLP."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.act(self.fc1(x))))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm(x))`` then ``x + mlp(norm(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias, dropout)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, round(dim * mlp_ratio), dropout)

    def forward(self, x: Tensor, *, policy: Tensor | None = None) -> Tensor:
        a, _ = self.attn(self.norm1(x), policy=policy)
        x = x + a
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """Split an image into non-overlapping patches and project each to ``embed_dim``.

    With ``stem_channels``, 3x3 stride-1 Conv-BatchNorm-GELU layers run first (same spatial size),
    and the patch projection reads their output.
    """

    def __init__(
        self,
        img_size: int,
        patch_size: int,
        in_chans: int,
        embed_dim: int,
        stem_channels: tuple[int, ...] = (),
    ) -> None:
        super().__init__()
        self.img_size = img_size
        self.in_chans = in_chans
        layers: list[nn.Module] = []
        c_in = in_chans
        for c in stem_channels:
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.GELU()]
            c_in = c
        self.stem = nn.Sequential(*layers) if layers else None
        self.proj = nn.Conv2d(c_in, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        if self.stem is not None:
            x = self.stem(x)
        return self.proj(x).flatten(2).transpose(1, 2)


class ViT(nn.Module):
    """Vision Transformer classifier.

    Input: float tensor ``(B, in_chans, img_size, img_size)``; output: logits ``(B, num_classes)``.
    Shapes are checked at the boundary and a mismatch raises
    :class:`~mlsys.common.errors.DimensionMismatchError`.

    Example:
        >>> import torch
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> model = ViT(ViTConfig(img_size=8, patch_size=2, in_chans=1, num_classes=3, embed_dim=16,
        ...                       depth=2, num_heads=2)).eval()
        >>> model(torch.zeros(4, 1, 8, 8)).shape
        torch.Size([4, 3])
    """

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        if not isinstance(config, ViTConfig):
            raise InvalidInputError(f"config must be a ViTConfig, got {type(config).__name__}")
        self.config = config
        d = config.embed_dim
        self.patch_embed = PatchEmbed(
            config.img_size, config.patch_size, config.in_chans, d, config.stem_channels
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + config.num_patches, d))
        self.blocks = nn.ModuleList(
            Block(d, config.num_heads, config.mlp_ratio, config.qkv_bias, config.dropout)
            for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.head = nn.Linear(d, config.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.patch_embed.modules():
            if isinstance(m, nn.Conv2d):
                w = m.weight
                nn.init.trunc_normal_(w.view(w.shape[0], -1), std=math.sqrt(1.0 / w[0].numel()))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def check_input(self, x: Tensor) -> None:
        """Raise :class:`DimensionMismatchError` unless ``x`` is ``(B, in_chans, img_size, img_size)`` float,
        and :class:`~mlsys.common.errors.DeviceMismatchError` unless it is on the model's device."""
        cfg = self.config
        if not isinstance(x, Tensor):
            raise InvalidInputError(f"expected a torch.Tensor, got {type(x).__name__}")
        expected = (cfg.in_chans, cfg.img_size, cfg.img_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise DimensionMismatchError(
                f"ViT input has shape {tuple(x.shape)}, expected (batch, {expected[0]}, {expected[1]}, "
                f"{expected[2]}) (channels, height, width)"
            )
        if not x.is_floating_point():
            raise InvalidInputError(f"ViT input must be a floating-point tensor, got dtype {x.dtype}")
        want = self.pos_embed.device
        if x.device != want:  # one attribute compare: no per-parameter walk on the hot path
            raise DeviceMismatchError(
                f"ViT input is on {x.device} but the model is on {want}; move it with .to({str(want)!r}) "
                "or build the model with the same device"
            )

    def embed(self, x: Tensor) -> Tensor:
        """Patch-embed ``x`` and prepend the CLS token: ``(B, 1 + N, D)`` with position embeddings."""
        self.check_input(x)
        t = self.patch_embed(x)
        cls = self.cls_token.expand(t.shape[0], -1, -1)
        return torch.cat([cls, t], dim=1) + self.pos_embed

    def forward_features(self, x: Tensor, *, return_tokens: bool = False) -> ViTFeatures:
        """Run the blocks and return per-layer CLS tokens (and optionally all tokens per layer).

        Example:
            >>> import torch
            >>> m = ViT(ViTConfig(img_size=8, patch_size=4, in_chans=1, num_classes=2, embed_dim=8,
            ...                   depth=3, num_heads=2))
            >>> f = m.forward_features(torch.zeros(2, 1, 8, 8), return_tokens=True)
            >>> len(f.cls_per_layer), tuple(f.tokens.shape), len(f.tokens_per_layer)
            (3, (2, 5, 8), 3)
        """
        h = self.embed(x)
        cls_layers: list[Tensor] = []
        tok_layers: list[Tensor] = []
        for blk in self.blocks:
            h = blk(h)
            cls_layers.append(h[:, 0])
            if return_tokens:
                tok_layers.append(h)
        return ViTFeatures(self.norm(h), cls_layers, tok_layers)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, num_classes)`` from the final normalised CLS token."""
        return self.forward_tokens(self.embed(x))

    def forward_tokens(self, h: Tensor) -> Tensor:
        """Run the blocks and the head on already embedded tokens ``(B, 1 + n, D)`` (CLS first).

        Any subset of the patch tokens may be passed (patch dropout, pruning): nothing after the
        embedding depends on the token count.
        """
        for blk in self.blocks:
            h = blk(h)
        return self.head(self.norm(h[:, 0]))
