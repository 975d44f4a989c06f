"""Propensity logging: what was shown, where, with which probability, and what happened.

A log is append-only JSON Lines: a header line ``{"format": "mlsys.propensity_log", "version": 1}``
then one record per line, flushed as it is written. A crash mid-write leaves a partial last
line: reading stops there with :class:`CorruptLogError`, which carries every record before it
(``err.records``), and :func:`repair_log` cuts such an incomplete last record off (a broken record
in the middle of a file is not cut silently: it raises, or with ``force=True`` the broken record
and everything after it move to ``<log>.tail`` for inspection). Parquet files are written whole
(:func:`write_parquet`, for closed logs): a truncated one has lost its footer and cannot be read
in part, so keep JSON Lines as the live, append-only log. Records
carry Open Bandit Pipeline's fields (``context``, ``action``, ``position``, ``propensity``,
``reward``) plus ``round_id``, ``policy_id``, ``policy_version`` and ``timestamp``;
:func:`to_feedback` turns them into :class:`BanditFeedback`. With pyarrow installed,
:func:`write_parquet` writes the same records as Parquet and :func:`read_log` reads either.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from mlsys.common.errors import (
    CorruptFileError,
    FormatVersionError,
    InvalidInputError,
    MissingDependencyError,
)
from mlsys.common.validation import as_array, as_ids
from mlsys.recsys.explore._feedback import BanditFeedback
from mlsys.recsys.explore._policies import Policy, Slate

__all__ = [
    "LOG_FORMAT",
    "LOG_VERSION",
    "CorruptLogError",
    "LogRecord",
    "PropensityLogger",
    "read_log",
    "repair_log",
    "to_feedback",
    "write_parquet",
]

LOG_FORMAT = "mlsys.propensity_log"
LOG_VERSION = 1


class CorruptLogError(CorruptFileError):
    """A log record is truncated or malformed. ``records`` holds every valid record before it,
    ``line`` the 1-based line (or Parquet row) of the broken one."""

    def __init__(self, message: str, *, path: object, line: int, records: list[LogRecord]) -> None:
        super().__init__(
            f"{path}:{line}: {message} ({len(records)} valid records before it are in err.records)"
        )
        self.path = path
        self.line = line
        self.records = records


@dataclass(frozen=True)
class LogRecord:
    """One impression: ``action`` shown at ``position`` in round ``round_id`` with ``propensity``.

    Example:
        >>> r = LogRecord(round_id=0, action=3, position=0, propensity=0.25, reward=1.0, policy_id="uniform")
        >>> LogRecord.from_json(r.to_json()) == r
        True
    """

    round_id: int
    action: int
    position: int
    propensity: float
    reward: float
    policy_id: str
    policy_version: str = ""
    timestamp: float = 0.0
    context: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("round_id", "action", "position"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 0:
                raise InvalidInputError(f"LogRecord.{name} must be a non-negative int, got {v!r}")
            object.__setattr__(self, name, int(v))
        p = self.propensity
        if isinstance(p, bool) or not isinstance(p, int | float | np.floating) or not 0 < float(p) <= 1:
            raise InvalidInputError(f"LogRecord.propensity must be in (0, 1], got {p!r}")
        r = self.reward
        if isinstance(r, bool) or not isinstance(r, int | float | np.number) or not math.isfinite(float(r)):
            raise InvalidInputError(f"LogRecord.reward must be a finite number, got {r!r}")
        if not isinstance(self.policy_id, str) or not self.policy_id:
            raise InvalidInputError(f"LogRecord.policy_id must be a non-empty str, got {self.policy_id!r}")
        if not isinstance(self.policy_version, str):
            raise InvalidInputError(f"LogRecord.policy_version must be a str, got {self.policy_version!r}")
        ts = self.timestamp
        if (
            isinstance(ts, bool)
            or not isinstance(ts, int | float | np.number)
            or not math.isfinite(float(ts))
        ):
            raise InvalidInputError(f"LogRecord.timestamp must be finite seconds, got {ts!r}")
        object.__setattr__(self, "propensity", float(p))
        object.__setattr__(self, "reward", float(r))
        object.__setattr__(self, "timestamp", float(ts))
        if self.context is not None:
            c = tuple(float(v) for v in np.asarray(self.context, dtype=np.float64).ravel())
            if not all(math.isfinite(v) for v in c):
                raise InvalidInputError("LogRecord.context must hold finite numbers")
            object.__setattr__(self, "context", c)

    def to_json(self) -> str:
        """One JSON line (no NaN or infinity) holding every field."""
        d = asdict(self)
        d["context"] = None if self.context is None else list(self.context)
        return json.dumps(d, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, line: str) -> LogRecord:
        """The record of one JSON line written by :meth:`to_json` (validated like a new record)."""
        d = json.loads(line)
        if not isinstance(d, dict):
            raise InvalidInputError(f"a log record must be a JSON object, got {type(d).__name__}")
        fields = set(cls.__dataclass_fields__)
        missing = {"round_id", "action", "position", "propensity", "reward", "policy_id"} - set(d)
        unknown = set(d) - fields
        if missing or unknown:
            raise InvalidInputError(
                f"log record fields: missing {sorted(missing)}, unknown {sorted(unknown)}"
            )
        ctx = d.get("context")
        d["context"] = None if ctx is None else tuple(ctx)
        return cls(**d)


_HEADER = json.dumps({"format": LOG_FORMAT, "version": LOG_VERSION}, separators=(",", ":"))


def _check_header(line: str, path: object) -> None:
    try:
        head = json.loads(line)
    except json.JSONDecodeError as exc:
        raise CorruptFileError(f"{path}:1: not a propensity log (header is not JSON: {exc})") from None
    if not isinstance(head, dict) or head.get("format") != LOG_FORMAT:
        raise CorruptFileError(f"{path}:1: not a propensity log (header {line.strip()[:80]!r})")
    if head.get("version") != LOG_VERSION:
        raise FormatVersionError(
            f"{path}: log format version {head.get('version')!r}, this reader knows {LOG_VERSION}"
        )


class PropensityLogger:
    """Append records to a JSON Lines log; optionally mirror uniform-random rounds to a shadow log.

    Args:
        path: the log file (created with its header, or appended to after its header is checked).
        shadow_path: where rounds served by the uniform bucket of a
            :class:`~mlsys.recsys.explore.ShadowExploration` policy are also written, with their
            uniform propensities: a clean uniform-random log for counterfactual evaluation.
        fsync: ``os.fsync`` after every write (durable, slower).

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "log.jsonl")
        >>> with PropensityLogger(path) as log:
        ...     log.log(LogRecord(round_id=0, action=1, position=0, propensity=0.5, reward=0.0, policy_id="p"))
        >>> len(read_log(path))
        1
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        shadow_path: str | os.PathLike[str] | None = None,
        fsync: bool = False,
    ) -> None:
        self.path = Path(path)
        self.shadow_path = None if shadow_path is None else Path(shadow_path)
        self.fsync = fsync
        self._fh = self._open(self.path)
        self._shadow = None if self.shadow_path is None else self._open(self.shadow_path)

    @staticmethod
    def _open(path: Path) -> IO[str]:
        if path.exists() and path.stat().st_size > 0:
            with path.open("rb") as fh:
                first = fh.readline().decode("utf-8", errors="replace")
                fh.seek(-1, os.SEEK_END)
                last = fh.read(1)
            _check_header(first, path)
            if last != b"\n" and first.rstrip("\n") == first and path.stat().st_size == len(first.encode()):
                # a crash right after the header was written: complete its line and carry on
                with path.open("ab") as fh:
                    fh.write(b"\n")
                return path.open("a", encoding="utf-8")
            if last != b"\n":
                raise CorruptLogError(
                    "the last record is incomplete (no trailing newline): run repair_log(path) before appending",
                    path=path,
                    line=sum(1 for _ in path.open("rb")),
                    records=[],
                )
            return path.open("a", encoding="utf-8")
        path.parent.mkdir(parents=True, exist_ok=True)
        out = path.open("w", encoding="utf-8")
        out.write(_HEADER + "\n")
        out.flush()
        return out

    def _write(self, fh: IO[str], records: Iterable[LogRecord]) -> None:
        if fh.closed:
            raise InvalidInputError(
                f"{self.path}: the logger is closed; open a new PropensityLogger to append"
            )
        fh.write("".join(r.to_json() + "\n" for r in records))
        fh.flush()
        if self.fsync:
            os.fsync(fh.fileno())

    def log(self, record: LogRecord | Sequence[LogRecord]) -> None:
        """Append one record or a batch (validated before anything is written)."""
        records = [record] if isinstance(record, LogRecord) else list(record)
        for r in records:
            if not isinstance(r, LogRecord):
                raise InvalidInputError(f"expected LogRecord, got {type(r).__name__}")
        self._write(self._fh, records)

    def log_slate(
        self,
        slate: Slate,
        rewards: Any,
        *,
        policy: Policy,
        round_ids: Any,
        contexts: Any | None = None,
        timestamp: float | None = None,
    ) -> list[LogRecord]:
        """Log every slot of every round of ``slate`` with its reward ``(n, slate_size)``.

        Rounds that ``slate.shadow`` marks as served by the uniform bucket also go to the shadow
        log, under policy id ``"uniform"`` with their uniform propensity. Returns the main records.
        """
        r = np.asarray(rewards, dtype=np.float64)
        n, k = slate.actions.shape
        if r.shape != (n, k):
            raise InvalidInputError(f"rewards have shape {r.shape}, expected {(n, k)} (one per shown slot)")
        ids = as_ids(round_ids, name="round_ids", n=n)
        if (ids < 0).any():
            raise InvalidInputError("round_ids must be non-negative")
        ctx = None
        if contexts is not None:
            ctx = as_array(contexts, dtype=np.float64, name="contexts")
            if ctx.shape[:1] != (n,) or ctx.ndim > 2:
                raise InvalidInputError(f"contexts have shape {ctx.shape}, expected ({n},) or ({n}, d)")
            ctx = ctx.reshape(n, -1)
        if slate.shadow is not None and slate.shadow.any() and self._shadow is None:
            raise InvalidInputError("the slate has shadow rounds but the logger has no shadow_path")
        ts = time.time() if timestamp is None else float(timestamp)
        records, shadow = [], []
        for i in range(n):
            c = None if ctx is None else tuple(ctx[i])
            for p in range(k):
                common = dict(
                    round_id=int(ids[i]),
                    action=int(slate.actions[i, p]),
                    position=p,
                    reward=float(r[i, p]),
                    timestamp=ts,
                    context=c,
                )
                records.append(
                    LogRecord(
                        propensity=float(slate.propensities[i, p]),
                        policy_id=policy.policy_id,
                        policy_version=policy.version,
                        **common,  # type: ignore[arg-type]
                    )
                )
                if slate.shadow is not None and slate.shadow[i] and slate.shadow_propensities is not None:
                    shadow.append(
                        LogRecord(
                            propensity=float(slate.shadow_propensities[i, p]),
                            policy_id="uniform",
                            policy_version="1",
                            **common,  # type: ignore[arg-type]
                        )
                    )
        self._write(self._fh, records)
        if shadow and self._shadow is not None:
            self._write(self._shadow, shadow)
        return records

    def close(self) -> None:
        """Flush and close the log files (idempotent); the context manager calls it."""
        self._fh.close()
        if self._shadow is not None:
            self._shadow.close()

    def __enter__(self) -> PropensityLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_jsonl(path: Path) -> list[LogRecord]:
    records: list[LogRecord] = []
    with path.open("rb") as fh:
        first = fh.readline()
        if not first:
            raise CorruptFileError(f"{path}: empty file, expected a propensity log header")
        _check_header(first.decode("utf-8", errors="replace"), path)
        for lineno, raw in enumerate(fh, start=2):
            if not raw.endswith(b"\n"):
                raise CorruptLogError(
                    "truncated record (no trailing newline)", path=path, line=lineno, records=records
                )
            try:
                records.append(LogRecord.from_json(raw.decode("utf-8")))
            except (ValueError, TypeError, UnicodeDecodeError, RecursionError) as exc:
                raise CorruptLogError(
                    f"malformed record: {str(exc)[:200]}", path=path, line=lineno, records=records
                ) from None
    return records


