"""recsys results in a notebook: HTML tables, exact pandas round-trips, short reprs (issue 25)."""

from __future__ import annotations

import importlib.util
import pickle
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from mlsys.common.errors import MissingDependencyError
from mlsys.recsys import (
    EASE,
    EvaluationResult,
    EvaluationTable,
    Popularity,
    TwoTowerConfig,
    evaluate_recommender,
    format_table,
    random_holdout,
)
from mlsys.recsys._two_tower_search import TwoTowerReport
from mlsys.recsys.cascade import drift_report
from mlsys.recsys.explore import BanditFeedback, FeedbackLoopSimulator, SimulatorConfig, support_report

pytest.importorskip("pandas")


def cells(html: str) -> list[str]:
    root = ET.fromstring(html)  # well-formed
    assert root.find("table") is not None
    return [(c.text or "") for c in root.iter() if c.tag in ("td", "th")]


@pytest.fixture(scope="module")
def results(synth) -> list[EvaluationResult]:  # type: ignore[no-untyped-def]
    split = random_holdout(synth.interactions, seed=0)
    pop = evaluate_recommender(Popularity().fit(split.train, catalogue=synth.items.ids), split, ks=(5, 10))
    ease = evaluate_recommender(EASE().fit(split.train, catalogue=synth.items.ids), split, ks=(5, 10))
    return [pop, ease]


def test_evaluate_recommender_round_trips_exactly(results: list[EvaluationResult]) -> None:
    r = results[0]
    frame = r.to_pandas()
    assert list(frame.index) == [r.model] and frame.index.name == "model"
    for m, v in r.metrics.items():
        assert frame.loc[r.model, m] == v, m
    assert frame.loc[r.model, "n_users"] == r.n_users
    assert frame.attrs["protocol"] == r.protocol


def test_evaluation_result_html_and_short_repr(results: list[EvaluationResult]) -> None:
    r = results[0]
    texts = cells(r._repr_html_())
    for m, v in r.metrics.items():
        assert m in texts and (f"{v:.4f}" in texts or f"{v:.2f}" in texts)
    folded = ET.fromstring(r._repr_html_()).find("details")
    assert folded is not None and r.protocol in [c.text for c in folded.iter("td")]  # folded away
    text = repr(r)
    assert len(text) < 200 and "(8 more)" in text
    assert text.startswith("EvaluationResult('popularity', split=")
    first = next(iter(r.metrics))
    assert f"{first}={r.metrics[first]:.4f}" in text
    assert r.protocol not in text  # the old repr spelled out the protocol and every metric


def test_format_table_is_text_and_a_frame(results: list[EvaluationResult]) -> None:
    table = format_table(results, columns=("ndcg@10", "recall@10", "coverage@10"))
    assert isinstance(table, str) and isinstance(table, EvaluationTable)
    assert table.startswith("protocol: ") and "| popularity |" in table
    frame = table.to_pandas()
    assert list(frame.index) == [r.model for r in results]
    for r in results:
        for m in ("ndcg@10", "recall@10", "coverage@10"):
            assert frame.loc[r.model, m] == r.metrics[m]
    texts = cells(table._repr_html_())
    assert {"popularity", "ease", "ndcg@10"} <= set(texts)
    assert pickle.loads(pickle.dumps(table)) == table


def test_format_table_missing_metric_is_nan_in_the_frame() -> None:
    a = EvaluationResult("a", "s", "p", {"ndcg@10": 0.5}, 3)
    b = EvaluationResult("b<x>", "s", "p", {"recall@10": 0.25}, 3)
    table = format_table([a, b], columns=("ndcg@10",))
    assert "n/a" in table
    assert np.isnan(table.to_pandas().loc["b<x>", "ndcg@10"])
    assert "b&lt;x&gt;" in table._repr_html_()


def test_simulation_report_summary_round_trips() -> None:
    cfg = SimulatorConfig(
        n_users=60, n_items=20, users_per_round=15, warm_start_users=15, propensity_draws=30
    )
    report = FeedbackLoopSimulator(cfg).run(rounds=3, progress=False)
    frame = report.to_pandas()
    summary = report.summary()
    assert list(frame.index) == list(summary)
    for policy, row in summary.items():
        for k, v in row.items():
            assert frame.loc[policy, k] == v or (np.isnan(v) and np.isnan(frame.loc[policy, k]))
    assert frame.attrs["config.n_items"] == 20
    assert len(repr(report)) < 150
    cells(report._repr_html_())
    if importlib.util.find_spec("matplotlib") is not None:
        from matplotlib.figure import Figure

        fig = report.plot()
        assert isinstance(fig, Figure) and len(fig.axes) == 4
        assert fig._repr_png_()[:4] == b"\x89PNG"


