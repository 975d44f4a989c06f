"""BEIR folders: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlsys.common.data._io import PathLike, iter_lines
from mlsys.common.errors import DatasetNotFoundError, InvalidInputError, ParseError

__all__ = [
    "BeirDataset",
    "load_beir",
    "read_beir_corpus",
    "read_beir_qrels",
    "read_beir_queries",
    "write_beir",
]

_QRELS_HEADER = ("query-id", "corpus-id", "score")


@dataclass(frozen=True)
class BeirDataset:
    """A BEIR data set split.

    Attributes:
        corpus: ``{doc_id: {"title": str, "text": str}}`` in file order.
        queries: ``{query_id: text}`` for the queries judged in this split, in file order.
        qrels: ``{query_id: {doc_id: relevance}}`` of this split.
        split: the qrels split that was loaded (``"test"``, ``"dev"``, ``"train"``).
    """

    corpus: dict[str, dict[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    split: str


def _json_lines(path: PathLike, *, what: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for lineno, line in iter_lines(path, what=what):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ParseError(
                f"malformed JSON ({exc.msg} at column {exc.colno})", path=path, line=lineno
            ) from None
        except RecursionError:
            raise ParseError(
                "JSON nested too deeply to parse; expected one flat JSON object per line",
                path=path,
                line=lineno,
            ) from None
        if not isinstance(obj, dict):
            raise ParseError(f"a JSON {type(obj).__name__}, expected a JSON object", path=path, line=lineno)
        yield lineno, obj


def _get_id(obj: dict[str, Any], *, path: PathLike, line: int) -> str:
    if "_id" not in obj:
        raise ParseError(f"missing field '_id' (fields: {sorted(obj)})", path=path, line=line)
    value = obj["_id"]
    # BEIR ids are strings; some files write numeric ids as JSON numbers, which we accept as text.
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise ParseError(f"'_id' is {value!r}, expected a non-empty string", path=path, line=line)
    return str(value)


def _get_str(obj: dict[str, Any], key: str, *, path: PathLike, line: int, required: bool) -> str:
    if key not in obj:
        if required:
            raise ParseError(f"missing field {key!r} (fields: {sorted(obj)})", path=path, line=line)
        return ""
    value = obj[key]
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise ParseError(f"{key!r} is a {type(value).__name__}, expected a string", path=path, line=line)
    return value


def read_beir_corpus(path: PathLike) -> dict[str, dict[str, str]]:
    """Read a BEIR ``corpus.jsonl``: one object per line with ``_id``, ``text`` and optional ``title``.

    Returns ``{doc_id: {"title": ..., "text": ...}}`` (a missing or null title becomes ``""``). A
    malformed line, a missing ``_id``/``text`` or a repeated id raises
    :class:`~mlsys.common.errors.ParseError` with the file and line.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "corpus.jsonl")
        >>> _ = open(p, "w").write('{"_id": "d1", "title": "T", "text": "body"}\\n')
        >>> read_beir_corpus(p)
        {'d1': {'title': 'T', 'text': 'body'}}
    """
    corpus: dict[str, dict[str, str]] = {}
    first_line: dict[str, int] = {}
    for lineno, obj in _json_lines(path, what="BEIR corpus"):
        doc_id = _get_id(obj, path=path, line=lineno)
        if doc_id in corpus:
            raise ParseError(
                f"duplicate document id {doc_id!r} (first on line {first_line[doc_id]}); expected unique ids",
                path=path,
                line=lineno,
            )
        title = _get_str(obj, "title", path=path, line=lineno, required=False)
        text = _get_str(obj, "text", path=path, line=lineno, required=True)
        corpus[doc_id] = {"title": title, "text": text}
        first_line[doc_id] = lineno
    return corpus


def read_beir_queries(path: PathLike) -> dict[str, str]:
    """Read a BEIR ``queries.jsonl`` (``_id``, ``text`` per line) into ``{query_id: text}``.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "queries.jsonl")
        >>> _ = open(p, "w").write('{"_id": 3, "text": "why?"}\\n')
        >>> read_beir_queries(p)
        {'3': 'why?'}
    """
    queries: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for lineno, obj in _json_lines(path, what="BEIR queries"):
        qid = _get_id(obj, path=path, line=lineno)
        if qid in queries:
            raise ParseError(
                f"duplicate query id {qid!r} (first on line {first_line[qid]}); expected unique ids",
                path=path,
                line=lineno,
            )
        queries[qid] = _get_str(obj, "text", path=path, line=lineno, required=True)
        first_line[qid] = lineno
    return queries


def read_beir_qrels(path: PathLike) -> dict[str, dict[str, int]]:
    """Read a BEIR qrels TSV (header ``query-id corpus-id score``) into ``{query_id: {doc_id: score}}``.

    Every line after the header needs exactly three tab-separated fields with an integer score; a
    (query, document) pair may appear once.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "test.tsv")
        >>> _ = open(p, "w").write("query-id\\tcorpus-id\\tscore\\nq1\\td1\\t1\\n")
        >>> read_beir_qrels(p)
        {'q1': {'d1': 1}}
    """
    lines = iter_lines(path, what="BEIR qrels")
    first = next(lines, None)
    if first is None or tuple(f.strip() for f in first[1].split("\t")) != _QRELS_HEADER:
        got = first[1] if first is not None else "an empty file"
        raise ParseError(f"header {got!r}, expected {chr(9).join(_QRELS_HEADER)!r}", path=path, line=1)
    qrels: dict[str, dict[str, int]] = {}
    for lineno, line in lines:
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise ParseError(
                f"{len(fields)} tab-separated fields in {line!r}, expected 3: query-id corpus-id score",
                path=path,
                line=lineno,
            )
        qid, docid, score_s = (f.strip() for f in fields)
        if not qid or not docid:
            raise ParseError(f"empty query or document id in {line!r}", path=path, line=lineno)
        try:
            score = int(score_s)
        except ValueError:
            raise ParseError(f"score {score_s!r} is not an integer", path=path, line=lineno) from None
        docs = qrels.setdefault(qid, {})
        if docid in docs:
            raise ParseError(
                f"pair ({qid!r}, {docid!r}) judged twice; expected one judgement per pair",
                path=path,
                line=lineno,
            )
        docs[docid] = score
    return qrels


def _first_line_of(path: Path, qid: str, docid: str | None) -> int | None:
    """Line of the first qrels entry for ``qid`` (and ``docid``), for error messages."""
    for lineno, line in iter_lines(path):
        fields = [f.strip() for f in line.split("\t")]
        if len(fields) == 3 and fields[0] == qid and (docid is None or fields[1] == docid):
            return lineno
    return None


def load_beir(root: PathLike, split: str = "test") -> BeirDataset:
    """Load a BEIR folder: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``.

    As in BEIR's own loader, ``queries`` keeps only the queries judged in ``split`` (SciFact's
    ``queries.jsonl`` holds 1,109 claims; its test split judges 300). Every query and document
    named by the qrels must exist in ``queries.jsonl`` / ``corpus.jsonl``, otherwise
    :class:`~mlsys.common.errors.ParseError` names the qrels line.

    Args:
        root: the data set folder.
        split: the qrels file to load from ``qrels/`` (``"test"``, ``"dev"``, ``"train"``).

    Example:
        >>> from mlsys.common.data import find_dataset
        >>> ds = load_beir(find_dataset("scifact"), split="test")  # doctest: +SKIP
        >>> len(ds.corpus), len(ds.queries), sum(map(len, ds.qrels.values()))  # doctest: +SKIP
        (5183, 300, 339)
    """
    base = Path(root)
    if not base.is_dir():
        raise DatasetNotFoundError(f"BEIR folder not found: {base}")
    if not split or "/" in split or "\\" in split or split.startswith("."):
        raise InvalidInputError(
            f"split {split!r} is not a plain name; expected e.g. 'test', 'dev' or 'train'"
        )
    qrels_path = base / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        available = (
            sorted(p.stem for p in (base / "qrels").glob("*.tsv")) if (base / "qrels").is_dir() else []
        )
        raise DatasetNotFoundError(
            f"qrels for split {split!r} not found at {qrels_path}; available splits: {available}"
        )
    corpus = read_beir_corpus(base / "corpus.jsonl")
    all_queries = read_beir_queries(base / "queries.jsonl")
    qrels = read_beir_qrels(qrels_path)
    for qid, docs in qrels.items():
        if qid not in all_queries:
            raise ParseError(
                f"query {qid!r} is not in {base / 'queries.jsonl'}",
                path=qrels_path,
                line=_first_line_of(qrels_path, qid, None),
            )
        for docid in docs:
            if docid not in corpus:
                raise ParseError(
                    f"document {docid!r} is not in {base / 'corpus.jsonl'}",
                    path=qrels_path,
                    line=_first_line_of(qrels_path, qid, docid),
                )
    queries = {qid: text for qid, text in all_queries.items() if qid in qrels}
    return BeirDataset(corpus=corpus, queries=queries, qrels=qrels, split=split)


def _check_tsv_id(value: object, *, what: str) -> str:
    if not isinstance(value, str) or not value or value != value.strip() or any(c in value for c in "\t\r\n"):
        raise InvalidInputError(
            f"{what} {value!r} cannot be written to a BEIR qrels TSV; expected a non-empty string "
            "without tabs, line breaks or surrounding whitespace"
        )
    return value


def write_beir(dataset: BeirDataset, root: PathLike) -> None:
    """Write ``dataset`` as a BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``).

    :func:`load_beir` reads it back equal. Everything is validated before anything is written
    (ids in the qrels must be TSV-safe and known, texts must be strings); the folder is created
    if needed. Useful to build small BEIR fixtures for tests.

    Example:
        >>> import tempfile
        >>> ds = BeirDataset({"d1": {"title": "", "text": "x"}}, {"q1": "y"}, {"q1": {"d1": 1}}, "test")
        >>> root = tempfile.mkdtemp()
        >>> write_beir(ds, root)
        >>> load_beir(root) == ds
        True
    """
    for doc_id, doc in dataset.corpus.items():
        _check_tsv_id(doc_id, what="document id")
        if (
            not isinstance(doc, dict)
            or not isinstance(doc.get("text"), str)
            or not isinstance(doc.get("title", ""), str)
        ):
            raise InvalidInputError(f"document {doc_id!r} is {doc!r}; expected {{'title': str, 'text': str}}")
    for qid, text in dataset.queries.items():
        _check_tsv_id(qid, what="query id")
        if not isinstance(text, str):
            raise InvalidInputError(f"query {qid!r} text is {text!r}; expected a string")
    for qid, docs in dataset.qrels.items():
        if qid not in dataset.queries:
            raise InvalidInputError(f"qrels query {qid!r} is not in queries; expected every judged query")
        for docid, rel in docs.items():
            if docid not in dataset.corpus:
                raise InvalidInputError(
                    f"qrels document {docid!r} is not in corpus; expected judged documents"
                )
            if isinstance(rel, bool) or not isinstance(rel, int):
                raise InvalidInputError(f"relevance of {qid!r}/{docid!r} is {rel!r}; expected an int")
    if not dataset.split or "/" in dataset.split or dataset.split.startswith("."):
        raise InvalidInputError(f"split {dataset.split!r} is not a plain name; expected e.g. 'test'")
    base = Path(root)
    (base / "qrels").mkdir(parents=True, exist_ok=True)
    with open(base / "corpus.jsonl", "w", encoding="utf-8", newline="\n") as f:
        for doc_id, doc in dataset.corpus.items():
            f.write(json.dumps({"_id": doc_id, "title": doc.get("title", ""), "text": doc["text"]}) + "\n")
    with open(base / "queries.jsonl", "w", encoding="utf-8", newline="\n") as f:
        for qid, text in dataset.queries.items():
            f.write(json.dumps({"_id": qid, "text": text}) + "\n")
    with open(base / "qrels" / f"{dataset.split}.tsv", "w", encoding="utf-8", newline="\n") as f:
        f.write("\t".join(_QRELS_HEADER) + "\n")
        for qid, docs in dataset.qrels.items():
            for docid, rel in docs.items():
                f.write(f"{qid}\t{docid}\t{int(rel)}\n")
