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
    x: Tensor, size: Tensor, metric: Tensor, r: int, *, protect_first: bool = True
) -> tuple[Tensor, Tensor]:
    """Merge ``r`` tokens of ``x`` by bipartite soft matching.

    Args:
        x: tokens ``(B, T, D)``.
        size: patches per token ``(B, T, 1)`` (ones at the start).
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
    _b, t, _d = x.shape
    n_a = (t + 1) // 2
    r = min(r, n_a - 1 if protect_first else n_a, t // 2)
    if r <= 0:
        return x, size
    # Static shapes and no host synchronisation: every count below is a Python int from the shapes
    # (r, |A|, |B|), so the forward traces, compiles with fullgraph=True and captures as a CUDA graph.
    m = metric / metric.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    sim = m[:, ::2] @ m[:, 1::2].transpose(1, 2)  # (B, |A|, |B|)
    if protect_first:
        sim[:, 0, :] = float("-inf")
    best, partner = sim.max(dim=-1)  # for each A token: its closest B token
    order = best.argsort(dim=-1, descending=True)
    merged_a = order[:, :r]  # A tokens folded into B
    kept_a = order[:, r:].sort(dim=-1).values  # keep original order (CLS stays first)
    dst = torch.gather(partner, 1, merged_a)

    # The size rides along as one extra channel, so features and sizes move with one gather /
    # scatter each (half the kernels of moving them separately); the arithmetic is unchanged.
    z = torch.cat([x * size, size.to(x.dtype)], dim=-1)  # (B, T, D + 1)
    a_z, b_z = z[:, ::2], z[:, 1::2]
    w = z.shape[-1]
    b_z = b_z.scatter_add(
        1, dst[..., None].expand(-1, -1, w), torch.gather(a_z, 1, merged_a[..., None].expand(-1, -1, w))
    )
    out = torch.cat([torch.gather(a_z, 1, kept_a[..., None].expand(-1, -1, w)), b_z], dim=1)
    new_s = out[..., -1:]
    return out[..., :-1] / new_s, new_s.to(size.dtype)


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
        size = torch.ones(h.shape[0], h.shape[1], 1, dtype=h.dtype, device=h.device)
        for module, r in zip(bb.blocks, self.r):
            blk = cast(Block, module)
            bias = size.log().transpose(1, 2)[:, None] if self.proportional_attention else None
            a, keys = blk.attn(blk.norm1(h), attn_bias=bias, return_keys=r > 0)
            h = h + a
            if r > 0 and keys is not None:
                h, size = bipartite_merge(h, size, keys, r)
            h = h + blk.mlp(blk.norm2(h))
        return bb.head(bb.norm(h[:, 0]))
