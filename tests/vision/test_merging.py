from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys.common.errors import InvalidInputError
from mlsys.vision import TokenMerging, ViT, bipartite_merge


def _naive_merge(
    x: torch.Tensor, size: torch.Tensor, metric: torch.Tensor, r: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loop-based bipartite soft matching for one sequence: the reference for the batched version."""
    t = x.shape[0]
    a_idx, b_idx = list(range(0, t, 2)), list(range(1, t, 2))
    m = metric / metric.norm(dim=-1, keepdim=True)
    best = []
    for i in a_idx:
        sims = [float(m[i] @ m[j]) for j in b_idx]
        j = max(range(len(b_idx)), key=lambda k: sims[k])
        best.append((float("-inf") if i == 0 else sims[j], i, b_idx[j]))
    r = min(r, len(a_idx) - 1, t // 2)
    if r <= 0:  # nothing to merge: the sequence is returned as it is
        return x, size
    chosen = sorted(best, key=lambda e: -e[0])[:r]
    merged = {i for _, i, _ in chosen}
    acc = {j: (x[j] * size[j], size[j].clone()) for j in b_idx}
    for _, i, j in chosen:
        acc[j] = (acc[j][0] + x[i] * size[i], acc[j][1] + size[i])
    xs, ss = [], []
    for i in a_idx:
        if i not in merged:
            xs.append(x[i])
            ss.append(size[i])
    for j in b_idx:
        xs.append(acc[j][0] / acc[j][1])
        ss.append(acc[j][1])
    return torch.stack(xs), torch.stack(ss)


@settings(max_examples=15, deadline=None)
@given(t=st.integers(3, 20), r=st.integers(0, 12), seed=st.integers(0, 10_000))
def test_matches_naive_reference_and_conserves_mass(t: int, r: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, t, 5, generator=g, dtype=torch.float64)
    size = torch.randint(1, 4, (2, t, 1), generator=g).double()
    metric = torch.randn(2, t, 3, generator=g, dtype=torch.float64)
    y, s = bipartite_merge(x, size, metric, r)
    for b in range(2):
        ry, rs = _naive_merge(x[b], size[b], metric[b], r)
        torch.testing.assert_close(y[b], ry)
        torch.testing.assert_close(s[b], rs)
    # size-weighted sums and total size are conserved; CLS stays first and untouched
    torch.testing.assert_close((y * s).sum(1), (x * size).sum(1))
    torch.testing.assert_close(s.sum(1), size.sum(1))
    torch.testing.assert_close(y[:, 0], x[:, 0])
    assert y.shape[1] == t - min(r, (t + 1) // 2 - 1, t // 2)


def test_r_zero_is_the_plain_vit(tiny_vit: ViT) -> None:
    x = torch.randn(3, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(TokenMerging(tiny_vit, 0)(x), tiny_vit(x), rtol=1e-5, atol=1e-6)


def test_token_counts_and_output(tiny_vit: ViT) -> None:
    tome = TokenMerging(tiny_vit, r=8)
    assert tome.tokens_per_block() == [57, 49, 41, 33, 25, 17]
    seen: list[int] = []
    for blk in tiny_vit.blocks:
        blk.mlp.register_forward_hook(lambda mod, inp, out: seen.append(out.shape[1]))
    with torch.no_grad():
        out = tome(torch.randn(2, 1, 16, 16))
    assert seen == tome.tokens_per_block()
    assert out.shape == (2, 5) and out.dtype == torch.float32
    # a per-block schedule; r larger than possible is capped, never below CLS + 1 token
    assert TokenMerging(tiny_vit, [0, 0, 40, 0, 0, 0]).tokens_per_block() == [65, 65, 33, 33, 33, 33]
    assert TokenMerging(tiny_vit, 64).tokens_per_block()[-1] >= 2


def test_small_r_changes_logits_little(tiny_vit: ViT) -> None:
    x = torch.randn(4, 1, 16, 16)
    with torch.no_grad():
        base = tiny_vit(x)
        err = [float((TokenMerging(tiny_vit, r)(x) - base).abs().mean()) for r in (1, 4, 16)]
    assert err[0] <= err[1] <= err[2]


def test_validation(tiny_vit: ViT) -> None:
    with pytest.raises(InvalidInputError, match="one int per block"):
        TokenMerging(tiny_vit, [1, 2])
    with pytest.raises(InvalidInputError):
        TokenMerging(tiny_vit, -1)
    with pytest.raises(InvalidInputError):
        TokenMerging(torch.nn.Linear(2, 2), 1)  # type: ignore[arg-type]
