"""Ranking a TREC-shaped run dict in trec_eval order: only the ranks of the judged-relevant documents.

Every ranking metric (nDCG, MAP, MRR, recall, precision, R-precision, hit rate, at any cutoff or
none) reads nothing but the rank of each retrieved document with a positive judgement, and how
many documents were retrieved: the rest of the ranking never needs to be sorted. The rank of such
a document is ``1 +`` the number of documents of its query scored above it ``+`` those tied with
it that come first under the tie rule (trec_eval: doc id descending as strings). Two ways to count,
chosen by their cost:

* **count** (the usual case, a handful of relevant documents per query): compare each relevant
  document's score with its query's row of scores, vectorised over blocks of relevant documents
  (``n_relevant x width`` comparisons, no sort);
* **sort** (many relevant documents per query): one sort of every (query, score) key of the run at
  once, then two binary searches per relevant document.

Ties are then resolved only inside the tied groups that hold a relevant document, by comparing
those documents' ids directly (a handful of string comparisons per tied relevant document).
Mapping every doc id of the run to an integer code (one lexicographic sort of all ids) was
measured slower than pytrec_eval's whole evaluation at 10,000 x 1,000 (17-19 s against 4-5 s):
only the tied pairs are compared, as strings, exactly as trec_eval orders them.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import chain, compress, islice, repeat
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from mlsys.common.errors import InvalidInputError
from mlsys.common.metrics._qrels import _relevance_array

__all__ = ["RankedHits", "Ties", "qrels_values", "rank_relevant"]

Ties = Literal["trec", "input"]

#: the count strategy is used while ``n_relevant * width`` stays below this many times the run size
#: (measured: the comparisons cost about a tenth of a sort per key on 10,000 x 1,000 runs)
_COUNT_BUDGET = 12.0
#: elements per comparison block of the count strategy (1 MB of float32 scores: stays in cache)
_BLOCK = 1 << 18


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


@dataclass(frozen=True)
class RankedHits:
    """The retrieved documents with a positive judgement, by query: enough for every metric.

    ``row``, ``rank`` (1-based, trec_eval order) and ``rel`` (judged relevance > 0) are parallel
    arrays sorted by ``(row, rank)``; ``n_ret`` is the number of documents each query retrieved.
    """

    row: npt.NDArray[np.int64]
    rank: npt.NDArray[np.int64]
    rel: npt.NDArray[np.int64]
    n_ret: npt.NDArray[np.int64]

    @classmethod
    def from_dense(cls, rel: npt.NDArray[np.integer], n_ret: npt.NDArray[np.int64]) -> RankedHits:
        """From an ``(n, depth)`` matrix of judged relevance by rank (the array path)."""
        rows, cols = np.nonzero(rel > 0)
        return cls(rows.astype(np.int64), cols.astype(np.int64) + 1, rel[rows, cols].astype(np.int64), n_ret)


def _float32_key(scores: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.uint64]:
    """An unsigned key that sorts as the float32 scores do (``-0.0`` and ``0.0`` equal)."""
    bits = (scores.astype(np.float32) + np.float32(0.0)).view(np.uint32)  # -0.0 + 0.0 == +0.0
    neg = bits >> np.uint32(31) == 1
    key = np.where(neg, ~bits, bits | np.uint32(0x80000000))
    return key.astype(np.uint64)


def _all_dicts(run: Mapping[str, Mapping[str, Any]], qids: list[str]) -> bool:
    return all(type(run[q]) is dict for q in qids)


def _get_all(
    run: Mapping[str, Mapping[str, Any]], qrels: Mapping[str, Mapping[str, Any]], qids: list[str]
) -> list[Any]:
    """The score of every judged document in its query's run, or None (any Mapping type)."""
    return [run[q].get(d) for q in qids for d in qrels[q]]


