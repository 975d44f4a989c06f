"""Results that display and convert: HTML tables, exact pandas round-trips, short reprs (issue 25)."""

from __future__ import annotations

import doctest
import importlib.util
import pickle
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys.common import EmbeddingSpace, _display
from mlsys.common._display import (
    DisplayTable,
    TabularDisplay,
    non_default_params,
    render_html,
    table_to_pandas,
)
from mlsys.common.ann import CalibrationResult, CalibrationStep, make_index
from mlsys.common.errors import InvalidInputError, MissingDependencyError
from mlsys.common.metrics import Comparison, EvalResult, compare, evaluate
from mlsys.common.profiling import LatencyProfiler, LatencyReport

pd = pytest.importorskip("pandas")

EXPLICIT = {"missing_queries": "zero", "extra_queries": "ignore", "empty_queries": "zero"}
RUN = {
    "q1": {"d1": 2.0, "d2": 1.0, "d3": 0.5},
    "q2": {"d3": 1.0, "d1": 0.5},
    "q3": {"d2": 3.0, "d4": 2.0},
}
QRELS = {"q1": {"d2": 1}, "q2": {"d3": 2, "d4": 1}, "q3": {"d4": 1}}
METRICS = ["ndcg@10", "mrr@10", "recall@100", "precision@5", "map"]


def parse(fragment: str) -> ET.Element:
    """The fragment must be well-formed XML (escaped, every tag closed)."""
    return ET.fromstring(fragment)


def cell_texts(root: ET.Element) -> list[str]:
    return [(c.text or "") for c in root.iter() if c.tag in ("td", "th")]


@pytest.fixture
def result() -> EvalResult:
    return evaluate(RUN, QRELS, METRICS, **EXPLICIT)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- EvalResult
def test_eval_result_to_pandas_round_trips_exactly(result: EvalResult) -> None:
    frame = result.to_pandas()
    assert list(frame.columns) == ["n_queries", *METRICS]
    assert frame.shape == (1, 6)
    assert int(frame["n_queries"].iloc[0]) == 3
    for m in METRICS:
        assert frame[m].iloc[0] == result.mean[m] == result[m]
    assert frame.attrs["policy.gain"] == "linear"


def test_eval_result_per_query_frame_round_trips_exactly(result: EvalResult) -> None:
    frame = result.to_pandas(per_query=True)
    assert list(frame.index) == result.query_ids and frame.index.name == "query_id"
    for m in METRICS:
        assert frame[m].tolist() == result.per_query[m].tolist()


def test_eval_result_html_is_a_table_with_every_metric(result: EvalResult) -> None:
    root = parse(result._repr_html_())
    assert root.find("table") is not None
    headers = [th.text for th in root.iter("th")]
    cells = cell_texts(root)
    for m in METRICS:
        assert m in headers
        assert f"{result.mean[m]:.4f}" in cells
    assert root.find("details") is not None  # the query policies are folded away


def test_eval_result_repr_is_short_and_says_the_figures(result: EvalResult) -> None:
    text = repr(result)
    assert len(text) < 200
    assert text.startswith("EvalResult(n_queries=3,")
    for m in METRICS:
        assert f"{m}={result.mean[m]:.4f}" in text


def test_eval_result_repr_stays_short_with_many_metrics() -> None:
    many = [f"{f}@{k}" for f in ("ndcg", "recall", "mrr", "precision") for k in (1, 5, 10, 20)]
    r = evaluate(RUN, QRELS, many, **EXPLICIT)  # type: ignore[arg-type]
    assert len(repr(r)) < 200 and "10 more" in repr(r)


# ---------------------------------------------------------------------------- Comparison
def test_comparison_round_trips_and_displays(result: EvalResult) -> None:
    flipped = {q: {doc: -score for doc, score in d.items()} for q, d in RUN.items()}
    other = evaluate(flipped, QRELS, METRICS, **EXPLICIT)  # type: ignore[arg-type]
    c = compare(result, other, "ndcg@10", n_resamples=200, seed=0)
    frame = c.to_pandas()
    assert list(frame.index) == ["ndcg@10"]
    for col in ("mean_a", "mean_b", "diff", "ci_low", "ci_high", "p_randomization", "p_ttest", "t_statistic"):
        assert frame.loc["ndcg@10", col] == getattr(c, col)
    assert frame.loc["ndcg@10", "n_queries"] == c.n_queries
    assert frame.attrs["n_resamples"] == 200 and frame.attrs["seed"] == 0
    root = parse(c._repr_html_())
    assert c.diff != 0.0
    assert "ndcg@10" in cell_texts(root) and _display.format_value(c.diff) in cell_texts(root)
    text = repr(c)
    assert len(text) < 120 and "ndcg@10" in text and f"{c.diff:+.4f}" in text
    assert str(c).startswith("ndcg@10: a=")  # the long form is unchanged


