"""vision results in a notebook: HTML tables, exact pandas round-trips (issue 25)."""

from __future__ import annotations

import io
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch
from PIL import Image

from mlsys.common.errors import MissingDependencyError
from mlsys.common.profiling import LatencyReport
from mlsys.vision import ImageFolder, InferencePipeline, PreprocessConfig, Preprocessor, ViT, evaluate

pytest.importorskip("pandas")

GRAY = PreprocessConfig(resize=16, crop=16, mean=(0.5,), std=(0.5,), channels=1)


def cells(html: str) -> list[str]:
    root = ET.fromstring(html)  # well-formed
    assert root.find("table") is not None
    return [(c.text or "") for c in root.iter() if c.tag in ("td", "th")]


def _png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (24, 24), 10 * seed).save(buf, format="PNG")
    return buf.getvalue()


def test_eval_result_round_trips(tiny_vit: ViT) -> None:
    r = evaluate(tiny_vit, torch.zeros(5, 1, 16, 16), torch.tensor([0, 1, 0, 1, 0]))
    row = r.to_pandas().iloc[0]
    assert row["accuracy"] == r.accuracy and row["loss"] == r.loss and row["n"] == 5
    assert f"{r.accuracy:.4f}" in cells(r._repr_html_())


def test_pipeline_report_is_text_html_and_frame(tiny_vit: ViT) -> None:
    pipe = InferencePipeline(Preprocessor(GRAY), tiny_vit)
    pipe.predict_batch([_png(i) for i in range(3)])
    rep = pipe.report()
    assert isinstance(rep, LatencyReport) and isinstance(rep, str)
    assert "threads" in rep and "dominant stage: " in rep
    frame = rep.to_pandas()
    for name, s in pipe.stats().items():
        assert frame.loc[name, "p95"] == s.p95 and frame.loc[name, "count"] == s.count
    html = rep._repr_html_()
    assert "decode" in cells(html) and "dominant stage" in html


def test_image_folder_is_a_file_to_label_table(tmp_path: Path) -> None:
    for c in ("cat", "dog<x>"):
        (tmp_path / c).mkdir()
        for i in range(3):
            Image.new("L", (8, 8), 40 * i).save(tmp_path / c / f"{i}.png")
    data = ImageFolder(tmp_path)
    frame = data.to_pandas()
    assert frame.index.tolist() == [str(p) for p in data.paths]
    assert frame["label"].tolist() == data.labels.tolist()
    assert frame["class"].tolist() == [data.classes[y] for y in data.labels]
    html = data._repr_html_()
    assert "dog&lt;x&gt;" in html and "dog<x>" in cells(html)


def test_missing_pandas_names_the_vision_extra(tiny_vit: ViT, monkeypatch: pytest.MonkeyPatch) -> None:
    r = evaluate(tiny_vit, torch.zeros(2, 1, 16, 16), torch.tensor([0, 1]))
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(MissingDependencyError, match=r"mlsys-vision\[pandas\]"):
        r.to_pandas()


def test_compression_reports_are_lists_that_display_and_round_trip() -> None:
    from torch import nn

    from mlsys.vision.compress import LayerSensitivity, ParityReport, SensitivityReport, sensitivity_report

    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    x = torch.randn(64, 1, 4, 4)
    y = m(x).argmax(-1)
    rep = sensitivity_report(m, x, y, bits=4)
    assert isinstance(rep, SensitivityReport) and isinstance(rep, list)
    assert all(isinstance(r, LayerSensitivity) for r in rep) and {r.layer for r in rep} == {"1", "3"}
    frame = rep.to_pandas()
    assert list(frame.index) == [r.layer for r in rep]  # worst first, as the list
    for r in rep:
        assert frame.loc[r.layer, "accuracy"] == r.accuracy and frame.loc[r.layer, "drop"] == r.drop
    html = rep._repr_html_()
    assert "4 bits" in html and f"{rep[0].drop:.4f}" in cells(html)

    from mlsys.vision.compress import ParityResult

    par = ParityReport([ParityResult(1, 1.5e-06, 1.0), ParityResult(32, 2.5e-06, 1.0)])
    f = par.to_pandas()
    assert f.loc[32, "max_abs_diff"] == 2.5e-06 and f.loc[1, "top1_agreement"] == 1.0
    assert "2.5e-06" in cells(par._repr_html_())
