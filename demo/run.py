"""The mlsys tour: runs every capability that exists so far and prints its figures.

Each package contributes one module here (``demo/<package>.py``) with a ``main()`` function. Data
sets come from ``$MLSYS_DATA`` (default ``../shared/data``); a missing data set is reported and that
part falls back to generated data or is skipped, never crashes the tour.

    python demo/run.py                 # everything
    python demo/run.py common rag      # only these parts
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PARTS = ["common", "ann", "recsys", "explore", "rag", "vision"]


def _load(name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(f"mlsys_demo_{name}", HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str]) -> int:
    wanted = argv or PARTS
    unknown = [w for w in wanted if w not in PARTS]
    if unknown:
        print(f"unknown demo parts {unknown}; valid: {PARTS}", file=sys.stderr)
        return 2
    failures = []
    for name in wanted:
        if not (HERE / f"{name}.py").exists():
            print(f"\n=== {name}: not built yet ===")
            continue
        print(f"\n{'=' * 78}\n=== mlsys tour: {name}\n{'=' * 78}", flush=True)
        t0 = time.perf_counter()
        try:
            _load(name).main()
        except Exception as exc:  # report and carry on: one broken part must not hide the others
            failures.append(name)
            print(f"!!! demo part {name!r} failed: {type(exc).__name__}: {exc}", flush=True)
        print(f"--- {name} took {time.perf_counter() - t0:.1f} s", flush=True)
    if failures:
        print(f"\nFAILED demo parts: {failures}")
        return 1
    print("\nmlsys tour finished.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
