"""Line handling shared by the text readers: line endings, odd separators, encodings, gzip damage."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from mlsys.common.data import load_movielens_100k, read_beir_corpus, read_trec_qrels, read_trec_run
from mlsys.common.errors import CorruptFileError, ParseError


def test_unicode_line_separators_inside_json_do_not_split_lines(tmp_path: Path) -> None:
    p = tmp_path / "corpus.jsonl"
    text = "a\u2028b\u2029c\x85d\x1ce"
    p.write_text(json.dumps({"_id": "1", "text": text}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert read_beir_corpus(p)["1"]["text"] == text


def test_crlf_line_endings(tmp_path: Path) -> None:
    p = tmp_path / "qrels.txt"
    p.write_bytes(b"q1 0 d1 1\r\nq1 0 d2 0\r\n")
    assert read_trec_qrels(p) == {"q1": {"d1": 1, "d2": 0}}


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    p = tmp_path / "run.txt"
    p.write_bytes(b"q Q0 d 1 1.0 t\nq Q0 \xff 2 0.5 t\n")
    with pytest.raises(ParseError, match="not valid utf-8") as info:
        read_trec_run(p)
    assert info.value.line == 2 and str(p) in str(info.value)


def test_truncated_gzip_text_file(tmp_path: Path) -> None:
    p = tmp_path / "run.txt.gz"
    body = "".join(f"q{i} Q0 d{i} 1 1.0 t\n" for i in range(5000)).encode()
    blob = gzip.compress(body)
    p.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CorruptFileError, match="could not read past line") as info:
        read_trec_run(p)
    assert str(p) in str(info.value)


def test_gzipped_run_reads_like_plain(tmp_path: Path) -> None:
    body = b"q Q0 d 1 1.5 t\nq Q0 e 2 0.5 t\n"
    (tmp_path / "a").write_bytes(body)
    (tmp_path / "b").write_bytes(gzip.compress(body))
    assert read_trec_run(tmp_path / "a") == read_trec_run(tmp_path / "b") == {"q": {"d": 1.5, "e": 0.5}}


def test_latin1_title_with_nel_byte(tmp_path: Path) -> None:
    # byte 0x85 is "…" in cp1252 but U+0085 (NEXT LINE) in latin-1: it must not split the record
    flags = "|".join(["0"] * 18 + ["1"])
    (tmp_path / "u.item").write_bytes(b"1|Wait\x85 (1995)|01-Jan-1995||u|" + flags.encode() + b"\n")
    (tmp_path / "u.user").write_text("1|24|M|x|1\n")
    (tmp_path / "u.data").write_text("1\t1\t4\t5\n")
    (tmp_path / "u.genre").write_text("".join(f"g{i}|{i}\n" for i in range(19)))
    ml = load_movielens_100k(tmp_path)
    assert ml.items.title.tolist() == ["Wait\x85 (1995)"]
