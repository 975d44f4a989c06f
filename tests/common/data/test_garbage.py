"""Every reader of mlsys.common.data on garbage bytes: a typed ParseError / CorruptFileError, never a bare one."""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlsys.common.data import (
    load_movielens_100k,
    read_beir_corpus,
    read_beir_qrels,
    read_beir_queries,
    read_idx,
    read_trec_qrels,
    read_trec_run,
)
from mlsys.common.errors import CorruptFileError, MlsysError, ParseError

GARBAGE = {
    "binary": b"\xff\xfe\x00\x81garbage\x00\n\x80\x90\n",
    "png-magic": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
    "truncated-gzip": gzip.compress(b"q1 0 d1 1\n" * 100)[:25],
    "deep-json": b"[" * 100_000 + b"\n",
    "half-json": b'{"_id": "d1", "text": \n',
}

READERS: dict[str, tuple[str, Callable[[Path], object]]] = {
    "beir-corpus": ("corpus.jsonl", read_beir_corpus),
    "beir-queries": ("queries.jsonl", read_beir_queries),
    "beir-qrels": ("test.tsv", read_beir_qrels),
    "trec-qrels": ("qrels.txt", read_trec_qrels),
    "trec-run": ("run.txt", read_trec_run),
    "idx": ("images-idx3-ubyte", read_idx),
}


@pytest.mark.parametrize("garbage", sorted(GARBAGE))
@pytest.mark.parametrize("reader", sorted(READERS))
def test_garbage_is_typed(tmp_path: Path, reader: str, garbage: str) -> None:
    name, read = READERS[reader]
    p = tmp_path / name
    p.write_bytes(GARBAGE[garbage])
    with pytest.raises((ParseError, CorruptFileError)):
        read(p)


@given(st.binary(min_size=1, max_size=300), st.sampled_from(sorted(READERS)))
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_bytes_never_escape_untyped(tmp_path: Path, payload: bytes, reader: str) -> None:
    name, read = READERS[reader]
    p = tmp_path / name
    p.write_bytes(payload)
    try:
        read(p)
    except MlsysError:
        pass


@pytest.mark.parametrize("file", ["u.data", "u.item", "u.user", "u.genre"])
@pytest.mark.parametrize("garbage", ["binary", "truncated-gzip", "deep-json"])
def test_movielens_100k_garbage(tmp_path: Path, dataset, file: str, garbage: str) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "ml"
    shutil.copytree(dataset("movielens-100k"), root)
    (root / file).write_bytes(GARBAGE[garbage])
    with pytest.raises((ParseError, CorruptFileError)):
        load_movielens_100k(root)
