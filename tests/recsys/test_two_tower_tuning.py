"""The data-driven two-tower: validation search, early stopping, report, cold-item offset, persistence."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from mlsys.common.errors import CorruptFileError, InvalidInputError
from mlsys.recsys import (
    FeatureTable,
    Interactions,
    TwoTowerConfig,
    TwoTowerModel,
    TwoTowerReport,
    validation_holdout,
)

SMALL = TwoTowerConfig(dim=16, feature_dim=8, hidden=32, epochs=2, batch_size=128, lr=1e-2, temperature=0.1)


@pytest.fixture(scope="module")
def tuned(synth):  # type: ignore[no-untyped-def]
    return TwoTowerModel(SMALL).fit(synth.interactions, items=synth.items, users=synth.users, progress=False)


def test_search_report_is_consistent_with_the_trained_model(tuned) -> None:  # type: ignore[no-untyped-def]
    r = tuned.report_
    assert r.tuned and r.start == {"temperature": 0.1, "lr": 1e-2, "epochs": 2, "distill": 0.0}
    # The start point without and with distillation, then the 2 other temperatures at the best
    # weight, then the 2 other learning rates at the best temperature.
    assert len(r.runs) == 6
    assert [(x["temperature"], x["lr"], x["distill"]) for x in r.runs[:2]] == [
        (0.1, 1e-2, 0.0),
        (0.1, 1e-2, 1.0),
    ]
    w = max(r.runs[:2], key=lambda x: x["best_ndcg@10"])["distill"]
    assert [x["temperature"] for x in r.runs[2:4]] == pytest.approx([0.05, 0.2])
    t = max((x for x in r.runs[:4] if x["distill"] == w), key=lambda x: x["best_ndcg@10"])["temperature"]
    assert [(x["temperature"], x["distill"]) for x in r.runs[2:]] == [(0.05, w), (0.2, w), (t, w), (t, w)]
    assert [x["lr"] for x in r.runs[4:]] == pytest.approx([5e-3, 2e-2])
    best = max(r.runs, key=lambda x: x["best_ndcg@10"])
    for run in r.runs:
        curve = run["curve"]
        assert 1 <= len(curve) <= 2 * SMALL.epochs and all(0.0 <= c <= 1.0 for c in curve)
        assert run["best_ndcg@10"] == max(curve) and curve[run["best_epoch"] - 1] == max(curve)
        stopped_early = len(curve) < 2 * SMALL.epochs
        if stopped_early:  # early stopping: `patience` epochs without a better score
            assert len(curve) - run["best_epoch"] >= SMALL.patience
    want = {"temperature": best["temperature"], "lr": best["lr"], "epochs": best["best_epoch"]}
    want["distill"] = best["distill"]
    search = r.teacher_l2_search
    assert search is not None and search["chosen"] == search["l2"][int(np.argmax(search["ndcg@10"]))]
    if best["distill"] > 0:
        want["distill_l2"] = search["chosen"]
    assert r.chosen == want and tuned.config.distill == best["distill"]
    assert tuned.config.temperature == best["temperature"] and tuned.config.epochs == best["best_epoch"]
    assert len(tuned.loss_history_) == best["best_epoch"]
    assert "validation carved from training" in r.validation and "trained items" in r.objective
    assert not r.budget_exhausted and r.total_seconds > 0


def test_search_is_reproducible(synth, tuned) -> None:  # type: ignore[no-untyped-def]
    again = TwoTowerModel(SMALL).fit(synth.interactions, items=synth.items, users=synth.users, progress=False)
    strip = [{k: v for k, v in x.items() if k != "seconds"} for x in again.report_.runs]
    assert strip == [{k: v for k, v in x.items() if k != "seconds"} for x in tuned.report_.runs]
    assert again.cold_offset_ == tuned.cold_offset_
    np.testing.assert_array_equal(again.encode_items(synth.items), tuned.encode_items(synth.items))


def test_hidden_grid_searches_the_tower_width(synth, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = replace(SMALL, item_id_embedding=False, item_bias=False, hidden_grid=(0,), tune_objective="cold")
    m = TwoTowerModel(cfg).fit(synth.interactions, items=synth.items, users=synth.users, progress=False)
    r = m.report_
    # Stage 1: each width with each distillation weight; later stages keep the best width.
    assert [(x["hidden"], x["distill"]) for x in r.runs[:4]] == [(32, 0.0), (32, 1.0), (0, 0.0), (0, 1.0)]
    best = max(r.runs, key=lambda x: x["best_ndcg@10"])
    stage1 = max(r.runs[:4], key=lambda x: x["best_ndcg@10"])
    assert all(x["hidden"] == stage1["hidden"] for x in r.runs[4:]) and len(r.runs) == 8
    assert r.start["hidden"] == 32 and r.chosen["hidden"] == best["hidden"] == m.config.hidden
    linear = [mod for mod in m.net_.item_mlp.modules() if isinstance(mod, torch.nn.Linear)]
    assert len(linear) == (1 if m.config.hidden == 0 else 2)
    m.save(tmp_path / "m")
    back = TwoTowerModel.load(tmp_path / "m")
    assert back.config.hidden == m.config.hidden and back.report_ == r
    np.testing.assert_array_equal(back.encode_items(synth.items), m.encode_items(synth.items))
    # Without a grid the report has no width entries (its shape is unchanged).
    assert (
        "hidden"
        not in TwoTowerModel(SMALL)
        .fit(synth.interactions, items=synth.items, users=synth.users, progress=False)
        .report_.chosen
    )


@pytest.mark.parametrize("bias", [False, True])
def test_members_average_the_scores_of_seeded_networks(synth, tmp_path, bias: bool) -> None:  # type: ignore[no-untyped-def]
    from mlsys.recsys import TwoTowerRetriever

    cfg = replace(SMALL, tune=False, item_bias=bias, members=3)
    m = TwoTowerModel(cfg).fit(synth.interactions, items=synth.items, users=synth.users, progress=False)
    users = np.unique(synth.interactions.users)[:7]
    q, v = m.encode_users(users), m.encode_items(synth.items)
    width = SMALL.dim + (1 if bias else 0)
    assert m.space.dim == 3 * width and q.shape == (7, 3 * width) and v.shape == (synth.items.n, 3 * width)
    # Each member is the single-network model with seed, seed + 1, seed + 2; the ensemble's inner
    # product is the mean of their scores.
    singles = [
        TwoTowerModel(replace(cfg, members=1, seed=SMALL.seed + k)).fit(
            synth.interactions, items=synth.items, users=synth.users, progress=False
        )
        for k in range(3)
    ]
    mean = np.mean([s.encode_users(users) @ s.encode_items(synth.items).T for s in singles], axis=0)
    np.testing.assert_allclose(q @ v.T, mean, rtol=1e-5, atol=1e-5)
    assert not np.allclose(singles[0].encode_items(synth.items), singles[1].encode_items(synth.items))
    if not bias:  # unit-norm members stay a unit-norm (cosine) space
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
        assert m.space.normalized
    # Served by the retriever through one index; save -> load gives the same vectors and space.
    ids, _ = TwoTowerRetriever(m, synth.items).recommend(users, 5)
    assert ids.shape == (7, 5)
    m.save(tmp_path / "m")
    back = TwoTowerModel.load(tmp_path / "m")
    np.testing.assert_array_equal(back.encode_items(synth.items), v)
    np.testing.assert_array_equal(back.encode_users(users), q)
    assert back.space == m.space and back.config.members == 3
    # A missing member file is refused with the member named.
    (tmp_path / "m" / "weights_member2.safetensors").unlink()
    with pytest.raises(CorruptFileError, match="weights_member2"):
        TwoTowerModel.load(tmp_path / "m")


def test_members_after_a_search_train_at_the_chosen_values(synth) -> None:  # type: ignore[no-untyped-def]
    m = TwoTowerModel(replace(SMALL, members=2)).fit(
        synth.interactions, items=synth.items, users=synth.users, progress=False
    )
    single = TwoTowerModel(SMALL).fit(
        synth.interactions, items=synth.items, users=synth.users, progress=False
    )
    assert m.report_.chosen == single.report_.chosen and len(m.extra_nets_) == 1
    # The first member is the single model; the second is trained at the same chosen values.
    v = m.encode_items(synth.items)
    w = SMALL.dim + 1
    np.testing.assert_allclose(v[:, :w], single.encode_items(synth.items), rtol=1e-6, atol=1e-6)
    other = TwoTowerModel(replace(single.config, tune=False, seed=SMALL.seed + 1)).fit(
        synth.interactions, items=synth.items, users=synth.users, progress=False
    )
    np.testing.assert_allclose(v[:, w:], other.encode_items(synth.items), rtol=1e-6, atol=1e-6)


def test_cold_offset_is_calibrated_and_applied_to_items_without_ids(synth, tuned) -> None:  # type: ignore[no-untyped-def]
    cal = tuned.report_.cold_calibration
    assert cal is not None and cal["validation_cold_items"] == 6  # floor(0.1 * 60)
    offsets, ndcg, share = np.array(cal["offsets"]), np.array(cal["ndcg@10"]), np.array(cal["cold_share@10"])
    assert np.all(np.diff(offsets) > 0) and share[0] == 0.0  # the lowest offset shows no cold item
    assert np.all(np.diff(share) >= 0)  # more offset, more cold exposure
    chosen = int(np.flatnonzero(offsets == cal["chosen_offset"])[0])
    # The chosen offset's loss against the best offset is within the tolerance at 95% confidence
    # (so also on average), and no larger offset's is.
    bound, top = np.array(cal["loss_upper_bound"]), int(np.argmax(ndcg))
    assert bound[top] == 0.0 and cal["best_ndcg@10"] == ndcg[top]
    assert bound[chosen] <= cal["tolerance"] * ndcg.max() or chosen == top
    assert ndcg[chosen] >= ndcg.max() - bound[chosen] - 1e-12
    assert not np.any((offsets > offsets[chosen]) & (bound <= cal["tolerance"] * ndcg.max()))
    assert tuned.cold_offset_ == cal["chosen_offset"]
    new = FeatureTable(synth.items.ids + 10_000, synth.items.columns, synth.items.specs)
    v_new = tuned.encode_items(new)
    v_feat = tuned.encode_items(synth.items, use_ids=False)
    np.testing.assert_array_equal(v_new, v_feat)
    warm = tuned.encode_items(synth.items)
    tuned_offset = tuned.cold_offset_
    try:  # the offset sits in the bias column only
        tuned.cold_offset_ = 0.0
        base = tuned.encode_items(new)
    finally:
        tuned.cold_offset_ = tuned_offset
    np.testing.assert_allclose(v_new[:, -1] - base[:, -1], tuned_offset, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(v_new[:, :-1], base[:, :-1])
    assert not np.allclose(warm, v_feat)


def test_save_load_keeps_report_and_offset(synth, tuned, tmp_path) -> None:  # type: ignore[no-untyped-def]
    tuned.save(tmp_path / "m")
    back = TwoTowerModel.load(tmp_path / "m")
    assert back.report_ == tuned.report_ and back.cold_offset_ == tuned.cold_offset_
    assert back.config == tuned.config and back.space == tuned.space
    new = FeatureTable(synth.items.ids + 10_000, synth.items.columns, synth.items.specs)
    np.testing.assert_array_equal(back.encode_items(new), tuned.encode_items(new))
    path = tmp_path / "m" / "manifest.json"
    good = json.loads(path.read_text())
    for bad in ({"cold_offset": "nan"}, {"cold_offset": float("inf")}, {"report": {"tuned": True}}):
        path.write_text(json.dumps({**good, **bad}))
        with pytest.raises(CorruptFileError):
            TwoTowerModel.load(tmp_path / "m")
    path.write_text(json.dumps({**good, "cold_offset": good["cold_offset"] + 1.0}))
    with pytest.raises(InvalidInputError):  # the space hash covers the offset: a changed offset is caught
        TwoTowerModel.load(tmp_path / "m")


def test_cold_objective_for_a_features_only_model(synth) -> None:  # type: ignore[no-untyped-def]
    cfg = replace(
        SMALL, item_id_embedding=False, item_bias=False, temperature_factors=(1.0,), lr_factors=(1.0,)
    )
    m = TwoTowerModel(cfg).fit(synth.interactions, items=synth.items, progress=False)
    assert "validation-cold items" in m.report_.objective and len(m.report_.runs) == 2  # + distill 1
    assert m.report_.cold_calibration is None and m.cold_offset_ == 0.0


def test_too_little_data_or_no_budget_trains_once_and_says_why(synth) -> None:  # type: ignore[no-untyped-def]
    tiny = TwoTowerModel(replace(SMALL, epochs=2)).fit(
        Interactions(users=[1, 2, 3], items=[100, 101, 102]), items=synth.items, progress=False
    )
    assert not tiny.report_.tuned and "not tuned" in tiny.report_.reason and len(tiny.loss_history_) == 2
    broke = TwoTowerModel(replace(SMALL, tune_budget_s=0.0)).fit(
        synth.interactions, items=synth.items, progress=False
    )
    assert not broke.report_.tuned and "budget" in broke.report_.reason
    off = TwoTowerModel(replace(SMALL, tune=False)).fit(synth.interactions, items=synth.items, progress=False)
    assert (
        not off.report_.tuned
        and off.report_.chosen == off.report_.start
        and off.config == replace(SMALL, tune=False)
    )


def test_the_search_never_sees_validation_pairs_in_training(synth, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Search runs train on the validation split's train part; the final model on everything."""
    import mlsys.recsys._two_tower as tt

    seen: list[int] = []
    real = tt._FitData.build

    def spy(train, items, users, weighted):  # type: ignore[no-untyped-def]
        seen.append(len(train))
        return real(train, items, users, weighted)

    monkeypatch.setattr(tt._FitData, "build", staticmethod(spy))
    TwoTowerModel(replace(SMALL, temperature_factors=(1.0,), lr_factors=(1.0,))).fit(
        synth.interactions, items=synth.items, progress=False
    )
    val = validation_holdout(synth.interactions, fraction=0.1, cold_fraction=0.1, seed=SMALL.seed)
    assert seen == [len(synth.interactions), len(val.train)]


