"""The two-tower's ``device`` option: resolution, typed refusals, CPU results unchanged, CPU loading."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mlsys.common.errors import DeviceUnavailableError, InvalidInputError, NotFittedError
from mlsys.recsys import TwoTowerConfig, TwoTowerModel

FAST = {"dim": 16, "feature_dim": 8, "hidden": 32, "epochs": 2, "batch_size": 128, "lr": 1e-2, "tune": False}
HAS_CUDA = torch.cuda.is_available()


@pytest.mark.parametrize("bad", ["gpu", "cuda:", "cuda:x", "", "tpu", 0, None])
def test_device_names_are_validated(bad: object) -> None:
    with pytest.raises(InvalidInputError, match="device"):
        TwoTowerConfig(device=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("ok", ["cpu", "auto", "cuda", "cuda:1", "CUDA:0", "mps"])
def test_device_names_accepted_at_construction(ok: str) -> None:
    assert TwoTowerConfig(device=ok).device == ok.lower()  # normalised; resolved at fit, not here


@pytest.mark.skipif(HAS_CUDA, reason="needs a machine without CUDA")
def test_missing_cuda_is_a_typed_error_and_leaves_the_model_unfitted(synth) -> None:  # type: ignore[no-untyped-def]
    m = TwoTowerModel(TwoTowerConfig(**FAST, device="cuda"))
    with pytest.raises(DeviceUnavailableError, match="CUDA is not available"):
        m.fit(synth.interactions, items=synth.items, progress=False)
    with pytest.raises(NotFittedError):
        m.encode_items(synth.items)


def test_cpu_results_do_not_depend_on_how_the_cpu_was_named(synth) -> None:  # type: ignore[no-untyped-def]
    a = TwoTowerModel(TwoTowerConfig(**FAST)).fit(synth.interactions, items=synth.items, progress=False)
    b = TwoTowerModel(TwoTowerConfig(**FAST, device="CPU")).fit(
        synth.interactions, items=synth.items, progress=False
    )
    assert a.device_.type == b.device_.type == "cpu"
    np.testing.assert_array_equal(a.encode_items(synth.items), b.encode_items(synth.items))
    np.testing.assert_array_equal(a.encode_users([1, 2, 3]), b.encode_users([1, 2, 3]))
    assert a.loss_history_ == b.loss_history_
    if not HAS_CUDA:  # "auto" is the CPU here: the same model
        c = TwoTowerModel(TwoTowerConfig(**FAST, device="auto")).fit(
            synth.interactions, items=synth.items, progress=False
        )
        np.testing.assert_array_equal(a.encode_items(synth.items), c.encode_items(synth.items))


def test_a_model_trained_elsewhere_loads_on_the_cpu(synth, tmp_path) -> None:  # type: ignore[no-untyped-def]
    m = TwoTowerModel(TwoTowerConfig(**FAST)).fit(
        synth.interactions, items=synth.items, users=synth.users, progress=False
    )
    m.save(tmp_path / "m")
    # The manifest of a GPU-trained model differs only in its config's device (weights are saved from the CPU).
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    manifest["config"]["device"] = "cuda:3"
    (tmp_path / "m" / "manifest.json").write_text(json.dumps(manifest))
    loaded = TwoTowerModel.load(tmp_path / "m")
    assert loaded.device_.type == "cpu" and loaded.config.device == "cuda:3"
    assert all(p.device.type == "cpu" for p in loaded.net_.parameters())
    np.testing.assert_array_equal(loaded.encode_items(synth.items), m.encode_items(synth.items))
    np.testing.assert_array_equal(loaded.encode_users([1, 4]), m.encode_users([1, 4]))
    if not HAS_CUDA:
        with pytest.raises(DeviceUnavailableError):
            TwoTowerModel.load(tmp_path / "m", device="cuda")


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_gpu_training_matches_the_cpu_within_float_noise(synth, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = TwoTowerConfig(**FAST, item_id_dropout=0.0)
    cpu = TwoTowerModel(cfg).fit(synth.interactions, items=synth.items, users=synth.users, progress=False)
    gpu = TwoTowerModel(TwoTowerConfig(**{**FAST, "item_id_dropout": 0.0}, device="cuda")).fit(
        synth.interactions, items=synth.items, users=synth.users, progress=False
    )
    assert gpu.device_.type == "cuda" and next(gpu.net_.parameters()).is_cuda
    np.testing.assert_allclose(gpu.loss_history_, cpu.loss_history_, rtol=1e-3)
    np.testing.assert_allclose(gpu.encode_items(synth.items), cpu.encode_items(synth.items), atol=1e-3)
    gpu.save(tmp_path / "g")
    back = TwoTowerModel.load(tmp_path / "g")
    assert back.device_.type == "cpu"
    np.testing.assert_allclose(back.encode_items(synth.items), gpu.encode_items(synth.items), atol=1e-5)
