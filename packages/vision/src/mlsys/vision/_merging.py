"""Training-free token merging (bipartite soft matching), after Bolya et al., "Token Merging: Your
ViT But Faster" (ICLR 2023). Written from the paper's description.

In every block, between attention and the MLP, ``r`` tokens are merged away:

1. the tokens are split alternately into two sets A (even positions) and B (odd positions);
2. each token of A is linked to its most similar token of B (cosine similarity of the attention
   keys, averaged over heads);
3. the ``r`` most similar links are merged: the A token is folded into its B partner by a
   size-weighted average (a token's size is the number of patches it stands for);
4. the remaining A tokens and all B tokens are kept, in their original order within each set.

Attention becomes *proportional*: ``softmax(q k^T / sqrt(d) + log(size))``, so a merged token
weighs as much as the patches it replaces. The CLS token (position 0, in A) is never merged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn

from mlsys.common.errors import InvalidInputError
from mlsys.vision._vit import Block, ViT

__all__ = ["TokenMerging", "bipartite_merge"]


def bipartite_merge(
    x: Tensor, size: Tensor | None, metric: Tensor, r: int, *, protect_first: bool = True
) -> tuple[Tensor, Tensor]:
    """Merge ``r`` tokens of ``x`` by bipartite soft matching.

    Args:
        x: tokens ``(B, T, D)``.
        size: patches per token ``(B, T, 1)``; ``None`` stands for all ones (nothing merged yet).
        metric: similarity features ``(B, T, C)`` (attention keys).
        r: tokens to remove; capped so that at least one A token (the CLS one when protected)
            survives.
        protect_first: never merge token 0 (CLS).

    Returns:
        ``(x', size')`` with ``T - r`` tokens; merged tokens are the size-weighted average of their
        members, and ``size'`` sums the members' sizes, so ``size'.sum() == size.sum()``.

    Example:
        >>> import torch
        >>> x = torch.tensor([[[0.0], [1.0], [1.0], [5.0]]])
        >>> y, s = bipartite_merge(x, torch.ones(1, 4, 1), torch.tensor([[[1.0, 0], [0, 1], [0, 1], [1, 0]]]), 1)
        >>> y.flatten().tolist(), s.flatten().tolist()
        ([0.0, 1.0, 5.0], [1.0, 2.0, 1.0])
    """
    y, s = _merge(x, size, metric, r, protect_first)
    return y, (torch.ones_like(x[..., :1]) if s is None else s)


def _merge(
    x: Tensor, size: Tensor | None, metric: Tensor, r: int, protect_first: bool
) -> tuple[Tensor, Tensor | None]:
    """:func:`bipartite_merge` for the forward: ``size`` stays ``None`` when nothing was merged."""
    b, t, _d = x.shape
    n_a = (t + 1) // 2
    r = min(r, n_a - 1 if protect_first else n_a, t // 2)
    if r <= 0:
        return x, size
    # Static shapes and no host synchronisation: every count below is a Python int from the shapes
    # (r, |A|, |B|), so the forward traces, compiles with fullgraph=True and captures as a CUDA graph.
    # The work per merge: normalise and compare (norm, clamp, divide, bmm), max, two sorts, the
    # partner gather, the size channel (mul or ones, cat), two gathers, a cat, one in-place
    # scatter-add and a division; index tensors are (B, n, 1) and only expanded (views).
    # Kernel counts before and after: benchmarks/vision/README.md, "On a GPU".
    p = 1 if protect_first else 0  # a protected CLS token takes no part in the matching (no -inf fill)
    dev = metric.device.type
    if torch.is_autocast_enabled(dev):
        # Under autocast the similarity is computed in fp32 from one cast of the keys: autocast
        # would otherwise round-trip (fp32 norm, then a bf16 cast of each half for the matmul),
        # and bf16 cosines tie often, so merges would differ from the fp32 model's more than needed.
        with torch.autocast(dev, enabled=False):
            sim = _similarity(metric.float(), p)
    else:
        sim = _similarity(metric, p)
    # keepdim: the indices come out as (B, n, 1), ready to expand over the channels (no reshapes)
    best, partner = sim.max(dim=-1, keepdim=True)  # for each candidate A token: its closest B token
    order = best.argsort(dim=1, descending=True)  # (not stable=True: ONNX cannot export it)
    merged = order[:, :r]  # candidates folded into B
    kept = order[:, r:].sort(dim=1).values  # the others, in their original order
    dst = partner.gather(1, merged)

    # The size rides along as one extra channel, so features and sizes move with one gather /
    # scatter each; before the first merge every size is 1 (x * 1 == x, nothing to multiply).
    if size is None:
        z = torch.cat([x, x.new_ones(b, t, 1)], dim=-1)  # (B, T, D + 1)
    else:
        z = torch.cat([x * size, size if size.dtype == x.dtype else size.to(x.dtype)], dim=-1)
    w = z.shape[-1]
    cand, b_z = z[:, 2 * p :: 2], z[:, 1::2]
    src = cand.gather(1, merged.expand(-1, -1, w))
    out = torch.cat([z[:, :p], cand.gather(1, kept.expand(-1, -1, w)), b_z], dim=1)
    # in place on this call's own tensor (no copy): cat saves nothing for its backward
    out[:, n_a - r :].scatter_add_(1, dst.expand(-1, -1, w), src)
    new_s = out[..., -1:]
    return out[..., :-1] / new_s, new_s


def _similarity(metric: Tensor, p: int) -> Tensor:
    """Cosine similarity ``(B, |A| - p, |B|)`` of the candidate A tokens (even positions from ``2p``)
    to the B tokens (odd positions)."""
    m = metric / metric.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    return torch.bmm(m[:, 2 * p :: 2], m[:, 1::2].transpose(1, 2))


class TokenMerging(nn.Module):
    """Run a trained :class:`ViT` with ToMe-style token merging; no training needed.

    Args:
        backbone: the ViT (shared, not copied; its weights are not modified).
        r: tokens merged away per block: an int for every block, or one int per block.
        proportional_attention: add ``log(size)`` to the attention logits (the paper's default).

    Example:
        >>> import torch
        >>> from mlsys.vision import ViT, ViTConfig
        >>> vit = ViT(ViTConfig(img_size=8, patch_size=2, in_chans=1, num_classes=3, embed_dim=16,
        ...                     depth=2, num_heads=2)).eval()
        >>> tome = TokenMerging(vit, r=4)
        >>> tome(torch.zeros(2, 1, 8, 8)).shape, tome.tokens_per_block()
        (torch.Size([2, 3]), [13, 9])
    """

    def __init__(self, backbone: ViT, r: int | Sequence[int], *, proportional_attention: bool = True) -> None:
        super().__init__()
        if not isinstance(backbone, ViT):
            raise InvalidInputError(f"backbone must be a ViT, got {type(backbone).__name__}")
        depth = backbone.config.depth
        sched = [r] * depth if isinstance(r, int) else list(r)
        if len(sched) != depth:
            raise InvalidInputError(
                f"r must be an int or one int per block ({depth}), got {len(sched)} values"
            )
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in sched):
            raise InvalidInputError(f"r must hold non-negative ints, got {sched}")
        self.backbone = backbone
        self.r = sched
        self.proportional_attention = proportional_attention

    def tokens_per_block(self) -> list[int]:
        """Tokens (including CLS) left after each block."""
        t = self.backbone.config.num_patches + 1
        out = []
        for r in self.r:
            n_a = (t + 1) // 2
            t -= max(0, min(r, n_a - 1, t // 2))
            out.append(t)
        return out

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, num_classes)``."""
        bb = self.backbone
        h = bb.embed(x)
        # size None: every token is one patch, so log(size) == 0 and no attention bias is needed
        # until the first merge (no ones tensor, no log, no bias; scaled-dot-product attention
        # without a mask keeps its fastest kernel)
        size: Tensor | None = None
        for module, r in zip(bb.blocks, self.r):
            blk = cast(Block, module)
            bias = None
            if self.proportional_attention and size is not None:
                bias = size.log().reshape(size.shape[0], 1, 1, -1)  # (B, 1, 1, T): per key
            a, keys = blk.attn(blk.norm1(h), attn_bias=bias, return_keys=r > 0)
            h = h + a
            if r > 0 and keys is not None:
                h, size = _merge(h, size, keys, r, True)
            h = h + blk.mlp(blk.norm2(h))
        return bb.head(bb.norm(h[:, 0]))
