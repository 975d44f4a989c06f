from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mlsys.common.errors import DimensionMismatchError, InvalidInputError
from mlsys.vision import (
    DynamicTokenPruning,
    PruningLoss,
    RandomCropFlip,
    TrainConfig,
    Trainer,
    ViT,
    ViTConfig,
    evaluate,
    images_to_tensor,
    load_model,
)


def _tiny() -> ViT:
    return ViT(
        ViTConfig(img_size=8, patch_size=2, in_chans=1, num_classes=2, embed_dim=16, depth=2, num_heads=2)
    )


def _toy_data(n: int = 96, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes: a bright top half or a bright bottom half."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 1, 8, 8, generator=g) * 0.3
    x[y == 0, :, :4] += 1.0
    x[y == 1, :, 4:] += 1.0
    return x, y


def test_images_to_tensor() -> None:
    u8 = np.array([[[0, 255]]], np.uint8)
    t = images_to_tensor(u8, 0.5, 0.25)
    assert t.shape == (1, 1, 1, 2) and t.dtype == torch.float32
    assert t.flatten().tolist() == pytest.approx([-2.0, 2.0])
    with pytest.raises(InvalidInputError):
        images_to_tensor(np.zeros((2, 2), np.float32), 0.5, 0.5)


def test_random_crop_flip() -> None:
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    assert torch.equal(RandomCropFlip(pad=0, flip=False)(x, torch.Generator()), x)
    flips = RandomCropFlip(pad=0, flip=True)
    outs = [flips(x, torch.Generator().manual_seed(s)) for s in range(8)]
    for o in outs:
        for i in range(2):
            assert torch.equal(o[i], x[i]) or torch.equal(o[i], x[i].flip(-1))
    crop = RandomCropFlip(pad=1, flip=False, fill=-7.0)
    a = crop(x, torch.Generator().manual_seed(3))
    b = crop(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == x.shape
    # every output is a 4x4 window of the padded image
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), value=-7.0)
    for i in range(2):
        windows = [padded[i, :, r : r + 4, c : c + 4] for r in range(3) for c in range(3)]
        assert any(torch.equal(a[i], w) for w in windows)
    with pytest.raises(InvalidInputError):
        RandomCropFlip(pad=-1)


def test_trainer_learns_and_is_seeded() -> None:
    x, y = _toy_data()
    cfg = TrainConfig(epochs=8, batch_size=16, lr=1e-2, warmup_steps=5, seed=1)
    torch.manual_seed(0)
    m1 = _tiny()
    before = evaluate(m1, x, y).loss
    h = Trainer(m1, cfg, augment=RandomCropFlip(pad=1, flip=False), progress=False).fit(x, y, x, y)
    after = evaluate(m1, x, y)
    assert after.loss < before and after.accuracy >= 0.9
    assert [e["epoch"] for e in h.epochs] == [
        float(i) for i in range(1, 9)
    ] and h.threads == torch.get_num_threads()
    torch.manual_seed(0)
    m2 = _tiny()
    Trainer(m2, cfg, augment=RandomCropFlip(pad=1, flip=False), progress=False).fit(x, y)
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))


def test_patch_dropout_trains_on_a_subset_of_tokens() -> None:
    x, y = _toy_data()
    m = _tiny()
    seen: list[int] = []
    m.blocks[0].register_forward_hook(lambda mod, inp, out: seen.append(out.shape[1]))
    Trainer(m, TrainConfig(epochs=1, batch_size=32, patch_dropout=0.5), progress=False).fit(x, y)
    assert set(seen) == {1 + 8}  # 16 patches -> 8 kept + CLS
    seen.clear()
    evaluate(m, x, y)
    assert set(seen) == {17}  # evaluation sees every token


def test_checkpoint_resume_equals_uninterrupted(tmp_path: Path) -> None:
    x, y = _toy_data()
    cfg2 = TrainConfig(epochs=2, batch_size=16, warmup_steps=3, seed=4)
    torch.manual_seed(0)
    ref = _tiny()
    Trainer(ref, cfg2, augment=RandomCropFlip(pad=1), progress=False).fit(x, y)

    torch.manual_seed(0)
    part = _tiny()
    t1 = Trainer(part, cfg2, augment=RandomCropFlip(pad=1), checkpoint_dir=tmp_path / "ck", progress=False)
    t1.fit(x, y, until_epoch=1)  # an interrupted job
    assert isinstance(load_model(tmp_path / "ck" / "model"), ViT)
    torch.manual_seed(123)  # a fresh process: different global RNG, different init
    resumed = _tiny()
    t2 = Trainer(resumed, cfg2, augment=RandomCropFlip(pad=1), checkpoint_dir=tmp_path / "ck", progress=False)
    h = t2.fit(x, y, resume=True)
    assert len(h.epochs) == 2
    for a, b in zip(ref.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_time_limit_stops_early() -> None:
    x, y = _toy_data()
    h = Trainer(_tiny(), TrainConfig(epochs=50, batch_size=8, time_limit_s=1e-6), progress=False).fit(x, y)
    assert h.stopped_early and len(h.epochs) == 1


def test_pruning_fine_tune_with_distillation() -> None:
    x, y = _toy_data()
    torch.manual_seed(0)
    teacher = _tiny()
    Trainer(teacher, TrainConfig(epochs=8, batch_size=16, lr=1e-2, warmup_steps=5), progress=False).fit(x, y)
    student = DynamicTokenPruning.from_vit(teacher, keep_ratio=0.7)
    loss = PruningLoss(teacher)
    Trainer(
        student, TrainConfig(epochs=2, batch_size=16, lr=1e-3, warmup_steps=2), loss_fn=loss, progress=False
    ).fit(x, y)
    assert not student.training  # fit leaves the model in eval mode: pruned inference
    assert evaluate(student, x, y).accuracy >= 0.85
    assert set(loss.last) == {"ce", "ratio", "kl", "token"}


def test_validation() -> None:
    x, y = _toy_data(8)
    with pytest.raises(InvalidInputError):
        TrainConfig(epochs=0)
    with pytest.raises(InvalidInputError):
        TrainConfig(patch_dropout=1.0)
    with pytest.raises(InvalidInputError):
        TrainConfig(lr=1e-3, min_lr=1e-2)
    t = Trainer(_tiny(), TrainConfig(epochs=1), progress=False)
    with pytest.raises(DimensionMismatchError):
        t.fit(x, y[:4])
    with pytest.raises(InvalidInputError):
        t.fit(x, y.int())
    with pytest.raises(InvalidInputError):
        t.fit(x, y, x_val=x)


def test_lr_scale_by_parameter_prefix() -> None:
    x, y = _toy_data(32)
    m = DynamicTokenPruning.from_vit(_tiny(), keep_ratio=0.7)
    loss = PruningLoss(_tiny())
    cfg = TrainConfig(epochs=1, batch_size=16, lr=1e-3, warmup_steps=0)
    t = Trainer(m, cfg, loss_fn=loss, progress=False, lr_scale={"scorers.": 10.0})
    t.fit(x, y)
    by_scale = {g["lr_scale"]: g["lr"] for g in t.optimizer.param_groups}
    assert set(by_scale) == {1.0, 10.0}
    assert by_scale[10.0] == pytest.approx(10.0 * by_scale[1.0])
    scorer_ids = {id(p) for p in m.scorers.parameters()}
    for g in t.optimizer.param_groups:
        assert all((id(p) in scorer_ids) == (g["lr_scale"] == 10.0) for p in g["params"])
    with pytest.raises(InvalidInputError):
        Trainer(m, cfg, lr_scale={"scorers.": 0.0})
