"""Two-tower model: loss semantics, logQ sign, estimators, determinism, cold items, persistence, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mlsys.common.errors import (
    CorruptFileError,
    EmptyIndexError,
    FormatVersionError,
    InvalidInputError,
    NotFittedError,
    UnknownIdError,
)
from mlsys.recsys import (
    FeatureSpec,
    FeatureTable,
    Interactions,
    StaticFrequencyEstimator,
    StreamingFrequencyEstimator,
    TwoTowerConfig,
    TwoTowerModel,
    evaluate_recommender,
    in_batch_softmax_loss,
    random_holdout,
)
from mlsys.recsys import TwoTowerRetriever as Retriever

FAST = {"dim": 16, "feature_dim": 8, "hidden": 32, "epochs": 3, "batch_size": 128, "lr": 1e-2, "tune": False}


def test_loss_logq_sign_and_accidental_hits() -> None:
    g = torch.Generator().manual_seed(0)
    u = torch.nn.functional.normalize(torch.randn(4, 3, generator=g), dim=1)
    v = torch.nn.functional.normalize(torch.randn(4, 3, generator=g), dim=1)
    items = torch.tensor([7, 8, 7, 9])
    log_q = torch.log(torch.tensor([0.5, 0.1, 0.5, 0.2]))
    t = 0.1
    logits = u @ v.T / t
    # Correct sign: logit - log q; accidental hit: column 2 is item 7 again, so not a negative of row 0 (and vice versa).
    corrected = logits - log_q[None, :]
    expected = []
    for i in range(4):
        cols = [j for j in range(4) if j == i or items[j] != items[i]]
        row = corrected[i, cols]
        expected.append(-(row[cols.index(i)] - torch.logsumexp(row, 0)))
    got = in_batch_softmax_loss(u, v, items, temperature=t, log_q=log_q, logq="subtract")
    assert float(got) == pytest.approx(float(torch.stack(expected).mean()), rel=1e-5)
    wrong = in_batch_softmax_loss(u, v, items, temperature=t, log_q=log_q, logq="add")
    manual_wrong = in_batch_softmax_loss(u, v, items, temperature=t, log_q=-log_q, logq="subtract")
    assert float(wrong) == pytest.approx(float(manual_wrong), rel=1e-6)
    unmasked = in_batch_softmax_loss(u, v, items, temperature=t, mask_accidental_hits=False)
    plain = torch.nn.functional.cross_entropy(logits, torch.arange(4))
    assert float(unmasked) == pytest.approx(float(plain), rel=1e-6)


def test_static_estimator_and_streaming_tracks_frequencies() -> None:
    counts = np.array([6.0, 3.0, 1.0, 0.0])
    est = StaticFrequencyEstimator(counts)
    np.testing.assert_allclose(np.exp(est.log_prob(np.arange(3))), [0.6, 0.3, 0.1])
    with pytest.raises(InvalidInputError):
        StaticFrequencyEstimator(np.array([-1.0]))
    rng = np.random.default_rng(0)
    p = 1.0 / np.arange(1, 201) ** 1.1
    p /= p.sum()
    stream = StreamingFrequencyEstimator(n_buckets=4096, alpha=0.05, seed=1)
    for _ in range(3000):
        stream.update(rng.choice(200, size=16, p=p))
    est_lp = stream.log_prob(np.arange(30))
    # Rank correlation with the true frequencies of the 30 most frequent items.
    ranks = np.argsort(np.argsort(-est_lp))
    assert np.corrcoef(ranks, np.arange(30))[0, 1] > 0.9
    # 1/gap approximates the probability an item appears in a batch of 16.
    appear = 1 - (1 - p[:5]) ** 16
    np.testing.assert_allclose(np.exp(est_lp[:5]), appear, rtol=0.35)
    with pytest.raises(InvalidInputError):
        StreamingFrequencyEstimator(alpha=0.0)


@pytest.mark.parametrize(
    "bad",
    [
        {"dim": 0},
        {"temperature": 0.0},
        {"logq": "minus"},
        {"item_id_dropout": 1.0},
        {"frequency": "x"},
        {"hidden": -1},
    ],
)
def test_config_validation(bad: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        TwoTowerConfig(**bad)  # type: ignore[arg-type]


def test_seeded_training_is_deterministic(synth) -> None:  # type: ignore[no-untyped-def]
    cfg = TwoTowerConfig(**FAST, seed=3)
    torch.manual_seed(123)
    a = TwoTowerModel(cfg).fit(synth.interactions, items=synth.items, users=synth.users, progress=False)
    torch.manual_seed(999)  # global state must not matter
    b = TwoTowerModel(cfg).fit(synth.interactions, items=synth.items, users=synth.users, progress=False)
    c = TwoTowerModel(TwoTowerConfig(**FAST, seed=4)).fit(
        synth.interactions, items=synth.items, users=synth.users, progress=False
    )
    assert np.array_equal(a.encode_items(synth.items), b.encode_items(synth.items))
    assert np.array_equal(a.encode_users([1, 2]), b.encode_users([1, 2]))
    assert a.space == b.space and a.space != c.space
    assert not np.allclose(a.encode_items(synth.items), c.encode_items(synth.items))
    vecs = a.encode_items(synth.items)
    assert vecs.dtype == np.float32 and vecs.flags.c_contiguous and vecs.shape[1] == a.space.dim == 17
    np.testing.assert_allclose(np.linalg.norm(vecs[:, :16], axis=1), 1.0, rtol=1e-5)  # [v, bias]
    q = a.encode_users([1, 2])
    np.testing.assert_allclose(q[:, 16], 1.0)
    np.testing.assert_allclose(np.linalg.norm(q[:, :16], axis=1), 1 / cfg.temperature, rtol=1e-5)
    nb = TwoTowerModel(TwoTowerConfig(**FAST, item_bias=False)).fit(
        synth.interactions, items=synth.items, progress=False
    )
    assert nb.space.dim == 16 and nb.space.normalized
    np.testing.assert_allclose(np.linalg.norm(nb.encode_items(synth.items), axis=1), 1.0, rtol=1e-5)
    assert a.loss_history_[-1] < a.loss_history_[0]


def test_streaming_estimator_trains(synth) -> None:  # type: ignore[no-untyped-def]
    m = TwoTowerModel(TwoTowerConfig(**FAST, frequency="streaming")).fit(
        synth.interactions, items=synth.items, progress=False
    )
    assert np.isfinite(m.loss_history_).all() and m.loss_history_[-1] < m.loss_history_[0]


def test_new_items_are_encoded_from_features_alone(synth) -> None:  # type: ignore[no-untyped-def]
    m = TwoTowerModel(TwoTowerConfig(**FAST)).fit(synth.interactions, items=synth.items, progress=False)
    cols = synth.items.columns
    new = FeatureTable(synth.items.ids + 10_000, cols, synth.items.specs)  # same features, unseen ids
    np.testing.assert_allclose(m.encode_items(new), m.encode_items(synth.items, use_ids=False), rtol=1e-6)
    assert not np.allclose(m.encode_items(synth.items), m.encode_items(synth.items, use_ids=False))


def test_logq_sign_flip_hurts_recall(make_synth) -> None:  # type: ignore[no-untyped-def]
    data = make_synth(n_users=300, n_items=120, per_user=15, seed=1)
    split = random_holdout(data.interactions, seed=0)
    cfg = {
        "dim": 16,
        "hidden": 0,
        "epochs": 6,
        "batch_size": 256,
        "lr": 1e-2,
        "temperature": 0.1,
        "user_history": True,
        "item_id_dropout": 0.0,
        "distill_grid": (),  # an EASE teacher would mask what the sign of logQ does
    }
    recall = {}
    for sign in ("subtract", "none", "add"):
        m = TwoTowerModel(TwoTowerConfig(**cfg, logq=sign)).fit(split.train, items=data.items, progress=False)  # type: ignore[arg-type]
        res = evaluate_recommender(Retriever(m, data.items), split, ks=(10,))
        recall[sign] = res.metrics["recall@10"]
    # Measured: subtract 0.51, none 0.18, add 0.04 (seeds 0 and 1 agree within 0.02).
    assert recall["subtract"] > recall["none"] + 0.1 > recall["add"] + 0.1, recall


def test_save_load_round_trip_and_corruption(synth, tmp_path) -> None:  # type: ignore[no-untyped-def]
    m = TwoTowerModel(TwoTowerConfig(**FAST)).fit(
        synth.interactions, items=synth.items, users=synth.users, progress=False
    )
    m.save(tmp_path / "tt")
    loaded = TwoTowerModel.load(tmp_path / "tt")
    assert loaded.space == m.space and loaded.config == m.config
    np.testing.assert_array_equal(loaded.encode_items(synth.items), m.encode_items(synth.items))
    np.testing.assert_array_equal(loaded.encode_users([1, 5, 9]), m.encode_users([1, 5, 9]))
    manifest = json.loads((tmp_path / "tt" / "manifest.json").read_text())
    assert manifest["space"]["name"] == "two-tower" and "weights.safetensors" in manifest["checksums"]

    w = tmp_path / "tt" / "weights.safetensors"
    w.write_bytes(w.read_bytes()[:-8] + b"\x00" * 8)
    with pytest.raises(CorruptFileError, match="checksum"):
        TwoTowerModel.load(tmp_path / "tt")
    m.save(tmp_path / "v")
    manifest = json.loads((tmp_path / "v" / "manifest.json").read_text())
    manifest["format_version"] = 99
    (tmp_path / "v" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FormatVersionError):
        TwoTowerModel.load(tmp_path / "v")
    with pytest.raises(CorruptFileError):
        TwoTowerModel.load(tmp_path / "missing")


@pytest.mark.parametrize(
    "garbage",
    [
        "[" * 100_000,  # nested past the interpreter's recursion limit
        "[1, 2, 3]",  # JSON, not an object
        '{"format_version": %d, "class": "mlsys.recsys.TwoTowerModel"}',  # no checksums
        '{"format_version": %d, "class": "mlsys.recsys.TwoTowerModel", "checksums": {"../x": "0"}}',
        '{"format_version": %d, "class": "mlsys.recsys.TwoTowerModel", "checksums": [1]}',
        "\xff\xfe not utf-8",
    ],
)
def test_load_refuses_a_garbage_manifest(synth, tmp_path, garbage) -> None:  # type: ignore[no-untyped-def]
    from mlsys.recsys._two_tower import FORMAT_VERSION

    m = TwoTowerModel(TwoTowerConfig(**FAST)).fit(
        synth.interactions, items=synth.items, users=synth.users, progress=False
    )
    m.save(tmp_path / "tt")
    text = garbage % FORMAT_VERSION if "%d" in garbage else garbage
    (tmp_path / "tt" / "manifest.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(CorruptFileError):
        TwoTowerModel.load(tmp_path / "tt")


def test_load_refuses_manifest_fields_of_the_wrong_shape(synth, tmp_path) -> None:  # type: ignore[no-untyped-def]
    m = TwoTowerModel(TwoTowerConfig(**FAST)).fit(
        synth.interactions, items=synth.items, users=synth.users, progress=False
    )
    m.save(tmp_path / "tt")
    manifest = json.loads((tmp_path / "tt" / "manifest.json").read_text())
    manifest["user_specs"] = [{"no_such_field": 1}]
    (tmp_path / "tt" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CorruptFileError, match="malformed"):
        TwoTowerModel.load(tmp_path / "tt")


def test_bad_input(synth) -> None:  # type: ignore[no-untyped-def]
    cfg = TwoTowerConfig(**FAST)
    with pytest.raises(EmptyIndexError):
        TwoTowerModel(cfg).fit(Interactions(users=[], items=[]), items=synth.items)
    with pytest.raises(UnknownIdError):  # a training item without features
        TwoTowerModel(cfg).fit(Interactions(users=[1], items=[5]), items=synth.items)
    with pytest.raises(NotFittedError):
        TwoTowerModel(cfg).encode_users([1])
    m = TwoTowerModel(cfg).fit(synth.interactions, items=synth.items, users=synth.users, progress=False)
    other = FeatureTable([1], {"genres": np.zeros((1, 6))}, [FeatureSpec("genres", "multi_hot", 6)])
    with pytest.raises(InvalidInputError, match="schema"):
        m.encode_items(other)
    with pytest.raises(UnknownIdError, match="feature row"):
        m.encode_users([424242])


def test_feature_column_selection(synth) -> None:  # type: ignore[no-untyped-def]
    cfg = TwoTowerConfig(**FAST, item_features=("genres", "year"), user_features=("fav",))
    m = TwoTowerModel(cfg).fit(synth.interactions, items=synth.items, users=synth.users, progress=False)
    assert [s.name for s in m.item_specs_] == ["genres", "year"]
    full = m.encode_items(synth.items)  # a wider table is narrowed to the configured columns
    narrow = m.encode_items(synth.items.select(["genres", "year"]))
    np.testing.assert_array_equal(full, narrow)
    with pytest.raises(InvalidInputError, match="no feature columns"):
        m.encode_items(synth.items.select(["genres"]))
    with pytest.raises(InvalidInputError):
        TwoTowerConfig(item_features="genres")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="no feature columns"):
        TwoTowerModel(TwoTowerConfig(**FAST, item_features=("nope",))).fit(
            synth.interactions, items=synth.items
        )


def test_sample_weighted_loss_and_training(synth) -> None:  # type: ignore[no-untyped-def]
    """The IPS-weighted training hook: weights scale each row's loss; equal weights change nothing."""
    torch.manual_seed(0)
    u, v = torch.randn(6, 4), torch.randn(6, 4)
    items = torch.tensor([0, 1, 2, 3, 4, 1])
    w = torch.tensor([1.0, 0.0, 2.0, 0.5, 1.5, 1.0])
    per_row = torch.stack(
        [
            in_batch_softmax_loss(u, v, items, temperature=0.5, sample_weight=torch.eye(6)[i] * 6)
            for i in range(6)
        ]
    )
    weighted = in_batch_softmax_loss(u, v, items, temperature=0.5, sample_weight=w)
    assert torch.allclose(weighted, (per_row * w).sum() / 6)
    assert torch.allclose(
        in_batch_softmax_loss(u, v, items, temperature=0.5, sample_weight=torch.ones(6)),
        in_batch_softmax_loss(u, v, items, temperature=0.5),
    )

    x = synth.interactions
    cfg = TwoTowerConfig(**FAST, seed=1)
    plain = TwoTowerModel(cfg).fit(x, items=synth.items, progress=False)
    same = Interactions(x.users, x.items, x.timestamps, np.full(len(x.users), 3.0))
    equal = TwoTowerModel(cfg).fit(same, items=synth.items, progress=False, weighted=True)
    np.testing.assert_allclose(equal.loss_history_, plain.loss_history_, rtol=1e-5)
    rng = np.random.default_rng(0)
    skewed = Interactions(x.users, x.items, x.timestamps, rng.uniform(0.1, 5.0, len(x.users)))
    other = TwoTowerModel(cfg).fit(skewed, items=synth.items, progress=False, weighted=True)
    assert not np.allclose(other.encode_items(synth.items), plain.encode_items(synth.items))
    # a pair with repeated events adds its weights: it counts twice, so training differs
    doubled = Interactions(
        np.concatenate([x.users, x.users[:1]]), np.concatenate([x.items, x.items[:1]]), weights=None
    )
    twice = TwoTowerModel(cfg).fit(doubled, items=synth.items, progress=False, weighted=True)
    assert not np.allclose(twice.loss_history_, plain.loss_history_)
    with pytest.raises(InvalidInputError, match="one per row"):
        in_batch_softmax_loss(u, v, items, temperature=0.5, sample_weight=w[:, None])
    with pytest.raises(InvalidInputError, match="non-negative"):
        in_batch_softmax_loss(u, v, items, temperature=0.5, sample_weight=-w)
