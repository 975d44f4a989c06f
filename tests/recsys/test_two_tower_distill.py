"""Distillation of the two-tower from an EASE teacher: the loss, the teacher, the search, the limits."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

import mlsys.recsys._two_tower as tt
from mlsys.common.errors import InvalidInputError
from mlsys.recsys import EASE, TwoTowerConfig, TwoTowerModel
from mlsys.recsys._baselines import ease_weights

SMALL = TwoTowerConfig(
    dim=16, feature_dim=8, hidden=32, epochs=4, batch_size=128, lr=1e-2, temperature=0.1, tune=False
)


def _data(synth):  # type: ignore[no-untyped-def]
    return tt._FitData.build(synth.interactions, synth.items, synth.users, False)


def test_teacher_is_a_softmax_of_per_user_z_scored_ease_over_unseen_items(synth) -> None:  # type: ignore[no-untyped-def]
    data = _data(synth)
    teacher = tt._Teacher(data.hist, ease_weights(data.hist, 30.0), 0.5)
    rows = np.arange(data.hist.shape[0])
    log_t, seen = teacher.log_probs(data.hist, rows)
    assert teacher.table is not None  # small: precomputed once
    direct, seen2 = teacher._compute(data.hist, rows)
    torch.testing.assert_close(log_t, direct)
    assert torch.equal(seen, seen2) and torch.equal(seen, torch.from_numpy(data.hist.toarray() > 0))
    p = log_t.exp().numpy().astype(np.float64)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    assert (p[seen.numpy()] == 0).all()
    # By hand: EASE scores of the user's row, z-scored over unseen items, / 0.5, softmax.
    b = ease_weights(data.hist, 30.0)
    for r in (0, 7, 41):
        x = data.hist[r].toarray().ravel()
        s = (x @ b).astype(np.float64)
        unseen = x == 0
        z = (s - s[unseen].mean()) / s[unseen].std() / 0.5
        want = np.exp(z[unseen] - z[unseen].max())
        np.testing.assert_allclose(p[r, unseen], want / want.sum(), rtol=2e-4, atol=1e-7)


def test_distillation_loss_is_the_kl_from_teacher_to_student(synth) -> None:  # type: ignore[no-untyped-def]
    cfg = replace(SMALL, distill=1.0, distill_l2=20.0)
    data = _data(synth)
    torch.manual_seed(0)
    net = tt._TwoTowerNet(cfg, data.users.specs, data.items.specs, len(data.user_vocab), len(data.item_vocab))
    net.eval()
    opt = torch.optim.Adam(net.parameters())
    est = tt.StaticFrequencyEstimator(data.counts)
    step = tt._Step(
        cfg, net, opt, est, data, np.random.default_rng(0), torch.Generator(), torch.device("cpu")
    )
    bu = np.array([0, 3, 3, 10])
    feats = tt._feature_tensors(data.users, data.user_rows[bu])
    hidx, hoff, hw = tt._history_bags(data.hist, bu, None, 0.0, None)
    u = net.user_tower(feats, torch.from_numpy(bu + 1), hidx, hoff, hw)
    got = float(step._distill_loss(u, bu).detach())
    with torch.no_grad():
        v, bias = net.item_tower(
            tt._feature_tensors(data.items, data.item_rows), torch.arange(1, data.hist.shape[1] + 1)
        )
        logits = (u @ v.T / cfg.temperature + bias[None, :]).double().numpy()
    log_t, seen = step.teacher.log_probs(data.hist, bu)  # type: ignore[union-attr]
    pt, seen_np = log_t.exp().double().numpy(), seen.numpy()
    kls = []
    for i in range(bu.shape[0]):
        keep = ~seen_np[i]
        ls = logits[i, keep] - logits[i, keep].max()
        ls = ls - np.log(np.exp(ls).sum())
        q = pt[i, keep]
        kls.append(float(np.sum(np.where(q > 0, q * (np.log(np.where(q > 0, q, 1.0)) - ls), 0.0))))
    assert got == pytest.approx(np.mean(kls), rel=1e-4)
    assert got > 0


def _agreement(model: TwoTowerModel, synth, k: int = 10) -> float:  # type: ignore[no-untyped-def]
    """Mean top-k overlap between the model's and EASE's rankings of unseen items."""
    ease = EASE(l2=20.0).fit(synth.interactions)
    users = np.unique(synth.interactions.users)
    ours = model.encode_users(users) @ model.encode_items(synth.items.rows(ease.item_index_.ids)).T
    theirs = ease.score(users)
    seen = ease.seen_[ease.user_index_.positions(users)].toarray() > 0
    ours[seen], theirs[seen] = -np.inf, -np.inf
    a = np.argsort(-ours, axis=1)[:, :k]
    b = np.argsort(-theirs, axis=1)[:, :k]
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(a, b, strict=True)]))


def test_distillation_pulls_the_two_tower_towards_its_teacher(synth) -> None:  # type: ignore[no-untyped-def]
    plain = TwoTowerModel(SMALL).fit(synth.interactions, items=synth.items, users=synth.users, progress=False)
    cfg = replace(SMALL, distill=5.0, distill_l2=20.0)
    taught = TwoTowerModel(cfg).fit(synth.interactions, items=synth.items, users=synth.users, progress=False)
    again = TwoTowerModel(cfg).fit(synth.interactions, items=synth.items, users=synth.users, progress=False)
    assert taught.loss_history_ == again.loss_history_  # deterministic
    assert _agreement(taught, synth) > _agreement(plain, synth) + 0.03  # 0.83 vs 0.77


def test_default_teacher_l2_follows_the_data(synth) -> None:  # type: ignore[no-untyped-def]
    data = _data(synth)
    assert tt.default_distill_l2(data.hist) == pytest.approx(10 * data.hist.nnz / data.hist.shape[1])
    assert tt.default_distill_l2(data.hist, 3.0) == pytest.approx(3 * data.hist.nnz / data.hist.shape[1])


def test_too_many_items_for_the_teacher(synth, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(tt, "DISTILL_MAX_ITEMS", 10)
    model = TwoTowerModel(replace(SMALL, distill=1.0))
    with pytest.raises(InvalidInputError, match="DISTILL_MAX_ITEMS"):
        model.fit(synth.interactions, items=synth.items, progress=False)
    assert not hasattr(model, "net_") and model.config.distill == 1.0  # a failed fit leaves it as it was
    # The search skips the distillation runs and says so.
    cfg = replace(SMALL, tune=True, epochs=1, temperature_factors=(1.0,), lr_factors=(1.0,))
    m = TwoTowerModel(cfg).fit(synth.interactions, items=synth.items, progress=False)
    assert [r["distill"] for r in m.report_.runs] == [0.0] and "no distillation" in m.report_.reason
    assert m.report_.teacher_l2_search is None and m.config.distill == 0.0


def test_search_with_a_fixed_teacher_l2_and_no_grid(synth) -> None:  # type: ignore[no-untyped-def]
    base = replace(SMALL, tune=True, epochs=1, temperature_factors=(1.0,), lr_factors=(1.0,))
    fixed = TwoTowerModel(replace(base, distill_l2=25.0)).fit(
        synth.interactions, items=synth.items, progress=False
    )
    assert fixed.report_.teacher_l2_search is None  # given, not searched
    assert [r["distill"] for r in fixed.report_.runs] == [0.0, 1.0]
    assert fixed.config.distill_l2 == 25.0
    none = TwoTowerModel(replace(base, distill_grid=())).fit(
        synth.interactions, items=synth.items, progress=False
    )
    assert len(none.report_.runs) == 1 and none.report_.teacher_l2_search is None
