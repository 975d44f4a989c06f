"""Batch inference on Ray Data (issue 17): same predictions as InferencePipeline, corrupt files as error rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mlsys.common.errors import InvalidInputError
from mlsys.vision import InferencePipeline, PreprocessConfig, ViT, ViTConfig

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_cluster")]
Image = pytest.importorskip("PIL.Image")


def make_pipeline() -> InferencePipeline:
    """The same seeded model in every actor (a real deployment loads saved weights here)."""
    torch.manual_seed(0)
    vit = ViT(
        ViTConfig(img_size=16, patch_size=4, in_chans=3, num_classes=5, embed_dim=16, depth=1, num_heads=2)
    )
    pre = PreprocessConfig(resize=16, crop=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), channels=3)
    return InferencePipeline(pre, vit, labels=["a", "b", "c", "d", "e"], top_k=3)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(40):
        p = d / f"img{i:03d}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(rng.integers(0, 255, (20 + i % 7, 24, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    (d / "garbage.png").write_bytes(b"this is not an image at all")
    good = paths[3].read_bytes()
    (d / "truncated.png").write_bytes(good[: len(good) // 3])
    paths.insert(5, d / "garbage.png")
    paths.insert(17, d / "truncated.png")
    paths.insert(30, d / "missing.png")  # never written
    return paths


def test_same_predictions_as_the_pipeline_and_error_rows_for_bad_files(files: list[Path]) -> None:
    from mlsys.vision.distributed import classify_files_ray

    out = classify_files_ray(files, make_pipeline, batch_size=8, concurrency=2, cpus_per_actor=0.5)
    assert out["path"].tolist() == [str(p) for p in files]  # one row per file, in input order
    bad = {5, 17, 30}
    assert set(np.flatnonzero(~out["ok"]).tolist()) == bad  # no good image lost, every bad one reported
    for i in bad:
        assert out["error_type"][i] and out["error"][i] and (out["top_ids"][i] == -1).all()
    want = make_pipeline().predict_batch([p for i, p in enumerate(files) if i not in bad])
    good = out["ok"]
    np.testing.assert_array_equal(out["top_ids"][good], want.top_ids)
    np.testing.assert_allclose(out["top_probs"][good], want.top_probs, rtol=1e-5, atol=1e-6)
    assert out["label"][good].tolist() == [row[0] for row in want.labels]


def test_a_batch_of_only_bad_files_is_rows_not_a_failure(files: list[Path]) -> None:
    from mlsys.vision.distributed import classify_files_ray

    out = classify_files_ray(
        [files[5], files[17]], make_pipeline, batch_size=4, concurrency=1, cpus_per_actor=0.5
    )
    assert not out["ok"].any() and len(out["ok"]) == 2


def test_bad_arguments() -> None:
    from mlsys.vision.distributed import RayImageClassifier, classify_files_ray

    with pytest.raises(InvalidInputError):
        classify_files_ray([], make_pipeline)
    with pytest.raises(InvalidInputError):
        classify_files_ray(["x.png"], make_pipeline, batch_size=0)
    with pytest.raises(InvalidInputError):
        classify_files_ray(["x.png"], make_pipeline, cpus_per_actor=0)
    with pytest.raises(InvalidInputError, match="InferencePipeline"):
        RayImageClassifier(lambda: "not a pipeline")  # type: ignore[arg-type,return-value]