# ---------------------------------------------------------------------------- profiling
def _profiler() -> LatencyProfiler:
    prof = LatencyProfiler(capacity=4)
    rng = np.random.default_rng(0)
    for v in rng.uniform(1e-4, 3e-3, size=10):  # beyond capacity: a reservoir
        prof.record("retrieval", float(v))
    prof.record("re<rank>", 0.002)
    return prof


def test_latency_report_round_trips_exactly_in_seconds() -> None:
    prof = _profiler()
    stats = prof.stats()
    for frame in (prof.report().to_pandas(), prof.to_pandas()):
        assert list(frame.index) == list(stats)
        for name, s in stats.items():
            for f in ("count", "total", "mean", "min", "p50", "p95", "p99", "max", "n_stored"):
                assert frame.loc[name, f] == getattr(s, f), (name, f)
            assert bool(frame.loc[name, "sampled"]) is s.sampled
        assert frame.attrs["unit"] == "seconds"


def test_latency_report_is_still_the_text_table() -> None:
    prof = _profiler()
    rep = prof.report(unit="ms")
    assert isinstance(rep, str) and isinstance(rep, LatencyReport)
    assert rep.splitlines()[0].startswith("stage") and "p95 ms" in rep
    assert repr(rep) == str(rep)
    again = pickle.loads(pickle.dumps(rep))
    assert again == rep and again.stats == rep.stats and again.unit == "ms"


def test_latency_report_html_escapes_and_marks_reservoir_estimates() -> None:
    prof = _profiler()
    html = prof._repr_html_()
    root = parse(html)
    cells = cell_texts(root)
    assert "re<rank>" in cells  # escaped in the markup, the same text once parsed
    assert "re&lt;rank&gt;" in html and "<rank>" not in html
    s = prof.stats()["retrieval"]
    assert s.sampled and f"{s.p95 * 1e3:.3f}*" in cells
    assert "reservoir" in html


def test_profiler_plot_returns_a_figure_that_displays_inline() -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    fig = _profiler().plot()
    assert isinstance(fig, Figure)
    png = fig._repr_png_()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    if importlib.util.find_spec("IPython") is not None:
        from IPython.core.formatters import DisplayFormatter

        data, _ = DisplayFormatter().format(fig)
        assert "image/png" in data  # Jupyter renders it, with or without an inline backend
    assert isinstance(pickle.loads(pickle.dumps(fig)), Figure)


# ---------------------------------------------------------------------------- calibration
def test_calibration_result_table_marks_the_chosen_step() -> None:
    steps = [CalibrationStep(16, 0.91, 1e-4, 0.9, 0.92), CalibrationStep(32, 0.97, 2e-4, 0.96, 0.96)]
    r = CalibrationResult({"ef": 32}, 0.97, 2e-4, 0.95, True, 10, steps, (0.95, 0.99), 0.96, 0.96)
    frame = r.to_pandas()
    assert frame["recall"].tolist() == [0.91, 0.97] and frame["chosen"].tolist() == [False, True]
    assert frame.attrs["params.ef"] == 32
    assert "ef=32" in repr(r) and len(repr(r)) < 120
    parse(r._repr_html_())


# ---------------------------------------------------------------------------- index reprs
def test_index_repr_lists_backend_space_count_and_non_default_params_only() -> None:
    space = EmbeddingSpace("mini<lm>", "2", 4, metric="ip")
    idx = make_index("exact", space)
    idx.add([1, 2, 3], np.eye(3, 4, dtype=np.float32))
    assert repr(idx) == "ExactIndex(space=mini<lm>@2[dim=4,ip], n=3)"
    tuned = make_index("exact", space, filter_exact_threshold=10, progress=False)
    assert (
        repr(tuned)
        == "ExactIndex(space=mini<lm>@2[dim=4,ip], n=0, filter_exact_threshold=10, progress=False)"
    )


def test_hnsw_and_faiss_reprs() -> None:
    space = EmbeddingSpace("m", "1", 4)
    if importlib.util.find_spec("hnswlib") is not None:
        assert repr(make_index("hnsw", space)) == "HNSWIndex(space=m@1[dim=4,cosine], n=0)"
        assert repr(make_index("hnsw", space, M=32, ef=128)).endswith("n=0, M=32, ef=128)")
    if importlib.util.find_spec("faiss") is not None:
        # the factory is the index: always shown
        assert (
            repr(make_index("faiss", space)) == "FaissIndex(space=m@1[dim=4,cosine], n=0, factory='HNSW32')"
        )
        r = repr(make_index("faiss", space, factory="IVF4,Flat", nprobe=2))
        assert r == "FaissIndex(space=m@1[dim=4,cosine], n=0, factory='IVF4,Flat', nprobe=2)"


