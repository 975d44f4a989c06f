"""DocumentStore: documents -> chunks -> vectors (one embedding space) + BM25 + content hashes.

``upsert`` re-chunks the documents that changed and embeds only the chunks whose content hash is
new (an unchanged chunk keeps its id, vector and BM25 entry, even if it moved). Every write is
planned completely - validation, chunking, embedding - before anything is changed, so a failed
``upsert``/``delete``/``apply`` leaves the store exactly as it was. ``migrate`` builds a shadow
index in another embedding space, lets you evaluate it side by side, and swaps it in atomically.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from mlsys.common._display import TabularDisplay, format_params, non_default_params
from mlsys.common.ann import load_index, make_index
from mlsys.common.errors import (
    CorruptFileError,
    DuplicateIdError,
    FormatVersionError,
    InvalidInputError,
    UnknownIdError,
    UnknownNameError,
)
from mlsys.common.spaces import EmbeddingSpace
from mlsys.rag._bm25 import BM25Config, BM25Index
from mlsys.rag._cache import text_sha256
from mlsys.rag._chunk import Chunk, resolve_length
from mlsys.rag._chunkers import (
    Chunker,
    FixedSizeChunker,
    RecursiveChunker,
    SentenceChunker,
    SlidingWindowChunker,
)
from mlsys.rag._embedders import Embedder, check_texts
from mlsys.rag._persist import read_manifest, write_manifest
from mlsys.rag._retrievers import BM25Retriever, DenseRetriever, HybridRetriever, Provenance, Where

__all__ = ["ChangeEvent", "Document", "DocumentStore", "Migration", "UpsertReport"]

I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Document:
    """A document: id, text and JSON-serialisable metadata.

    Example:
        >>> Document("d1", "some text", {"lang": "en"}).doc_id
        'd1'
    """

    doc_id: str
    text: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ChangeEvent:
    """A change to apply: ``ChangeEvent("upsert", id, text, metadata)`` or ``ChangeEvent("delete", id)``.

    An upsert without ``metadata`` keeps the document's current metadata.

    Example:
        >>> from mlsys.rag import HashingEmbedder
        >>> store = DocumentStore(HashingEmbedder(dim=16))
        >>> store.apply([ChangeEvent("upsert", "a", "first"), ChangeEvent("upsert", "b", "second"),
        ...              ChangeEvent("delete", "b")]).added
        1
    """

    op: Literal["upsert", "delete"]
    doc_id: str
    text: str | None = None
    metadata: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.op, str) or self.op not in ("upsert", "delete"):
            raise UnknownNameError(f"unknown change op {self.op!r}; expected 'upsert' or 'delete'")
        if self.op == "upsert" and self.text is None:
            raise InvalidInputError(f"upsert event for {self.doc_id!r} has no text")


@dataclass(frozen=True)
class UpsertReport(TabularDisplay):
    """What a write did (document and chunk counts); a one-row HTML table in a notebook, ``to_pandas()``.

    Example:
        >>> UpsertReport(added=1, chunks_embedded=3).chunks_embedded
        3
    """

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    chunks_embedded: int = 0
    chunks_reused: int = 0
    chunks_removed: int = 0

    _pandas_extra = "mlsys-rag[pandas]"


@dataclass
class _DocRecord:
    text: str
    metadata: dict[str, Any]
    chunk_ids: list[int]


@dataclass
class _ChunkRecord:
    doc_id: str
    seq: int
    start: int
    end: int
    sha: str


@dataclass
class _Plan:
    docs: dict[str, _DocRecord | None]  # None: delete
    chunks: dict[int, _ChunkRecord]  # new or moved chunk records
    new_ids: list[int]
    new_texts: list[str]
    stale: list[int]
    report: UpsertReport
    next_id: int


def _describe_chunker(chunker: Chunker | None) -> dict[str, Any]:
    if chunker is None:
        return {"class": None}
    params = {
        f.name: getattr(chunker, f.name)
        for f in fields(chunker)  # type: ignore[arg-type]
        if f.init and f.name != "length"
    }
    params = {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}
    return {"class": type(chunker).__name__, "params": params, "length": chunker.length.name}


_CHUNKERS: dict[str, Any] = {
    c.__name__: c for c in (FixedSizeChunker, RecursiveChunker, SentenceChunker, SlidingWindowChunker)
}
_LENGTH_NAMES = {"chars": "chars", "words": "words", "minilm-tokens": "minilm"}


def _rebuild_chunker(desc: dict[str, Any]) -> Chunker | None:
    if desc.get("class") is None:
        return None
    cls = _CHUNKERS.get(desc["class"])
    if cls is None or desc.get("length") not in _LENGTH_NAMES:
        raise CorruptFileError(
            f"cannot rebuild chunker {desc!r} from the manifest; pass the chunker to DocumentStore.load"
        )
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in desc["params"].items()}
    return cls(length=resolve_length(_LENGTH_NAMES[desc["length"]]), **params)  # type: ignore[no-any-return]


def _check_metadata(doc_id: str, metadata: Any) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidInputError(
            f"metadata of document {doc_id!r} must be a mapping, got {type(metadata).__name__}"
        )
    meta = dict(metadata)
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"metadata of document {doc_id!r} must be JSON-serialisable (str/number/bool/None/list/dict): {exc}"
        ) from exc
    return meta


def _as_documents(documents: Any) -> list[Document]:
    if isinstance(documents, Document):
        documents = [documents]
    if isinstance(documents, Mapping):
        items: Iterable[Any] = [Document(k, v) for k, v in documents.items()]
    else:
        try:
            if isinstance(documents, (str, bytes)):
                raise TypeError("a single string")
            items = list(documents)
        except TypeError as exc:
            raise InvalidInputError(
                "documents must be Documents, (doc_id, text[, metadata]) tuples or a mapping, "
                f"got {type(documents).__name__}"
            ) from exc
    out = []
    for i, d in enumerate(items):
        if isinstance(d, Document):
            doc = d
        elif isinstance(d, tuple) and len(d) in (2, 3):
            doc = Document(d[0], d[1], d[2] if len(d) == 3 else {})
        else:
            raise InvalidInputError(
                f"documents[{i}] is {type(d).__name__}; expected a Document or a (doc_id, text[, metadata]) tuple"
            )
        if not isinstance(doc.doc_id, str) or not doc.doc_id:
            raise InvalidInputError(f"documents[{i}] has doc_id {doc.doc_id!r}; expected a non-empty str")
        check_texts([doc.text], what=f"document {doc.doc_id!r} text")
        if not doc.text.strip():
            raise InvalidInputError(
                f"document {doc.doc_id!r} is empty or whitespace-only; expected text (use delete to remove it)"
            )
        out.append(Document(doc.doc_id, doc.text, _check_metadata(doc.doc_id, doc.metadata)))
    ids = [d.doc_id for d in out]
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dups = [i for i in ids if i in seen or seen.add(i)]  # type: ignore[func-returns-value]
        raise DuplicateIdError(f"duplicate document ids {dups[:5]} in one write; expected each id once")
    return out


class DocumentStore:
    """Documents, their chunks, a dense index (one embedding space), a BM25 index and content hashes.

    Args:
        embedder: embeds chunks and queries; the store's index is bound to ``embedder.space``.
        chunker: splits documents (``None``: each document is one chunk).
        index_kind: an :func:`mlsys.common.ann.make_index` kind (``"exact"``, ``"hnsw"``, ``"faiss"``).
        index_params: extra parameters for ``make_index``.
        bm25: :class:`BM25Config`.
        progress: show progress bars while embedding (default: when attached to a terminal).

    Writes (``upsert``, ``delete``, ``apply``, ``Migration.commit``) are serialised by a lock and
    are all-or-nothing. Searches do not take that lock: run them from the writing thread, or guard
    reads and writes together, when both happen at once.

    Example:
        >>> from mlsys.rag import HashingEmbedder, RecursiveChunker
        >>> store = DocumentStore(HashingEmbedder(dim=64), chunker=RecursiveChunker(size=40))
        >>> store.upsert([("a", "Cats purr when content. Dogs bark at strangers."), ("b", "Fish swim.")])
        UpsertReport(added=2, updated=0, unchanged=0, deleted=0, chunks_embedded=3, chunks_reused=0, chunks_removed=0)
        >>> store.hybrid_retriever().retrieve(["why do dogs bark"], k=1)[0].hits[0].text
        'Dogs bark at strangers.'
    """

    def __init__(
        self,
        embedder: Embedder,
        *,
        chunker: Chunker | None = None,
        index_kind: str = "exact",
        index_params: Mapping[str, Any] | None = None,
        bm25: BM25Config | None = None,
        progress: bool | None = None,
    ) -> None:
        if not isinstance(embedder, Embedder):
            raise InvalidInputError(
                f"embedder must implement the Embedder protocol, got {type(embedder).__name__}"
            )
        if chunker is not None and not isinstance(chunker, Chunker):
            raise InvalidInputError(
                f"chunker must implement the Chunker protocol, got {type(chunker).__name__}"
            )
        self.chunker = chunker
        self.index_kind = index_kind
        self.index_params = dict(index_params or {})
        self.progress = progress
        self._dense: tuple[Embedder, Any] = (
            embedder,
            make_index(index_kind, embedder.space, **self.index_params),
        )
        self._bm25 = BM25Index(bm25 or BM25Config())
        self._docs: dict[str, _DocRecord] = {}
        self._chunks: dict[int, _ChunkRecord] = {}
        self._next_id = 0
        self._version = 0
        self._lock = threading.RLock()

    # -- read access ----------------------------------------------------------------------------
    @property
    def embedder(self) -> Embedder:
        """The embedder of the current dense index."""
        return self._dense[0]

    @property
    def index(self) -> Any:
        """The current dense index (an :mod:`mlsys.common.ann` index)."""
        return self._dense[1]

    @property
    def space(self) -> EmbeddingSpace:
        """The embedding space of the dense index."""
        return self._dense[1].space  # type: ignore[no-any-return]

    @property
    def bm25(self) -> BM25Index:
        """The BM25 index over the chunks."""
        return self._bm25

    @property
    def version(self) -> int:
        """Incremented by every successful write."""
        return self._version

    def __len__(self) -> int:
        return len(self._docs)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._docs

    def __repr__(self) -> str:
        """Space, counts, the chunker, and only the settings that differ from the defaults, e.g.
        ``DocumentStore(space=minilm@1[dim=384,cosine], docs=5183, chunks=9012, index='hnsw', M=32)``."""
        parts = [f"space={self.space}", f"docs={len(self._docs)}", f"chunks={len(self._chunks)}"]
        if self.chunker is not None:
            parts.append(f"chunker={self.chunker!r}")
        if self.index_kind != "exact":
            parts.append(f"index={self.index_kind!r}")
        if self.index_params:
            parts.append(format_params(self.index_params))
        bm25 = non_default_params(self._bm25.config)
        if bm25:
            parts.append(f"bm25=({format_params(bm25)})")
        if self.progress is not None:
            parts.append(f"progress={self.progress}")
        return f"DocumentStore({', '.join(parts)})"

    @property
    def n_chunks(self) -> int:
        """Number of chunks."""
        return len(self._chunks)

    def doc_ids(self) -> list[str]:
        """Document ids, in insertion order."""
        return list(self._docs)

    def document(self, doc_id: str) -> Document:
        """The stored document."""
        rec = self._docs.get(doc_id)
        if rec is None:
            raise UnknownIdError(f"unknown document id {doc_id!r}")
        return Document(doc_id, rec.text, dict(rec.metadata))

    def chunk(self, chunk_id: int) -> Chunk:
        """The chunk with this id."""
        c = self._chunks.get(int(chunk_id))
        if c is None:
            raise UnknownIdError(f"unknown chunk id {chunk_id!r}")
        doc = self._docs[c.doc_id]
        text = doc.text[c.start : c.end]
        return Chunk(c.doc_id, c.seq, text, c.start, c.end, self._measure(text), doc.metadata)

    def chunks(self, doc_id: str) -> list[Chunk]:
        """The chunks of one document, in order."""
        rec = self._docs.get(doc_id)
        if rec is None:
            raise UnknownIdError(f"unknown document id {doc_id!r}")
        return [self.chunk(cid) for cid in rec.chunk_ids]

    def chunk_ids(self, doc_id: str) -> list[int]:
        """The chunk ids of one document, in order."""
        rec = self._docs.get(doc_id)
        if rec is None:
            raise UnknownIdError(f"unknown document id {doc_id!r}")
        return list(rec.chunk_ids)

    def doc_of(self, chunk_ids: Any) -> list[str | None]:
        """Document id of each chunk id (``None`` for ``-1`` padding)."""
        out: list[str | None] = []
        for cid in np.asarray(chunk_ids).ravel().tolist():
            rec = self._chunks.get(int(cid))
            out.append(rec.doc_id if rec is not None else None)
        return out

    def _measure(self, text: str) -> int:
        return self.chunker.length(text) if self.chunker is not None else len(text)

    # -- Catalog protocol (used by retrievers) ----------------------------------------------------
    def filter_ids(self, where: Where) -> I64:
        """Chunk ids of the documents whose metadata matches ``where``.

        ``where`` is ``{"field": value}`` (equality), ``{"field": [v1, v2]}`` (membership), or a
        predicate ``f(metadata) -> bool``.
        """
        if callable(where):
            pred = where
        elif isinstance(where, Mapping):
            cond = dict(where)

            def pred(meta: Mapping[str, Any]) -> bool:
                for key, want in cond.items():
                    if key not in meta:
                        return False
                    have = meta[key]
                    if isinstance(want, (list, tuple, set, frozenset)):
                        if have not in want:
                            return False
                    elif have != want:
                        return False
                return True

        else:
            raise InvalidInputError(f"where must be a mapping or a predicate, got {type(where).__name__}")
        with self._lock:
            ids = [cid for rec in self._docs.values() if pred(rec.metadata) for cid in rec.chunk_ids]
        return np.asarray(ids, dtype=np.int64)

    def chunk_info(self, chunk_id: int) -> tuple[str, int, str, int, int]:
        """``(doc_id, seq, text, start, end)`` of a chunk."""
        c = self._chunks[int(chunk_id)]
        return c.doc_id, c.seq, self._docs[c.doc_id].text[c.start : c.end], c.start, c.end

    # -- retrievers -----------------------------------------------------------------------------
    def dense_retriever(self, *, name: str = "dense") -> DenseRetriever:
        """A dense retriever that always uses the store's current (embedder, index) pair."""
        return _StoreDenseRetriever(self, name=name)

    def bm25_retriever(self, *, name: str = "bm25") -> BM25Retriever:
        """A BM25 retriever over the store's chunks."""
        return BM25Retriever(self._bm25, catalog=self, name=name)

    def hybrid_retriever(self, **kwargs: Any) -> HybridRetriever:
        """RRF (or weighted, see :class:`HybridRetriever`) fusion of the dense and BM25 retrievers."""
        return HybridRetriever([self.dense_retriever(), self.bm25_retriever()], catalog=self, **kwargs)

    # -- writes ---------------------------------------------------------------------------------
    def _split(self, doc: Document) -> list[tuple[int, int]]:
        if self.chunker is None:
            return [(0, len(doc.text))]
        return self.chunker.spans(doc.text)

    def _plan(self, upserts: list[Document], deletes: list[str]) -> _Plan:
        docs: dict[str, _DocRecord | None] = {}
        chunks: dict[int, _ChunkRecord] = {}
        new_ids: list[int] = []
        new_texts: list[str] = []
        stale: list[int] = []
        next_id = self._next_id
        added = updated = unchanged = reused = 0
        for doc in upserts:
            old = self._docs.get(doc.doc_id)
            if old is not None and old.text == doc.text:
                if old.metadata != doc.metadata:
                    docs[doc.doc_id] = _DocRecord(old.text, dict(doc.metadata), list(old.chunk_ids))
                    updated += 1
                else:
                    unchanged += 1
                continue
            pool: dict[str, list[int]] = {}
            if old is not None:
                for cid in old.chunk_ids:
                    pool.setdefault(self._chunks[cid].sha, []).append(cid)
            ids = []
            for seq, (a, b) in enumerate(self._split(doc)):
                text = doc.text[a:b]
                sha = text_sha256(text)
                if pool.get(sha):
                    cid = pool[sha].pop(0)
                    reused += 1
                else:
                    cid = next_id
                    next_id += 1
                    new_ids.append(cid)
                    new_texts.append(text)
                chunks[cid] = _ChunkRecord(doc.doc_id, seq, a, b, sha)
                ids.append(cid)
            stale.extend(c for left in pool.values() for c in left)
            docs[doc.doc_id] = _DocRecord(doc.text, dict(doc.metadata), ids)
            if old is None:
                added += 1
            else:
                updated += 1
        for doc_id in deletes:
            stale.extend(self._docs[doc_id].chunk_ids)
            docs[doc_id] = None
        report = UpsertReport(
            added=added,
            updated=updated,
            unchanged=unchanged,
            deleted=len(deletes),
            chunks_embedded=len(new_ids),
            chunks_reused=reused,
            chunks_removed=len(stale),
        )
        return _Plan(docs, chunks, new_ids, new_texts, stale, report, next_id)

    def _commit(self, upserts: list[Document], deletes: list[str]) -> UpsertReport:
        with self._lock:
            plan = self._plan(upserts, deletes)
            embedder, index = self._dense
            vecs = embedder.embed_documents(plan.new_texts, progress=self.progress) if plan.new_ids else None
            # Nothing has changed yet. Apply; undo what was done if a step fails.
            ids = np.asarray(plan.new_ids, dtype=np.int64)
            stale = np.asarray(plan.stale, dtype=np.int64)
            if vecs is not None:
                index.add(ids, vecs, space=embedder.space)
                try:
                    self._bm25.add(ids, plan.new_texts)
                except BaseException:
                    index.remove(ids)
                    raise
            if stale.size:
                old_vecs = index.get_vectors(stale)
                index.remove(stale)
                try:
                    self._bm25.remove(stale)
                except BaseException:
                    index.add(stale, old_vecs, space=embedder.space)
                    if vecs is not None:
                        index.remove(ids)
                        self._bm25.remove(ids)
                    raise
            # Bookkeeping (plain dict updates, cannot fail).
            for cid in plan.stale:
                self._chunks.pop(cid, None)
            self._chunks.update(plan.chunks)
            for doc_id, rec in plan.docs.items():
                if rec is None:
                    self._docs.pop(doc_id, None)
                else:
                    self._docs[doc_id] = rec
            self._next_id = plan.next_id
            self._version += 1
            return plan.report

    def upsert(self, documents: Any) -> UpsertReport:
        """Add or replace documents; only chunks with new content are embedded.

        ``documents``: :class:`Document` objects, ``(doc_id, text[, metadata])`` tuples, or a
        ``{doc_id: text}`` mapping. Empty/whitespace-only texts, invalid Unicode and duplicate ids
        are refused (nothing is written).
        """
        docs = _as_documents(documents)
        return self._commit(docs, [])

    def delete(self, doc_ids: Sequence[str]) -> UpsertReport:
        """Delete documents; an unknown id raises :class:`UnknownIdError` and nothing is deleted."""
        if isinstance(doc_ids, str):
            doc_ids = [doc_ids]
        try:
            if isinstance(doc_ids, bytes):
                raise TypeError("bytes")
            ids = list(doc_ids)
        except TypeError as exc:
            raise InvalidInputError(
                f"doc_ids must be a sequence of str, got {type(doc_ids).__name__}"
            ) from exc
        bad = [d for d in ids if not isinstance(d, str)]
        if bad:
            raise InvalidInputError(f"doc_ids must be str, got {bad[:3]!r}")
        with self._lock:
            missing = [d for d in ids if d not in self._docs]
            if missing:
                raise UnknownIdError(f"unknown document ids {missing[:5]}; nothing was deleted")
            if len(set(ids)) != len(ids):
                raise DuplicateIdError(f"duplicate document ids in delete: {ids}")
            return self._commit([], ids)

    def apply(self, events: Iterable[ChangeEvent]) -> UpsertReport:
        """Apply a batch of change events atomically (later events on a document win)."""
        final: dict[str, Document | None] = {}
        for i, ev in enumerate(events):
            if not isinstance(ev, ChangeEvent):
                raise InvalidInputError(f"events[{i}] is {type(ev).__name__}, expected a ChangeEvent")
            if ev.op == "upsert":
                assert ev.text is not None
                meta = ev.metadata
                if meta is None:  # text-only change: keep the metadata the document has
                    prev = final.get(ev.doc_id) or (
                        self.document(ev.doc_id) if ev.doc_id in self._docs else None
                    )
                    meta = prev.metadata if prev is not None else {}
                final[ev.doc_id] = _as_documents([Document(ev.doc_id, ev.text, meta)])[0]
            else:
                if ev.doc_id not in self._docs and final.get(ev.doc_id) is None:
                    raise UnknownIdError(
                        f"events[{i}] deletes unknown document {ev.doc_id!r}; nothing was applied"
                    )
                final[ev.doc_id] = None
        upserts = [d for d in final.values() if d is not None]
        deletes = [k for k, v in final.items() if v is None and k in self._docs]
        return self._commit(upserts, deletes)

    # -- migration ------------------------------------------------------------------------------
    def migrate(
        self,
        embedder: Embedder,
        *,
        index_kind: str | None = None,
        index_params: Mapping[str, Any] | None = None,
    ) -> Migration:
        """Embed every chunk with ``embedder`` into a shadow index; the store is unchanged until
        :meth:`Migration.commit`.

        Example:
            >>> from mlsys.rag import HashingEmbedder
            >>> store = DocumentStore(HashingEmbedder(dim=32))
            >>> _ = store.upsert({"a": "alpha beta", "b": "gamma"})
            >>> m = store.migrate(HashingEmbedder(dim=64))
            >>> store.space.dim, m.commit().space.dim
            (32, 64)
        """
        if not isinstance(embedder, Embedder):
            raise InvalidInputError(
                f"embedder must implement the Embedder protocol, got {type(embedder).__name__}"
            )
        kind = index_kind or self.index_kind
        params = dict(index_params if index_params is not None else self.index_params)
        with self._lock:
            ids = np.fromiter(self._chunks.keys(), dtype=np.int64, count=len(self._chunks))
            texts = [self.chunk_info(int(c))[2] for c in ids.tolist()]
            version = self._version
        index = make_index(kind, embedder.space, **params)
        if ids.size:
            index.add(ids, embedder.embed_documents(texts, progress=self.progress), space=embedder.space)
        return Migration(self, embedder, index, kind, params, version)

    # -- persistence ----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the store to a directory (documents, chunk table, dense index, BM25 index, manifest).

        The directory is written next to its final place and renamed, so a crash never leaves a
        half-written store under ``path``.
        """
        target = Path(path)
        tmp = target.with_name(target.name + ".tmp-save")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        with self._lock:
            doc_ids = list(self._docs)
            docs = [{"doc_id": d, "text": r.text, "metadata": r.metadata} for d, r in self._docs.items()]
            (tmp / "documents.json").write_text(json.dumps(docs, ensure_ascii=False), encoding="utf-8")
            pos = {d: i for i, d in enumerate(doc_ids)}
            cids = np.fromiter(self._chunks.keys(), dtype=np.int64, count=len(self._chunks))
            recs = list(self._chunks.values())
            table = np.array([[pos[r.doc_id], r.seq, r.start, r.end] for r in recs], dtype=np.int64).reshape(
                -1, 4
            )
            shas = np.array([r.sha for r in recs], dtype="S64")
            np.save(tmp / "chunk_ids.npy", cids, allow_pickle=False)
            np.save(tmp / "chunk_table.npy", table, allow_pickle=False)
            np.save(tmp / "chunk_sha256.npy", shas, allow_pickle=False)
            self.index.save(tmp / "index")
            self._bm25.save(tmp / "bm25")
            write_manifest(
                tmp,
                cls="DocumentStore",
                format_version=_FORMAT_VERSION,
                config={
                    "chunker": _describe_chunker(self.chunker),
                    "index_kind": self.index_kind,
                    "index_params": self.index_params,
                    "bm25": self._bm25.config.to_dict(),
                },
                files=[
                    "documents.json",
                    "chunk_ids.npy",
                    "chunk_table.npy",
                    "chunk_sha256.npy",
                    "index/manifest.json",
                    "bm25/manifest.json",
                ],
                extra={"space": self.space.to_dict(), "next_id": self._next_id, "version": self._version},
            )
        if target.exists():
            old = target.with_name(target.name + ".old-save")
            if old.exists():
                shutil.rmtree(old)
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old)
        else:
            tmp.rename(target)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        embedder: Embedder,
        *,
        chunker: Chunker | None = None,
        progress: bool | None = None,
    ) -> DocumentStore:
        """Read a store written by :meth:`save`.

        ``embedder`` must be in the saved embedding space (else ``EmbeddingSpaceMismatchError``).
        The chunker is rebuilt from the manifest unless given (a custom tokenizer must be given).
        """
        d = Path(path)
        manifest = read_manifest(d, cls="DocumentStore")
        if manifest["format_version"] != _FORMAT_VERSION:
            raise FormatVersionError(
                f"{d}: DocumentStore format version {manifest['format_version']}, expected {_FORMAT_VERSION}"
            )
        space = EmbeddingSpace.from_dict(manifest["space"])
        space.check_same(embedder.space, what="the embedder's vectors")
        cfg = manifest["config"]
        if chunker is None:
            chunker = _rebuild_chunker(cfg["chunker"])
        elif _describe_chunker(chunker) != cfg["chunker"]:
            raise InvalidInputError(
                f"chunker {_describe_chunker(chunker)} differs from the saved one {cfg['chunker']}; "
                "the stored chunks would not match it"
            )
        store = cls(
            embedder,
            chunker=chunker,
            index_kind=cfg["index_kind"],
            index_params=cfg["index_params"],
            bm25=BM25Config.from_dict(cfg["bm25"]),
            progress=progress,
        )
        try:
            docs = json.loads((d / "documents.json").read_text(encoding="utf-8"))
            cids = np.load(d / "chunk_ids.npy", allow_pickle=False)
            table = np.load(d / "chunk_table.npy", allow_pickle=False)
            shas = np.load(d / "chunk_sha256.npy", allow_pickle=False)
        except (OSError, ValueError, RecursionError) as exc:
            raise CorruptFileError(f"{d}: unreadable store payload ({str(exc)[:200]})") from None
        if table.shape != (cids.shape[0], 4) or shas.shape != cids.shape:
            raise CorruptFileError(
                f"{d}: chunk table shapes {table.shape}, {shas.shape} do not match {cids.shape}"
            )
        doc_ids = [x["doc_id"] for x in docs]
        for x in docs:
            store._docs[x["doc_id"]] = _DocRecord(x["text"], x["metadata"], [])
        for cid, (di, seq, a, b), sha in zip(cids.tolist(), table.tolist(), shas.tolist()):
            if not 0 <= di < len(doc_ids):
                raise CorruptFileError(f"{d}: chunk {cid} points at document #{di} of {len(doc_ids)}")
            doc_id = doc_ids[di]
            store._chunks[cid] = _ChunkRecord(doc_id, seq, a, b, sha.decode())
        by_doc: dict[str, list[tuple[int, int]]] = {}
        for cid, rec in store._chunks.items():
            by_doc.setdefault(rec.doc_id, []).append((rec.seq, cid))
        for doc_id, pairs in by_doc.items():
            store._docs[doc_id].chunk_ids = [c for _, c in sorted(pairs)]
        index = load_index(d / "index", expected_space=embedder.space)
        bm25 = BM25Index.load(d / "bm25")
        expected = np.sort(cids)
        if not (
            np.array_equal(np.sort(index.ids()), expected) and np.array_equal(np.sort(bm25.ids()), expected)
        ):
            raise CorruptFileError(
                f"{d}: the dense index, the BM25 index and the chunk table hold different ids"
            )
        store._dense = (embedder, index)
        store._bm25 = bm25
        store._next_id = int(manifest["next_id"])
        store._version = int(manifest.get("version", 0))
        return store


class _StoreDenseRetriever(DenseRetriever):
    """A dense retriever reading the store's current (embedder, index) pair at every search."""

    def __init__(self, store: DocumentStore, *, name: str) -> None:
        self.store = store
        self.catalog = store
        self.name = name

    @property  # type: ignore[override]
    def index(self) -> Any:  # type: ignore[override]
        return self.store._dense[1]

    @property  # type: ignore[override]
    def embedder(self) -> Embedder:  # type: ignore[override]
        return self.store._dense[0]

    def _search(self, queries: list[str], k: int, allow: Any, deny: Any) -> tuple[I64, F32, Provenance]:
        embedder, index = self.store._dense  # one read: never a mix of two spaces
        vecs = embedder.embed_queries(queries, progress=False)
        ids, scores = index.search(vecs, k, allow=allow, deny=deny, space=embedder.space)
        return self._own(ids, scores)


