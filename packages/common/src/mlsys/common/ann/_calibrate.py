"""``calibrate``: pick the smallest ef / nprobe that reaches a recall target on sample queries.

The ef an HNSW graph needs for recall@10 = 0.95 moves by an order of magnitude between data
distributions, so no fixed default is right. :func:`calibrate` measures recall against exact search
over the index's own vectors, doubles the search knob until the target is met, then bisects back
down to the smallest value that still meets it, and reports what it measured at each step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from mlsys.common.ann._base import BaseIndex
from mlsys.common.ann._exact import ExactIndex
from mlsys.common.ann._faiss import FaissIndex
from mlsys.common.ann._hnsw import HNSWIndex
from mlsys.common.errors import EmptyIndexError, InvalidInputError
from mlsys.common.validation import as_array, as_vectors, check_k

__all__ = ["CalibrationResult", "CalibrationStep", "calibrate", "recall_at_k", "search_knob"]


@dataclass(frozen=True)
class CalibrationStep:
    """One measured setting: the knob value, recall@k and mean seconds per query (batch search)."""

    value: int
    recall: float
    seconds_per_query: float


@dataclass(frozen=True)
class CalibrationResult:
    """What :func:`calibrate` chose and measured.

    Attributes:
        params: the chosen search parameters, e.g. ``{"ef_search": 48}`` (empty for exact indexes).
        recall: recall@k measured with ``params`` on the sample queries.
        seconds_per_query: mean latency per query of a batch search with ``params``.
        target_recall: the target asked for.
        met: whether ``recall >= target_recall`` (False when even the largest value falls short).
        k: the cutoff.
        steps: every setting tried, in order.
    """

    params: dict[str, int]
    recall: float
    seconds_per_query: float
    target_recall: float
    met: bool
    k: int
    steps: list[CalibrationStep] = field(default_factory=list)

    @property
    def qps(self) -> float:
        """Queries per second at the chosen parameters."""
        return 1.0 / self.seconds_per_query if self.seconds_per_query > 0 else float("inf")


def recall_at_k(found: npt.NDArray[np.int64], truth: npt.NDArray[np.int64]) -> float:
    """Mean over queries of ``|found_i ∩ truth_i| / |truth_i|`` (padding ``-1`` ignored).

    Example:
        >>> recall_at_k(np.array([[1, 2, 3]]), np.array([[3, 4, 1]]))
        0.6666666666666666
    """
    found, truth = as_array(found, name="found"), as_array(truth, name="truth")
    if found.ndim != 2 or truth.ndim != 2 or found.shape[0] != truth.shape[0]:
        raise InvalidInputError(
            f"found and truth must be (n_queries, k) id arrays with the same number of rows, got "
            f"shapes {found.shape} and {truth.shape}"
        )
    total = 0.0
    n = 0
    for f, t in zip(found.tolist(), truth.tolist()):
        tset = {x for x in t if x >= 0}
        if not tset:
            continue
        total += len(tset.intersection(f)) / len(tset)
        n += 1
    return total / n if n else 1.0


def search_knob(index: Any) -> tuple[str, int, int] | None:
    """``(parameter name, current value, largest useful value)`` of an index's search knob, or None.

    Example:
        >>> from mlsys.common.spaces import EmbeddingSpace
        >>> search_knob(HNSWIndex(EmbeddingSpace("demo", "1", 4), ef=32))
        ('ef', 32, 4096)
    """
    if isinstance(index, HNSWIndex):
        return "ef", index._config.ef, max(4096, len(index))
    if isinstance(index, FaissIndex) and index.is_trained:
        if index._hnsw is not None:
            return "ef_search", index._config.ef_search, max(4096, len(index))
        if index._ivf is not None:
            return "nprobe", index._config.nprobe, int(index._ivf.nlist)
    return None


def calibrate(
    index: BaseIndex,
    sample_queries: Any,
    target_recall: float = 0.95,
    k: int = 10,
    *,
    start: int | None = None,
    apply: bool = True,
) -> CalibrationResult:
    """Find the smallest ef / nprobe whose recall@k on ``sample_queries`` reaches ``target_recall``.

    Ground truth is exact search over the index's own stored vectors. The knob (``ef`` for
    :class:`HNSWIndex`, ``ef_search`` for faiss HNSW, ``nprobe`` for faiss IVF) doubles from
    ``start`` (default ``k`` for graphs, 1 for IVF) until the target is met or the largest useful
    value is reached, then bisects down to the smallest value that meets it.

    Args:
        index: a built index (exact indexes and indexes without a knob return recall 1 / as measured).
        sample_queries: ``(nq, dim)`` queries representative of production traffic.
        target_recall: recall@k to reach, in ``(0, 1]``.
        k: the cutoff.
        start: first knob value tried.
        apply: set the chosen value on the index (otherwise the original value is restored).

    Returns:
        A :class:`CalibrationResult` with the chosen parameters and measured recall and latency.

    Example:
        >>> from mlsys.common.spaces import EmbeddingSpace
        >>> rng = np.random.default_rng(0)
        >>> x = rng.standard_normal((2000, 16)).astype(np.float32)
        >>> idx = HNSWIndex(EmbeddingSpace("demo", "1", 16, metric="l2"), M=8, ef=10)
        >>> idx.add(np.arange(2000), x)
        >>> res = calibrate(idx, x[:100] + 0.1, target_recall=0.9, k=10)
        >>> res.met, res.recall >= 0.9, idx.config.ef == res.params["ef"]
        (True, True, True)
    """
    k = check_k(k)
    if not (isinstance(target_recall, (int, float)) and 0.0 < target_recall <= 1.0):
        raise InvalidInputError(f"target_recall must be in (0, 1], got {target_recall!r}")
    q = as_vectors(sample_queries, dim=index.space.dim, name="sample_queries")
    if len(index) == 0:
        raise EmptyIndexError("cannot calibrate an empty index; expected at least one added item")
    ids = index.ids()
    oracle = ExactIndex(index.space)
    oracle._add_new(ids, index.get_vectors(ids))
    truth, _ = oracle.search(q, k)

    def measure() -> tuple[float, float]:
        index.search(q[: min(8, q.shape[0])], k)  # warm up
        t0 = time.perf_counter()
        found, _ = index.search(q, k)
        elapsed = (time.perf_counter() - t0) / q.shape[0]
        return recall_at_k(found, truth), elapsed

    knob = search_knob(index)
    if knob is None:
        rec, spq = measure()
        return CalibrationResult({}, rec, spq, float(target_recall), rec >= target_recall, k, [])
    name, original, top = knob
    steps: list[CalibrationStep] = []
    cache: dict[int, CalibrationStep] = {}

    def at(value: int) -> CalibrationStep:
        if value not in cache:
            index.set_params(**{name: value})
            rec, spq = measure()
            cache[value] = CalibrationStep(value, rec, spq)
            steps.append(cache[value])
        return cache[value]

    value = max(1, start if start is not None else (k if name != "nprobe" else 1))
    value = min(value, top)
    lo = 0  # largest value known to miss the target
    hit: CalibrationStep | None = None
    while True:
        step = at(value)
        if step.recall >= target_recall:
            hit = step
            break
        lo = value
        if value >= top:
            break
        value = min(top, value * 2)
    if hit is not None:
        hi = hit.value
        while hi - lo > max(1, hi // 16):  # bisect to within ~6% of the smallest passing value
            mid = (lo + hi) // 2
            if at(mid).recall >= target_recall:
                hi = mid
            else:
                lo = mid
        chosen = cache[hi]
    else:
        chosen = max(steps, key=lambda s: (s.recall, -s.value))
    index.set_params(**{name: chosen.value if apply else original})
    return CalibrationResult(
        {name: chosen.value},
        chosen.recall,
        chosen.seconds_per_query,
        float(target_recall),
        chosen.recall >= target_recall,
        k,
        steps,
    )
