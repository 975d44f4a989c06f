"""``evaluate`` (TREC-shaped dicts) and ``evaluate_ranked`` (arrays), and their result object.

Query policies
--------------
trec_eval (checked with pytrec-eval-terrier 0.5.11, see the tests) evaluates only the queries that
appear in *both* the run and the qrels; a query of the qrels that is missing from the run is left
out of the mean unless ``trec_eval -c`` is given, in which case it counts with every measure 0; a
query whose judgements hold no relevant document is evaluated and scores 0 everywhere. mlsys makes
each of these an explicit argument:

* ``missing_queries`` (in the qrels, not in the run): ``"ignore"`` (trec_eval), ``"zero"``
  (``trec_eval -c``: scored as an empty ranking), ``"error"``.
* ``extra_queries`` (in the run, not in the qrels): ``"ignore"`` (trec_eval), ``"error"``.
* ``empty_queries`` (no judged document with relevance >= ``relevance_level``): ``"zero"``
  (trec_eval: every metric 0, counted in the mean), ``"skip"`` (left out of the mean), ``"error"``.

Each defaults to ``None``, which applies trec_eval's choice *and* emits a
:class:`MetricsPolicyWarning` naming the affected queries whenever it changed the result, so a
0 or a dropped query is never silent; pass the policy explicitly to silence the warning. The
result records every affected query in :attr:`EvalResult.notes`. A run and qrels with no query in
common is an error (trec_eval refuses it too).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from mlsys.common.errors import DuplicateIdError, InvalidInputError, UnknownNameError
from mlsys.common.metrics._dict_run import Ties, qrels_values, rank_relevant
from mlsys.common.metrics._qrels import Qrels, _as_mapping
from mlsys.common.metrics._ranking import (
    Gain,
    JudgedStats,
    check_gain,
    check_level,
    compute,
    compute_hits,
    needed_depth,
    parse_metrics,
)
from mlsys.common.metrics._result import EvalResult, MetricsPolicyWarning

__all__ = ["EmptyPolicy", "ExtraPolicy", "MissingPolicy", "evaluate", "evaluate_ranked"]

MissingPolicy = Literal["ignore", "zero", "error"]
ExtraPolicy = Literal["ignore", "error"]
EmptyPolicy = Literal["zero", "skip", "error"]


# ---------------------------------------------------------------------------- helpers
def _check_policy(value: object, allowed: tuple[str, ...], name: str) -> None:
    if value is not None and value not in allowed:
        raise UnknownNameError(
            f"unknown {name} policy {value!r}; valid: {', '.join(map(repr, allowed))} or None"
        )


def _warn(
    default_used: bool, what: str, ids: Sequence[str], consequence: str, arg: str, *, stacklevel: int = 3
) -> None:
    if default_used and ids:
        shown = ", ".join(map(repr, list(ids)[:5])) + (" ..." if len(ids) > 5 else "")
        warnings.warn(
            f"{what}: {len(ids)} ({shown}); {consequence} (trec_eval's default); "
            f"pass {arg} explicitly to choose and silence this warning",
            MetricsPolicyWarning,
            stacklevel=stacklevel,
        )


def _finish(
    qids: list[str],
    values: dict[str, npt.NDArray[np.float64]],
    keep: npt.NDArray[np.bool_] | None,
    notes: dict[str, Any],
) -> EvalResult:
    if keep is not None:
        qids = [q for q, k in zip(qids, keep.tolist(), strict=True) if k]
        values = {m: v[keep] for m, v in values.items()}
    if not qids:
        raise InvalidInputError(
            "no query is left to evaluate after applying the query policies "
            f"(no_relevant={len(notes.get('no_relevant', ()))}); expected at least one"
        )
    for v in values.values():
        v.setflags(write=False)
    mean = {m: float(v.mean()) for m, v in values.items()}
    return EvalResult(qids, values, mean, notes)


def _empty_policy(
    num_rel: npt.NDArray[np.int64], qids: list[str], empty_queries: EmptyPolicy | None
) -> tuple[npt.NDArray[np.bool_] | None, tuple[str, ...]]:
    empty = num_rel == 0
    empty_ids = tuple(q for q, e in zip(qids, empty.tolist(), strict=True) if e)
    if empty_ids and empty_queries == "error":
        raise InvalidInputError(
            f"{len(empty_ids)} queries have no relevant judgement (e.g. {empty_ids[0]!r}) and "
            "empty_queries='error'; expected every query to have a relevant document"
        )
    _warn(
        empty_queries is None,
        "queries without a relevant judgement",
        empty_ids,
        "they score 0 in every metric and count in the mean",
        "empty_queries='zero'|'skip'|'error'",
        stacklevel=4,
    )
    keep = ~empty if (empty_queries == "skip" and empty_ids) else None
    return keep, empty_ids


# ---------------------------------------------------------------------------- array path
def _check_ranked(ranked_ids: Any, n_queries: int) -> npt.NDArray[np.int64]:
    arr = np.asarray(ranked_ids)
    if arr.ndim != 2:
        raise InvalidInputError(f"ranked_ids must have shape (n_queries, k), got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise InvalidInputError(f"ranked_ids must be integer doc ids, got dtype {arr.dtype}")
    if arr.shape[0] != n_queries:
        raise InvalidInputError(
            f"ranked_ids has {arr.shape[0]} rows but qrels has {n_queries} queries; expected row i = query i"
        )
    arr = arr.astype(np.int64, copy=False)
    if arr.size:
        lo = int(arr.min())
        if lo < -1:
            raise InvalidInputError(f"ranked_ids holds {lo}; expected doc ids >= 0 and -1 for padding")
        if lo == -1 and arr.shape[1] > 1:
            bad = (arr[:, 1:] >= 0) & (arr[:, :-1] < 0)
            if bad.any():
                r = int(np.flatnonzero(bad.any(axis=1))[0])
                raise InvalidInputError(
                    f"row {r} of ranked_ids has a doc id after -1 padding; expected padding only at the end"
                )
    return arr


def _check_no_duplicates(top: npt.NDArray[np.int64], qids: list[str]) -> None:
    if top.shape[1] < 2:
        return
    s = np.sort(top, axis=1)
    dup = (s[:, 1:] == s[:, :-1]) & (s[:, 1:] >= 0)
    if dup.any():
        r = int(np.flatnonzero(dup.any(axis=1))[0])
        c = int(np.flatnonzero(dup[r])[0])
        raise DuplicateIdError(
            f"doc id {int(s[r, c])} is ranked twice for query {qids[r]!r} (row {r}); "
            "expected each document at most once per ranking"
        )


def evaluate_ranked(
    ranked_ids: Any,
    qrels: Qrels,
    metrics: Sequence[str] | str,
    *,
    gain: Gain = "linear",
    relevance_level: int = 1,
    empty_queries: EmptyPolicy | None = None,
) -> EvalResult:
    """Evaluate rankings given as an ``(n_queries, k)`` array of doc ids (the fast path).

    Args:
        ranked_ids: int64 doc ids, row ``i`` is the ranking of query ``i`` of ``qrels``, best
            first, padded at the end with ``-1`` (e.g. the ids returned by an ANN search).
        qrels: the judgements (:class:`Qrels`).
        metrics: names such as ``"ndcg@10"``, ``"mrr@10"``, ``"recall@100"``, ``"map"``.
        gain: ``"linear"`` (trec_eval) or ``"exponential"`` (``2**rel - 1``) for nDCG.
        relevance_level: minimum judged relevance that counts as relevant (trec_eval ``-l``).
        empty_queries: policy for queries without a relevant judgement (see the module docs).

    Only the first ranks that the metrics read are validated for duplicates (all of them for
    metrics without cutoff); every id must be >= -1 and padding must be trailing.

    Raises:
        UnknownNameError: unknown metric or gain. InvalidInputError: bad shapes, ids, k <= 0.
        DuplicateIdError: a document ranked twice for one query within the evaluated depth.

    Example:
        >>> import numpy as np
        >>> q = Qrels.from_lists([np.array([7]), np.array([3, 4])])
        >>> ranked = np.array([[1, 7, -1], [4, 3, 9]])
        >>> evaluate_ranked(ranked, q, ["mrr@10", "recall@1"]).mean
        {'mrr@10': 0.75, 'recall@1': 0.25}
    """
    if not isinstance(qrels, Qrels):
        raise InvalidInputError(
            f"qrels must be a Qrels (Qrels.from_dict / Qrels.from_lists), got {type(qrels).__name__}"
        )
    specs = parse_metrics(metrics)
    g = check_gain(gain)
    level = check_level(relevance_level)
    _check_policy(empty_queries, ("zero", "skip", "error"), "empty_queries")
    arr = _check_ranked(ranked_ids, qrels.n_queries)
    judged = qrels.judged()
    num_rel = judged.num_relevant(level)
    depth = needed_depth(specs, int(num_rel.max()) if num_rel.size else 0, arr.shape[1])
    top = arr[:, :depth]
    _check_no_duplicates(top, qrels.query_ids)
    keep, empty_ids = _empty_policy(num_rel, qrels.query_ids, empty_queries)
    rel = qrels.lookup(top)
    if any(s.family == "precision" and s.k is None for s in specs):
        n_ret = (arr >= 0).sum(axis=1, dtype=np.int64)
    else:
        n_ret = np.zeros(arr.shape[0], dtype=np.int64)
    values = compute(rel, n_ret, judged, specs, gain=g, level=level)
    notes: dict[str, Any] = {
        "missing_from_run": (),
        "not_in_qrels": (),
        "no_relevant": empty_ids,
        "policy": {"empty_queries": empty_queries or "zero", "gain": g, "relevance_level": level},
    }
    return _finish(qrels.query_ids, values, keep, notes)


def evaluate(
    run: Mapping[str, Mapping[str, Any]],
    qrels: Mapping[str, Mapping[str, Any]],
    metrics: Sequence[str] | str,
    *,
    gain: Gain = "linear",
    ties: Ties = "trec",
    relevance_level: int = 1,
    missing_queries: MissingPolicy | None = None,
    extra_queries: ExtraPolicy | None = None,
    empty_queries: EmptyPolicy | None = None,
) -> EvalResult:
    """Evaluate a TREC-shaped run ``{query_id: {doc_id: score}}`` against ``{query_id: {doc_id: rel}}``.

    Documents are ranked by score descending; equal scores are ordered by doc id descending as
    strings (``ties="trec"``, exactly trec_eval) or kept in the run's insertion order
    (``ties="input"``). Like trec_eval, ``ties="trec"`` compares scores in single precision
    (trec_eval stores them as C ``float``), so scores equal as float32 tie; ``ties="input"``
    compares the float64 values. Values equal pytrec-eval-terrier's to 1e-9 (tested).

    Args:
        run: scores, higher is better; NaN is refused, ±inf allowed.
        qrels: integer relevance >= 0 (0 = judged non-relevant). A query mapped to ``{}`` is a
            query without relevant documents (pytrec_eval would drop it).
        metrics: names such as ``"ndcg@10"``, ``"mrr@10"``, ``"recall@100"``, ``"map"``,
            ``"r_precision"``; see :mod:`mlsys.common.metrics` for the list.
        gain: ``"linear"`` (trec_eval) or ``"exponential"`` (``2**rel - 1``) for nDCG.
        ties: ``"trec"`` or ``"input"``.
        relevance_level: minimum relevance that counts as relevant (trec_eval ``-l``, default 1).
        missing_queries, extra_queries, empty_queries: query policies, see the module docstring;
            ``None`` applies trec_eval's choice and warns when it mattered.

    Returns:
        EvalResult with per-query arrays (query order of ``qrels``) and means.

    Example:
        >>> run = {"q1": {"d1": 0.9, "d2": 0.9, "d3": 0.1}}
        >>> qrels = {"q1": {"d1": 1, "d3": 2}}
        >>> r = evaluate(run, qrels, ["mrr@10", "precision@2"])
        >>> r["mrr@10"], r["precision@2"]   # tie: "d2" > "d1", so d2 is ranked first
        (0.5, 0.5)
    """
    specs = parse_metrics(metrics)
    g = check_gain(gain)
    level = check_level(relevance_level)
    if ties not in ("trec", "input"):
        raise UnknownNameError(f"unknown ties {ties!r}; valid: 'trec' (score desc, doc id desc), 'input'")
    _check_policy(missing_queries, ("ignore", "zero", "error"), "missing_queries")
    _check_policy(extra_queries, ("ignore", "error"), "extra_queries")
    _check_policy(empty_queries, ("zero", "skip", "error"), "empty_queries")
    if not isinstance(run, Mapping):
        raise InvalidInputError(
            f"run must be a mapping {{query_id: {{doc_id: score}}}}, got {type(run).__name__}"
        )
    if not isinstance(qrels, Mapping):
        raise InvalidInputError(
            f"qrels must be a mapping {{query_id: {{doc_id: relevance}}}}, got {type(qrels).__name__}"
        )
    for q, scored in run.items():
        _as_mapping(scored, f"run[{q!r}]")
    # validate every judgement once, at the boundary
    q_lengths = np.fromiter(
        (len(_as_mapping(v, f"qrels[{q!r}]")) for q, v in qrels.items()), np.int64, len(qrels)
    )
    rels_all = qrels_values(qrels, int(q_lengths.sum()))
    missing = tuple(q for q in qrels if q not in run)
    extra = tuple(q for q in run if q not in qrels)
    if missing and missing_queries == "error":
        raise InvalidInputError(
            f"{len(missing)} qrels queries are not in the run (e.g. {missing[0]!r}) and missing_queries='error'"
        )
    if extra and extra_queries == "error":
        raise InvalidInputError(
            f"{len(extra)} run queries are not in the qrels (e.g. {extra[0]!r}) and extra_queries='error'"
        )
    _warn(
        missing_queries is None,
        "queries of the qrels missing from the run",
        missing,
        "they are left out of the mean",
        "missing_queries='ignore'|'zero'|'error'",
    )
    _warn(
        extra_queries is None,
        "queries of the run missing from the qrels",
        extra,
        "they are left out",
        "extra_queries='ignore'|'error'",
    )
    zero_missing = missing_queries == "zero"
    qids = [q for q in qrels if q in run or zero_missing]
    if not qids:
        raise InvalidInputError(
            f"no query is in both the run ({len(run)} queries) and the qrels ({len(qrels)} queries); "
            "expected matching query ids"
        )
    # judged stats of the evaluated queries (CSR over the validated flat relevance array)
    q_index = {q: i for i, q in enumerate(qrels)}
    q_starts = np.zeros(len(qrels) + 1, dtype=np.int64)
    np.cumsum(q_lengths, out=q_starts[1:])
    sel = np.fromiter((q_index[q] for q in qids), np.int64, len(qids))
    sel_len = q_lengths[sel]
    idx = np.repeat(q_starts[:-1][sel] - np.concatenate(([0], np.cumsum(sel_len)[:-1])), sel_len) + np.arange(
        int(sel_len.sum()), dtype=np.int64
    )
    indptr = np.zeros(len(qids) + 1, dtype=np.int64)
    np.cumsum(sel_len, out=indptr[1:])
    judged = JudgedStats.from_csr(indptr, rels_all[idx])
    num_rel = judged.num_relevant(level)
    empty_run: dict[str, float] = {}
    run_view = {q: run.get(q, empty_run) for q in qids}
    keep, empty_ids = _empty_policy(num_rel, qids, empty_queries)
    hits = rank_relevant(run_view, qrels, qids, ties)
    values = compute_hits(hits.row, hits.rank, hits.rel, hits.n_ret, judged, specs, gain=g, level=level)
    notes: dict[str, Any] = {
        "missing_from_run": missing,
        "not_in_qrels": extra,
        "no_relevant": empty_ids,
        "policy": {
            "missing_queries": missing_queries or "ignore",
            "extra_queries": extra_queries or "ignore",
            "empty_queries": empty_queries or "zero",
            "ties": ties,
            "gain": g,
            "relevance_level": level,
        },
    }
    return _finish(qids, values, keep, notes)
