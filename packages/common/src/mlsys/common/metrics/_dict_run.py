"""Ranking a TREC-shaped run dict in trec_eval order, vectorised over all queries."""

from __future__ import annotations

from collections.abc import Mapping
from itertools import chain, repeat
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from mlsys.common.errors import InvalidInputError
from mlsys.common.metrics._qrels import _relevance_array

__all__ = ["Ties", "qrels_values", "rank_dict_run"]

Ties = Literal["trec", "input"]


def _flatten_scores(
    run: Mapping[str, Mapping[str, Any]], qids: list[str], lengths: npt.NDArray[np.int64]
) -> Any:
    total = int(lengths.sum())
    try:
        scores = np.fromiter(
            chain.from_iterable(run[q].values() for q in qids), dtype=np.float64, count=total
        )
    except (TypeError, ValueError) as exc:
        for q in qids:
            for d, v in run[q].items():
                try:
                    float(v)
                except (TypeError, ValueError):
                    raise InvalidInputError(
                        f"score of doc {d!r} in query {q!r} is {v!r}; expected a number"
                    ) from exc
        raise InvalidInputError(f"run scores must be numbers: {exc}") from exc
    nan = np.isnan(scores)
    if nan.any():
        j = int(np.flatnonzero(nan)[0])
        offsets = np.cumsum(lengths)
        r = int(np.searchsorted(offsets, j, side="right"))
        local = j - (int(offsets[r - 1]) if r else 0)
        doc = list(run[qids[r]])[local]
        raise InvalidInputError(
            f"run score of doc {doc!r} in query {qids[r]!r} is NaN ({int(nan.sum())} NaN scores in total); "
            "expected finite scores (or ±inf)"
        )
    return scores


_NUMBER_TYPES = (int, float, bool, np.integer, np.floating, np.bool_)


def qrels_values(qrels: Mapping[str, Mapping[str, Any]], total: int) -> npt.NDArray[np.int64]:
    """All judged relevance values of a dict qrels, validated (integers >= 0, no strings)."""
    for t in {type(v) for judged in qrels.values() for v in judged.values()}:
        if not issubclass(t, _NUMBER_TYPES):
            q, d, v = next(
                (q, d, v) for q, judged in qrels.items() for d, v in judged.items() if type(v) is t
            )
            raise InvalidInputError(
                f"relevance of doc {d!r} in query {q!r} is {v!r}; expected an integer >= 0"
            )
    flat = np.fromiter(chain.from_iterable(v.values() for v in qrels.values()), np.float64, total)
    return _relevance_array(flat, where="qrels")


def rank_dict_run(
    run: Mapping[str, Mapping[str, Any]],
    qrels: Mapping[str, Mapping[str, Any]],
    qids: list[str],
    depth_of: Any,
    ties: Ties,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Relevance of the top documents of each query in trec_eval order, only as deep as needed.

    Returns ``(rel, n_ret)``: the ``(n, depth)`` judged relevance by rank and the number of
    retrieved documents per query. Sorting is one ``numpy.lexsort`` over the candidates of every
    query at once (score descending, stable); only runs of equal scores are then re-sorted by doc
    id descending in Python. Documents that cannot reach the needed depth are dropped first with a
    per-row partition threshold (ties at the threshold are kept, so the tie order stays exact).
    """
    n = len(qids)
    lengths = np.fromiter((len(run[q]) for q in qids), dtype=np.int64, count=n)
    scores = _flatten_scores(run, qids, lengths)
    if ties == "trec":
        # trec_eval keeps scores as C ``float`` (TEXT_RESULTS.sim in trec_format.h): scores that
        # differ only beyond single precision tie there, and then the doc id decides.
        scores = scores.astype(np.float32).astype(np.float64)
    width = int(lengths.max()) if n else 0
    depth = int(depth_of(width))
    starts = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    uniform = n > 0 and bool((lengths == width).all())
    if depth == 0:
        cand = np.empty(0, dtype=np.int64)
    elif depth >= width:
        cand = np.arange(scores.shape[0], dtype=np.int64)
    elif uniform:
        mat = scores.reshape(n, width)
        thr = np.partition(mat, width - depth, axis=1)[:, width - depth]  # depth-th largest
        cand = np.flatnonzero(mat >= thr[:, None])
    else:
        row_all = np.repeat(np.arange(n, dtype=np.int64), lengths)
        padded = np.full((n, width), -np.inf)
        padded[row_all, np.arange(scores.shape[0], dtype=np.int64) - starts[:-1][row_all]] = scores
        long_rows = lengths > depth
        row_thr = np.full(n, -np.inf)
        row_thr[long_rows] = np.partition(padded[long_rows], width - depth, axis=1)[:, width - depth]
        del padded
        cand = np.flatnonzero(scores >= row_thr[row_all])
    c_row = cand // max(width, 1) if uniform else np.searchsorted(starts, cand, side="right") - 1
    # Sort each query's candidates by score descending with one row-wise stable argsort of a
    # padded (n, max candidates) matrix: many small sorts are far faster than one lexsort.
    c_counts = np.bincount(c_row, minlength=n)
    c_starts = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(c_counts, out=c_starts[1:])
    cmax = int(c_counts.max()) if n else 0
    if n and bool((c_counts == cmax).all()):  # the usual case: no ragged rows, no padding
        neg = (-scores[cand]).reshape(n, cmax)
        idx = cand.reshape(n, cmax)
    else:
        col = np.arange(cand.shape[0], dtype=np.int64) - c_starts[:-1][c_row]
        neg = np.full((n, cmax), np.inf)  # padding sorts last; stable sort keeps real +inf keys first
        neg[c_row, col] = -scores[cand]
        idx = np.full((n, cmax), -1, dtype=np.int64)
        idx[c_row, col] = cand
    idx = np.take_along_axis(idx, np.argsort(neg, axis=1, kind="stable"), axis=1)
    flat = idx[idx >= 0]
    r_sorted = np.repeat(np.arange(n, dtype=np.int64), c_counts)
    del neg, idx
    docs_all = list(chain.from_iterable(run[q] for q in qids))
    if ties == "trec" and flat.shape[0] > 1:
        s_sorted = scores[flat]
        same = (s_sorted[1:] == s_sorted[:-1]) & (r_sorted[1:] == r_sorted[:-1])
        if same.any():
            brk = np.flatnonzero(np.r_[True, ~same, True])
            sizes = np.diff(brk)
            for a, b in zip(brk[:-1][sizes > 1].tolist(), brk[1:][sizes > 1].tolist(), strict=True):
                seg = flat[a:b].tolist()
                seg.sort(key=docs_all.__getitem__, reverse=True)  # doc ids are unique within a query
                flat[a:b] = seg
    # rank of each candidate within its query; keep the first `depth`
    pos = np.arange(flat.shape[0], dtype=np.int64) - c_starts[:-1][r_sorted]
    keep = pos < depth
    flat, r_kept, pos = flat[keep], r_sorted[keep], pos[keep]
    bounds = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(r_kept, minlength=n), out=bounds[1:])
    flat_l, bounds_l = flat.tolist(), bounds.tolist()
    getdoc = docs_all.__getitem__
    rel_flat: list[int] = []
    for i, q in enumerate(qids):  # C-level maps; no per-document Python bytecode
        rel_flat.extend(map(qrels[q].get, map(getdoc, flat_l[bounds_l[i] : bounds_l[i + 1]]), repeat(0)))
    rel = np.zeros((n, depth), dtype=np.int64)
    rel[r_kept, pos] = rel_flat
    return rel, lengths
