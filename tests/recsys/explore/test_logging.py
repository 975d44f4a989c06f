"""Propensity logs: exact round trips, loud failures at the broken record, nothing lost before it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlsys.common.errors import CorruptFileError, FormatVersionError, InvalidInputError
from mlsys.recsys.explore import (
    CorruptLogError,
    EpsilonGreedy,
    LogRecord,
    PropensityLogger,
    ShadowExploration,
    ips,
    read_log,
    repair_log,
    to_feedback,
    write_parquet,
)

HAS_PYARROW = importlib.util.find_spec("pyarrow") is not None

records_st = st.lists(
    st.builds(
        LogRecord,
        round_id=st.integers(0, 2**40),
        action=st.integers(0, 1000),
        position=st.integers(0, 9),
        propensity=st.floats(1e-9, 1.0),
        reward=st.floats(-1e6, 1e6, allow_nan=False),
        policy_id=st.text(min_size=1, max_size=12),
        policy_version=st.text(max_size=12),
        timestamp=st.floats(0, 2e9),
        context=st.none()
        | st.lists(st.floats(-1e9, 1e9, allow_nan=False), min_size=1, max_size=4).map(tuple),
    ),
    max_size=20,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records_st)
def test_jsonl_round_trip_is_exact(tmp_path: Path, records: list[LogRecord]) -> None:
    path = tmp_path / f"log-{abs(hash(tuple(records)))}.jsonl"
    path.unlink(missing_ok=True)
    with PropensityLogger(path) as log:
        log.log(records)
    assert read_log(path) == records


@pytest.mark.skipif(not HAS_PYARROW, reason="pyarrow not installed")
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records_st)
def test_parquet_round_trip_is_exact(tmp_path: Path, records: list[LogRecord]) -> None:
    path = tmp_path / "log.parquet"
    write_parquet(records, path)
    assert read_log(path) == records


def _records(n: int) -> list[LogRecord]:
    return [
        LogRecord(
            round_id=i,
            action=i % 3,
            position=0,
            propensity=0.5,
            reward=float(i % 2),
            policy_id="p",
            context=(0.1 * i,),
        )
        for i in range(n)
    ]


def test_truncated_last_record_fails_at_that_line_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    with PropensityLogger(path) as log:
        log.log(_records(5))
    data = path.read_bytes()
    path.write_bytes(data[:-20])  # a crash in the middle of the last write
    with pytest.raises(CorruptLogError) as err:
        read_log(path)
    assert err.value.line == 6 and err.value.records == _records(4)
    with pytest.raises(CorruptLogError, match="repair_log"):
        PropensityLogger(path)  # appending would glue the next record onto the partial one
    assert repair_log(path) == 1
    assert read_log(path) == _records(4)
    with PropensityLogger(path) as log:
        log.log(_records(5)[4])
    assert read_log(path) == _records(5)


def test_corrupt_middle_record_fails_loudly(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    with PropensityLogger(path) as log:
        log.log(_records(4))
    lines = path.read_text().splitlines(keepends=True)
    bad = json.loads(lines[2])
    bad["propensity"] = 0.0
    lines[2] = json.dumps(bad) + "\n"
    lines[3] = "{not json\n"
    path.write_text("".join(lines))
    with pytest.raises(CorruptLogError, match="propensity") as err:
        read_log(path)
    assert err.value.line == 3 and err.value.records == _records(1)
    # damage in the middle is not "repaired" away: nothing changes unless forced, and then it moves aside
    before = path.read_bytes()
    with pytest.raises(CorruptLogError, match="middle of the file"):
        repair_log(path)
    assert path.read_bytes() == before
    assert repair_log(path, force=True) == 3
    assert read_log(path) == _records(1)
    assert Path(f"{path}.tail").read_text().count("\n") == 3


def test_deeply_nested_record_is_a_corrupt_log_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    with PropensityLogger(path) as log:
        log.log(_records(2))
    with path.open("a") as fh:
        fh.write("[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(CorruptLogError) as err:
        read_log(path)
    assert err.value.records == _records(2)


def test_a_crash_right_after_the_header_leaves_an_appendable_log(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text('{"format":"mlsys.propensity_log","version":1}')  # no newline yet
    assert read_log(path) == []
    with PropensityLogger(path) as log:
        log.log(_records(1))
    assert read_log(path) == _records(1)
    log = PropensityLogger(path)
    log.close()
    with pytest.raises(InvalidInputError, match="closed"):
        log.log(_records(1))


def test_not_a_log_and_wrong_version(tmp_path: Path) -> None:
    other = tmp_path / "other.jsonl"
    other.write_text('{"hello": 1}\n')
    with pytest.raises(CorruptFileError, match="not a propensity log"):
        read_log(other)
    with pytest.raises(CorruptFileError, match="not a propensity log"):
        PropensityLogger(other)
    future = tmp_path / "future.jsonl"
    future.write_text('{"format":"mlsys.propensity_log","version":99}\n')
    with pytest.raises(FormatVersionError, match="99"):
        read_log(future)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(CorruptFileError, match="empty"):
        read_log(empty)


@pytest.mark.skipif(not HAS_PYARROW, reason="pyarrow not installed")
def test_parquet_refuses_foreign_and_truncated_files(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"a": [1]}), str(foreign))
    with pytest.raises(CorruptFileError, match="format tag"):
        read_log(foreign)
    good = tmp_path / "good.parquet"
    write_parquet(_records(50), good)
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(good.read_bytes()[:-30])
    with pytest.raises(CorruptFileError):
        read_log(cut)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(propensity=0.0), "propensity"),
        (dict(propensity=1.2), "propensity"),
        (dict(reward=float("nan")), "reward"),
        (dict(action=-1), "action"),
        (dict(policy_id=""), "policy_id"),
        (dict(context=(1.0, float("inf"))), "context"),
    ],
)
def test_bad_records_are_typed_errors(kwargs, match) -> None:  # type: ignore[no-untyped-def]
    args = dict(round_id=0, action=1, position=0, propensity=0.5, reward=1.0, policy_id="p")
    args.update(kwargs)
    with pytest.raises(InvalidInputError, match=match):
        LogRecord(**args)


def test_a_rejected_batch_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    with PropensityLogger(path) as log:
        log.log(_records(2))
        with pytest.raises(InvalidInputError):
            log.log([*_records(2), "not a record"])  # type: ignore[list-item]
    assert read_log(path) == _records(2)


def test_slates_with_a_shadow_bucket_log_and_evaluate(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(4_000, 6))
    ctr = np.linspace(0.05, 0.55, 6)  # the click rate depends on the action
    policy = ShadowExploration(EpsilonGreedy(0.1, 2, seed=1), fraction=0.25, seed=2)
    slate = policy.select(scores)
    rewards = (rng.random(slate.actions.shape) < ctr[slate.actions]).astype(float)
    main, shadow = tmp_path / "main.jsonl", tmp_path / "shadow.jsonl"
    with PropensityLogger(main, shadow_path=shadow) as log:
        written = log.log_slate(
            slate, rewards, policy=policy, round_ids=np.arange(4_000), contexts=scores, timestamp=1.0
        )
    assert read_log(main) == written and len(written) == 8_000
    shadow_records = read_log(shadow)
    assert len(shadow_records) == 2 * int(slate.shadow.sum())
    assert {r.policy_id for r in shadow_records} == {"uniform"}
    assert {r.propensity for r in shadow_records} == {1 / 6}
    # the shadow log is a uniform-random log: any policy can be evaluated on it without support gaps
    fb = to_feedback(shadow_records, n_actions=6, slate_size=2)
    target = EpsilonGreedy(0.0, 2).action_distribution(fb.context)
    truth = float((target * ctr[None, :, None]).sum(axis=1).mean())  # the greedy slate's true click rate
    assert abs(ips(fb, target) - truth) < 0.05 * truth * 3  # 3x a few-percent standard error
    # the main log (mixture propensities) estimates the same value
    fb_main = to_feedback(read_log(main), n_actions=6)
    assert fb_main.n_rows == 8_000 and fb_main.context.shape == (8_000, 6)
    target_main = EpsilonGreedy(0.0, 2).action_distribution(fb_main.context)
    truth_main = float((target_main * ctr[None, :, None]).sum(axis=1).mean())
    assert abs(ips(fb_main, target_main) - truth_main) < 0.05 * truth_main
    # a shadow slate and no shadow log: refused before anything is written
    lone = tmp_path / "lone.jsonl"
    with PropensityLogger(lone) as log, pytest.raises(InvalidInputError, match="shadow_path"):
        log.log_slate(slate, rewards, policy=policy, round_ids=np.arange(4_000))
    assert read_log(lone) == []
    with PropensityLogger(lone) as log, pytest.raises(InvalidInputError, match="contexts"):
        log.log_slate(slate, rewards, policy=policy, round_ids=np.arange(4_000), contexts=np.zeros(7))
    with pytest.raises(InvalidInputError, match="no records of policy"):
        to_feedback(written, policy_id="other")
    with pytest.raises(InvalidInputError, match="rewards have shape"):
        PropensityLogger(tmp_path / "x.jsonl").log_slate(
            slate, rewards[:, :1], policy=policy, round_ids=np.arange(4_000)
        )
