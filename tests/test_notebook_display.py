"""In a real Jupyter kernel, results display as HTML tables and figures as PNG (issue 25).

Executes a small notebook with nbclient: ``evaluate``, ``compare``, ``evaluate_recommender``, a
profiling report, ``format_table`` and the latency plot (never importing pyplot) must each come
back with a ``text/html`` (``image/png`` for the figure) representation. Skipped where nbclient or
ipykernel is not installed.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

CELLS = {
    "evaluate": (
        "from mlsys.common.metrics import evaluate, compare\n"
        "run = {'q1': {'d1': 2.0, 'd2': 1.0}, 'q2': {'d3': 1.0, 'd1': 0.5}}\n"
        "qrels = {'q1': {'d2': 1}, 'q2': {'d3': 2, 'd4': 1}}\n"
        "r = evaluate(run, qrels, ['ndcg@10', 'mrr@10'])\n"
        "r"
    ),
    "compare": (
        "flipped = {q: {d: -s for d, s in v.items()} for q, v in run.items()}\n"
        "compare(r, evaluate(flipped, qrels, ['ndcg@10', 'mrr@10']), 'ndcg@10', n_resamples=100)"
    ),
    "evaluate_recommender": (
        "from mlsys.recsys import Popularity, evaluate_recommender, format_table, random_holdout, synthetic_dataset\n"
        "data = synthetic_dataset()\n"
        "split = random_holdout(data.interactions, seed=0)\n"
        "res = evaluate_recommender(Popularity().fit(split.train, catalogue=data.items.ids), split, ks=(10,))\n"
        "res"
    ),
    "format_table": "format_table([res])",
    "report": (
        "from mlsys.common.profiling import LatencyProfiler\n"
        "prof = LatencyProfiler()\n"
        "prof.record('retrieval', 0.004)\n"
        "prof.report()"
    ),
    "plot": "fig = prof.plot()\nimport sys\nprint('pyplot' if 'matplotlib.pyplot' in sys.modules else 'no pyplot')\nfig",
}


@pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("nbclient", "nbformat", "ipykernel", "pandas")),
    reason="nbclient, nbformat, ipykernel or pandas is not installed",
)
def test_results_render_as_html_in_a_kernel(tmp_path: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    cells = dict(CELLS)
    if importlib.util.find_spec("matplotlib") is None:
        cells.pop("plot")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in cells.values()])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    for name, cell in zip(cells, nb.cells, strict=True):
        results = [o for o in cell.outputs if o.output_type == "execute_result"]
        assert len(results) == 1, name
        wanted = "image/png" if name == "plot" else "text/html"
        assert wanted in results[0].data, (name, sorted(results[0].data))
        if wanted == "text/html":
            assert "<table>" in results[0].data["text/html"], name
    if "plot" in cells:
        printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
        assert printed.strip() == "no pyplot"  # displayed inline without a pyplot backend
