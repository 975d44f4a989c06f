"""Summary statistics of one stage: :class:`StageStats`, and budget violations."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from mlsys.common.errors import UnknownNameError

__all__ = ["PERCENTILES", "BudgetViolation", "Statistic", "StageStats"]

Statistic = Literal["mean", "p50", "p95", "p99", "max"]
#: The statistics a budget can be checked against.
PERCENTILES: tuple[str, ...] = ("mean", "p50", "p95", "p99", "max")
"""The statistics a budget can be checked against and a report shows."""


@dataclass(frozen=True, slots=True)
class StageStats:
    """Latency statistics of one stage, in seconds.

    ``count``, ``total``, ``mean``, ``min`` and ``max`` are exact over every sample ever recorded.
    ``p50``/``p95``/``p99`` are ``numpy.percentile`` (linear interpolation) over the stored samples:
    all of them while ``count <= capacity``, otherwise a uniform reservoir sample of ``capacity``
    of them (``sampled`` is then ``True`` and ``n_stored == capacity``).

    Example:
        >>> import numpy as np
        >>> s = StageStats.from_samples(np.array([0.001, 0.002, 0.003]))
        >>> s.count, round(s.p50, 6), s.max
        (3, 0.002, 0.003)
    """

    count: int
    total: float
    mean: float
    min: float
    p50: float
    p95: float
    p99: float
    max: float
    n_stored: int

    @property
    def sampled(self) -> bool:
        """True when percentiles come from a reservoir sample rather than every sample."""
        return self.n_stored < self.count

    def get(self, statistic: str) -> float:
        """Return one statistic by name (``"mean"``, ``"p50"``, ``"p95"``, ``"p99"``, ``"max"``)."""
        if statistic not in PERCENTILES:
            raise UnknownNameError(f"unknown statistic {statistic!r}; valid: {list(PERCENTILES)}")
        return float(getattr(self, statistic))

    def to_dict(self) -> dict[str, float | int | bool]:
        """Plain-dict form (JSON-serialisable), seconds."""
        d: dict[str, float | int | bool] = asdict(self)
        d["sampled"] = self.sampled
        return d

    @classmethod
    def from_samples(
        cls,
        samples: npt.NDArray[np.float64],
        *,
        count: int | None = None,
        total: float | None = None,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> StageStats:
        """Summarise ``samples`` (seconds); exact aggregates may be passed when ``samples`` is a reservoir."""
        n_stored = int(samples.shape[0])
        count = n_stored if count is None else count
        if count == 0:
            nan = math.nan
            return cls(0, 0.0, nan, nan, nan, nan, nan, nan, 0)
        total = float(samples.sum()) if total is None else total
        p50, p95, p99 = (float(v) for v in np.percentile(samples, [50, 95, 99]))
        return cls(
            count=count,
            total=total,
            mean=total / count,
            min=float(samples.min()) if minimum is None else minimum,
            p50=p50,
            p95=p95,
            p99=p99,
            max=float(samples.max()) if maximum is None else maximum,
            n_stored=n_stored,
        )


@dataclass(frozen=True, slots=True)
class BudgetViolation:
    """A stage whose observed latency statistic exceeds its budget (seconds).

    Example:
        >>> v = BudgetViolation("retrieval", "p95", observed=0.0062, budget=0.005, count=1000)
        >>> str(v)
        'retrieval: p95 6.200 ms > budget 5.000 ms (1.24x, n=1000)'
    """

    stage: str
    statistic: str
    observed: float
    budget: float
    count: int

    @property
    def ratio(self) -> float:
        """``observed / budget`` (> 1 for a violation)."""
        return self.observed / self.budget

    def __str__(self) -> str:
        return (
            f"{self.stage}: {self.statistic} {self.observed * 1e3:.3f} ms > budget {self.budget * 1e3:.3f} ms "
            f"({self.ratio:.2f}x, n={self.count})"
        )
