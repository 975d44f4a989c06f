"""Gate: speed as ratios to an in-run reference (ABBA-interleaved, median over quads), and ANN recall.

Each ratio is ``time(candidate) / time(reference)`` measured side by side in this run, so a slower
or faster machine moves both sides; the gate compares ratios with their committed band, never
seconds. pytest-benchmark still records the candidate's absolute time.
"""

from __future__ import annotations

from typing import Any

import pytest

from gate import figures as F


def _record(benchmark: Any, figs: dict[str, Any]) -> None:
    benchmark.extra_info.setdefault("gate", {}).update(figs)


@pytest.fixture(scope="module")
def ann() -> dict[str, Any]:
    return F.ann_setup()


def test_gate_ann_recall(benchmark: Any, ann: dict[str, Any]) -> None:
    figs = F.ann_recall(ann)
    benchmark.pedantic(ann["hnswlib"].search, args=(ann["q"], 10), rounds=3, iterations=1)
    _record(benchmark, figs)


def test_gate_ann_speed(benchmark: Any, ann: dict[str, Any]) -> None:
    figs = F.ann_speed(ann)
    benchmark.pedantic(ann["hnswlib"].search, args=(ann["q"][:1], 10), rounds=200, iterations=1)
    _record(benchmark, figs)


@pytest.mark.parametrize(
    "which", ["metrics", "bm25", "chunker", "store", "profiling", "vision", "fast_paths"]
)
def test_gate_speed_ratio(benchmark: Any, which: str) -> None:
    fn = {
        "metrics": F.metrics_speed,
        "bm25": F.bm25_speed,
        "chunker": F.chunker_speed,
        "store": F.store_speed,
        "profiling": F.profiling_speed,
        "vision": F.vision_speed,
        "fast_paths": F.fast_paths_speed,
    }[which]
    figs = benchmark.pedantic(fn, rounds=1, iterations=1)
    _record(benchmark, figs)
