from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys.common.data import (
    BeirDataset,
    load_beir,
    read_beir_corpus,
    read_beir_qrels,
    read_beir_queries,
    write_beir,
)
from mlsys.common.errors import DatasetNotFoundError, InvalidInputError, ParseError

CORPUS = [
    {"_id": "d1", "title": "Alpha", "text": "first doc"},
    {"_id": "d2", "text": "no title"},
    {"_id": "d3", "title": None, "text": "null title", "metadata": {"x": 1}},
]
QUERIES = [
    {"_id": "q1", "text": "alpha?"},
    {"_id": 2, "text": "numeric id"},
    {"_id": "q3", "text": "unjudged"},
]


def _write_jsonl(path: Path, rows: list[dict]) -> None:  # type: ignore[type-arg]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _make(root: Path, qrels: str = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td3\t2\n2\td2\t0\n") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    _write_jsonl(root / "corpus.jsonl", CORPUS)
    _write_jsonl(root / "queries.jsonl", QUERIES)
    (root / "qrels").mkdir(exist_ok=True)
    (root / "qrels" / "test.tsv").write_text(qrels)
    return root


def test_load_small_folder(tmp_path: Path) -> None:
    ds = load_beir(_make(tmp_path / "b"))
    assert ds.corpus == {
        "d1": {"title": "Alpha", "text": "first doc"},
        "d2": {"title": "", "text": "no title"},
        "d3": {"title": "", "text": "null title"},
    }
    assert ds.queries == {"q1": "alpha?", "2": "numeric id"}  # only judged queries, file order
    assert ds.qrels == {"q1": {"d1": 1, "d3": 2}, "2": {"d2": 0}}
    assert ds.split == "test"


def test_gzipped_corpus(tmp_path: Path) -> None:
    p = tmp_path / "corpus.jsonl"
    _write_jsonl(p, CORPUS)
    gz = tmp_path / "corpus.jsonl.gz"
    gz.write_bytes(gzip.compress(p.read_bytes()))
    assert read_beir_corpus(gz) == read_beir_corpus(p)


@pytest.mark.parametrize(
    ("lines", "line", "match"),
    [
        (['{"_id": "a", "text": "x"}', '{"_id": "b", "text": '], 2, "malformed JSON"),
        (['{"_id": "a", "text": "x"}', "[1, 2]"], 2, "expected a JSON object"),
        (['{"_id": "a", "text": "x"}', "", '{"text": "x"}'], 3, "missing field '_id'"),
        (['{"_id": "a"}'], 1, "missing field 'text'"),
        (['{"_id": "a", "text": 5}'], 1, "'text' is a int"),
        (['{"_id": "", "text": "x"}'], 1, "'_id' is ''"),
        (
            ['{"_id": "a", "text": "x"}', '{"_id": "a", "text": "y"}'],
            2,
            "duplicate document id 'a' \\(first on line 1\\)",
        ),
    ],
)
def test_malformed_corpus(tmp_path: Path, lines: list[str], line: int, match: str) -> None:
    p = tmp_path / "corpus.jsonl"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(ParseError, match=match) as info:
        read_beir_corpus(p)
    assert info.value.line == line and str(info.value).startswith(f"{p}:{line}:")


def test_malformed_queries(tmp_path: Path) -> None:
    p = tmp_path / "queries.jsonl"
    p.write_text('{"_id": "q", "text": "a"}\n{"_id": "q", "text": "b"}\n')
    with pytest.raises(ParseError, match="duplicate query id") as info:
        read_beir_queries(p)
    assert info.value.line == 2


@pytest.mark.parametrize(
    ("content", "line", "match"),
    [
        ("q\td\t1\n", 1, "header"),
        ("", 1, "header 'an empty file'"),
        ("query-id\tcorpus-id\tscore\nq1\td1\n", 2, "2 tab-separated fields"),
        ("query-id\tcorpus-id\tscore\nq1\td1\tyes\n", 2, "score 'yes' is not an integer"),
        ("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td1\t0\n", 3, "judged twice"),
        ("query-id\tcorpus-id\tscore\n\td1\t1\n", 2, "empty query or document id"),
    ],
)
def test_malformed_qrels(tmp_path: Path, content: str, line: int, match: str) -> None:
    p = tmp_path / "test.tsv"
    p.write_text(content)
    with pytest.raises(ParseError, match=match) as info:
        read_beir_qrels(p)
    assert info.value.line == line


