"""BM25 on scipy.sparse: incremental add/delete, filters that never let a masked document back.

Term frequencies are kept per document, so adding, replacing and deleting documents is cheap; the
BM25 weight matrix (which depends on corpus-wide statistics: N, document frequencies, average
length) is rebuilt lazily on the first search after a change. A batch of queries is scored with one
sparse product - query-term matrix x term-document weight matrix - and the top ``k`` per query are
taken with ``argpartition``.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mlsys.common._display import format_params, non_default_params
from mlsys.common._optional import import_optional
from mlsys.common.errors import (
    CorruptFileError,
    DuplicateIdError,
    FormatVersionError,
    InvalidInputError,
    UnknownIdError,
    UnknownNameError,
)
from mlsys.common.limits import check_result_size
from mlsys.common.validation import as_ids, check_k, check_unique
from mlsys.rag._embedders import check_texts
from mlsys.rag._persist import read_manifest, write_manifest

__all__ = ["ENGLISH_STOPWORDS", "Analyzer", "AnalyzerConfig", "BM25Config", "BM25Index"]

I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]

# Lucene's / Elasticsearch's default English stop words (the list bm25s uses for "en").
ENGLISH_STOPWORDS: tuple[str, ...] = (
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it",
    "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these",
    "they", "this", "to", "was", "will", "with",
)  # fmt: skip
"""The stop words the default analyzer drops (a frozen set of lower-case English words)."""


@dataclass(frozen=True)
class AnalyzerConfig:
    """How text becomes terms.

    Args:
        lowercase: lower-case before tokenising.
        token_pattern: regex of a token (default: 2+ word characters, as scikit-learn and bm25s).
        stopwords: ``"en"`` (Lucene's English list), ``None``, or an explicit tuple of words.
        stemmer: a Snowball language for PyStemmer (``"english"``) or ``None``.

    Example:
        >>> Analyzer(AnalyzerConfig(stemmer=None)).terms("The Running dogs")
        ['running', 'dogs']
    """

    lowercase: bool = True
    token_pattern: str = r"(?u)\b\w\w+\b"
    stopwords: str | tuple[str, ...] | None = "en"
    stemmer: str | None = "english"

    def __post_init__(self) -> None:
        try:
            re.compile(self.token_pattern)
        except re.error as exc:
            raise InvalidInputError(
                f"token_pattern {self.token_pattern!r} is not a valid regex: {exc}"
            ) from exc
        if isinstance(self.stopwords, str) and self.stopwords != "en":
            raise UnknownNameError(
                f"stopwords must be 'en', None or a tuple of words, got {self.stopwords!r}"
            )
        if isinstance(self.stopwords, list):
            object.__setattr__(self, "stopwords", tuple(self.stopwords))
        if self.stemmer is not None and not isinstance(self.stemmer, str):
            raise InvalidInputError(f"stemmer must be a Snowball language name or None, got {self.stemmer!r}")


class Analyzer:
    """Turns text into terms: lower-case, tokenise, drop stop words, stem (PyStemmer, memoised).

    Example:
        >>> Analyzer().terms("The studies were running")
        ['studi', 'were', 'run']
    """

    def __init__(self, config: AnalyzerConfig | None = None) -> None:
        self.config = config or AnalyzerConfig()
        self._pattern = re.compile(self.config.token_pattern)
        sw = self.config.stopwords
        self._stop = frozenset(ENGLISH_STOPWORDS if sw == "en" else (sw or ()))
        self._stem_cache: dict[str, str] = {}
        self._stemmer: Any = None
        if self.config.stemmer is not None:
            stemmer_mod = import_optional("Stemmer", package="PyStemmer", extra="mlsys-rag")
            try:
                self._stemmer = stemmer_mod.Stemmer(self.config.stemmer)
            except KeyError as exc:
                raise UnknownNameError(
                    f"unknown stemmer language {self.config.stemmer!r}; expected one of "
                    f"{sorted(stemmer_mod.algorithms())}"
                ) from exc
        self._lock = threading.Lock()

    def terms(self, text: str) -> list[str]:
        """The terms of one text, in order (duplicates kept)."""
        if not isinstance(text, str):
            raise InvalidInputError(f"text must be a str, got {type(text).__name__}")
        if self.config.lowercase:
            text = text.lower()
        stop = self._stop
        words = [w for w in self._pattern.findall(text) if w not in stop]
        if self._stemmer is None:
            return words
        cache = self._stem_cache
        missing = [w for w in set(words) if w not in cache]
        if missing:
            with self._lock:  # PyStemmer objects are not thread-safe
                stems = self._stemmer.stemWords(missing)
            cache.update(zip(missing, stems))
        return [cache[w] for w in words]

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"])  # type: ignore[misc]


BM25_METHODS = ("lucene", "atire", "robertson")


@dataclass(frozen=True)
class BM25Config:
    """BM25 parameters.

    Args:
        k1: term-frequency saturation.
        b: length normalisation.
        method: the variants of Kamphuis et al. (ECIR 2020), as bm25s implements them:
            ``"lucene"`` (idf ``log(1 + (N - df + .5)/(df + .5))``, tf part ``tf/(tf + k1 * norm)``
            as Lucene >= 8), ``"robertson"`` (idf ``log((N - df + .5)/(df + .5))`` floored at 0)
            or ``"atire"`` (idf ``log(N/df)``, tf part times ``k1 + 1``).
        analyzer: how text becomes terms.

    Example:
        >>> BM25Config(k1=0.9, b=0.4).method
        'lucene'
    """

    k1: float = 1.5
    b: float = 0.75
    method: str = "lucene"
    analyzer: AnalyzerConfig = field(default_factory=AnalyzerConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.k1, (int, float)) or isinstance(self.k1, bool) or self.k1 < 0:
            raise InvalidInputError(f"k1 must be a number >= 0, got {self.k1!r}")
        if not isinstance(self.b, (int, float)) or isinstance(self.b, bool) or not 0 <= self.b <= 1:
            raise InvalidInputError(f"b must be in [0, 1], got {self.b!r}")
        if self.method not in BM25_METHODS:
            raise UnknownNameError(f"unknown BM25 method {self.method!r}; expected one of {BM25_METHODS}")
        if isinstance(self.analyzer, dict):
            object.__setattr__(self, "analyzer", AnalyzerConfig(**self.analyzer))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        d = asdict(self)
        sw = d["analyzer"]["stopwords"]
        d["analyzer"]["stopwords"] = list(sw) if isinstance(sw, tuple) else sw
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BM25Config:
        """Inverse of :meth:`to_dict`."""
        a = dict(d["analyzer"])
        if isinstance(a.get("stopwords"), list):
            a["stopwords"] = tuple(a["stopwords"])
        return cls(k1=d["k1"], b=d["b"], method=d["method"], analyzer=AnalyzerConfig(**a))


_FORMAT_VERSION = 1


class BM25Index:
    """A BM25 index over documents with int64 ids, with incremental ``add``/``upsert``/``remove``.

    ``search`` takes query strings (or pre-analysed term lists) and returns ``(ids, scores)`` of
    shape ``(n_queries, k)``, best first, padded with ``-1``/``-inf`` when fewer than ``k`` documents
    share a term with the query and pass the filter. ``allow``/``deny`` are applied before ranking,
    so a filtered search still returns ``k`` results whenever ``k`` allowed documents match.
    Equal scores within the results are ordered by insertion order.

    Args:
        config: :class:`BM25Config`.

    Example:
        >>> bm = BM25Index()
        >>> bm.add([10, 11, 12], ["cats purr", "dogs bark loudly", "cats and dogs"])
        >>> ids, scores = bm.search(["dog"], k=2)
        >>> ids.tolist()
        [[12, 11]]
        >>> bm.search(["dog"], k=2, deny=[12])[0].tolist()
        [[11, -1]]
    """

    def __init__(self, config: BM25Config | None = None) -> None:
        self.config = config or BM25Config()
        self.analyzer = Analyzer(self.config.analyzer)
        self._vocab: dict[str, int] = {}
        self._docs: dict[int, tuple[I64, npt.NDArray[np.float32]]] = {}
        self._lock = threading.RLock()
        self._dirty = True
        self._ids_arr: I64 = np.zeros(0, np.int64)
        self._row_of: dict[int, int] = {}
        self._wt: Any = None  # (V, N) CSR of BM25 weights
        self._idf: npt.NDArray[np.float64] = np.zeros(0)  # per vocabulary id, as of the last build

    # -- bookkeeping --------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._docs)

    def __contains__(self, item: object) -> bool:
        try:
            return int(item) in self._docs  # type: ignore[call-overload]
        except (TypeError, ValueError):
            return False

    def __repr__(self) -> str:
        params = format_params(non_default_params(self.config))
        return f"BM25Index(n_docs={len(self)}, vocab={len(self._vocab)}{', ' + params if params else ''})"

    def ids(self) -> I64:
        """All document ids, in insertion order."""
        return np.fromiter(self._docs.keys(), dtype=np.int64, count=len(self._docs))

    @property
    def vocabulary_size(self) -> int:
        """Number of distinct terms ever seen."""
        return len(self._vocab)

    def _analyse(self, text: str, grow: bool, vocab: dict[str, int]) -> tuple[I64, npt.NDArray[np.float32]]:
        terms = self.analyzer.terms(text)
        counts: dict[int, int] = {}
        for t in terms:
            tid = vocab.get(t)
            if tid is None:
                if not grow:
                    continue
                tid = vocab[t] = len(vocab)
            counts[tid] = counts.get(tid, 0) + 1
        tids = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        tfs = np.fromiter(counts.values(), dtype=np.float32, count=len(counts))
        order = np.argsort(tids)
        return tids[order], tfs[order]

    def _prepare(self, ids: Any, texts: Any) -> tuple[list[int], list[str]]:
        items = check_texts(texts, what="texts")
        arr = as_ids(ids)
        if arr.shape[0] != len(items):
            raise InvalidInputError(
                f"got {arr.shape[0]} ids for {len(items)} texts; expected one id per text"
            )
        if (arr < 0).any():
            raise InvalidInputError(
                f"ids must be >= 0 (-1 is the padding id), got {arr[arr < 0][:5].tolist()}"
            )
        check_unique(arr)
        return arr.tolist(), items

    def add(self, ids: Any, texts: Sequence[str]) -> None:
        """Index new documents; raises :class:`DuplicateIdError` if an id is already present."""
        id_list, items = self._prepare(ids, texts)
        with self._lock:
            present = [i for i in id_list if i in self._docs]
            if present:
                raise DuplicateIdError(f"ids {present[:5]} are already indexed; use upsert to replace them")
            self._write(id_list, items)

    def upsert(self, ids: Any, texts: Sequence[str]) -> None:
        """Index new documents and replace existing ones."""
        id_list, items = self._prepare(ids, texts)
        with self._lock:
            self._write(id_list, items)

    def _write(self, id_list: list[int], items: list[str]) -> None:
        vocab = dict(self._vocab)  # analyse into a copy: an exception leaves the index unchanged
        rows = [self._analyse(t, True, vocab) for t in items]
        self._vocab = vocab
        for i, row in zip(id_list, rows):
            self._docs[i] = row
        self._dirty = True

    def remove(self, ids: Any) -> None:
        """Delete documents; raises :class:`UnknownIdError` (and deletes nothing) for an unknown id."""
        arr = as_ids(ids)
        with self._lock:
            missing = [i for i in arr.tolist() if i not in self._docs]
            if missing:
                raise UnknownIdError(f"ids {missing[:5]} are not indexed; expected ids of indexed documents")
            for i in arr.tolist():
                self._docs.pop(i, None)
            self._dirty = True

    # -- scoring ------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Build the weight matrix now (otherwise the first search after a change builds it).

        Example:
            >>> bm = BM25Index()
            >>> bm.add([1], ["some text"])
            >>> bm.refresh()
        """
        with self._lock:
            if self._dirty:
                self._rebuild()

    def _rebuild(self) -> None:
        sp = import_optional("scipy.sparse", package="scipy")
        n = len(self._docs)
        v = max(len(self._vocab), 1)
        ids = self.ids()
        rows = list(self._docs.values())
        lengths = np.fromiter((len(r[0]) for r in rows), dtype=np.int64, count=n)
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        indices = np.concatenate([r[0] for r in rows]) if n else np.zeros(0, np.int64)
        tf = np.concatenate([r[1] for r in rows]) if n else np.zeros(0, np.float32)
        # bincount, not add.reduceat: reduceat reads past the end when the last document has no terms
        # (summed in float64, kept in float32 as before: the same scores bit for bit on every corpus)
        doc_len = np.bincount(np.repeat(np.arange(n), lengths), weights=tf, minlength=n).astype(np.float32)
        avgdl = float(doc_len.mean()) if n and doc_len.mean() > 0 else 1.0
        df = np.bincount(indices, minlength=v).astype(np.float64)
        cfg = self.config
        idf = _idf_of(df, n, cfg.method)
        norm = cfg.k1 * (1.0 - cfg.b + cfg.b * doc_len / avgdl)
        row_of_entry = np.repeat(np.arange(n), lengths)
        weight = tf / (tf + norm[row_of_entry])
        if cfg.method == "atire":
            weight = weight * (cfg.k1 + 1.0)
        weight = (weight * idf[indices]).astype(np.float32)
        self._idf = idf
        w = sp.csr_matrix((weight, indices, indptr), shape=(n, v))
        self._wt = w.T.tocsr()
        self._wt.sort_indices()
        self._ids_arr = ids
        self._row_of = {int(i): r for r, i in enumerate(ids.tolist())}
        self._dirty = False

    def _query_matrix(self, queries: Sequence[str] | Sequence[Sequence[str]]) -> Any:
        sp = import_optional("scipy.sparse", package="scipy")
        vocab = self._vocab
        indptr = [0]
        indices: list[int] = []
        data: list[float] = []
        for q in queries:
            terms = self.analyzer.terms(q) if isinstance(q, str) else list(q)
            counts: dict[int, float] = {}
            for t in terms:
                tid = vocab.get(t)
                if tid is not None:
                    counts[tid] = counts.get(tid, 0.0) + 1.0
            indices.extend(counts.keys())
            data.extend(counts.values())
            indptr.append(len(indices))
        return sp.csr_matrix(
            (np.asarray(data, np.float32), np.asarray(indices, np.int64), np.asarray(indptr, np.int64)),
            shape=(len(queries), max(len(vocab), 1)),
        )

    def _mask(self, allow: Any, deny: Any) -> npt.NDArray[np.bool_] | None:
        if allow is None and deny is None:
            return None
        n = self._ids_arr.shape[0]
        row_of = self._row_of
        if allow is not None:
            keep = np.zeros(n, dtype=bool)
            rows = [row_of[i] for i in as_ids(allow, name="allow").tolist() if i in row_of]
            keep[rows] = True
        else:
            keep = np.ones(n, dtype=bool)
        if deny is not None:
            rows = [row_of[i] for i in as_ids(deny, name="deny").tolist() if i in row_of]
            keep[rows] = False
        return keep

    def search(
        self,
        queries: Sequence[str] | Sequence[Sequence[str]],
        k: int,
        *,
        allow: Any = None,
        deny: Any = None,
        batch_size: int = 256,
    ) -> tuple[I64, F32]:
        """Top-``k`` documents per query.

        Args:
            queries: query strings (analysed with this index's analyzer) or lists of terms.
            k: results per query.
            allow: only these ids may be returned (ids not indexed are ignored).
            deny: these ids are never returned.
            batch_size: queries whose top-``k`` are gathered together (each query is scored in a
                reused buffer of one float per document, whatever the batch).

        Returns:
            ``(ids, scores)``, ``(n_queries, k)`` int64 / float32, padded ``-1`` / ``-inf``. Only
            documents that share at least one term with the query (score > 0) are returned.
        """
        k = check_k(k)
        batch_size = check_k(batch_size, name="batch_size", limit="max_batch")
        if isinstance(queries, (str, bytes)) or not isinstance(queries, Iterable):
            raise InvalidInputError(
                f"queries must be a sequence of strings (or of term lists), got {type(queries).__name__}"
            )
        qlist = list(queries)
        check_result_size(len(qlist), k)
        for i, q in enumerate(qlist):
            if isinstance(q, str):
                check_texts([q], what=f"queries[{i}]", allow_blank=False, query=True)
            elif not isinstance(q, (list, tuple)) or not all(isinstance(t, str) for t in q):
                raise InvalidInputError(f"queries[{i}] must be a string or a list of terms")
        with self._lock:
            if self._dirty:
                self._rebuild()
            wt, ids_arr = self._wt, self._ids_arr
            mask = self._mask(allow, deny)
            qm = self._query_matrix(qlist)
        nq, n = len(qlist), ids_arr.shape[0]
        out_ids = np.full((nq, k), -1, dtype=np.int64)
        out_scores = np.full((nq, k), -np.inf, dtype=np.float32)
        if n == 0 or nq == 0:
            return out_ids, out_scores
        kk = min(k, n)
        masked = None if mask is None else np.flatnonzero(~mask)
        for s in range(0, nq, batch_size):
            part, top = _top_k_rows(qm[s : s + batch_size], wt, n, kk, masked)
            order = np.lexsort((part, -top), axis=1)
            rows = np.take_along_axis(part, order, axis=1)
            vals = np.take_along_axis(top, order, axis=1)
            hit = vals > 0
            out_ids[s : s + batch_size, :kk] = np.where(hit, ids_arr[rows], -1)
            out_scores[s : s + batch_size, :kk] = np.where(hit, vals, -np.inf)
        return out_ids, out_scores

    def idf(self, terms: Sequence[str]) -> npt.NDArray[np.float64]:
        """The index's inverse document frequency of each analysed term (the weight BM25 gives it).

        A term no document holds gets the idf of a document frequency of 0 (the rarest possible).
        ``terms`` are already analysed (e.g. ``index.analyzer.terms(text)``).

        Example:
            >>> bm = BM25Index()
            >>> bm.add([1, 2, 3], ["cats purr", "dogs bark", "cats and dogs"])
            >>> [round(float(v), 3) for v in bm.idf(["cat", "purr", "zebra"])]
            [0.47, 0.981, 2.079]
        """
        with self._lock:
            if self._dirty:
                self._rebuild()
            unseen = float(_idf_of(np.zeros(1), len(self._docs), self.config.method)[0])
            tids = [self._vocab.get(t) for t in terms]
            return np.array(
                [self._idf[i] if i is not None and i < self._idf.shape[0] else unseen for i in tids],
                dtype=np.float64,
            )

    # -- persistence ----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to a directory (``manifest.json`` + ``.npy`` payloads + ``vocab.json``)."""
        d = Path(path)
        d.mkdir(parents=True, exist_ok=True)
        with self._lock:
            rows = list(self._docs.values())
            ids = self.ids()
            lengths = np.fromiter((len(r[0]) for r in rows), dtype=np.int64, count=len(rows))
            indptr = np.zeros(len(rows) + 1, dtype=np.int64)
            np.cumsum(lengths, out=indptr[1:])
            terms = np.concatenate([r[0] for r in rows]) if rows else np.zeros(0, np.int64)
            tfs = np.concatenate([r[1] for r in rows]) if rows else np.zeros(0, np.float32)
            vocab = sorted(self._vocab, key=self._vocab.__getitem__)
            payload = {"ids.npy": ids, "indptr.npy": indptr, "terms.npy": terms, "tf.npy": tfs}
            for name, arr in payload.items():
                np.save(d / name, arr, allow_pickle=False)
            (d / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        write_manifest(
            d,
            cls="BM25Index",
            format_version=_FORMAT_VERSION,
            config=self.config.to_dict(),
            files=[*payload, "vocab.json"],
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> BM25Index:
        """Read an index written by :meth:`save`; checksums and shapes are verified."""
        d = Path(path)
        manifest = read_manifest(d, cls="BM25Index")
        if manifest["format_version"] != _FORMAT_VERSION:
            raise FormatVersionError(
                f"{d}: BM25Index format version {manifest['format_version']}, expected {_FORMAT_VERSION}"
            )
        index = cls(BM25Config.from_dict(manifest["config"]))
        try:
            ids = np.load(d / "ids.npy", allow_pickle=False)
            indptr = np.load(d / "indptr.npy", allow_pickle=False)
            terms = np.load(d / "terms.npy", allow_pickle=False)
            tfs = np.load(d / "tf.npy", allow_pickle=False)
            vocab = json.loads((d / "vocab.json").read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:
            raise CorruptFileError(f"{d}: unreadable BM25 payload ({str(exc)[:200]})") from None
        if (
            ids.ndim != 1
            or indptr.shape != (ids.shape[0] + 1,)
            or terms.shape != tfs.shape
            or (indptr[-1] if indptr.size else 0) != terms.shape[0]
            or (terms.size and (terms.min() < 0 or terms.max() >= len(vocab)))
        ):
            raise CorruptFileError(f"{d}: BM25 payload arrays are inconsistent with each other")
        index._vocab = {t: i for i, t in enumerate(vocab)}
        for r, doc in enumerate(ids.tolist()):
            a, b = int(indptr[r]), int(indptr[r + 1])
            index._docs[int(doc)] = (terms[a:b].astype(np.int64), tfs[a:b].astype(np.float32))
        return index


def _idf_of(df: npt.NDArray[np.float64], n: int, method: str) -> npt.NDArray[np.float64]:
    """Inverse document frequency of terms with document frequencies ``df`` among ``n`` documents."""
    if method == "lucene":
        return np.asarray(np.log1p((n - df + 0.5) / (df + 0.5)), dtype=np.float64)
    if method == "atire":
        return np.asarray(np.log(np.maximum(n, 1) / np.maximum(df, 1)), dtype=np.float64)
    return np.asarray(np.maximum(np.log((n - df + 0.5) / (df + 0.5)), 0.0), dtype=np.float64)


def _top_k_rows(
    qm: Any, wt: Any, n: int, kk: int, masked: npt.NDArray[np.intp] | None
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float32]]:
    """Per query row of ``qm``: the ``kk`` best document rows and their scores, unordered.

    Each query's scores are summed into one reused buffer of ``n`` floats from the postings of its
    terms only (what bm25s does): the buffer stays in cache where a ``batch x n`` product would
    not, and the sums are those of ``qm @ wt`` bit for bit (same terms, same order, float32).
    """
    ip, ind, dat = wt.indptr, wt.indices, wt.data
    qip, qind, qdat = qm.indptr.tolist(), qm.indices.tolist(), qm.data
    nq = qm.shape[0]
    buf = np.zeros(n, dtype=np.float32)
    neg = np.empty(n, dtype=np.float32)
    part = np.empty((nq, kk), dtype=np.intp)
    top = np.empty((nq, kk), dtype=np.float32)
    every = np.arange(n)
    for r in range(nq):
        buf.fill(0.0)
        span = range(qip[r], qip[r + 1])
        if span:
            docs = np.concatenate([ind[ip[qind[j]] : ip[qind[j] + 1]] for j in span])
            w = np.concatenate(
                [
                    dat[ip[qind[j]] : ip[qind[j] + 1]] * qdat[j]
                    if qdat[j] != 1.0
                    else dat[ip[qind[j]] : ip[qind[j] + 1]]
                    for j in span
                ]
            )
            np.add.at(buf, docs, w)  # sequential, in term order: float32 sums as in qm @ wt
        if masked is not None:
            buf[masked] = 0.0
        if kk < n:
            np.negative(buf, out=neg)
            p = np.argpartition(neg, kk - 1)[:kk]
        else:
            p = every
        part[r] = p
        top[r] = buf[p]
    return part, top