class Migration:
    """A shadow dense index in a new embedding space, built by :meth:`DocumentStore.migrate`.

    Evaluate it side by side with :meth:`dense_retriever` / :meth:`hybrid_retriever` (or
    :func:`mlsys.rag.compare_retrievers`), then :meth:`commit` swaps it in atomically (chunks
    written since the migration started are embedded first), or just drop it.

    Example:
        >>> from mlsys.rag import HashingEmbedder
        >>> store = DocumentStore(HashingEmbedder(dim=16))
        >>> _ = store.upsert({"a": "alpha", "b": "beta"})
        >>> m = store.migrate(HashingEmbedder(dim=32, seed=1))
        >>> m.dense_retriever().search(["alpha"], k=1)[0].tolist()  # evaluate before swapping
        [[0]]
        >>> m.commit().space.dim
        32
    """

    def __init__(
        self,
        store: DocumentStore,
        embedder: Embedder,
        index: Any,
        kind: str,
        params: dict[str, Any],
        version: int,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.index = index
        self.index_kind = kind
        self.index_params = params
        self.built_at_version = version
        self.committed = False

    @property
    def space(self) -> EmbeddingSpace:
        """The new embedding space."""
        return self.embedder.space

    def dense_retriever(self, *, name: str = "dense-shadow") -> DenseRetriever:
        """A dense retriever over the shadow index."""
        return DenseRetriever(self.index, self.embedder, catalog=self.store, name=name)

    def hybrid_retriever(self, **kwargs: Any) -> HybridRetriever:
        """Shadow dense + the store's BM25, fused."""
        return HybridRetriever(
            [self.dense_retriever(name="dense"), self.store.bm25_retriever()], catalog=self.store, **kwargs
        )

    def commit(self) -> DocumentStore:
        """Catch up with writes made since :meth:`DocumentStore.migrate`, then swap atomically."""
        if self.committed:
            raise InvalidInputError("this migration was already committed")
        store = self.store
        with store._lock:
            live = set(store._chunks)
            shadow = set(self.index.ids().tolist())
            gone = np.array(sorted(shadow - live), dtype=np.int64)
            new = sorted(live - shadow)
            if new:
                texts = [store.chunk_info(c)[2] for c in new]
                vecs = self.embedder.embed_documents(texts, progress=store.progress)
                self.index.add(np.array(new, dtype=np.int64), vecs, space=self.embedder.space)
            if gone.size:
                self.index.remove(gone)
            store._dense = (self.embedder, self.index)
            store.index_kind = self.index_kind
            store.index_params = self.index_params
            store._version += 1
            self.committed = True
        return store
