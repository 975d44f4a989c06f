"""Exact top-k by blocked matrix products, with bounded memory.

Used by :class:`~mlsys.common.ann.ExactIndex` and as the exact fallback of the approximate
backends (search restricted to a small allowed set, short rows after widening).

The database is scanned in blocks of ``chunk_rows`` rows and the queries in blocks of
``query_block`` rows, so the score matrix held at any time is at most
``query_block * chunk_rows`` float32 values. The first block of a row is reduced with
``argpartition``; later blocks only look at the scores that beat the current k-th best of their
row (one vectorised comparison), which is what makes this as fast as faiss's flat index.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from mlsys.common.errors import InvalidInputError, UnknownNameError
from mlsys.common.limits import SMALL_K, check_result_size
from mlsys.common.validation import check_k

__all__ = ["exact_topk", "sort_results"]

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
_METRICS = frozenset({"ip", "cosine", "l2"})


def _block_scores(
    q: F32, db: F32, metric: str, db_sqnorms: F32 | None, valid: npt.NDArray[np.bool_] | None
) -> F32:
    s = q @ db.T
    if metric == "l2":
        # rank by 2 q.v - |v|^2; the per-query constant |q|^2 is subtracted at the end
        s *= 2.0
        assert db_sqnorms is not None
        s -= db_sqnorms[None, :]
    if valid is not None:
        s[:, ~valid] = -np.inf
    return s


def _merge_partition(best_s: F32, best_i: I64, s: F32, offset: int, k: int) -> tuple[F32, I64]:
    c = s.shape[1]
    if c > k:
        part = np.argpartition(s, c - k, axis=1)[:, c - k :]
        cs = np.take_along_axis(s, part, axis=1)
    else:
        part = np.broadcast_to(np.arange(c), s.shape)
        cs = s
    ci = part.astype(np.int64) + offset
    all_s = np.concatenate([best_s, cs], axis=1)
    all_i = np.concatenate([best_i, ci], axis=1)
    keep = np.argpartition(all_s, all_s.shape[1] - k, axis=1)[:, all_s.shape[1] - k :]
    return np.take_along_axis(all_s, keep, axis=1), np.take_along_axis(all_i, keep, axis=1)


#: columns per group of the first block's prefilter (see :func:`_first_block_candidates`)
_GROUP = 64


def _first_block_candidates(s: F32, k: int) -> tuple[I64, I64] | None:
    """The entries of a first block that can be in a row's top k, without a full ``argpartition``.

    The columns are cut into groups of :data:`_GROUP`; the k-th largest group maximum ``t`` of a row
    is a lower bound of the row's k-th largest score (k groups each hold a score >= ``t``), so
    every top-k entry is ``>= t``. Only those few entries are merged. ``argpartition`` over a whole
    block was most of the cost of exact search on an AMD EPYC machine (2.5x faiss's flat index
    there, 1.15x with this filter); the group maxima are one vectorised reduction. ``None`` when
    the filter would not pay (few groups, non-finite bounds, or too many candidates).
    """
    b, c = s.shape
    g = c // _GROUP
    if g < 4 * k:
        return None
    gm = s[:, : g * _GROUP].reshape(b, g, _GROUP).max(axis=2)
    t = np.partition(gm, g - k, axis=1)[:, g - k]
    if not np.isfinite(t).all():
        return None
    mask = s >= t[:, None]
    if int(np.count_nonzero(mask)) * 8 >= mask.size:
        return None
    return _nonzero(mask)


def _nonzero(mask: npt.NDArray[np.bool_]) -> tuple[I64, I64]:
    rows, cols = np.nonzero(mask)
    return rows.astype(np.int64, copy=False), cols.astype(np.int64, copy=False)


def _merge_threshold(
    best_s: F32, best_i: I64, s: F32, rows: I64, cols: I64, offset: int, k: int
) -> tuple[F32, I64]:
    nq = best_s.shape[0]
    all_r = np.concatenate([np.repeat(np.arange(nq), k), rows])
    all_s = np.concatenate([best_s.ravel(), s[rows, cols]])
    all_i = np.concatenate([best_i.ravel(), cols.astype(np.int64) + offset])
    order = np.lexsort((-all_s, all_r))
    # every row owns at least its k previous best, so row r's first k entries start at r's offset
    starts = np.searchsorted(all_r[order], np.arange(nq))
    take = order[(starts[:, None] + np.arange(k)).ravel()]
    return all_s[take].reshape(nq, k), all_i[take].reshape(nq, k)


def exact_topk(
    queries: F32,
    db: F32,
    k: int,
    metric: str,
    *,
    db_sqnorms: F32 | None = None,
    valid: npt.NDArray[np.bool_] | None = None,
    chunk_rows: int = 16384,
    query_block: int = 1024,
) -> tuple[I64, F32]:
    """Top-``k`` rows of ``db`` for each query, best first.

    Args:
        queries: ``(nq, dim)`` float32.
        db: ``(n, dim)`` float32 database.
        k: results per query; rows with fewer than ``k`` valid database rows are padded.
        metric: ``"ip"`` / ``"cosine"`` (inner product; cosine inputs are already normalised) or
            ``"l2"`` (score = negative squared distance).
        db_sqnorms: squared norms of ``db`` rows, required for ``"l2"``.
        valid: boolean mask over ``db`` rows; ``False`` rows are never returned.
        chunk_rows: database rows scored per block.
        query_block: queries scored per block.

    Returns:
        ``(rows, scores)``: row indices into ``db`` (``(nq, k)`` int64, ``-1`` padding) and
        scores (float32, ``-inf`` padding), sorted by score descending then row ascending (which
        of several rows tied at the k-th score is kept is unspecified).

    Example:
        >>> db = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]], dtype=np.float32)
        >>> rows, scores = exact_topk(db[:1], db, 2, "ip")
        >>> rows.tolist(), scores.tolist()
        ([[0, 1]], [[1.0, 0.5]])
    """
    if not (
        type(queries) is np.ndarray
        and type(db) is np.ndarray
        and queries.ndim == 2
        and db.ndim == 2
        and queries.shape[1] == db.shape[1]
        and queries.dtype == db.dtype == np.float32
    ):
        raise InvalidInputError(
            "queries and db must be float32 arrays of shape (nq, dim) and (n, dim), got "
            f"{getattr(queries, 'shape', type(queries).__name__)} and {getattr(db, 'shape', type(db).__name__)}"
        )
    if metric not in _METRICS:
        raise UnknownNameError(f"unknown metric {metric!r}; expected one of {sorted(_METRICS)}")
    if type(k) is not int or k <= 0 or k > SMALL_K:
        k = check_k(k)
        check_result_size(queries.shape[0], k)
    nq = queries.shape[0]
    n = db.shape[0]
    if metric == "l2" and db_sqnorms is None:
        db_sqnorms = np.einsum("ij,ij->i", db, db)
    out_i = np.full((nq, k), -1, dtype=np.int64)
    out_s = np.full((nq, k), -np.inf, dtype=np.float32)
    for q0 in range(0, nq, query_block):
        q = queries[q0 : q0 + query_block]
        b = q.shape[0]
        best_s = np.full((b, k), -np.inf, dtype=np.float32)
        best_i = np.full((b, k), -1, dtype=np.int64)
        filled = False
        for c0 in range(0, n, chunk_rows):
            c1 = min(n, c0 + chunk_rows)
            s = _block_scores(
                q,
                db[c0:c1],
                metric,
                None if db_sqnorms is None else db_sqnorms[c0:c1],
                None if valid is None else valid[c0:c1],
            )
            # candidates: the entries that can enter a row's top k, or None for a full partition
            cand: tuple[I64, I64] | None
            if filled:
                mask = s > best_s.min(axis=1)[:, None]
                n_cand = int(np.count_nonzero(mask))
                if n_cand == 0:
                    continue
                cand = _nonzero(mask) if n_cand * 8 < mask.size else None
            else:
                cand = _first_block_candidates(s, k)
            if cand is not None:
                best_s, best_i = _merge_threshold(best_s, best_i, s, cand[0], cand[1], c0, k)
            else:
                best_s, best_i = _merge_partition(best_s, best_i, s, c0, k)
            filled = bool(np.isfinite(best_s).all())
        out_s[q0 : q0 + b] = best_s
        out_i[q0 : q0 + b] = best_i
    out_i[~np.isfinite(out_s)] = -1
    out_s[out_i < 0] = -np.inf
    if metric == "l2":
        qn = np.einsum("ij,ij->i", queries, queries)
        out_s -= qn[:, None]
        np.minimum(out_s, 0.0, out=out_s)
    return sort_results(out_i, out_s)


def sort_results(ids: I64, scores: F32) -> tuple[I64, F32]:
    """Sort each row by score descending, ties by id ascending, padding (``-1``/``-inf``) last."""
    order = np.lexsort((np.where(ids < 0, np.iinfo(np.int64).max, ids), -scores), axis=1)
    return np.take_along_axis(ids, order, axis=1), np.take_along_axis(scores, order, axis=1)