def _pyarrow() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingDependencyError("Parquet logs need pyarrow: pip install pyarrow") from None
    return pa, pq


def write_parquet(records: Sequence[LogRecord], path: str | os.PathLike[str]) -> None:
    """Write records as one Parquet file (needs pyarrow); the format tag goes in its metadata."""
    pa, pq = _pyarrow()
    cols: dict[str, list[Any]] = {name: [] for name in LogRecord.__dataclass_fields__}
    for r in records:
        if not isinstance(r, LogRecord):
            raise InvalidInputError(f"expected LogRecord, got {type(r).__name__}")
        for name in cols:
            v = getattr(r, name)
            cols[name].append(list(v) if name == "context" and v is not None else v)
    schema = pa.schema(
        [
            ("round_id", pa.int64()),
            ("action", pa.int64()),
            ("position", pa.int64()),
            ("propensity", pa.float64()),
            ("reward", pa.float64()),
            ("policy_id", pa.string()),
            ("policy_version", pa.string()),
            ("timestamp", pa.float64()),
            ("context", pa.list_(pa.float64())),
        ],
        metadata={"format": LOG_FORMAT, "version": str(LOG_VERSION)},
    )
    table = pa.table(cols, schema=schema)
    pq.write_table(table, str(path))


def _read_parquet(path: Path) -> list[LogRecord]:
    _pa, pq = _pyarrow()
    try:
        table = pq.read_table(str(path))
    except Exception as exc:  # pyarrow raises its own ArrowInvalid/OSError family
        raise CorruptFileError(f"{path}: unreadable Parquet log: {exc}") from None
    meta = table.schema.metadata or {}
    if meta.get(b"format") != LOG_FORMAT.encode():
        raise CorruptFileError(f"{path}: not a propensity log (Parquet metadata has no format tag)")
    if meta.get(b"version") != str(LOG_VERSION).encode():
        raise FormatVersionError(
            f"{path}: log format version {meta.get(b'version')!r}, this reader knows {LOG_VERSION}"
        )
    records: list[LogRecord] = []
    for i, row in enumerate(table.to_pylist()):
        try:
            ctx = row.pop("context")
            records.append(LogRecord(context=None if ctx is None else tuple(ctx), **row))
        except (ValueError, TypeError) as exc:
            raise CorruptLogError(
                f"malformed record: {exc}", path=path, line=i + 1, records=records
            ) from None
    return records