def test_qrels_must_reference_known_queries_and_docs(tmp_path: Path) -> None:
    root = _make(tmp_path / "a", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq9\td1\t1\n")
    with pytest.raises(ParseError, match="query 'q9' is not in") as info:
        load_beir(root)
    assert info.value.line == 3
    root = _make(tmp_path / "b", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\tzz\t1\n")
    with pytest.raises(ParseError, match="document 'zz' is not in") as info:
        load_beir(root)
    assert info.value.line == 3


def test_missing_split_and_folder(tmp_path: Path) -> None:
    root = _make(tmp_path / "b")
    with pytest.raises(DatasetNotFoundError, match=r"available splits: \['test'\]"):
        load_beir(root, split="dev")
    with pytest.raises(InvalidInputError, match="plain name"):
        load_beir(root, split="../test")
    with pytest.raises(DatasetNotFoundError):
        load_beir(tmp_path / "nothing")


def test_real_scifact(dataset) -> None:  # type: ignore[no-untyped-def]
    root = dataset("scifact")
    ds = load_beir(root, split="test")
    assert len(ds.corpus) == 5183
    assert len(ds.queries) == 300
    assert sum(len(d) for d in ds.qrels.values()) == 339
    assert set(ds.queries) == set(ds.qrels)
    assert all(rel == 1 for d in ds.qrels.values() for rel in d.values())
    assert all(set(doc) == {"title", "text"} and doc["text"] for doc in ds.corpus.values())
    train = load_beir(root, split="train")
    assert len(train.queries) == 809 and sum(len(d) for d in train.qrels.values()) == 919
    assert not set(train.queries) & set(ds.queries)


_ids = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\r\n"), min_size=1, max_size=6
).filter(lambda x: x == x.strip())
_texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


@st.composite
def _datasets(draw: st.DrawFn) -> BeirDataset:
    corpus = draw(
        st.dictionaries(
            _ids, st.fixed_dictionaries({"title": _texts, "text": _texts}), min_size=1, max_size=6
        )
    )
    queries = draw(st.dictionaries(_ids, _texts, min_size=1, max_size=4))
    doc_ids = sorted(corpus)
    qrels = {
        qid: draw(st.dictionaries(st.sampled_from(doc_ids), st.integers(-1, 3), min_size=1, max_size=3))
        for qid in queries
    }
    return BeirDataset(corpus, queries, qrels, "test")


@settings(max_examples=60, deadline=None)
@given(ds=_datasets())
def test_write_then_load_round_trip(tmp_path_factory: pytest.TempPathFactory, ds: BeirDataset) -> None:
    root = tmp_path_factory.mktemp("beir")
    write_beir(ds, root)
    back = load_beir(root, split="test")
    assert back == ds
    assert list(back.corpus) == list(ds.corpus) and list(back.queries) == list(ds.queries)


def test_write_beir_rejects_bad_datasets(tmp_path: Path) -> None:
    good = BeirDataset({"d": {"title": "", "text": "x"}}, {"q": "y"}, {"q": {"d": 1}}, "test")
    bad = [
        (BeirDataset({"d\t1": {"title": "", "text": "x"}}, {}, {}, "test"), "document id"),
        (BeirDataset(good.corpus, {"q": 3}, {}, "test"), "expected a string"),  # type: ignore[dict-item]
        (BeirDataset(good.corpus, good.queries, {"zz": {"d": 1}}, "test"), "not in queries"),
        (BeirDataset(good.corpus, good.queries, {"q": {"zz": 1}}, "test"), "not in corpus"),
        (BeirDataset(good.corpus, good.queries, {"q": {"d": 1.5}}, "test"), "expected an int"),  # type: ignore[dict-item]
        (BeirDataset(good.corpus, good.queries, good.qrels, "../x"), "plain name"),
    ]
    for ds, match in bad:
        with pytest.raises(InvalidInputError, match=match):
            write_beir(ds, tmp_path / "out")
        assert not (tmp_path / "out").exists()
