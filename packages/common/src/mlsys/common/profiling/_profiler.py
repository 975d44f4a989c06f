"""The latency profiler: named stages, requests (end-to-end samples), budgets, report, JSON, plot."""

from __future__ import annotations

import functools
import json
import math
import threading
from collections.abc import Callable, Mapping
from time import perf_counter_ns
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

import numpy as np
import numpy.typing as npt

from mlsys.common.errors import InvalidInputError, UnknownNameError
from mlsys.common.limits import check_size
from mlsys.common.profiling._merge import merge_samples, merge_stats
from mlsys.common.profiling._recorder import Snapshot, StageRecorder
from mlsys.common.profiling._report import UNITS, LatencyReport
from mlsys.common.profiling._stats import PERCENTILES, BudgetViolation, StageStats

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from pandas import DataFrame  # type: ignore[import-untyped]

__all__ = ["END_TO_END", "LatencyProfiler"]

#: Name under which end-to-end samples are recorded (see :meth:`LatencyProfiler.request`).
END_TO_END = "end_to_end"
"""Name of the per-request stage that :meth:`LatencyProfiler.request` records."""
_E2E_INDEX = 0

P = ParamSpec("P")
R = TypeVar("R")


class _ThreadState:
    """One thread's stage stack and its recorders (indexed like ``LatencyProfiler._names``)."""

    __slots__ = ("ordinal", "recs", "stack", "thread")

    def __init__(self, ordinal: int, thread: threading.Thread) -> None:
        self.ordinal = ordinal
        self.thread = thread
        self.stack: list[int] = []
        self.recs: list[StageRecorder | None] = []


class _Timer:
    """Reusable, allocation-free context manager timing one stage (or one request).

    One instance per stage name, shared by every thread: the start times live on the calling
    thread's stack and the samples in that thread's recorders, never on the instance, so
    concurrent and recursive use is safe without a lock.
    """

    __slots__ = ("_index", "_is_stage", "_local", "_profiler")

    def __init__(self, profiler: LatencyProfiler, index: int) -> None:
        self._profiler = profiler
        self._local = profiler._local
        self._index = index
        self._is_stage = index != _E2E_INDEX  # else: the request timer

    def __enter__(self) -> _Timer:
        try:
            state: _ThreadState = self._local.state
        except AttributeError:
            state = self._profiler._new_thread_state()
        state.stack.append(perf_counter_ns())
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        end = perf_counter_ns()
        state: _ThreadState = self._local.state
        stack = state.stack
        seconds = (end - stack.pop()) * 1e-9
        recs = state.recs
        if self._is_stage:
            try:
                rec = recs[self._index]
            except IndexError:  # first sample of this stage on this thread (try is free in 3.11+)
                rec = None
            if rec is None:
                rec = self._profiler._thread_recorder(state, self._index)
            rec.add(seconds)
        if not stack:  # outermost span of this thread: one end-to-end sample
            e2e = recs[_E2E_INDEX] if recs else None
            if e2e is None:
                e2e = self._profiler._thread_recorder(state, _E2E_INDEX)
            e2e.add(seconds)