def _count_above(
    mat: npt.NDArray[np.floating[Any]], p_row: npt.NDArray[np.int64], p_score: npt.NDArray[np.floating[Any]]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Per relevant document: documents scored above it, and its tie partners as ``(j, col)`` pairs.

    ``mat`` is the ``(n, width)`` score matrix (NaN padding compares false both ways).
    """
    n_p = p_row.shape[0]
    width = mat.shape[1]
    above = np.empty(n_p, dtype=np.int64)
    pair_j: list[npt.NDArray[np.int64]] = []
    pair_c: list[npt.NDArray[np.int64]] = []
    step = max(1, min(n_p, _BLOCK // max(width, 1)))
    # reused block buffers: cache-sized, and no fresh pages to fault in for every block
    buf = np.empty((step, width), dtype=mat.dtype)
    gt = np.empty((step, width), dtype=bool)
    eq = np.empty((step, width), dtype=bool)
    for a in range(0, n_p, step):
        b = min(n_p, a + step)
        m = b - a
        rows = np.take(mat, p_row[a:b], axis=0, out=buf[:m])
        s = p_score[a:b, None]
        above[a:b] = np.count_nonzero(np.greater(rows, s, out=gt[:m]), axis=1)
        # equal entries are few (the document itself and its tie partners): one flat scan of the
        # block finds them all, and the rows holding more than one are the tied ones
        flat = np.flatnonzero(np.equal(rows, s, out=eq[:m]))
        j, c = np.divmod(flat, width)
        tied = np.bincount(j, minlength=m) > 1  # the document itself, and at least one other
        sel = tied[j]
        if sel.any():
            pair_j.append(j[sel] + a)
            pair_c.append(c[sel])
    if pair_j:
        return above, np.concatenate(pair_j), np.concatenate(pair_c), np.empty(0, dtype=np.int64)
    empty = np.empty(0, dtype=np.int64)
    return above, empty, empty, empty


def _sort_above(
    keys: npt.NDArray[np.uint64],
    starts: npt.NDArray[np.int64],
    p_row: npt.NDArray[np.int64],
    p_key: npt.NDArray[np.uint64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """One sort of every ``(query, score)`` key of the run; per relevant document, the count of
    documents above it and its tie partners as ``(j, col)`` pairs."""
    n = starts.shape[0] - 1
    row_of = np.repeat(np.arange(n, dtype=np.uint64), np.diff(starts))
    glob = (row_of << np.uint64(32)) | keys
    order = np.argsort(glob, kind="stable")
    srt = glob[order]
    pk = (p_row.astype(np.uint64) << np.uint64(32)) | p_key
    lo = np.searchsorted(srt, pk, side="left")
    hi = np.searchsorted(srt, pk, side="right")
    row_end = starts[1:][p_row]
    above = (row_end - hi).astype(np.int64)
    size = hi - lo
    tied = np.flatnonzero(size > 1)
    if tied.size == 0:
        empty = np.empty(0, dtype=np.int64)
        return above, empty, empty
    cnt = size[tied]
    j = np.repeat(tied, cnt)
    off = np.arange(int(cnt.sum()), dtype=np.int64) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    flat = order[np.repeat(lo[tied], cnt) + off]
    return above, j.astype(np.int64), (flat - starts[p_row[j]]).astype(np.int64)


def rank_relevant(
    run: Mapping[str, Mapping[str, Any]],
    qrels: Mapping[str, Mapping[str, Any]],
    qids: list[str],
    ties: Ties,
) -> RankedHits:
    """The trec_eval rank of every retrieved document judged relevant (> 0), for all queries at once.

    ``run`` maps every id of ``qids`` to its scored documents (``{}`` for an empty ranking); the
    judgements of ``qrels`` are already validated. See the module docstring for the method.
    """
    n = len(qids)
    lengths = np.fromiter((len(run[q]) for q in qids), dtype=np.int64, count=n)
    scores = _flatten_scores(run, qids, lengths)  # validates every score (NaN, non-numbers)
    # relevant judged documents that were retrieved, looked up with C-level maps (no bytecode per
    # judgement): judged doc -> its run's score or None
    judged_docs = list(chain.from_iterable(qrels[q] for q in qids))
    judged_rel = list(chain.from_iterable(qrels[q].values() for q in qids))
    scored_of = chain.from_iterable(repeat(run[q], len(qrels[q])) for q in qids)
    get: Any = dict.get
    looked_up = (
        list(map(get, scored_of, judged_docs)) if _all_dicts(run, qids) else _get_all(run, qrels, qids)
    )
    row_of = np.repeat(np.arange(n, dtype=np.int64), [len(qrels[q]) for q in qids])
    n_j = len(judged_rel)
    keep = np.fromiter(map(operator.is_not, looked_up, repeat(None)), dtype=bool, count=n_j)
    keep &= np.fromiter(judged_rel, dtype=np.float64, count=n_j) > 0
    p_row = row_of[keep]
    keep_l = keep.tolist()
    p_doc = list(compress(judged_docs, keep_l))
    p_rel = np.array(list(compress(judged_rel, keep_l)), dtype=np.float64).astype(np.int64)
    p_score = np.array(list(compress(looked_up, keep_l)), dtype=np.float64)
    n_p = int(p_row.shape[0])
    if ties == "trec":
        # trec_eval keeps scores as C ``float`` (TEXT_RESULTS.sim in trec_format.h): scores that
        # differ only beyond single precision tie there, and then the doc id decides. float32 is
        # then exact for every comparison, and halves the memory the count strategy reads.
        scores = scores.astype(np.float32)
        p_score = p_score.astype(np.float32)
    if n_p == 0:
        return RankedHits(p_row, p_row.copy(), p_rel, lengths)
    starts = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    width = int(lengths.max())
    total = int(starts[-1])
    if n_p * width <= _COUNT_BUDGET * total:
        if bool((lengths == width).all()):
            mat = scores.reshape(n, width)
        else:
            # ragged rows: NaN padding compares false both ways (a boolean mask fills row-major)
            mat = np.full((n, width), np.nan, dtype=scores.dtype)
            mat[np.arange(width)[None, :] < lengths[:, None]] = scores
        above, pair_j, pair_c, _ = _count_above(mat, p_row, p_score)
        del mat
    else:
        if ties == "trec":
            keys, p_key = _float32_key(scores), _float32_key(p_score)
        else:  # float64 scores: their rank among the distinct values is the key
            uniq, inv = np.unique(scores + 0.0, return_inverse=True)
            keys = inv.astype(np.uint64)
            p_key = np.searchsorted(uniq, p_score + 0.0).astype(np.uint64)
        above, pair_j, pair_c = _sort_above(keys, starts, p_row, p_key)
    rank = above + 1
    if pair_j.size:
        rank += _tie_offsets(run, qids, p_row, p_doc, pair_j, pair_c, ties)
    order = np.lexsort((rank, p_row))
    return RankedHits(p_row[order], rank[order], p_rel[order], lengths)


def _tie_offsets(
    run: Mapping[str, Mapping[str, Any]],
    qids: list[str],
    p_row: npt.NDArray[np.int64],
    p_doc: list[Any],
    pair_j: npt.NDArray[np.int64],
    pair_c: npt.NDArray[np.int64],
    ties: Ties,
) -> npt.NDArray[np.int64]:
    """For each relevant document, how many of its tie partners rank before it.

    ``(pair_j, pair_c)``: relevant document ``j`` ties with the document in column ``c`` of its
    query (itself included). trec: partners with a larger doc id; input: partners inserted earlier.
    """
    n_p = p_row.shape[0]
    rows, at = np.unique(p_row[pair_j], return_inverse=True)
    # each tied query's doc ids, listed only up to the last column a partner sits in
    stop = np.zeros(rows.shape[0], dtype=np.int64)
    np.maximum.at(stop, at, pair_c + 1)
    off = np.zeros(rows.shape[0] + 1, dtype=np.int64)
    np.cumsum(stop, out=off[1:])
    docs = list(chain.from_iterable(map(islice, (run[qids[r]] for r in rows.tolist()), stop.tolist())))
    base = off[at]
    partner = list(map(docs.__getitem__, (base + pair_c).tolist()))
    me = list(map(p_doc.__getitem__, pair_j.tolist()))
    if ties == "trec":
        before = np.fromiter(map(operator.gt, partner, me), dtype=bool, count=len(me))
    else:
        is_me = np.fromiter(map(operator.eq, partner, me), dtype=bool, count=len(me))
        my_col = np.zeros(n_p, dtype=np.int64)
        my_col[pair_j[is_me]] = pair_c[is_me]
        before = pair_c < my_col[pair_j]
    return np.bincount(pair_j[before], minlength=n_p).astype(np.int64)
