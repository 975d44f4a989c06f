from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys.common.errors import InvalidInputError
from mlsys.vision import (
    DynamicTokenPruning,
    PruningConfig,
    PruningLoss,
    ViT,
    ViTConfig,
    default_prune_after,
)


def _gather_tokens(tokens: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return torch.gather(tokens[:, 1:], 1, idx[..., None].expand(-1, -1, tokens.shape[-1]))


def test_default_schedule_and_counts() -> None:
    assert default_prune_after(12) == (3, 6, 9)
    assert default_prune_after(6) == (1, 3, 4)
    assert default_prune_after(2) == (1,)
    cfg = PruningConfig(ViTConfig.vit_small_patch16_224(), keep_ratio=0.7)
    assert cfg.keep_ratios == pytest.approx((0.7, 0.49, 0.343))
    assert cfg.keep_counts == (137, 96, 67)


@pytest.mark.parametrize(
    "kw",
    [
        {"keep_ratio": 0.0},
        {"keep_ratio": 1.5},
        {"prune_after": (3, 2)},
        {"prune_after": (0,)},
        {"prune_after": (6,)},  # must leave at least one block after the last stage
        {"prune_after": ()},
        {"mode": "random"},
        {"threshold": 1.0},
    ],
)
def test_config_validation(kw: dict[str, object], tiny_config: Callable[..., ViTConfig]) -> None:
    with pytest.raises(InvalidInputError):
        PruningConfig(tiny_config(), **kw)  # type: ignore[arg-type]


def test_config_round_trip(tiny_config: Callable[..., ViTConfig]) -> None:
    cfg = PruningConfig(tiny_config(), keep_ratio=0.5, prune_after=(2, 4), mode="threshold", threshold=0.3)
    assert PruningConfig.from_dict(cfg.to_dict()) == cfg


def test_pruned_inference_equals_masked_forward(tiny_vit: ViT) -> None:
    torch.manual_seed(1)
    m = DynamicTokenPruning.from_vit(tiny_vit, keep_ratio=0.7).eval()
    x = torch.randn(5, 1, 16, 16)
    with torch.no_grad():
        masked = m.forward_masked(x)  # eval mode: deterministic top-k decisions
        pruned = m.forward_pruned(x)
    torch.testing.assert_close(pruned.logits, masked.logits, rtol=1e-5, atol=1e-5)
    # same keep decisions ...
    for pol, idx in zip(masked.policies, pruned.kept_indices):
        assert torch.equal(pol.nonzero()[:, 1].view(idx.shape), idx)
    # ... and the kept tokens carry the same features (CLS included)
    torch.testing.assert_close(pruned.tokens[:, 0], masked.tokens[:, 0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        pruned.tokens[:, 1:], _gather_tokens(masked.tokens, pruned.kept_indices[-1]), rtol=1e-5, atol=1e-5
    )


@settings(max_examples=12, deadline=None)
@given(
    depth=st.integers(2, 5),
    keep=st.floats(0.2, 1.0),
    batch=st.integers(1, 3),
    seed=st.integers(0, 1000),
)
def test_equivalence_property(depth: int, keep: float, batch: int, seed: int) -> None:
    torch.manual_seed(seed)
    vit = ViT(
        ViTConfig(img_size=8, patch_size=2, in_chans=2, num_classes=3, embed_dim=16, depth=depth, num_heads=2)
    )
    m = DynamicTokenPruning.from_vit(vit, keep_ratio=keep).eval()
    x = torch.randn(batch, 2, 8, 8)
    with torch.no_grad():
        masked, pruned = m.forward_masked(x), m.forward_pruned(x)
    torch.testing.assert_close(pruned.logits, masked.logits, rtol=1e-4, atol=1e-5)
    for count, idx in zip(m.config.keep_counts, pruned.kept_indices):
        assert idx.shape == (batch, count)
        assert bool((idx[:, 1:] > idx[:, :-1]).all())  # ascending, distinct


def test_keep_ratios_honoured_in_both_forwards(tiny_vit: ViT) -> None:
    m = DynamicTokenPruning.from_vit(tiny_vit, keep_ratio=0.5).eval()
    x = torch.randn(3, 1, 16, 16)
    with torch.no_grad():
        masked, pruned = m.forward_masked(x), m.forward_pruned(x)
    assert m.config.keep_counts == (32, 16, 8)
    for count, pol, idx in zip(m.config.keep_counts, masked.policies, pruned.kept_indices):
        assert pol.sum(dim=1).tolist() == [count] * 3
        assert idx.shape == (3, count)
    assert pruned.tokens.shape == (3, 1 + 8, 32)
    assert pruned.logits.dtype == torch.float32


def test_training_mode_policies_are_cumulative_and_differentiable(tiny_vit: ViT) -> None:
    m = DynamicTokenPruning.from_vit(tiny_vit, keep_ratio=0.7).train()
    torch.manual_seed(0)
    out = m.forward_masked(torch.randn(4, 1, 16, 16))
    assert out.tokens.shape == (4, 65, 32)  # fixed shapes
    prev = torch.ones(4, 64)
    for pol in out.policies:
        assert set(pol.unique().tolist()) <= {0.0, 1.0}
        assert bool((pol <= prev).all())  # a dropped token stays dropped
        prev = pol
    out.logits.sum().backward()
    grads = [p.grad for p in m.scorers.parameters()]
    assert all(g is not None for g in grads) and any(float(g.abs().sum()) > 0 for g in grads if g is not None)


def test_gumbel_determinism_under_manual_seed(tiny_vit: ViT) -> None:
    m = DynamicTokenPruning.from_vit(tiny_vit).train()
    x = torch.randn(2, 1, 16, 16)
    torch.manual_seed(7)
    a = m.forward_masked(x)
    torch.manual_seed(7)
    b = m.forward_masked(x)
    assert torch.equal(a.logits, b.logits)
    assert all(torch.equal(p, q) for p, q in zip(a.policies, b.policies))


def test_threshold_mode(tiny_vit: ViT) -> None:
    m = DynamicTokenPruning.from_vit(tiny_vit, mode="threshold", threshold=0.5).eval()
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        out = m.forward_pruned(x)
        sizes = [idx.shape[1] for idx in out.kept_indices]
        assert all(1 <= s <= 64 for s in sizes) and sizes == sorted(sizes, reverse=True)
        assert out.tokens.shape == (1, 1 + sizes[-1], 32)
    with pytest.raises(InvalidInputError, match="batch size 1"):
        m.forward_pruned(torch.randn(2, 1, 16, 16))


def test_threshold_extremes_match_keep_all_and_keep_one(tiny_vit: ViT) -> None:
    x = torch.randn(1, 1, 16, 16)
    low = DynamicTokenPruning.from_vit(tiny_vit, mode="threshold", threshold=1e-9).eval()
    with torch.no_grad():
        out = low.forward_pruned(x)
        assert [i.shape[1] for i in out.kept_indices] == [64, 64, 64]
        torch.testing.assert_close(out.logits, tiny_vit(x), rtol=1e-5, atol=1e-5)  # nothing pruned
    high = DynamicTokenPruning.from_vit(tiny_vit, mode="threshold", threshold=1 - 1e-9).eval()
    with torch.no_grad():
        assert [i.shape[1] for i in high.forward_pruned(x).kept_indices] == [1, 1, 1]


def test_keep_ratio_one_is_the_backbone(tiny_vit: ViT) -> None:
    m = DynamicTokenPruning.from_vit(tiny_vit, keep_ratio=1.0).eval()
    x = torch.randn(3, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(m(x), tiny_vit(x), rtol=1e-5, atol=1e-5)


def test_from_vit_copies_by_default(tiny_vit: ViT) -> None:
    m = DynamicTokenPruning.from_vit(tiny_vit)
    with torch.no_grad():
        m.backbone.head.bias.add_(1.0)
    assert not torch.equal(m.backbone.head.bias, tiny_vit.head.bias)
    with pytest.raises(InvalidInputError, match="does not match"):
        DynamicTokenPruning(PruningConfig(ViTConfig.vit_small_patch16_224()), tiny_vit)


def test_pruning_loss_terms_and_teacher_frozen(tiny_vit: ViT) -> None:
    teacher_state = {k: v.clone() for k, v in tiny_vit.state_dict().items()}
    student = DynamicTokenPruning.from_vit(tiny_vit, keep_ratio=0.7).train()
    loss_fn = PruningLoss(tiny_vit, ratio_weight=2.0, distill_weight=0.5, token_weight=0.5)
    torch.manual_seed(0)
    x, y = torch.randn(4, 1, 16, 16), torch.tensor([0, 1, 2, 3])
    loss, logits = loss_fn(student, x, y)
    assert logits.shape == (4, 5)
    assert set(loss_fn.last) == {"ce", "ratio", "kl", "token"}
    expected = (
        loss_fn.last["ce"]
        + 2.0 * loss_fn.last["ratio"]
        + 0.5 * loss_fn.last["kl"]
        + 0.5 * loss_fn.last["token"]
    )
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert all(p.grad is None for p in tiny_vit.parameters())
    assert all(torch.equal(v, tiny_vit.state_dict()[k]) for k, v in teacher_state.items())
    with pytest.raises(InvalidInputError):
        PruningLoss(tiny_vit, ratio_weight=-1.0)
    with pytest.raises(InvalidInputError):
        loss_fn(tiny_vit, x, y)


def test_ratio_loss_is_zero_at_target(tiny_vit: ViT) -> None:
    # With the identity student (a copy of the teacher, keep ratio 1) and weight on ratio only,
    # KL and token terms vanish when nothing is dropped in eval-like decisions.
    student = DynamicTokenPruning.from_vit(tiny_vit, keep_ratio=1.0).eval()
    loss_fn = PruningLoss(tiny_vit)
    x, y = torch.randn(2, 1, 16, 16), torch.tensor([0, 1])
    with torch.no_grad():
        loss_fn(student, x, y)
    assert loss_fn.last["ratio"] == pytest.approx(0.0)
    assert loss_fn.last["kl"] == pytest.approx(0.0, abs=1e-5)
    assert loss_fn.last["token"] == pytest.approx(0.0, abs=1e-8)


def test_scorer_starts_at_the_target_keep_rate(tiny_vit: ViT) -> None:
    m = DynamicTokenPruning.from_vit(tiny_vit, keep_ratio=0.7).train()
    torch.manual_seed(0)
    out = m.forward_masked(torch.randn(64, 1, 16, 16))
    kept = [float(p.mean()) for p in out.policies]
    assert kept == pytest.approx([0.7, 0.49, 0.343], abs=0.06)
