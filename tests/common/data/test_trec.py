from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys.common.data import read_trec_qrels, read_trec_run, write_trec_qrels, write_trec_run
from mlsys.common.errors import DatasetNotFoundError, InvalidInputError, ParseError

ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789_-.:", min_size=1, max_size=8)
scores = st.floats(allow_nan=False, allow_infinity=False, width=64)
runs = st.dictionaries(ids, st.dictionaries(ids, scores, min_size=1, max_size=6), max_size=5)
qrels_st = st.dictionaries(ids, st.dictionaries(ids, st.integers(-2, 5), min_size=1, max_size=6), max_size=5)


@settings(max_examples=80, deadline=None)
@given(run=runs)
def test_run_round_trip(tmp_path_factory: pytest.TempPathFactory, run: dict[str, dict[str, float]]) -> None:
    p = tmp_path_factory.mktemp("trec") / "run.txt"
    write_trec_run(run, p, tag="sys1")
    back = read_trec_run(p)
    assert back == run  # scores bit-exact (repr round-trips)
    assert list(back) == list(run)


@settings(max_examples=80, deadline=None)
@given(qrels=qrels_st)
def test_qrels_round_trip(tmp_path_factory: pytest.TempPathFactory, qrels: dict[str, dict[str, int]]) -> None:
    p = tmp_path_factory.mktemp("trec") / "qrels.txt"
    write_trec_qrels(qrels, p)
    back = read_trec_qrels(p)
    assert back == qrels
    assert [list(d) for d in back.values()] == [list(d) for d in qrels.values()]


def test_run_is_written_in_trec_eval_rank_order(tmp_path: Path) -> None:
    p = tmp_path / "run.txt"
    write_trec_run({"q": {"a": 1.0, "c": 3.0, "b": 1.0, "d": np.float32(2.5)}}, p, tag="t")
    lines = [line.split() for line in p.read_text().splitlines()]
    # score descending, ties broken by doc id descending (trec_eval), ranks 1..n
    assert [(f[2], f[3]) for f in lines] == [("c", "1"), ("d", "2"), ("b", "3"), ("a", "4")]
    assert all(f[1] == "Q0" and f[5] == "t" for f in lines)


def test_reads_whitespace_variants_and_blank_lines(tmp_path: Path) -> None:
    p = tmp_path / "run.txt"
    p.write_text("q1\tQ0\td1\t1\t0.5\tx\n\n  q1 Q0 d2 2 -1e-3 x  \nq2 Q0 d1 1 7 x")
    assert read_trec_run(p) == {"q1": {"d1": 0.5, "d2": -0.001}, "q2": {"d1": 7.0}}


@pytest.mark.parametrize(
    ("content", "line", "match"),
    [
        ("q Q0 d 1 0.5 t\nq Q0 e 2 0.4\n", 2, "5 fields"),
        ("q Q0 d 1 abc t\n", 1, "score 'abc' is not a number"),
        ("q Q0 d 1 nan t\n", 1, "not finite"),
        ("q Q0 d one 0.5 t\n", 1, "rank 'one' is not an integer"),
        ("q Q0 d 1 0.5 t\n\nq Q0 d 2 0.4 t\n", 3, "listed twice"),
    ],
)
def test_malformed_run_lines(tmp_path: Path, content: str, line: int, match: str) -> None:
    p = tmp_path / "run.txt"
    p.write_text(content)
    with pytest.raises(ParseError, match=match) as info:
        read_trec_run(p)
    assert info.value.line == line
    assert str(info.value).startswith(f"{p}:{line}: ")


@pytest.mark.parametrize(
    ("content", "line", "match"),
    [
        ("q 0 d 1\nq 0 e\n", 2, "3 fields"),
        ("q 0 d 1.5\n", 1, "relevance '1.5' is not an integer"),
        ("q 0 d 1\nq 0 d 2\n", 2, "judged twice"),
    ],
)
def test_malformed_qrels_lines(tmp_path: Path, content: str, line: int, match: str) -> None:
    p = tmp_path / "qrels.txt"
    p.write_text(content)
    with pytest.raises(ParseError, match=match) as info:
        read_trec_qrels(p)
    assert info.value.line == line and str(p) in str(info.value)


@pytest.mark.parametrize(
    ("run", "match"),
    [
        ({"q 1": {"d": 1.0}}, "query id 'q 1'"),
        ({"q": {"": 1.0}}, "document id ''"),
        ({"q": {"d": float("nan")}}, "finite"),
        ({"q": {"d": "1.0"}}, "expected a float"),
    ],
)
def test_write_run_rejects_bad_input_and_writes_nothing(tmp_path: Path, run: dict, match: str) -> None:  # type: ignore[type-arg]
    p = tmp_path / "run.txt"
    with pytest.raises(InvalidInputError, match=match):
        write_trec_run(run, p)
    assert not p.exists()
    with pytest.raises(InvalidInputError, match="tag"):
        write_trec_run({"q": {"d": 1.0}}, p, tag="two words")


def test_write_qrels_rejects_non_int(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="expected an int"):
        write_trec_qrels({"q": {"d": 1.5}}, tmp_path / "q.txt")  # type: ignore[dict-item]
    write_trec_qrels({"q": {"d": np.int64(2)}}, tmp_path / "q.txt")
    assert read_trec_qrels(tmp_path / "q.txt") == {"q": {"d": 2}}


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError):
        read_trec_run(tmp_path / "none.txt")


def test_pytrec_eval_reads_what_we_write(tmp_path: Path) -> None:
    pytrec_eval = pytest.importorskip("pytrec_eval")
    run = {"q1": {"d1": 0.9, "d2": 0.8, "d3": 0.1}, "q2": {"d4": 1.0, "d1": 0.5}}
    qrels = {"q1": {"d2": 1, "d3": 2}, "q2": {"d4": 1}}
    write_trec_run(run, tmp_path / "run")
    write_trec_qrels(qrels, tmp_path / "qrels")
    with open(tmp_path / "run") as f:
        parsed_run = pytrec_eval.parse_run(f)
    with open(tmp_path / "qrels") as f:
        parsed_qrels = pytrec_eval.parse_qrel(f)
    assert parsed_run == read_trec_run(tmp_path / "run") == run
    assert parsed_qrels == read_trec_qrels(tmp_path / "qrels") == qrels
