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


def test_no_size_means_ones_and_cls_is_never_a_candidate() -> None:
    g = torch.Generator().manual_seed(0)
    x, metric = torch.randn(2, 11, 4, generator=g), torch.randn(2, 11, 3, generator=g)
    for r in (0, 1, 3, 5):
        y1, s1 = bipartite_merge(x, None, metric, r)
        y0, s0 = bipartite_merge(x, torch.ones(2, 11, 1), metric, r)
        assert torch.equal(y1, y0) and torch.equal(s1, s0)
    # positions 0 (CLS) 1B 2A 3B 4A 5B 6A; the B tokens are orthogonal, A 2 / 4 / 6 lean to B 1 / 3 / 5
    # with cosines 1 > 0.995 > 0.894; the CLS token, identical to B 1, is never merged
    e = torch.eye(3)
    m = torch.stack([e[0], e[0], e[0], e[1], e[1] + 0.1 * e[2], e[2], e[2] + 0.5 * e[0]])[None]
    x = torch.arange(7.0).reshape(1, 7, 1)
    y, s = bipartite_merge(x, None, m, 1)
    assert y.flatten().tolist() == [0.0, 4.0, 6.0, 1.5, 3.0, 5.0]
    assert s.flatten().tolist() == [1.0, 1.0, 1.0, 2.0, 1.0, 1.0]
    y, _ = bipartite_merge(x, None, m, 2)
    assert y.flatten().tolist() == [0.0, 6.0, 1.5, 3.5, 5.0]


def test_gradients_flow_through_the_merge(tiny_vit: ViT) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 9, 4, generator=g, requires_grad=True)
    size = torch.randint(1, 4, (2, 9, 1), generator=g).float()
    y, s = bipartite_merge(x, size, torch.randn(2, 9, 3, generator=g), 3)
    (y * s).sum().backward()  # sum of size-weighted tokens is conserved: d/dx = size
    assert x.grad is not None
    torch.testing.assert_close(x.grad, size.expand_as(x))
    img = torch.randn(2, 1, 16, 16, requires_grad=True)
    TokenMerging(tiny_vit, 6)(img).sum().backward()
    assert img.grad is not None and torch.isfinite(img.grad).all()


def test_similarity_is_fp32_under_autocast() -> None:
    """Under bf16 autocast the merge decisions are those of the fp32 similarity of the same keys."""
    g = torch.Generator().manual_seed(0)
    x, size = torch.randn(2, 197, 8, generator=g), torch.randint(1, 4, (2, 197, 1), generator=g).float()
    metric = torch.randn(2, 197, 64, generator=g).bfloat16()
    ref_y, ref_s = bipartite_merge(x, size, metric.float(), 60)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 cosines would tie and reorder here
        y, s = bipartite_merge(x, size, metric, 60)
    assert torch.equal(s, ref_s) and torch.equal(y, ref_y)


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