@pytest.mark.parametrize(
    "bad",
    [
        {"negatives": "all"},
        {"tune": 1},
        {"validation_fraction": 0.0},
        {"validation_cold_fraction": 1.0},
        {"tune_objective": "best"},
        {"temperature_factors": ()},
        {"lr_factors": (1.0, -2.0)},
        {"temperature_factors": "12"},
        {"max_epochs": -1},
        {"patience": 0},
        {"tune_budget_s": float("nan")},
        {"cold_tolerance": -0.1},
        {"hidden_grid": (-1,)},
        {"hidden_grid": (True,)},
        {"hidden_grid": (0, 8, 16, 32, 64)},
        {"hidden_grid": 0},
        {"members": 0},
        {"members": 17},
        {"members": 2.0},
        {"members": True},
        {"distill": -1.0},
        {"distill": float("nan")},
        {"distill_l2": 0.0},
        {"distill_temperature": 0.0},
        {"distill_grid": (0.0, -1.0)},
        {"distill_grid": "01"},
        {"distill_l2_factors": ()},
        {"distill_l2_factors": (1.0, 0.0)},
    ],
)
def test_search_settings_are_validated(bad: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        TwoTowerConfig(**bad)  # type: ignore[arg-type]


def test_catalogue_negatives_train_deterministically(synth) -> None:  # type: ignore[no-untyped-def]
    cfg = replace(SMALL, negatives="catalogue", tune=False)
    a = TwoTowerModel(cfg).fit(synth.interactions, items=synth.items, users=synth.users, progress=False)
    b = TwoTowerModel(cfg).fit(synth.interactions, items=synth.items, users=synth.users, progress=False)
    assert a.loss_history_ == b.loss_history_ and a.loss_history_[-1] < a.loss_history_[0]
    # A full softmax over 60 items starts near log(60 - the user's other items).
    assert 2.5 < a.loss_history_[0] < np.log(60) + 0.5


def test_report_from_dict_refuses_wrong_keys() -> None:
    r = TwoTowerReport.untuned(SMALL, "x")
    assert TwoTowerReport.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    with pytest.raises(CorruptFileError):
        TwoTowerReport.from_dict({**r.to_dict(), "extra": 1})
    with pytest.raises(CorruptFileError):
        TwoTowerReport.from_dict([])  # type: ignore[arg-type]
    # A report saved before distillation existed (no teacher_l2_search) still loads.
    old = {k: v for k, v in r.to_dict().items() if k != "teacher_l2_search"}
    assert TwoTowerReport.from_dict(old) == r
    with pytest.raises(CorruptFileError):
        TwoTowerReport.from_dict({k: v for k, v in r.to_dict().items() if k != "runs"})
