from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mlsys.common.errors import DimensionMismatchError, InvalidInputError
from mlsys.common.profiling import LatencyProfiler
from mlsys.vision import (
    DynamicTokenPruning,
    InferencePipeline,
    PreprocessConfig,
    Preprocessor,
    TokenMerging,
    ViT,
    ViTConfig,
    check_onnx_parity,
    export_onnx,
    onnx_session,
    softmax,
    top_k,
)

GRAY = PreprocessConfig(resize=16, crop=16, mean=(0.5,), std=(0.5,), channels=1)


def _png(seed: int, size: int = 24) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def test_softmax_and_top_k_against_torch() -> None:
    logits = np.random.default_rng(0).normal(size=(6, 11)).astype(np.float32) * 5
    probs = softmax(logits)
    np.testing.assert_allclose(
        probs, torch.softmax(torch.from_numpy(logits), -1).numpy(), rtol=1e-5, atol=1e-7
    )
    ids, vals = top_k(probs, 4)
    ref = torch.topk(torch.from_numpy(probs), 4)
    assert np.array_equal(ids, ref.indices.numpy()) and np.allclose(vals, ref.values.numpy())
    assert top_k(probs, 50)[0].shape == (6, 11)
    with pytest.raises(InvalidInputError):
        top_k(probs, 0)
    assert np.isfinite(softmax(np.array([[1e4, -1e4]]))).all()


def test_batch_and_single_paths_agree(tiny_vit: ViT) -> None:
    pipe = InferencePipeline(GRAY, tiny_vit, labels=[f"c{i}" for i in range(5)], top_k=3)
    images = [_png(i) for i in range(4)]
    batch = pipe.predict_batch(images)
    assert len(batch) == 4 and batch.probs.shape == (4, 5) and batch.top_ids.shape == (4, 3)
    np.testing.assert_allclose(batch.probs.sum(1), 1.0, rtol=1e-5)
    assert (np.diff(batch.top_probs, axis=1) <= 0).all()
    single = pipe.predict(images[2])
    assert np.array_equal(single.ids, batch.top_ids[2])
    np.testing.assert_allclose(single.probs, batch.top_probs[2], rtol=1e-4, atol=1e-6)
    assert single.labels == [f"c{i}" for i in single.ids]
    # the model output equals running preprocess + model by hand
    x = torch.from_numpy(Preprocessor(GRAY)(images))
    with torch.no_grad():
        ref = torch.softmax(tiny_vit(x), -1).numpy()
    np.testing.assert_allclose(batch.probs, ref, rtol=1e-4, atol=1e-6)


def test_profiled_stages_threads_and_report(tiny_vit: ViT) -> None:
    prof = LatencyProfiler()
    pipe = InferencePipeline(Preprocessor(GRAY), tiny_vit, profiler=prof)
    pipe.predict_batch([_png(i) for i in range(3)])
    pipe.predict(_png(9))
    stats = pipe.stats()
    assert stats["decode"].count == 4 and stats["model"].count == 2 and stats["end_to_end"].count == 2
    for name in ("decode", "resize", "crop", "normalize", "model", "postprocess"):
        assert stats[name].p50 <= stats[name].p95 <= stats[name].p99
    assert pipe.threads == {"torch_intra_op": torch.get_num_threads()}
    dom = pipe.dominant_stage()
    assert stats[dom].total == max(
        stats[s].total for s in ("decode", "resize", "crop", "normalize", "model", "postprocess")
    )
    rep = pipe.report()
    assert "dominant stage: " + dom in rep and "threads" in rep


def test_wrong_channels_or_size_for_model(tiny_vit: ViT) -> None:
    with pytest.raises(DimensionMismatchError, match="1 input channel"):
        InferencePipeline(PreprocessConfig(resize=16, crop=16), tiny_vit)
    with pytest.raises(DimensionMismatchError, match="16x16"):
        InferencePipeline(PreprocessConfig(resize=20, crop=20, mean=(0.5,), std=(0.5,), channels=1), tiny_vit)
    with pytest.raises(DimensionMismatchError):  # also for wrapped models
        InferencePipeline(PreprocessConfig(resize=16, crop=16), DynamicTokenPruning.from_vit(tiny_vit))
    with pytest.raises(InvalidInputError):
        InferencePipeline(GRAY, object())
    pipe = InferencePipeline(GRAY, tiny_vit, labels=["a", "b"])
    with pytest.raises(DimensionMismatchError, match="5 classes but 2 labels"):
        pipe.predict(_png(0))
    with pytest.raises(InvalidInputError, match="nothing has been profiled"):
        InferencePipeline(GRAY, tiny_vit).dominant_stage()


def test_pruned_and_merged_models_in_pipeline(tiny_vit: ViT) -> None:
    images = [_png(i) for i in range(3)]
    for model in (DynamicTokenPruning.from_vit(tiny_vit, keep_ratio=0.7), TokenMerging(tiny_vit, 4)):
        out = InferencePipeline(GRAY, model).predict_batch(images)
        np.testing.assert_allclose(out.probs.sum(1), 1.0, rtol=1e-5)


def test_onnx_export_parity_and_pipeline(tiny_vit: ViT, tmp_path: Path) -> None:
    path = export_onnx(tiny_vit, tmp_path / "vit.onnx")
    sess = onnx_session(path, threads=1)
    assert check_onnx_parity(tiny_vit, sess, batch=3) < 1e-4
    images = [_png(i) for i in range(5)]
    torch_out = InferencePipeline(GRAY, tiny_vit).predict_batch(images)
    onnx_pipe = InferencePipeline(GRAY, sess)
    onnx_out = onnx_pipe.predict_batch(images)
    np.testing.assert_allclose(onnx_out.probs, torch_out.probs, rtol=1e-4, atol=1e-6)
    assert onnx_pipe.threads == {"onnxruntime_intra_op": 1}
    with pytest.raises(DimensionMismatchError):
        InferencePipeline(PreprocessConfig(resize=16, crop=16), sess)


def test_onnx_export_of_conv_stem_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    vit = ViT(
        ViTConfig(
            img_size=16,
            patch_size=2,
            in_chans=1,
            num_classes=5,
            embed_dim=32,
            depth=2,
            num_heads=4,
            stem_channels=(8, 8),
        )
    )
    vit.train()(torch.randn(8, 1, 16, 16))  # non-trivial BatchNorm running statistics
    vit.eval()
    sess = onnx_session(export_onnx(vit, tmp_path / "stem.onnx"), threads=1)
    assert check_onnx_parity(vit, sess, batch=3) < 1e-4


def test_onnx_export_of_pruned_model(tiny_vit: ViT, tmp_path: Path) -> None:
    m = DynamicTokenPruning.from_vit(tiny_vit, keep_ratio=0.6).eval()
    path = export_onnx(m, tmp_path / "pruned.onnx")
    assert check_onnx_parity(m, path, batch=4) < 1e-4
    with pytest.raises(InvalidInputError, match="threshold"):
        export_onnx(DynamicTokenPruning.from_vit(tiny_vit, mode="threshold"), tmp_path / "t.onnx")
