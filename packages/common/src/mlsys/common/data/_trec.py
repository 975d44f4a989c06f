"""TREC run and qrels files, read and write.

- Run: one line per retrieved document, ``qid Q0 docid rank score tag`` (whitespace-separated).
- Qrels: one line per judgement, ``qid iteration docid relevance``.

Both are read into the TREC-shaped dicts used across mlsys (``{qid: {docid: score}}`` /
``{qid: {docid: relevance}}``). Blank lines are skipped; any other malformed line raises
:class:`~mlsys.common.errors.ParseError` naming the file and the 1-based line number.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from pathlib import Path

from mlsys.common.data._io import PathLike, iter_lines
from mlsys.common.errors import InvalidInputError, ParseError

__all__ = ["read_trec_qrels", "read_trec_run", "write_trec_qrels", "write_trec_run"]


def _parse_int(token: str, *, field: str, path: PathLike, line: int) -> int:
    try:
        return int(token)
    except ValueError:
        raise ParseError(f"{field} {token!r} is not an integer", path=path, line=line) from None


def read_trec_run(path: PathLike) -> dict[str, dict[str, float]]:
    """Read a TREC run file into ``{qid: {docid: score}}``.

    Each non-blank line must have six fields ``qid Q0 docid rank score tag``; the rank must be an
    integer and the score a finite float. The ``Q0`` and ``tag`` columns are not kept; the rank
    column is checked but not used (trec_eval also ranks by score). A document listed twice for
    the same query is an error.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "run.txt")
        >>> write_trec_run({"q1": {"d1": 2.0, "d2": 0.5}}, p, tag="bm25")
        >>> open(p).read().splitlines()[0]
        'q1 Q0 d1 1 2.0 bm25'
        >>> read_trec_run(p)
        {'q1': {'d1': 2.0, 'd2': 0.5}}
    """
    run: dict[str, dict[str, float]] = {}
    for lineno, line in iter_lines(path, what="TREC run file"):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 6:
            raise ParseError(
                f"{len(fields)} fields in {line!r}, expected 6: qid Q0 docid rank score tag",
                path=path,
                line=lineno,
            )
        qid, _, docid, rank, score_s, _ = fields
        _parse_int(rank, field="rank", path=path, line=lineno)
        try:
            score = float(score_s)
        except ValueError:
            raise ParseError(f"score {score_s!r} is not a number", path=path, line=lineno) from None
        if not math.isfinite(score):
            raise ParseError(
                f"score {score_s!r} is not finite, expected a finite number", path=path, line=lineno
            )
        docs = run.setdefault(qid, {})
        if docid in docs:
            raise ParseError(
                f"document {docid!r} listed twice for query {qid!r}; expected each document once per query",
                path=path,
                line=lineno,
            )
        docs[docid] = score
    return run


def read_trec_qrels(path: PathLike) -> dict[str, dict[str, int]]:
    """Read a TREC qrels file into ``{qid: {docid: relevance}}``.

    Each non-blank line must have four fields ``qid iteration docid relevance`` with an integer
    relevance (negative values, used by some collections for "judged non-relevant", are kept as
    read; :mod:`mlsys.common.metrics` decides what to do with them). A judgement repeated for the
    same (query, document) pair is an error.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "qrels.txt")
        >>> write_trec_qrels({"q1": {"d1": 2, "d3": 0}}, p)
        >>> open(p).read()
        'q1 0 d1 2\\nq1 0 d3 0\\n'
        >>> read_trec_qrels(p)
        {'q1': {'d1': 2, 'd3': 0}}
    """
    qrels: dict[str, dict[str, int]] = {}
    for lineno, line in iter_lines(path, what="TREC qrels file"):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 4:
            raise ParseError(
                f"{len(fields)} fields in {line!r}, expected 4: qid iteration docid relevance",
                path=path,
                line=lineno,
            )
        qid, _, docid, rel_s = fields
        rel = _parse_int(rel_s, field="relevance", path=path, line=lineno)
        docs = qrels.setdefault(qid, {})
        if docid in docs:
            raise ParseError(
                f"document {docid!r} judged twice for query {qid!r}; expected one judgement per pair",
                path=path,
                line=lineno,
            )
        docs[docid] = rel
    return qrels


def _check_token(value: object, *, what: str) -> str:
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise InvalidInputError(
            f"{what} {value!r} cannot be written to a TREC file; expected a non-empty string without whitespace"
        )
    return value


def write_trec_run(run: Mapping[str, Mapping[str, float]], path: PathLike, *, tag: str = "mlsys") -> None:
    """Write ``{qid: {docid: score}}`` as a TREC run file.

    Documents are written per query in the order trec_eval ranks them (score descending, ties by
    document id descending as strings) with ranks 1, 2, ...; scores are written with ``repr`` so
    they read back exactly. Queries keep the mapping's order; a query with no documents produces no
    line (the format cannot represent it). Everything is validated before the file is opened, so a
    rejected call writes nothing.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "run.txt")
        >>> write_trec_run({"q1": {"a": 1.0, "b": 1.0}}, p)
        >>> print(open(p).read(), end="")
        q1 Q0 b 1 1.0 mlsys
        q1 Q0 a 2 1.0 mlsys
    """
    _check_token(tag, what="tag")
    lines: list[str] = []
    for qid, docs in run.items():
        _check_token(qid, what="query id")
        items: list[tuple[str, float]] = []
        for docid, score in docs.items():
            _check_token(docid, what="document id")
            if isinstance(score, bool) or not isinstance(score, numbers.Real):
                raise InvalidInputError(f"score of {qid!r}/{docid!r} is {score!r}, expected a float")
            if not math.isfinite(score):
                raise InvalidInputError(f"score of {qid!r}/{docid!r} is {score!r}, expected a finite float")
            items.append((docid, float(score)))
        items.sort(key=lambda t: t[0], reverse=True)
        items.sort(key=lambda t: t[1], reverse=True)  # stable: ties stay docid-descending
        lines.extend(f"{qid} Q0 {d} {r} {s!r} {tag}\n" for r, (d, s) in enumerate(items, start=1))
    Path(path).write_text("".join(lines), encoding="utf-8")


def write_trec_qrels(qrels: Mapping[str, Mapping[str, int]], path: PathLike) -> None:
    """Write ``{qid: {docid: relevance}}`` as a TREC qrels file (iteration column ``0``).

    Queries and documents keep the mappings' order. Validated before the file is opened.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "q.txt")
        >>> write_trec_qrels({"7": {"d": 1}}, p)
        >>> open(p).read()
        '7 0 d 1\\n'
    """
    lines: list[str] = []
    for qid, docs in qrels.items():
        _check_token(qid, what="query id")
        for docid, rel in docs.items():
            _check_token(docid, what="document id")
            if isinstance(rel, bool) or not isinstance(rel, numbers.Integral):
                raise InvalidInputError(f"relevance of {qid!r}/{docid!r} is {rel!r}, expected an int")
            lines.append(f"{qid} 0 {docid} {int(rel)}\n")
    Path(path).write_text("".join(lines), encoding="utf-8")
