"""Gate: quality figures (recsys, rag, chunk hashes, metrics parity, vision accuracy).

Each test stores its figures in ``benchmark.extra_info["gate"]``; ``nox -s bench -- --gate`` compares
them with ``benchmarks/gate/baseline.json`` (see ``gate/core.py``). Absent data sets and checkpoints
give ``skipped`` records with the reason, never failures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import shared_data_root
from gate import figures as F


def _record(benchmark: Any, figs: dict[str, Any]) -> None:
    benchmark.extra_info.setdefault("gate", {}).update(figs)


def _data(name: str) -> Path:
    return shared_data_root() / name


def test_gate_recsys_quality(benchmark: Any) -> None:
    figs: dict[str, Any] = {}
    benchmark.pedantic(
        lambda: figs.update(F.recsys_movielens(_data("movielens-100k"))), rounds=1, iterations=1
    )
    figs.update(F.recsys_synthetic())
    _record(benchmark, figs)


def test_gate_rag_quality(benchmark: Any, tmp_path: Path) -> None:
    figs: dict[str, Any] = {}
    benchmark.pedantic(lambda: figs.update(F.rag_scifact(_data("scifact"))), rounds=1, iterations=1)
    figs.update(F.rag_generated(tmp_path))
    _record(benchmark, figs)


def test_gate_chunk_hashes(benchmark: Any) -> None:
    text = F.generated_text()
    figs: dict[str, Any] = benchmark.pedantic(
        lambda: F.chunk_hashes(text, "generated"), rounds=1, iterations=1
    )
    sci = F.scifact_text(_data("scifact"))
    if sci is None:
        for name in F.chunker_configs():
            for part, kind in (("sha256", "hash"), ("count", "quality")):
                figs[f"rag.chunks.scifact.{name}.{part}"] = F.skipped(
                    f"data set scifact not found at {_data('scifact')}", kind
                )
    else:
        figs.update(F.chunk_hashes(sci, "scifact"))
    _record(benchmark, figs)


def test_gate_metrics_parity(benchmark: Any) -> None:
    figs = benchmark.pedantic(F.metrics_parity, rounds=1, iterations=1)
    _record(benchmark, figs)


def test_gate_vision_accuracy(benchmark: Any) -> None:
    figs = benchmark.pedantic(lambda: F.vision_accuracy(shared_data_root()), rounds=1, iterations=1)
    _record(benchmark, figs)
