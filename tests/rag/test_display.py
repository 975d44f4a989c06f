"""rag results in a notebook: HTML tables, exact pandas round-trips, short reprs (issue 25)."""

from __future__ import annotations

import importlib.util
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from mlsys.common.errors import MissingDependencyError
from mlsys.rag import (
    BM25Config,
    ChunkExpander,
    ChunkTable,
    DocumentStore,
    FixedSizeChunker,
    HashingEmbedder,
    RecursiveChunker,
    UpsertReport,
    evaluate_beir,
)
from mlsys.rag.judge import (
    EvalRecord,
    FaithfulnessVerdict,
    ThreeLayerReport,
    review_sample,
    summarize_faithfulness,
)
from mlsys.rag.rerank import FineTuneReport, risk_coverage_curve

pytest.importorskip("pandas")

_spec = importlib.util.spec_from_file_location(
    "_rag_eval_tests", Path(__file__).with_name("test_evaluation.py")
)
assert _spec is not None and _spec.loader is not None
_eval_tests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_eval_tests)
write_beir = _eval_tests.write_beir


def cells(html: str) -> list[str]:
    root = ET.fromstring(html)  # well-formed
    assert root.find("table") is not None
    return [(c.text or "") for c in root.iter() if c.tag in ("td", "th")]


def test_beir_evaluation_round_trips_exactly(tmp_path: Path) -> None:
    write_beir(tmp_path / "beir")
    ev = evaluate_beir(tmp_path / "beir", HashingEmbedder(dim=128), metrics=["ndcg@10", "recall@10"], k=10)
    frame = ev.to_pandas()
    assert list(frame.index) == list(ev.results) == ["bm25", "dense", "hybrid"]
    for system, res in ev.results.items():
        for m, v in res.mean.items():
            assert frame.loc[system, m] == v
        assert frame.loc[system, "queries_per_second"] == ev.queries_per_second[system]
    assert frame.attrs["n_documents"] == ev.n_documents == 20
    texts = cells(ev._repr_html_())
    assert {"bm25", "dense", "hybrid", "ndcg@10", "recall@10"} <= set(texts)
    text = repr(ev)
    assert len(text) < 200 and text.startswith("BeirEvaluation(n_queries=4, n_documents=20, ndcg@10: bm25=")
    assert "DocumentStore" not in text  # the old dataclass repr spelled out the store and every result


def test_document_store_repr_lists_non_default_settings_only() -> None:
    store = DocumentStore(HashingEmbedder(dim=64), progress=False)
    assert repr(store) == f"DocumentStore(space={store.space}, docs=0, chunks=0, progress=False)"
    store.upsert([("a", "Cats purr when content. Dogs bark at strangers."), ("b", "Fish swim.")])
    assert repr(store).startswith(f"DocumentStore(space={store.space}, docs=2, chunks=2")
    tuned = DocumentStore(
        HashingEmbedder(dim=64),
        chunker=RecursiveChunker(size=40),
        index_kind="exact",
        index_params={"filter_exact_threshold": 8},
        bm25=BM25Config(k1=1.2),
    )
    text = repr(tuned)
    assert (
        "chunker=RecursiveChunker(" in text and "filter_exact_threshold=8" in text and "bm25=(k1=1.2)" in text
    )
    assert "index=" not in text and "b=0.75" not in text and "progress" not in text  # defaults are left out
    assert (
        repr(DocumentStore(HashingEmbedder(dim=64)))
        == f"DocumentStore(space={store.space}, docs=0, chunks=0)"
    )


def test_upsert_report_and_fine_tune_report_rows() -> None:
    r = UpsertReport(added=2, chunks_embedded=3)
    row = r.to_pandas().iloc[0]
    assert row["added"] == 2 and row["chunks_embedded"] == 3 and row["deleted"] == 0
    assert "<td>3</td>" in r._repr_html_()
    ft = FineTuneReport(Path("/tmp/ce<x>"), 47, 752, 0.5, 61.5, True, 0.25)
    frame = ft.to_pandas()
    assert frame["steps"].iloc[0] == 47 and frame["mean_loss_last"].iloc[0] == 0.25
    assert frame.attrs["path"] == "/tmp/ce<x>" and "/tmp/ce&lt;x&gt;" in ft._repr_html_()


def test_expansion_report_table_has_one_row_per_hit() -> None:
    table = ChunkTable(FixedSizeChunker(size=4).chunk("aaaabbbbcccc", doc_id="d"))
    report = ChunkExpander(max_size=6).expand_with_report([("d", 1), ("d", 2)], table)
    frame = report.to_pandas()
    assert list(frame.index) == ["d#1", "d#2"]
    assert frame["status"].tolist() == ["trimmed", "dropped"]
    assert frame["rank"].tolist() == [h.rank for h in report.hits]
    assert report.summary() in ET.fromstring(report._repr_html_()).find("table").find("caption").text  # type: ignore[union-attr]
    assert repr(report) == "ExpansionReport(1 of 2 hits in 1 contexts, 4 of 6 chars, trimmed=1, dropped=1)"


def test_three_layer_report_table() -> None:
    v = FaithfulnessVerdict("scored", (), 0.75, "offline<judge>")
    rec = EvalRecord("q1", "?", ("ctx",), "a", v, True)
    rep = ThreeLayerReport(
        {"ndcg@10": 0.7, "recall@10": 0.9},
        summarize_faithfulness([v]),
        review_sample([rec], 1),
        1,
        ("a note",),
    )
    frame = rep.to_pandas()
    assert frame["value"].tolist()[:3] == [0.7, 0.9, 0.75]
    assert frame["measure"].tolist()[:2] == ["ndcg@10", "recall@10"]
    html = rep._repr_html_()
    assert "offline&lt;judge&gt;" in html and "a note" in html
    cells(html)
    assert len(repr(rep)) < 120 and "ndcg@10=0.7000" in repr(rep)


def test_risk_coverage_round_trips_every_point_and_shortens_the_html() -> None:
    rng = np.random.default_rng(0)
    conf = rng.random(500)
    labels = (rng.random(500) < conf).astype(int)
    rc = risk_coverage_curve(labels, conf)
    frame = rc.to_pandas()
    assert frame["coverage"].tolist() == rc.coverage.tolist() and frame["risk"].tolist() == rc.risk.tolist()
    html = rc._repr_html_()
    assert html.count("<tr>") < 50 and "more rows" in html
    cells(html)
    assert repr(rc) == f"RiskCoverage(points=500, aurc={rc.aurc:.4f})"


def test_missing_pandas_names_the_rag_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(MissingDependencyError, match=r"mlsys-rag\[pandas\]"):
        UpsertReport(added=1).to_pandas()


def test_bm25_index_repr_lists_non_default_config_only() -> None:
    from mlsys.rag._bm25 import BM25Index

    assert repr(BM25Index()) == "BM25Index(n_docs=0, vocab=0)"
    assert repr(BM25Index(BM25Config(k1=1.2, method="robertson"))) == (
        "BM25Index(n_docs=0, vocab=0, k1=1.2, method='robertson')"
    )
