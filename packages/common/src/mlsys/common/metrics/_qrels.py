"""Compact relevance judgements for the fast array path."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from mlsys.common.errors import DuplicateIdError, InvalidInputError
from mlsys.common.metrics._ranking import JudgedStats
from mlsys.common.validation import as_array

__all__ = ["Qrels"]


def _relevance_array(values: Any, *, where: str) -> npt.NDArray[np.int64]:
    """Validate judged relevance values: integers >= 0 (bools and integral floats accepted)."""
    arr = np.asarray(values)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating) or arr.dtype == np.bool_
    ):
        raise InvalidInputError(f"relevance of {where} must be integers, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        bad = ~np.isfinite(arr) | (arr != np.floor(arr))
        if bad.any():
            raise InvalidInputError(f"relevance of {where} must be integers >= 0, got {arr[bad][0]!r}")
    out = arr.astype(np.int64)
    if (out < 0).any():
        raise InvalidInputError(
            f"relevance of {where} must be >= 0 (0 = judged non-relevant), got {int(out[out < 0][0])}; "
            "mlsys does not accept trec_eval's negative 'unjudged' codes"
        )
    return out


class Qrels:
    """Relevance judgements in compressed sparse rows: one row per query, sorted doc ids per row.

    The compact form of ``{query_id: {doc_id: relevance}}`` used by :func:`evaluate_ranked`.
    Documents are int64 ids (the ids of your index); relevance is an integer >= 0, and 0 means
    judged non-relevant. A query may have no relevant documents (or no judgements at all); how it
    counts is the ``empty_queries`` policy of the evaluation functions.

    Build it with :meth:`from_dict` or :meth:`from_lists`; the arrays are read-only.

    Example:
        >>> import numpy as np
        >>> q = Qrels.from_lists([np.array([3, 1]), np.array([7])], [np.array([2, 1]), np.array([1])])
        >>> q.n_queries, q.doc_ids.tolist(), q.relevance.tolist()
        (2, [1, 3, 7], [1, 2, 1])
    """

    __slots__ = ("_doc_index", "_indptr", "_judged", "_keys", "_query_ids", "_relevance", "_uniq", "doc_ids")

    def __init__(
        self,
        query_ids: Sequence[str],
        indptr: npt.NDArray[np.int64],
        doc_ids: npt.NDArray[np.int64],
        relevance: npt.NDArray[np.int64],
        doc_index: Mapping[str, int] | None = None,
    ) -> None:
        """Low-level constructor from already validated CSR arrays (rows sorted by doc id).

        Prefer :meth:`from_dict` and :meth:`from_lists`, which validate their input.
        """
        try:
            if isinstance(query_ids, (str, bytes)):
                raise TypeError("a single string")
            self._query_ids = [str(q) for q in query_ids]
        except TypeError as exc:
            raise InvalidInputError(f"query_ids must be a sequence, got {type(query_ids).__name__}") from exc
        self._indptr = np.ascontiguousarray(as_array(indptr, dtype=np.int64, name="indptr"))
        self.doc_ids = np.ascontiguousarray(as_array(doc_ids, dtype=np.int64, name="doc_ids"))
        self._relevance = np.ascontiguousarray(as_array(relevance, dtype=np.int64, name="relevance"))
        n = self.doc_ids.shape[0] if self.doc_ids.ndim == 1 else -1
        ip = self._indptr
        if (
            ip.shape != (len(self._query_ids) + 1,)
            or self._relevance.shape != self.doc_ids.shape
            or n < 0
            or ip[0] != 0
            or ip[-1] != n
            or (np.diff(ip) < 0).any()
        ):
            raise InvalidInputError(
                "Qrels CSR arrays are inconsistent: expected indptr of length n_queries + 1 from 0 to "
                "len(doc_ids), non-decreasing, and 1-D doc_ids and relevance of equal length; build "
                "Qrels with Qrels.from_dict or Qrels.from_lists"
            )
        for a in (self._indptr, self.doc_ids, self._relevance):
            a.setflags(write=False)
        self._doc_index = dict(doc_index) if doc_index is not None else None
        self._judged: JudgedStats | None = None
        self._uniq: npt.NDArray[np.int64] | None = None
        self._keys: npt.NDArray[np.int64] | None = None

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_lists(
        cls,
        relevant: Sequence[Any],
        relevance: Sequence[Any] | None = None,
        *,
        query_ids: Sequence[str] | None = None,
    ) -> Qrels:
        """Build from one array of judged doc ids per query (and their relevance; binary if None).

        Args:
            relevant: ``relevant[i]`` holds the int64 doc ids judged for query ``i`` (ids >= 0).
            relevance: ``relevance[i][j]`` is the integer relevance (>= 0) of ``relevant[i][j]``;
                ``None`` means every listed document has relevance 1.
            query_ids: names of the queries; default ``"0", "1", ...``.

        Raises:
            InvalidInputError: negative relevance or doc ids, lengths that do not match, no queries.
            DuplicateIdError: a doc id listed twice for one query.

        Example:
            >>> import numpy as np
            >>> Qrels.from_lists([np.array([5, 2])]).relevance.tolist()
            [1, 1]
        """
        n = len(relevant)
        if n == 0:
            raise InvalidInputError("relevant is empty; expected one array of doc ids per query")
        if relevance is not None and len(relevance) != n:
            raise InvalidInputError(
                f"got {len(relevance)} relevance arrays for {n} queries; expected one per query"
            )
        if query_ids is None:
            qids = [str(i) for i in range(n)]
        else:
            qids = [str(q) for q in query_ids]
            if len(qids) != n:
                raise InvalidInputError(f"got {len(qids)} query_ids for {n} queries; expected one per query")
            _check_unique_strings(qids, "query_ids")
        # validated on the concatenation: no per-query numpy work (10k queries cost milliseconds)
        arrs = [np.atleast_1d(np.asarray(d)) for d in relevant]
        bad = next((i for i, d in enumerate(arrs) if d.ndim != 1), None)
        if bad is not None:
            raise InvalidInputError(
                f"relevant[{bad}] must be a 1-D array of doc ids, got shape {arrs[bad].shape}"
            )
        counts = np.fromiter(map(len, arrs), dtype=np.int64, count=n)
        bad = next((i for i, d in enumerate(arrs) if d.size and d.dtype.kind not in "iu"), None)
        if bad is not None:
            raise InvalidInputError(f"relevant[{bad}] must hold integer doc ids, got dtype {arrs[bad].dtype}")
        nonempty = [d for d in arrs if d.size]
        docs = np.concatenate(nonempty, dtype=np.int64) if nonempty else np.empty(0, np.int64)
        if (docs < 0).any():
            j = int(np.flatnonzero(docs < 0)[0])
            i = int(np.searchsorted(np.cumsum(counts), j, side="right"))
            raise InvalidInputError(f"relevant[{i}] holds negative doc id {int(docs[j])}; expected ids >= 0")
        if relevance is None:
            rels = np.ones(docs.shape[0], dtype=np.int64)
        else:
            rarrs = [np.atleast_1d(np.asarray(r)) for r in relevance]
            for i, (d, r) in enumerate(zip(arrs, rarrs, strict=True)):
                if r.shape != d.shape:
                    raise InvalidInputError(
                        f"relevance[{i}] has shape {r.shape} but relevant[{i}] has shape {d.shape}; expected equal"
                    )
            rels = _relevance_array(
                np.concatenate(rarrs) if counts.sum() else np.empty(0, np.int64), where="relevance"
            )
        return cls._from_flat(qids, docs, rels, counts, None)

    @classmethod
    def from_dict(
        cls, qrels: Mapping[str, Mapping[str, Any]], doc_ids: Mapping[str, int] | None = None
    ) -> Qrels:
        """Build from TREC-shaped ``{query_id: {doc_id: relevance}}``.

        Args:
            qrels: the judgements; query order is kept.
            doc_ids: maps each string doc id to the int64 id used in your ranked arrays. Judged
                documents missing from it can never be retrieved but still count as relevant
                (recall, IDCG), as in trec_eval. ``None`` numbers the judged documents
                ``0..m-1`` in sorted order (see :attr:`doc_index`).

        Example:
            >>> q = Qrels.from_dict({"q1": {"d2": 1, "d1": 2}})
            >>> q.doc_index, q.doc_ids.tolist(), q.relevance.tolist()
            ({'d1': 0, 'd2': 1}, [0, 1], [2, 1])
        """
        if not isinstance(qrels, Mapping):
            raise InvalidInputError(
                f"qrels must be a mapping {{query_id: {{doc_id: relevance}}}}, got {type(qrels).__name__}"
            )
        if len(qrels) == 0:
            raise InvalidInputError("qrels is empty; expected at least one query")
        qids = [str(q) for q in qrels]
        if doc_ids is None:
            all_docs = sorted({str(d) for judged in qrels.values() for d in _as_mapping(judged, "qrels")})
            index: dict[str, int] = {d: i for i, d in enumerate(all_docs)}
        else:
            index = dict(doc_ids)
            vals = np.fromiter(index.values(), dtype=np.int64, count=len(index))
            if (vals < 0).any():
                raise InvalidInputError("doc_ids must map to ids >= 0 (-1 is the padding id)")
        placeholder = -2
        docs_l: list[npt.NDArray[np.int64]] = []
        rels_l: list[npt.NDArray[np.int64]] = []
        for q, judged in qrels.items():
            judged = _as_mapping(judged, "qrels")
            ids = np.empty(len(judged), dtype=np.int64)
            for j, d in enumerate(judged):
                code = index.get(str(d))
                if code is None:  # judged but not in the collection: relevant, never retrievable
                    code = placeholder
                    placeholder -= 1
                ids[j] = code
            docs_l.append(ids)
            rels_l.append(_relevance_array(list(judged.values()), where=f"query {q!r}"))
        return cls._from_parts(qids, docs_l, rels_l, index)

    @classmethod
    def _from_parts(
        cls,
        qids: list[str],
        docs_l: list[npt.NDArray[np.int64]],
        rels_l: list[npt.NDArray[np.int64]],
        index: Mapping[str, int] | None,
    ) -> Qrels:
        counts = np.fromiter((d.shape[0] for d in docs_l), dtype=np.int64, count=len(docs_l))
        docs = np.concatenate(docs_l) if docs_l else np.empty(0, np.int64)
        rels = np.concatenate(rels_l) if rels_l else np.empty(0, np.int64)
        return cls._from_flat(qids, docs, rels, counts, index)

    @classmethod
    def _from_flat(
        cls,
        qids: list[str],
        docs: npt.NDArray[np.int64],
        rels: npt.NDArray[np.int64],
        counts: npt.NDArray[np.int64],
        index: Mapping[str, int] | None,
    ) -> Qrels:
        indptr = np.zeros(counts.shape[0] + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        row = np.repeat(np.arange(counts.shape[0], dtype=np.int64), counts)
        order = np.lexsort((docs, row))
        docs, rels, row = docs[order], rels[order], row[order]
        dup = (docs[1:] == docs[:-1]) & (row[1:] == row[:-1])
        if dup.any():
            j = int(np.flatnonzero(dup)[0])
            raise DuplicateIdError(
                f"doc id {int(docs[j])} is judged twice for query {qids[int(row[j])]!r}; "
                "expected each document at most once per query (check doc_ids for two names of one id)"
            )
        return cls(qids, indptr, docs, rels, index)

    # ------------------------------------------------------------------ accessors
    @property
    def n_queries(self) -> int:
        """Number of queries (rows)."""
        return len(self._query_ids)

    def __len__(self) -> int:
        return self.n_queries

    @property
    def query_ids(self) -> list[str]:
        """Query names, row order."""
        return list(self._query_ids)

    @property
    def indptr(self) -> npt.NDArray[np.int64]:
        """Row ``i`` holds ``doc_ids[indptr[i]:indptr[i+1]]``."""
        return self._indptr

    @property
    def relevance(self) -> npt.NDArray[np.int64]:
        """Judged relevance of each entry of :attr:`doc_ids`."""
        return self._relevance

    @property
    def doc_index(self) -> dict[str, int] | None:
        """The string -> int doc id mapping used by :meth:`from_dict` (``None`` for :meth:`from_lists`)."""
        return dict(self._doc_index) if self._doc_index is not None else None

    def num_relevant(self, relevance_level: int = 1) -> npt.NDArray[np.int64]:
        """Number of judged documents with relevance >= ``relevance_level``, per query.

        Example:
            >>> import numpy as np
            >>> Qrels.from_lists([np.array([1, 2])], [np.array([0, 3])]).num_relevant().tolist()
            [1]
        """
        return self.judged().num_relevant(relevance_level)

    def __repr__(self) -> str:
        return f"Qrels(n_queries={self.n_queries}, n_judgements={self.doc_ids.shape[0]})"

    # ------------------------------------------------------------------ internals
    def judged(self) -> JudgedStats:
        """Cached per-query judged relevance sorted descending (for IDCG and R)."""
        if self._judged is None:
            self._judged = JudgedStats.from_csr(self._indptr, self._relevance)
        return self._judged

    def lookup(self, ranked: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Relevance of each id of ``ranked`` (row ``i`` = query ``i``); 0 when not judged or -1.

        Vectorised over the whole matrix: each doc id gets a dense code by binary search in the
        sorted unique judged ids, then (row, code) pairs are found by one more binary search in
        the sorted composite keys of the qrels. No per-query Python loop.
        """
        if self._uniq is None or self._keys is None:
            uniq = np.unique(self.doc_ids)
            row = np.repeat(np.arange(self.n_queries, dtype=np.int64), np.diff(self._indptr))
            codes = np.searchsorted(uniq, self.doc_ids)
            self._keys = row * max(uniq.shape[0], 1) + codes  # sorted: rows ascending, ids ascending
            self._uniq = uniq
        uniq, keys = self._uniq, self._keys
        n, depth = ranked.shape
        out = np.zeros((n, depth), dtype=np.int64)
        if uniq.shape[0] == 0 or ranked.size == 0:
            return out
        m = uniq.shape[0]
        # 1) which ranked entries hold a document judged for *some* query, and its dense code.
        #    A direct table when the id range is small (a gather instead of a binary search).
        hi = max(int(uniq[-1]), int(ranked.max()))
        if hi < max(1 << 22, 4 * ranked.size):
            first = int(np.searchsorted(uniq, 0))  # ids < 0 are unmapped judgements, never ranked
            table = np.full(max(hi, 0) + 1, -1, dtype=np.int32)
            table[uniq[first:]] = np.arange(first, m, dtype=np.int32)
            tcode = table[np.maximum(ranked, 0)]
            tcode[ranked < 0] = -1
            flat = np.flatnonzero(tcode >= 0)
            code_f = tcode.ravel()[flat].astype(np.int64)
        else:
            scode = np.searchsorted(uniq, ranked)
            np.minimum(scode, m - 1, out=scode)
            flat = np.flatnonzero(uniq[scode] == ranked)
            code_f = scode.ravel()[flat]
        if flat.size == 0:
            return out
        # 2) only those few entries are searched among the (row, code) keys of the qrels
        key = (flat // depth) * m + code_f
        pos = np.searchsorted(keys, key)
        np.minimum(pos, keys.shape[0] - 1, out=pos)
        hit = keys[pos] == key
        out.ravel()[flat[hit]] = self._relevance[pos[hit]]
        return out


def _as_mapping(judged: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(judged, Mapping):
        raise InvalidInputError(
            f"each {what} entry must be a mapping {{doc_id: value}}, got {type(judged).__name__}"
        )
    return judged


def _check_unique_strings(ids: list[str], name: str) -> None:
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dups = [q for q in ids if q in seen or seen.add(q)]  # type: ignore[func-returns-value]
        raise DuplicateIdError(f"duplicate {name} {dups[:5]}; expected each at most once")