def test_non_default_params_compares_values_not_identity() -> None:
    from mlsys.common.ann import HNSWConfig

    assert non_default_params(HNSWConfig()) == {}
    assert non_default_params(HNSWConfig(rebuild_threshold=0.25)) == {}
    assert non_default_params(HNSWConfig(rebuild_threshold=0.5, M=8)) == {"M": 8, "rebuild_threshold": 0.5}


# ---------------------------------------------------------------------------- machinery
def test_render_html_escapes_every_string() -> None:
    t = DisplayTable(
        "<script>alert(1)</script>",
        ("sys<tem>", "a&b"),
        (("<b>bold</b>", 0.5),),
        index="sys<tem>",
        details=(("proto<col>", "x < y & z"),),
        notes=("note <i>",),
    )
    html = render_html(t)
    assert "<script>" not in html and "<b>" not in html and "<i>" not in html
    root = parse(html)
    texts = [e.text for e in root.iter() if e.text]
    for s in (
        "<script>alert(1)</script>",
        "sys<tem>",
        "a&b",
        "<b>bold</b>",
        "proto<col>",
        "x < y & z",
        "note <i>",
    ):
        assert s in texts, s


def test_display_table_rejects_ragged_rows_and_unknown_index() -> None:
    with pytest.raises(InvalidInputError, match="row 0 has 1 values, expected 2"):
        DisplayTable("t", ("a", "b"), ((1,),))
    with pytest.raises(InvalidInputError, match="index 'c' is not a column"):
        DisplayTable("t", ("a", "b"), (), index="c")
    with pytest.raises(InvalidInputError, match="duplicate column"):
        DisplayTable("t", ("a", "a"), ())


names = st.text(min_size=1, max_size=12)
values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=True, width=64),
    st.floats(min_value=0.0, max_value=1.0),
)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(names, values, min_size=1, max_size=8))
def test_random_metric_dicts_round_trip_through_frame_and_html(metrics: dict[str, float]) -> None:
    r = EvalResult(["q"], {k: np.array([v]) for k, v in metrics.items()}, dict(metrics))
    frame = r.to_pandas()
    assert list(frame.columns) == ["n_queries", *metrics]
    for k, v in metrics.items():
        assert frame[k].iloc[0] == v
    root = parse(r._repr_html_())
    headers = [th.text for th in root.iter("th")]
    assert headers == ["n_queries", *map(_display._visible, metrics)]
    assert cell_texts(root)[-len(metrics) :] == [_display.format_value(v) for v in metrics.values()]
    assert len(repr(r)) < 200 + 25 * 6  # 6 metrics at most, each cut to 4 decimals


def test_to_pandas_without_pandas_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, result: EvalResult
) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` now raises ImportError
    for convert in (result.to_pandas, _profiler().to_pandas, _profiler().report().to_pandas):
        with pytest.raises(MissingDependencyError, match=r"mlsys-common\[pandas\]"):
            convert()
    c = Comparison("m", 0.5, 0.4, 0.1, 0.0, 0.2, 0.95, 0.01, 0.01, 2.0, 5, 10, 0)
    with pytest.raises(ImportError):  # MissingDependencyError is an ImportError
        c.to_pandas()
    assert "<table>" in result._repr_html_()  # display needs no pandas


def test_mixin_default_table_is_the_scalar_fields() -> None:
    from dataclasses import dataclass, field

    @dataclass
    class Rec(TabularDisplay):
        name: str
        value: float
        n: int
        extra: list[int] = field(default_factory=list)

    frame = Rec("a", 0.125, 3, [1])._display_table()
    assert frame.columns == ("name", "value", "n") and frame.rows == (("a", 0.125, 3),)


def test_module_doctests() -> None:
    from mlsys.common.profiling import _report

    for mod in (_display, _report):
        res = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert res.failed == 0 and res.attempted > 0


def test_every_progress_bar_is_tqdm_auto() -> None:
    """Notebook widgets where Jupyter runs, text bars in a terminal: no package imports terminal tqdm."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "packages"
    terminal = re.compile(r"from tqdm import|^\s*import tqdm\s*$|import_optional\(\"tqdm\"")
    offenders = [
        f"{p.relative_to(root)}:{i}"
        for p in sorted(root.glob("*/src/mlsys/**/*.py"))
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if terminal.search(line)
    ]
    assert offenders == []


def test_render_html_shortens_long_tables() -> None:
    t = DisplayTable("long", ("i", "v"), tuple((i, i / 7) for i in range(100)), index="i")
    html = render_html(t, max_rows=10)
    root = parse(html)
    rows = list(root.iter("tr"))
    assert len(rows) == 1 + 10 + 1  # header, 10 rows, the "... more rows" row
    texts = cell_texts(root)
    assert "0" in texts and "99" in texts and "... 90 more rows" in texts
    assert table_to_pandas(t).shape == (100, 1)  # the frame keeps every row
