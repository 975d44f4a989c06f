"""Output and feature distillation: loss values, the teacher cache, training with the Trainer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mlsys.common.errors import CorruptFileError, DimensionMismatchError, InvalidInputError
from mlsys.vision import TrainConfig, Trainer, ViT, ViTConfig
from mlsys.vision.compress import (
    FeatureDistillation,
    MobileNetV3,
    MobileNetV3Config,
    OutputDistillation,
    TeacherCache,
    precompute_teacher,
)


def _teacher() -> ViT:
    torch.manual_seed(0)
    return ViT(
        ViTConfig(img_size=28, patch_size=7, in_chans=1, num_classes=10, embed_dim=16, depth=3, num_heads=2)
    ).eval()


def _student() -> MobileNetV3:
    torch.manual_seed(1)
    return MobileNetV3(MobileNetV3Config.fashion_mnist(width_mult=0.5))


def test_output_kd_values() -> None:
    torch.manual_seed(0)
    t, s = nn.Linear(6, 4), nn.Linear(6, 4)
    x, y = torch.randn(16, 6), torch.randint(0, 4, (16,))
    # alpha = 0: plain cross-entropy
    loss0, _ = OutputDistillation(t, alpha=0.0)(s, x, y)
    assert torch.allclose(loss0, F.cross_entropy(s(x), y))
    # alpha = 1: T^2 * KL(p_t || p_s) at temperature T
    temp = 3.0
    loss1, _ = OutputDistillation(t, alpha=1.0, temperature=temp)(s, x, y)
    p_t = F.softmax(t(x) / temp, -1)
    kl = (p_t * (p_t.log() - F.log_softmax(s(x) / temp, -1))).sum(-1).mean() * temp**2
    assert torch.allclose(loss1, kl, atol=1e-6)
    # a student equal to the teacher has zero KD term
    same, _ = OutputDistillation(t, alpha=1.0)(t, x, y)
    assert abs(float(same)) < 1e-6
    # the teacher is frozen
    assert not any(p.requires_grad for p in t.parameters())


@pytest.mark.parametrize(
    "kw",
    [{"temperature": 0.0}, {"alpha": 1.5}, {"alpha": True}, {"label_smoothing": -0.1}],
)
def test_output_kd_bad_arguments(kw: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        OutputDistillation(nn.Linear(2, 2), **kw)  # type: ignore[arg-type]


def test_needs_a_teacher_or_a_cache() -> None:
    with pytest.raises(InvalidInputError, match="teacher"):
        OutputDistillation()


def test_teacher_cache_values_round_trip_and_checks(tmp_path: Path) -> None:
    t = _teacher()
    x = torch.randn(20, 1, 28, 28)
    cache = precompute_teacher(t, x, blocks=(0, -1), batch_size=7, path=tmp_path / "c.safetensors")
    feats = t.forward_features(x)
    assert torch.allclose(cache.logits, t(x), atol=1e-5)
    assert sorted(cache.features) == [0, 2]
    assert torch.allclose(cache.features[2], feats.cls_per_layer[2], atol=1e-5)
    back = TeacherCache.load(tmp_path / "c.safetensors")
    assert torch.equal(back.logits, cache.logits) and back.fingerprint == cache.fingerprint
    back.check_data(x)
    with pytest.raises(InvalidInputError, match="fingerprint"):
        back.check_data(x + 1)
    with pytest.raises(DimensionMismatchError):
        back.check_data(x[:5])
    mean = precompute_teacher(t, x, blocks=(1,), pooling="mean")
    tok = t.forward_features(x, return_tokens=True).tokens_per_layer[1]
    assert torch.allclose(mean.features[1], tok[:, 1:].mean(1), atol=1e-5)
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00")
    with pytest.raises(CorruptFileError):
        TeacherCache.load(tmp_path / "bad.safetensors")
    with pytest.raises(InvalidInputError, match="block"):
        precompute_teacher(t, x, blocks=(3,))
    with pytest.raises(InvalidInputError, match="ViT"):
        precompute_teacher(nn.Linear(2, 2), x)


def test_cached_and_live_teacher_give_the_same_loss() -> None:
    t, s = _teacher(), _student().eval()
    x, y = torch.randn(12, 1, 28, 28), torch.randint(0, 10, (12,))
    cache = precompute_teacher(t, x, blocks=(0, 2))
    idx = torch.tensor([3, 7, 1, 0])
    live = FeatureDistillation(s, t, teacher_blocks=(0, 2), task_loss=OutputDistillation(t))
    cached = FeatureDistillation(
        s, cache=cache, teacher_blocks=(0, 2), task_loss=OutputDistillation(cache=cache)
    )
    cached.heads.load_state_dict(live.heads.state_dict())
    cached.on_batch(idx)
    a, _ = live(s, x[idx], y[idx])
    b, _ = cached(s, x[idx], y[idx])
    assert torch.allclose(a, b, atol=1e-5)
    fresh = OutputDistillation(cache=cache)
    with pytest.raises(InvalidInputError, match="indices"):
        fresh(s, x[:4], y[:4])


def test_feature_kd_bad_arguments() -> None:
    t, s = _teacher(), _student()
    with pytest.raises(InvalidInputError, match="pair"):
        FeatureDistillation(s, t, student_taps=(1,), teacher_blocks=(0, 1))
    with pytest.raises(InvalidInputError, match="tap"):
        FeatureDistillation(s, t, student_taps=(9,), teacher_blocks=(0,))
    with pytest.raises(InvalidInputError, match="block"):
        FeatureDistillation(s, t, student_taps=(1,), teacher_blocks=(7,))
    with pytest.raises(InvalidInputError, match="forward_features"):
        FeatureDistillation(nn.Linear(2, 2), t)
    cache = precompute_teacher(t, torch.randn(4, 1, 28, 28), blocks=(0,))
    with pytest.raises(InvalidInputError, match="no features"):
        FeatureDistillation(s, cache=cache, student_taps=(1,), teacher_blocks=(2,))


def test_trainer_trains_the_projection_heads_and_resumes_them(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    t, s = _teacher(), _student()
    x, y = torch.randn(48, 1, 28, 28), torch.randint(0, 10, (48,))
    cache = precompute_teacher(t, x, blocks=(1, 2))
    fd = FeatureDistillation(s, cache=cache, teacher_blocks=(1, 2), weight=2.0)
    before = [h.weight.detach().clone() for h in fd.heads]
    seen: list[torch.Tensor] = []
    orig = fd.on_batch
    fd.on_batch = lambda idx: (seen.append(idx), orig(idx))[1]  # type: ignore[method-assign]
    trainer = Trainer(
        s, TrainConfig(epochs=1, batch_size=16), loss_fn=fd, checkpoint_dir=tmp_path, progress=False
    )
    opt_params = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert all(id(p) in opt_params for p in fd.heads.parameters())
    assert not any(id(p) in opt_params for p in t.parameters())
    trainer.fit(x, y)
    assert sorted(torch.cat(seen).tolist()) == list(range(48))  # every row once, by index
    assert all(not torch.equal(b, h.weight) for b, h in zip(before, fd.heads, strict=True))
    # a new trainer resumes the heads from the checkpoint
    fd2 = FeatureDistillation(_student(), cache=cache, teacher_blocks=(1, 2))
    t2 = Trainer(
        _student(), TrainConfig(epochs=1, batch_size=16), loss_fn=fd2, checkpoint_dir=tmp_path, progress=False
    )
    assert t2.load_checkpoint()
    assert all(torch.equal(a.weight, b.weight) for a, b in zip(fd.heads, fd2.heads, strict=True))


def test_feature_kd_pulls_student_features_toward_the_teacher() -> None:
    """A few steps of feature-only matching (no task loss weight) reduce the feature loss."""
    torch.set_num_threads(1)
    t, s = _teacher(), _student()
    x = torch.randn(64, 1, 28, 28)
    fd = FeatureDistillation(s, t, teacher_blocks=(1, 2))
    opt = torch.optim.Adam(list(s.parameters()) + list(fd.heads.parameters()), lr=3e-3)
    s.eval()  # BN statistics fixed: the loss is comparable between steps

    def feat_loss() -> float:
        with torch.no_grad():
            out = s.forward_features(x, taps=fd.student_taps)
            return float(
                fd.feature_loss(out.features, {b: t.forward_features(x).cls_per_layer[b] for b in (1, 2)})
            )

    start = feat_loss()
    for _ in range(30):
        out = s.forward_features(x, taps=fd.student_taps)
        loss = fd.feature_loss(out.features, {b: t.forward_features(x).cls_per_layer[b] for b in (1, 2)})
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert feat_loss() < 0.7 * start