def test_support_and_drift_reports() -> None:
    fb = BanditFeedback(action=[0, 1], reward=[1, 0], propensity=[1.0, 1.0], n_actions=2)
    sr = support_report(fb, np.array([[0.5, 0.5], [0.5, 0.5]]))
    frame = sr.to_pandas()
    assert frame["deficient_mass"].iloc[0] == sr.deficient_mass
    assert bool(frame["supported"].iloc[0]) is sr.supported
    assert len(repr(sr)) < 120
    cells(sr._repr_html_())
    rng = np.random.default_rng(0)
    old = rng.normal(size=(20, 4))
    dr = drift_report(old, old + 0.1 * rng.normal(size=(20, 4)))
    row = dr.to_pandas().iloc[0]
    for k, v in dr.to_dict().items():
        assert row[k] == v
    cells(dr._repr_html_())


def test_two_tower_report_table() -> None:
    untuned = TwoTowerReport.untuned(TwoTowerConfig(), "tune=False")
    frame = untuned.to_pandas()
    assert frame.iloc[0].to_dict() == untuned.chosen
    runs = (
        {
            "temperature": 0.05,
            "lr": 0.01,
            "epochs_run": 5,
            "best_epoch": 4,
            "best_ndcg@10": 0.3,
            "curve": [0.1],
        },
        {
            "temperature": 0.1,
            "lr": 0.01,
            "epochs_run": 5,
            "best_epoch": 5,
            "best_ndcg@10": 0.35,
            "curve": [0.2],
        },
    )
    tuned = TwoTowerReport(
        True, "searched", "val", "warm", {}, {"temperature": 0.1, "lr": 0.01, "epochs": 5}, runs
    )
    frame = tuned.to_pandas()
    assert "curve" not in frame.columns
    assert frame["best_ndcg@10"].tolist() == [0.3, 0.35] and frame["chosen"].tolist() == [False, True]
    assert len(repr(tuned)) < 120 and "runs=2" in repr(tuned)
    cells(tuned._repr_html_())


def test_missing_pandas_names_the_recsys_extra(
    results: list[EvaluationResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(MissingDependencyError, match=r"mlsys-recsys\[pandas\]"):
        results[0].to_pandas()
    with pytest.raises(MissingDependencyError, match=r"mlsys-recsys\[pandas\]"):
        format_table(results).to_pandas()


def test_cascade_displays_its_report() -> None:
    from mlsys.recsys import Interactions
    from mlsys.recsys.cascade import Cascade, InventoryMask, RetrievalStage

    pop = Popularity().fit(Interactions(users=[1, 2, 2, 3], items=[10, 10, 11, 12]))
    cas = Cascade(RetrievalStage([("pop", pop, 3)], cutoff=3), inventory=InventoryMask([10]))
    cas.recommend([1, 2], 2)
    frame = cas.to_pandas()
    st = cas.stats["retrieval"]
    assert frame.loc["retrieval", "calls"] == st.calls == 1
    assert frame.loc["retrieval", "requests"] == st.requests == 2
    assert frame.loc["retrieval", "candidates_out"] == st.candidates_out
    assert frame.loc["retrieval", "p95_s"] == cas.profiler.stats()["retrieval"].p95
    assert frame.attrs["out_of_stock_filtered"] == cas.out_of_stock_filtered
    assert "retrieval" in cells(cas._repr_html_())
    assert repr(cas) == "Cascade(retrieval, inventory)"


def test_embedding_registry_repr_is_short() -> None:
    from mlsys.common import EmbeddingSpace
    from mlsys.recsys.cascade import EmbeddingRegistry

    reg = EmbeddingRegistry()
    reg.record(
        [1, 2, 3], space=EmbeddingSpace("tt", "v1", 8, metric="ip"), feature_hashes=[1, 2, 3], embedded_at=1.0
    )
    assert repr(reg) == "EmbeddingRegistry(items=3, spaces=1, served=0)"
