"""The example notebooks (examples/notebooks): paired .ipynb in sync with their percent scripts.

The jupytext percent scripts are the source of truth; ``run_notebooks.py --sync`` writes the
output-free .ipynb beside them. A script edited without re-syncing fails here (fast, no kernel).
Executing the notebooks is ``nox -s notebooks`` (minutes); the slow test below runs them once on
generated data, with the shared data sets hidden.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "examples" / "notebooks"
SCRIPTS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))

jupytext = pytest.importorskip(
    "jupytext",
    reason="jupytext is not installed: pip install -c constraints.txt -r requirements/notebooks.txt",
)


def _runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_notebooks", NOTEBOOKS / "run_notebooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_four_notebooks_exist() -> None:
    assert [p.stem for p in SCRIPTS] == ["00_tour", "01_recsys", "02_rag", "03_vision"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_ipynb_is_in_sync_with_its_percent_script(script: Path) -> None:
    committed = script.with_suffix(".ipynb")
    assert committed.is_file(), (
        f"{committed.name} is missing: run python examples/notebooks/run_notebooks.py --sync"
    )
    expected = _runner().render(script)
    assert committed.read_text(encoding="utf-8") == expected, (
        f"{committed.name} is stale against {script.name}: run python examples/notebooks/run_notebooks.py --sync"
    )
    # the round trip the other way: the notebook's cells give back the script's cells
    back = jupytext.reads(committed.read_text(encoding="utf-8"), fmt="ipynb")
    here = jupytext.read(script)
    assert [(c.cell_type, c.source) for c in back.cells] == [(c.cell_type, c.source) for c in here.cells]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_committed_notebooks_carry_no_outputs(script: Path) -> None:
    nb = json.loads(script.with_suffix(".ipynb").read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)


def test_a_stale_pair_is_detected(tmp_path: Path) -> None:
    script = tmp_path / "00_x.py"
    script.write_text(SCRIPTS[0].read_text(encoding="utf-8") + "\n# %%\nprint('added')\n", encoding="utf-8")
    runner = _runner()
    assert runner.render(script) != SCRIPTS[0].with_suffix(".ipynb").read_text(encoding="utf-8")
    assert "print('added')" in runner.render(script)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_first_output_names_the_data(script: Path) -> None:
    """Each notebook's first code cell prints where its data comes from (shared set or generated)."""
    first = next(c for c in jupytext.read(script).cells if c.cell_type == "code")
    assert "data_root()" in first.source and "print(" in first.source
    assert "generated" in first.source


@pytest.mark.slow
def test_notebooks_run_on_generated_data_when_the_data_sets_are_absent(tmp_path: Path) -> None:
    pytest.importorskip("nbclient", reason="pip install -c constraints.txt -r requirements/notebooks.txt")
    empty = tmp_path / "no-data"
    empty.mkdir()
    out = tmp_path / "executed"
    env = {**os.environ, "MLSYS_DATA": str(empty), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(NOTEBOOKS / "run_notebooks.py"), "--limit", "600", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=2400,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for script in SCRIPTS:
        nb = json.loads((out / f"{script.stem}.ipynb").read_text(encoding="utf-8"))
        first = next(
            "".join(o.get("text", ""))
            for c in nb["cells"]
            if c["cell_type"] == "code"
            for o in c["outputs"]
            if o.get("output_type") == "stream" and o.get("name") == "stdout"
        )
        assert "generated" in first or "absent" in first, f"{script.stem}'s first output: {first!r}"