def read_log(path: str | os.PathLike[str]) -> list[LogRecord]:
    """Every record of a JSON Lines (or, by suffix ``.parquet``, Parquet) propensity log.

    Raises :class:`CorruptLogError` at the first broken record (its ``records`` hold the ones
    before), :class:`~mlsys.common.errors.FormatVersionError` for another format version.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such propensity log")
    return _read_parquet(p) if p.suffix == ".parquet" else _read_jsonl(p)


def repair_log(path: str | os.PathLike[str], *, force: bool = False) -> int:
    """Cut an incomplete last record (a crash mid-write) off a JSON Lines log; return lines removed.

    A broken record that is not the last line means the file was damaged, not interrupted: that
    raises :class:`CorruptLogError` and changes nothing, unless ``force=True``, which moves the
    broken record and every line after it to ``<path>.tail`` (nothing is deleted) and keeps the
    valid records before it.
    """
    p = Path(path)
    try:
        _read_jsonl(p)
        return 0
    except CorruptLogError as err:
        with p.open("rb") as fh:
            lines = fh.readlines()
        keep = err.line - 1
        if keep < len(lines) - 1 and not force:
            raise CorruptLogError(
                f"record {err.line} of {len(lines)} lines is broken in the middle of the file; nothing was changed "
                "(repair_log(path, force=True) moves it and the lines after it to <path>.tail)",
                path=p,
                line=err.line,
                records=err.records,
            ) from None
        if keep < len(lines) - 1:
            with Path(f"{p}.tail").open("ab") as tail:
                tail.writelines(lines[keep:])
        with p.open("r+b") as fh:
            fh.truncate(sum(len(line) for line in lines[:keep]))
        return len(lines) - keep


def to_feedback(
    records: Sequence[LogRecord],
    *,
    n_actions: int | None = None,
    slate_size: int | None = None,
    reward_range: tuple[float, float] = (0.0, 1.0),
    policy_id: str | None = None,
) -> BanditFeedback:
    """Records (optionally only ``policy_id``'s) as :class:`BanditFeedback`; contexts must all be
    present with one width, or all absent."""
    for r in records:
        if not isinstance(r, LogRecord):
            raise InvalidInputError(f"records must be LogRecord objects, got {type(r).__name__}")
    rs = [r for r in records if policy_id is None or r.policy_id == policy_id]
    if not rs:
        raise InvalidInputError(
            f"no records{'' if policy_id is None else f' of policy {policy_id!r}'} to evaluate"
        )
    has_ctx = {r.context is not None for r in rs}
    if len(has_ctx) > 1:
        raise InvalidInputError("some records have a context and some do not")
    context = None
    if has_ctx == {True}:
        widths = {len(r.context or ()) for r in rs}
        if len(widths) > 1:
            raise InvalidInputError(f"records have contexts of different widths {sorted(widths)}")
        context = np.array([r.context for r in rs], dtype=np.float64)
    return BanditFeedback(
        action=np.array([r.action for r in rs], dtype=np.int64),
        reward=np.array([r.reward for r in rs]),
        propensity=np.array([r.propensity for r in rs]),
        position=np.array([r.position for r in rs], dtype=np.int64),
        n_actions=n_actions,  # type: ignore[arg-type]
        slate_size=slate_size,  # type: ignore[arg-type]
        context=context,
        reward_range=reward_range,
    )