class LatencyProfiler:
    """Per-stage and end-to-end latency statistics with budgets, a text report, JSON and a plot.

    **Stages.** ``with profiler.stage("retrieval"):`` (or the :meth:`timed` decorator) times a
    block with ``time.perf_counter_ns`` and records it under that name. Stages nest freely; every
    stage is recorded under its **own plain name**, never a qualified ``"outer/inner"`` path, so
    ``stats()["decode"]`` and a budget on ``"decode"`` cover every call site. A stage that raises
    is still recorded (the time was spent).

    **End-to-end.** One ``"end_to_end"`` sample is recorded per *outermost* span of a thread:
    a ``with profiler.request():`` block, or a stage entered while no stage or request is open on
    that thread. Wrap the stages of one request in :meth:`request` when they are siblings
    (``decode``, ``resize``, ``model``, ...), so that their sum (plus the gaps between them) is one
    end-to-end sample; a single outermost stage is its own request.

    **Storage.** Each thread records each stage into its own preallocated float64 numpy buffer of
    ``capacity`` samples. Beyond that the buffer keeps a uniform reservoir sample (seeded by
    ``seed``, the stage name and the thread's first-use order), so p50/p95/p99 become estimates
    with the usual sampling error, while ``count``, ``mean``, ``min`` and ``max`` stay exact.
    Reading merges the threads: with no reservoir in play the percentiles are exactly
    ``numpy.percentile`` of every sample; otherwise each stored sample is weighted by the number
    of samples it stands for. Memory is at most ``8 * capacity`` bytes per stage and thread
    (pages are touched only as they fill); a new thread adopts the buffers of a finished one, so
    memory follows the number of *concurrent* threads, not of threads ever started.

    **Threads.** Each thread has its own stage stack and its own buffers, so the record path takes
    no lock and allocates nothing; a lock guards only the creation of stages and per-thread
    buffers, :meth:`reset` and reads. A read taken while other threads record may miss the samples
    in flight. Stages must nest properly within a thread (``with`` blocks guarantee it);
    interleaving coroutines of one thread inside the same profiler is not supported.

    Example:
        >>> prof = LatencyProfiler(capacity=1000)
        >>> with prof.request():
        ...     with prof.stage("retrieval"):
        ...         pass
        ...     with prof.stage("rerank"):
        ...         pass
        >>> sorted(prof.stats())
        ['end_to_end', 'rerank', 'retrieval']
        >>> prof.stats()["retrieval"].count
        1
        >>> prof.check_budgets({"retrieval": 1.0})
        []
    """

    __slots__ = (
        "_capacity",
        "_index",
        "_local",
        "_lock",
        "_names",
        "_request_timer",
        "_seed",
        "_states",
        "_timers",
    )

    def __init__(self, capacity: int = 100_000, seed: int = 0) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise InvalidInputError(f"capacity must be a positive integer, got {capacity!r}")
        check_size(capacity, "max_buffer", name="capacity")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidInputError(f"seed must be an integer, got {seed!r}")
        self._capacity = capacity
        self._seed = seed
        self._local = threading.local()
        self._lock = threading.Lock()  # creation of stages/threads, reset and reads; never recording
        self._names: list[str] = [END_TO_END]
        self._index: dict[str, int] = {END_TO_END: _E2E_INDEX}
        self._states: list[_ThreadState] = []
        self._request_timer = _Timer(self, _E2E_INDEX)
        self._timers: dict[str, _Timer] = {}

    # ------------------------------------------------------------------ configuration

    @property
    def capacity(self) -> int:
        """Samples kept per stage and thread before reservoir sampling starts."""
        return self._capacity

    @property
    def seed(self) -> int:
        """Seed of the reservoir sampling."""
        return self._seed

    def __repr__(self) -> str:
        return f"LatencyProfiler(capacity={self._capacity}, seed={self._seed})"

    # ------------------------------------------------------------------ internals

    def _new_thread_state(self) -> _ThreadState:
        current = threading.current_thread()
        with self._lock:
            # Adopt the buffers of a finished thread, so that short-lived threads (a pool per
            # request) keep memory bounded by the number of concurrent threads. Its samples stay.
            for state in self._states:
                if not state.thread.is_alive():
                    state.thread = current
                    state.stack = []
                    break
            else:
                state = _ThreadState(len(self._states), current)
                self._states.append(state)
        self._local.state = state
        return state

    def _thread_state(self) -> _ThreadState:
        try:
            state: _ThreadState = self._local.state
        except AttributeError:
            state = self._new_thread_state()
        return state

    def _thread_recorder(self, state: _ThreadState, index: int) -> StageRecorder:
        with self._lock:
            recs = state.recs
            if index >= len(recs):
                recs.extend([None] * (index + 1 - len(recs)))
            rec = recs[index]
            if rec is None:
                # A str seed is hashed with SHA-512 by random.Random: stable across runs.
                rec = StageRecorder(self._capacity, f"{self._seed}/{self._names[index]}/{state.ordinal}")
                recs[index] = rec
        return rec

    def _stage_index(self, name: str) -> int:
        if not isinstance(name, str) or not name:
            raise InvalidInputError(f"stage name must be a non-empty string, got {name!r}")
        index = self._index.get(name)
        if index is None:
            with self._lock:
                index = self._index.get(name)
                if index is None:
                    index = len(self._names)
                    self._names.append(name)
                    self._timers[name] = _Timer(self, index)
                    self._index[name] = index
        return index

    def _known(self, name: str) -> int:
        index = self._index.get(name) if isinstance(name, str) else None
        if index is None:
            raise UnknownNameError(f"unknown stage {name!r}; known stages: {[*self.stage_names, END_TO_END]}")
        return index

    def _snapshots(self, index: int) -> list[Snapshot]:
        with self._lock:
            recorders = [st.recs[index] if index < len(st.recs) else None for st in self._states]
        return [rec.snapshot() for rec in recorders if rec is not None]

    def _stats_of(self, index: int) -> StageStats:
        return merge_stats(self._snapshots(index))

    # ------------------------------------------------------------------ recording

    def stage(self, name: str) -> _Timer:
        """Context manager timing one stage; the returned object is cached and reusable.

        ``name`` must be a non-empty string other than ``"end_to_end"`` (use :meth:`request`).

        Example:
            >>> prof = LatencyProfiler()
            >>> with prof.stage("decode"):
            ...     _ = sum(range(100))
            >>> prof.stats()["decode"].count
            1
        """
        try:
            timer = self._timers.get(name)
        except TypeError:  # unhashable: reported as a bad name below
            timer = None
        if timer is None:
            if name == END_TO_END:
                raise InvalidInputError(
                    f"{END_TO_END!r} is reserved for end-to-end samples; use profiler.request() to record them"
                )
            self._stage_index(name)
            timer = self._timers[name]
        return timer

    def request(self) -> _Timer:
        """Context manager grouping everything inside it into one ``"end_to_end"`` sample.

        Requests may nest (only the outermost records, like stages) and may contain any stages.

        Example:
            >>> prof = LatencyProfiler()
            >>> for _ in range(3):
            ...     with prof.request():
            ...         with prof.stage("a"):
            ...             pass
            ...         with prof.stage("b"):
            ...             pass
            >>> prof.stats()["end_to_end"].count, prof.stats()["a"].count
            (3, 3)
        """
        return self._request_timer

    #: Alias of :meth:`request`.
    trace = request

    @overload
    def timed(self, name: Callable[P, R], /) -> Callable[P, R]: ...

    @overload
    def timed(self, name: str | None = None, /) -> Callable[[Callable[P, R]], Callable[P, R]]: ...

    def timed(self, name: str | Callable[P, R] | None = None, /) -> Any:
        """Decorator timing every call of a function as a stage (default name: its ``__qualname__``).

        Usable bare (``@prof.timed``) or with a name (``@prof.timed("embed")``).

        Example:
            >>> prof = LatencyProfiler()
            >>> @prof.timed("square")
            ... def square(x: int) -> int:
            ...     return x * x
            >>> square(3), prof.stats()["square"].count
            (9, 1)
        """

        def decorate(fn: Callable[P, R], stage_name: str) -> Callable[P, R]:
            timer = self.stage(stage_name)

            @functools.wraps(fn)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
                with timer:
                    return fn(*args, **kwargs)

            return wrapper

        if callable(name):
            return decorate(name, name.__qualname__)
        if name is not None and not isinstance(name, str):
            raise InvalidInputError(f"timed() takes a stage name or a function, got {name!r}")

        def decorator(fn: Callable[P, R]) -> Callable[P, R]:
            return decorate(fn, name if name is not None else fn.__qualname__)

        return decorator

    def record(self, name: str, seconds: float) -> None:
        """Record a duration measured elsewhere (seconds). ``name`` may be ``"end_to_end"``.

        Unlike a stage, a recorded sample never adds an end-to-end sample by itself.

        Example:
            >>> prof = LatencyProfiler()
            >>> prof.record("gpu", 0.004)
            >>> prof.stats()["gpu"].max
            0.004
        """
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
            raise InvalidInputError(
                f"duration of {name!r} must be a finite number of seconds, got {seconds!r}"
            )
        if seconds < 0:
            raise InvalidInputError(f"duration of {name!r} must be >= 0 seconds, got {seconds!r}")
        index = self._stage_index(name)
        state = self._thread_state()
        recs = state.recs
        rec = recs[index] if index < len(recs) else None
        if rec is None:
            rec = self._thread_recorder(state, index)
        rec.add(float(seconds))

    def reset(self) -> None:
        """Forget every sample of every thread (stage names stay known; reservoirs restart from the seed).

        A stage open during the reset is recorded when it exits, into the new statistics.
        """
        with self._lock:
            for state in self._states:
                state.recs = []

    # ------------------------------------------------------------------ combining and pickling

    def _thread_snapshots(self) -> list[dict[str, Snapshot]]:
        with self._lock:
            names = list(self._names)
            per_thread = [list(st.recs) for st in self._states]
        return [
            {names[i]: rec.snapshot() for i, rec in enumerate(recs) if rec is not None and rec.count}
            for recs in per_thread
        ]

    def _absorb(self, threads: list[dict[str, Snapshot]]) -> None:
        for snaps in threads:
            if not snaps:
                continue
            indices = {name: self._stage_index(name) for name in snaps}
            with self._lock:
                # An unstarted Thread is never alive: the state counts as a finished thread's
                # (a new thread may adopt it and keep recording into it).
                state = _ThreadState(len(self._states), threading.Thread())
                state.recs = [None] * len(self._names)
                for name, snap in snaps.items():
                    seed = f"{self._seed}/{name}/{state.ordinal}"
                    state.recs[indices[name]] = StageRecorder.restore(self._capacity, seed, snap)
                self._states.append(state)

    def merge(self, other: LatencyProfiler) -> None:
        """Add every sample of ``other`` (e.g. a profiler returned by a worker process) to this one.

        Counts, totals, min and max add up exactly; stored samples are kept per source thread and
        weighted when percentiles are read, so the result is what one profiler recording
        everything would report (exactly, while no reservoir is in play). Both profilers must
        have the same capacity; ``other`` is not modified.

        Example:
            >>> a, b = LatencyProfiler(), LatencyProfiler()
            >>> a.record("s", 0.001); b.record("s", 0.003)
            >>> a.merge(b)
            >>> a.stats()["s"].count, a.stats()["s"].p50
            (2, 0.002)
        """
        if not isinstance(other, LatencyProfiler):
            raise InvalidInputError(f"can only merge a LatencyProfiler, got {type(other).__name__}")
        if other is self:
            raise InvalidInputError("cannot merge a profiler into itself")
        if other.capacity != self._capacity:
            raise InvalidInputError(
                f"cannot merge a profiler of capacity {other.capacity} into one of capacity {self._capacity}; "
                "expected equal capacities"
            )
        self._absorb(other._thread_snapshots())

    def __getstate__(self) -> dict[str, Any]:
        """Pickle support (a profiler travels to and from worker processes with its samples)."""
        return {
            "format": 1,
            "capacity": self._capacity,
            "seed": self._seed,
            "names": self.stage_names,
            "threads": self._thread_snapshots(),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        if state.get("format") != 1:
            raise InvalidInputError(
                f"unknown LatencyProfiler pickle format {state.get('format')!r}; expected 1"
            )
        LatencyProfiler.__init__(self, state["capacity"], state["seed"])
        for name in state["names"]:
            self._stage_index(name)
        self._absorb(state["threads"])

    # ------------------------------------------------------------------ reading

    @property
    def stage_names(self) -> list[str]:
        """Every stage name known, in the order first named (a ``timed`` function names its stage when decorated)."""
        with self._lock:
            return self._names[1:]

    def stats(self) -> dict[str, StageStats]:
        """Statistics of every stage with at least one sample, in :attr:`stage_names` order, ``"end_to_end"`` last."""
        with self._lock:
            n = len(self._names)
        out: dict[str, StageStats] = {}
        for index in [*range(1, n), _E2E_INDEX]:
            s = self._stats_of(index)
            if s.count:
                out[self._names[index]] = s
        return out

    def samples(self, name: str) -> npt.NDArray[np.float64]:
        """The stored samples of one stage across threads (seconds; reservoirs beyond capacity)."""
        values, _ = merge_samples(self._snapshots(self._known(name)))
        return values

    def check_budgets(self, budgets: Mapping[str, float], percentile: str = "p95") -> list[BudgetViolation]:
        """Return the stages whose ``percentile`` latency exceeds their budget (seconds).

        Args:
            budgets: ``{stage: seconds}``; ``"end_to_end"`` is allowed. A name the profiler has
                never seen raises :class:`~mlsys.common.errors.UnknownNameError` (a typo must not
                pass silently); a known stage without samples cannot violate its budget.
            percentile: ``"p50"``, ``"p95"``, ``"p99"``, ``"mean"`` or ``"max"``.

        Returns:
            The violations in the order of ``budgets``; empty when every budget holds.

        Example:
            >>> prof = LatencyProfiler()
            >>> prof.record("retrieval", 0.008)
            >>> [str(v) for v in prof.check_budgets({"retrieval": 5e-3}, percentile="p95")]
            ['retrieval: p95 8.000 ms > budget 5.000 ms (1.60x, n=1)']
        """
        if percentile not in PERCENTILES:
            raise UnknownNameError(f"unknown percentile {percentile!r}; valid: {list(PERCENTILES)}")
        checked: list[tuple[str, int, float]] = []
        for name, budget in budgets.items():
            index = self._known(name)
            if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not budget > 0:
                raise InvalidInputError(
                    f"budget of {name!r} must be a positive number of seconds, got {budget!r}"
                )
            if not math.isfinite(budget):
                raise InvalidInputError(f"budget of {name!r} must be finite, got {budget!r}")
            checked.append((name, index, float(budget)))
        violations: list[BudgetViolation] = []
        for name, index, budget in checked:
            s = self._stats_of(index)
            if s.count and s.get(percentile) > budget:
                violations.append(BudgetViolation(name, percentile, s.get(percentile), budget, s.count))
        return violations

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable snapshot: configuration and per-stage statistics in seconds.

        Example:
            >>> prof = LatencyProfiler(capacity=10)
            >>> prof.record("a", 0.5)
            >>> d = prof.to_dict()
            >>> d["unit"], d["stages"]["a"]["p50"]
            ('seconds', 0.5)
        """
        return {
            "unit": "seconds",
            "capacity": self._capacity,
            "seed": self._seed,
            "stages": {name: s.to_dict() for name, s in self.stats().items()},
        }

    def to_json(self, **kwargs: Any) -> str:
        """:meth:`to_dict` as a JSON string (``kwargs`` go to :func:`json.dumps`, default ``indent=2``).

        NaN never appears: stages without samples are left out.
        """
        kwargs.setdefault("indent", 2)
        return json.dumps(self.to_dict(), allow_nan=False, **kwargs)

    def report(self, *, unit: str | None = None) -> LatencyReport:
        """A text table: one row per stage (``end_to_end`` last) with count, mean, p50, p95, p99, max.

        The result is a ``str`` (a :class:`LatencyReport`) that also renders as an HTML table in a
        notebook and converts with ``to_pandas()`` (every statistic in seconds, unrounded).

        Args:
            unit: ``"s"``, ``"ms"`` or ``"us"``; by default the one that suits the largest p50.

        Example:
            >>> prof = LatencyProfiler()
            >>> prof.record("retrieval", 0.0042)
            >>> print(prof.report())  # doctest: +NORMALIZE_WHITESPACE
            stage      count   mean ms   p50 ms   p95 ms   p99 ms   max ms
            retrieval      1     4.200    4.200    4.200    4.200    4.200
        """
        if unit is not None and unit not in UNITS:
            raise UnknownNameError(f"unknown unit {unit!r}; valid: {list(UNITS)}")
        return LatencyReport(self.stats(), unit=unit)

    def to_pandas(self) -> DataFrame:
        """:meth:`report` as a data frame: one row per stage, every statistic in seconds (needs pandas).

        Example:
            >>> prof = LatencyProfiler()
            >>> prof.record("a", 0.25)
            >>> prof.to_pandas().loc["a", "p50"]  # doctest: +SKIP
            np.float64(0.25)
        """
        return self.report().to_pandas()

    def _repr_html_(self) -> str:
        return self.report()._repr_html_()

    def plot(self, *, unit: str = "ms", log: bool = True) -> Figure:
        """Per-stage latency distributions (box: p25-p75, whiskers: p1-p99, markers: p95/p99, max).

        Needs matplotlib (``pip install 'mlsys-common[plot]'``); it is imported only here, and the
        figure is built without pyplot, so no GUI backend is touched.

        Example:
            >>> prof = LatencyProfiler()
            >>> prof.record("a", 0.001)
            >>> fig = prof.plot()  # doctest: +SKIP
            >>> fig.savefig("latency.png")  # doctest: +SKIP
        """
        from mlsys.common.profiling._plot import plot_latencies

        stats = self.stats()
        return plot_latencies({n: self.samples(n) for n in stats}, stats, unit=unit, log=log)
