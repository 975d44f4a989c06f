"""choose_onnx_model: the rule (property-tested), real timing in and out of process, and bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys.common.errors import CorruptFileError, DimensionMismatchError, InvalidInputError, UnknownNameError
from mlsys.vision import ViT, ViTConfig, export_onnx, onnx_session
from mlsys.vision.compress import DeploymentChoice, QuantizationError, choose_onnx_model, quantize_onnx
from mlsys.vision.compress import _select as sel

pytest.importorskip("onnxruntime")


def _vit(depth: int, dim: int, seed: int, img: int = 16) -> ViT:
    torch.manual_seed(seed)
    cfg = ViTConfig(
        img_size=img, patch_size=4, in_chans=1, num_classes=5, embed_dim=dim, depth=depth, num_heads=2
    )
    return ViT(cfg).eval()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("select")
    big = export_onnx(_vit(depth=6, dim=128, seed=0), d / "big.onnx")
    return {
        "big": big,
        "big_int8": quantize_onnx(big, d / "big_int8.onnx", mode="dynamic"),
        "small": export_onnx(_vit(depth=1, dim=16, seed=1), d / "small.onnx"),
    }


def _images(n: int = 96, size: int = 16) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, 1, size, size)).astype(np.float32)


def _top1(path: Path, x: np.ndarray) -> np.ndarray:
    s = onnx_session(path, threads=1)
    out: np.ndarray = s.run(None, {s.get_inputs()[0].name: x})[0]
    return out.argmax(1)


# ----------------------------------------------------------------------------------- the rule
_row = st.fixed_dictionaries(
    {
        "speedup": st.floats(0.2, 5.0),
        "agreement": st.floats(0.0, 1.0),
        "accuracy_drop": st.floats(-5.0, 5.0),
    }
)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(_row, min_size=1, max_size=6),
    labelled=st.booleans(),
    budget=st.floats(0.0, 2.0),
    min_agreement=st.floats(0.5, 1.0),
    min_speedup=st.floats(1.0, 1.5),
)
def test_the_rule_picks_the_fastest_eligible_or_the_baseline(
    rows: list[dict[str, float]], labelled: bool, budget: float, min_agreement: float, min_speedup: float
) -> None:
    named: list[dict[str, Any]] = [{"name": "fp32", "speedup": 1.0, "agreement": 1.0, "accuracy_drop": 0.0}]
    named += [{"name": f"q{i}", **r} for i, r in enumerate(rows)]
    chosen, verdicts = sel._decide(
        named,
        "fp32",
        labelled=labelled,
        max_accuracy_drop=budget,
        min_agreement=min_agreement,
        min_speedup=min_speedup,
    )
    assert len(verdicts) == len(named)

    def ok(r: dict[str, Any]) -> bool:
        keeps = r["accuracy_drop"] <= budget if labelled else r["agreement"] >= min_agreement
        return bool(keeps and r["speedup"] >= min_speedup)

    eligible = [r for r in named[1:] if ok(r)]
    assert [e for e, _ in verdicts[1:]] == [ok(r) for r in named[1:]]
    if not eligible:
        assert chosen == "fp32"
        assert "no candidate is eligible" in verdicts[0][1]
    else:
        best = max(r["speedup"] for r in eligible)
        got = next(r for r in named if r["name"] == chosen)
        assert ok(got) and got["speedup"] == best
        assert verdicts[named.index(got)][1].startswith("chosen")
    for r, (e, why) in zip(named[1:], verdicts[1:], strict=True):
        if r["speedup"] < 1.0 and (
            r["accuracy_drop"] <= budget if labelled else r["agreement"] >= min_agreement
        ):
            assert not e and "slower than the baseline" in why  # the INT8-slower-than-FP32 trap


def test_larger_batches_time_as_many_images_and_at_least_ten_calls() -> None:
    assert [sel._calls_at(300, b) for b in (1, 2, 32, 64, 1000)] == [300, 150, 10, 10, 10]
    assert sel._calls_at(1000, 32) == 32


def test_the_rule_examples() -> None:
    rows = [
        {"name": "fp32", "speedup": 1.0, "agreement": 1.0, "accuracy_drop": 0.0},
        {"name": "int8_slow", "speedup": 0.5, "agreement": 1.0, "accuracy_drop": 0.0},
        {"name": "int8_lossy", "speedup": 3.0, "agreement": 0.9, "accuracy_drop": 2.0},
        {"name": "int8_ok", "speedup": 1.4, "agreement": 0.999, "accuracy_drop": 0.1},
        {"name": "int8_noise", "speedup": 1.04, "agreement": 1.0, "accuracy_drop": 0.0},
    ]
    kw: dict[str, Any] = dict(max_accuracy_drop=0.5, min_agreement=0.99, min_speedup=1.1)
    chosen, v = sel._decide(rows, "fp32", labelled=True, **kw)
    assert chosen == "int8_ok"
    assert v[1] == (False, "slower than the baseline (0.50x)")
    assert v[2] == (False, "accuracy drop 2.00 > 0.5 points")
    assert v[3] == (True, "chosen: fastest eligible (1.40x)")
    assert v[4] == (False, "speed-up 1.04x < min_speedup 1.1")
    # without labels the agreement decides: 0.9 fails, 0.999 passes
    assert sel._decide(rows, "fp32", labelled=False, **kw)[0] == "int8_ok"
    chosen, v = sel._decide(rows[:2], "fp32", labelled=True, **kw)
    assert chosen == "fp32" and v[0] == (True, "baseline: no candidate is eligible")


# ------------------------------------------------------------------------------ real timing
def test_choice_in_process_measures_and_chooses(models: dict[str, Path]) -> None:
    x = _images()
    y = _top1(models["small"], x)  # labels the small model gets all right: it is eligible and faster
    acc_big = float((_top1(models["big"], x) == y).mean())
    assert acc_big < 1.0
    r = choose_onnx_model(
        {"big": models["big"], "small": models["small"], "big_int8": models["big_int8"]},
        torch.from_numpy(x),
        torch.from_numpy(y),
        batch_sizes=(1, 32),
        calls=30,
        rounds=2,
        isolate=False,
        progress=False,
    )
    assert isinstance(r, DeploymentChoice)
    assert r.baseline == "big" and [c.name for c in r.candidates] == ["big", "small", "big_int8"]
    base, small = r["big"], r["small"]
    assert base.speedup == 1.0 and base.agreement == 1.0 and base.max_abs_diff == 0.0
    assert base.accuracy == pytest.approx(acc_big) and base.accuracy_drop == 0.0
    assert small.accuracy == 1.0 and small.accuracy_drop == pytest.approx(-100 * (1 - acc_big))
    assert small.speedup > 2.0  # 1 block of width 16 against 6 of width 128
    assert r.chosen == "small" and r.chosen_path == str(models["small"])
    assert small.reason.startswith("chosen")
    for c in r.candidates:
        assert set(c.p50_ms) == {1, 32} and all(v > 0 for v in c.p50_ms.values())
        assert c.p99_ms[1] >= c.p50_ms[1]
        assert c.file_bytes == Path(c.path).stat().st_size
    assert r.summary() == (
        f"chose 'small': {small.speedup:.2f}x the baseline 'big' at batch 1, "
        f"accuracy +{100 * (1 - acc_big):.2f} points"
    )
    json.dumps(r.to_dict())
    assert "b32_p50_ms" in r._repr_html_()
    assert repr(r).startswith("DeploymentChoice(chosen='small', baseline='big', speedups={'big': 1.00x")
    with pytest.raises(UnknownNameError, match="no candidate 'nope'"):
        r["nope"]


def test_a_slower_candidate_is_never_chosen_and_the_baseline_is_kept(models: dict[str, Path]) -> None:
    # the small model as the baseline: the big one and its INT8 are far slower, whatever they score
    x = _images()
    r = choose_onnx_model(
        [models["small"], models["big"], models["big_int8"]],
        x,
        calls=20,
        rounds=1,
        isolate=False,
        progress=False,
        min_agreement=0.0,
    )
    assert r.baseline == "small" and r.chosen == "small"
    assert r["big"].speedup < 1.0 and not r["big"].eligible
    assert "slower than the baseline" in r["big_int8"].reason
    fastest = max(r.candidates[1:], key=lambda c: c.speedup)
    assert r.summary() == f"kept the baseline 'small'; fastest other: {fastest.name!r}, {fastest.reason}"


def test_choice_times_each_candidate_in_its_own_process(models: dict[str, Path]) -> None:
    r = choose_onnx_model(
        {"fp32": models["big"], "int8": models["big_int8"]},
        _images(),
        calls=10,
        rounds=1,
        progress=False,
    )
    assert r.isolate and all(c.p50_ms[1] > 0 for c in r.candidates)
    assert r["int8"].agreement > 0.9  # dynamic INT8 of the same model
    pytest.importorskip("matplotlib")
    fig = r.plot()
    assert len(fig.axes[0].collections) == 3  # two points and the chosen ring


def test_a_worker_that_fails_is_a_typed_error(
    models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sel.sys, "executable", "/bin/false")
    with pytest.raises(QuantizationError, match="in its own process failed"):
        choose_onnx_model([models["big"], models["small"]], _images(), calls=2, rounds=1, progress=False)


# ------------------------------------------------------------------------------- bad input
def test_bad_input_is_refused_before_any_timing(models: dict[str, Path], tmp_path: Path) -> None:
    x = _images()
    two = {"a": models["big"], "b": models["small"]}
    fast: dict[str, Any] = dict(calls=2, rounds=1, isolate=False, progress=False)
    with pytest.raises(InvalidInputError, match="at least one other candidate"):
        choose_onnx_model({"a": models["big"]}, x, **fast)
    with pytest.raises(InvalidInputError, match="not one path"):
        choose_onnx_model(str(models["big"]), x, **fast)
    with pytest.raises(InvalidInputError, match="must be a path"):
        choose_onnx_model([models["big"], 3], x, **fast)  # type: ignore[list-item]
    with pytest.raises(InvalidInputError, match="non-empty strings"):
        choose_onnx_model({"a": models["big"], 1: models["small"]}, x, **fast)  # type: ignore[dict-item]
    with pytest.raises(InvalidInputError, match="sequence of paths, got int"):
        choose_onnx_model(7, x, **fast)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="share a file name"):
        choose_onnx_model([models["big"], models["big"]], x, **fast)
    with pytest.raises(UnknownNameError, match="baseline 'c'"):
        choose_onnx_model(two, x, baseline="c", **fast)
    bad_x = x.copy()
    bad_x[3, 0, 0, 0] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        choose_onnx_model(two, bad_x, **fast)
    with pytest.raises(InvalidInputError, match="float"):
        choose_onnx_model(two, x.astype(np.int64), **fast)
    with pytest.raises(InvalidInputError, match="cannot fill a batch of 32"):
        choose_onnx_model(two, x[:8], batch_sizes=(1, 32), **fast)
    with pytest.raises(InvalidInputError, match="labels must be"):
        choose_onnx_model(two, x, np.zeros(5, np.int64), **fast)
    with pytest.raises(InvalidInputError, match=r"labels must be in \[0, 5\)"):
        choose_onnx_model(two, x, np.full(len(x), 7), **fast)
    for kw in (
        {"threads": 0},
        {"calls": -1},
        {"min_speedup": 0.9},
        {"min_agreement": 2.0},
        {"max_accuracy_drop": -1},
    ):
        with pytest.raises(InvalidInputError):
            choose_onnx_model(two, x, **{**fast, **kw})
    # a model of another input size names the candidate
    other = export_onnx(_vit(depth=1, dim=16, seed=0, img=8), tmp_path / "other.onnx")
    with pytest.raises(DimensionMismatchError, match="candidate 'o'"):
        choose_onnx_model({"a": models["big"], "o": other}, x, **fast)
    # a truncated file
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(models["small"].read_bytes()[:500])
    with pytest.raises(CorruptFileError):
        choose_onnx_model({"a": models["big"], "cut": cut}, x, **fast)
    # a model whose batch axis is fixed cannot be timed at other batch sizes
    import onnx

    m = onnx.load(str(models["small"]))
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    fixed = tmp_path / "fixed.onnx"
    onnx.save(m, str(fixed))
    with pytest.raises(DimensionMismatchError, match="fixed batch of 1"):
        choose_onnx_model({"a": models["big"], "f": fixed}, x, **fast)
