"""Regenerate the paired ``.ipynb`` from the jupytext percent scripts and execute every notebook.

The percent scripts (``NN_name.py``) are the source of truth; the committed ``.ipynb`` beside them
are generated from them *without outputs* (``--sync``), so a review diff shows code, not output
noise. Execution writes the executed copies to ``build/notebooks/`` (git-ignored), where the
documentation build (``nox -s docs``) picks them up as tutorials.

    python examples/notebooks/run_notebooks.py --sync           # regenerate the .ipynb only
    python examples/notebooks/run_notebooks.py                  # regenerate, then execute all
    python examples/notebooks/run_notebooks.py 00_tour --limit 300

Each notebook runs in its own process group with a wall-clock limit (``--limit`` seconds, default
600); a notebook that raises, or runs past its limit, fails the run (exit status 1) after the
others have run. Run times are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
OUT = REPO / "build" / "notebooks"


def scripts() -> list[Path]:
    """The percent scripts, in order (``NN_*.py``)."""
    return sorted(p for p in HERE.glob("[0-9][0-9]_*.py"))


def paired_notebook(script: Path) -> dict:  # type: ignore[type-arg]
    """The output-free notebook that ``script`` generates (what is committed beside it)."""
    import jupytext

    nb = jupytext.read(script)
    nb.metadata.pop("jupytext", None)  # keep the committed file free of the tool's bookkeeping
    nb.metadata["jupytext"] = {"formats": "ipynb,py:percent"}
    for i, cell in enumerate(nb.cells):  # stable ids: jupytext draws random ones
        cell["id"] = f"cell-{i:02d}"
    return nb


def render(script: Path) -> str:
    """The exact text of the committed ``.ipynb`` for ``script``."""
    import jupytext

    return jupytext.writes(paired_notebook(script), fmt="ipynb")


def sync() -> list[Path]:
    """Rewrite every ``.ipynb`` from its script; returns those that changed."""
    changed = []
    for script in scripts():
        target = script.with_suffix(".ipynb")
        text = render(script)
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
            changed.append(target)
    return changed


def _execute_one(src: Path, dst: Path) -> None:
    """Execute ``src`` with cwd ``examples/notebooks`` and write the executed copy to ``dst``."""
    import nbclient
    import nbformat

    nb = nbformat.read(src, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=None, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}
    )
    try:
        client.execute()
    finally:
        dst.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, dst)


def execute(names: list[str], limit: float, out: Path = OUT) -> list[tuple[str, float, str]]:
    """Run each notebook in a child process group under ``limit`` seconds: ``(name, seconds, status)``."""
    rows = []
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    for name in names:
        src, dst = HERE / f"{name}.ipynb", out / f"{name}.ipynb"
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, __file__, "--execute-one", str(src), str(dst)], env=env, start_new_session=True
        )
        try:
            rc = proc.wait(timeout=limit)
            status = "ok" if rc == 0 else f"FAILED (exit {rc})"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the kernel too: it is in the same process group
            proc.wait()
            status = f"FAILED (over the {limit:.0f} s limit)"
        seconds = time.perf_counter() - t0
        rows.append((name, seconds, status))
        print(f"[notebooks] {name}: {status} in {seconds:.1f} s", flush=True)
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="*", help="notebooks to run (default: all), e.g. 00_tour")
    parser.add_argument("--sync", action="store_true", help="only regenerate the .ipynb from the scripts")
    parser.add_argument("--limit", type=float, default=600.0, help="seconds per notebook (default 600)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"executed copies go here (default {OUT})")
    parser.add_argument("--execute-one", nargs=2, metavar=("SRC", "DST"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.execute_one:
        _execute_one(Path(args.execute_one[0]), Path(args.execute_one[1]))
        return 0
    changed = sync()
    print(
        f"[notebooks] regenerated {len(changed)} .ipynb from their percent scripts: {[p.name for p in changed]}"
    )
    if args.sync:
        return 0
    known = [s.stem for s in scripts()]
    names = args.names or known
    unknown = sorted(set(names) - set(known))
    if unknown:
        print(f"unknown notebooks {unknown}; known: {known}", file=sys.stderr)
        return 2
    rows = execute(names, args.limit, args.out)
    print("\n| notebook | run time | status |\n| --- | ---: | --- |")
    for name, seconds, status in rows:
        print(f"| `{name}` | {seconds:.0f} s | {status} |")
    return 0 if all(status == "ok" for _, _, status in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
