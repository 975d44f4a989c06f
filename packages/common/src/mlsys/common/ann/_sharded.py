"""``ShardedIndex``: one :class:`VectorIndex` whose shards are Ray actors (``mlsys-common[ray]``).

Each shard is a Ray actor holding any registered backend (``"exact"``, ``"hnsw"``, ``"faiss"``)
built with the same parameters. An id lives on shard ``splitmix64(id) % shards`` (a stable hash:
the same id goes to the same shard in every process and every release), so writes, removals and
``get_vectors`` go to the shards that own the ids, and ``search`` scatters the queries to every
shard and merges the per-shard top-``k`` by score (ties by ascending id, the order
:class:`ExactIndex` uses). With exact shards the merge is exact: ids and scores equal the single
index's. ``allow``/``deny`` are split by owner and passed through, so a filtered search returns
``k`` results whenever ``k`` items are allowed.

Everything is validated in the calling process *before* any shard is touched (ids, dimension,
dtype, NaN/inf, zero vectors under cosine, duplicates and unknown ids, the embedding space), so a
rejected call leaves every shard as it was. A shard that dies (``ray.kill``, a lost node) or does
not answer within ``call_timeout_s`` raises
:class:`~mlsys.common.errors.ShardUnavailableError`: never a silently partial result. A dead
shard's in-memory state is gone; reload the index from its last :meth:`ShardedIndex.save`.

On disk: one sub-directory per shard (``shard-00000``, ... each a complete index of the backend)
and a ``manifest.json`` that records, per shard, its item count and the sha256 of its manifest;
:meth:`ShardedIndex.load` verifies all of it, then every shard's payloads (in the shard actors),
and checks that every id sits on the shard its hash names. A shard that fails to load fails the
whole load.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from mlsys.common.ann._base import _normalized, make_config
from mlsys.common.ann._filter import as_id_filter, padding
from mlsys.common.ann._lock import RWLock
from mlsys.common.ann._persist import MANIFEST, atomic_directory, read_manifest, sha256_file, write_manifest
from mlsys.common.ann._protocol import SearchResult
from mlsys.common.ann._registry import index_class, register_index
from mlsys.common.ann._topk import sort_results
from mlsys.common.distributed import ensure_ray, ray_get
from mlsys.common.errors import (
    CorruptFileError,
    DuplicateIdError,
    EmptyIndexError,
    InvalidInputError,
    ShardUnavailableError,
    UnknownIdError,
    UnknownNameError,
)
from mlsys.common.limits import check_result_size
from mlsys.common.spaces import EmbeddingSpace
from mlsys.common.validation import as_ids, as_vectors, check_k, check_unique

__all__ = ["ShardedConfig", "ShardedIndex", "shard_of"]

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
ROUTING = "splitmix64-mod"
_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def shard_of(ids: Any, shards: int) -> I64:
    """The shard (``0 .. shards-1``) that owns each id: ``splitmix64(id) % shards``.

    Stable across processes, machines and releases (it is part of the on-disk format), and
    uniform for any id pattern (sequential ids spread evenly).

    Example:
        >>> shard_of([0, 1, 2, 3], 2).tolist()
        [1, 1, 0, 0]
    """
    if type(shards) is not int or shards < 1:
        raise InvalidInputError(f"shards must be a positive int, got {shards!r}")
    x = as_ids(ids).astype(np.uint64) + _GAMMA
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    x ^= x >> np.uint64(31)
    return (x % np.uint64(shards)).astype(np.int64)


@dataclass(frozen=True)
class ShardedConfig:
    """Configuration of :class:`ShardedIndex`.

    Args:
        backend: the registered kind every shard holds (``"exact"``, ``"hnsw"``, ``"faiss"``).
        shards: number of shard actors.
        cpus_per_shard: Ray CPUs reserved by each shard actor. The cluster must have
            ``shards * cpus_per_shard`` CPUs (checked when the index is built); a fraction lets
            several shards share a core (e.g. 8 shards on a 2-CPU laptop with ``0.25``), which is
            only useful for testing: shards that share a core search one after another.
        start_timeout_s: how long to wait for the shard actors to start (placement included).
        call_timeout_s: how long one scatter (search, write) may wait for every shard before
            :class:`~mlsys.common.errors.ShardUnavailableError`; ``None`` waits forever.
        backend_params: parameters of every shard's backend (``{"M": 16}`` for ``"hnsw"``).

    Example:
        >>> ShardedConfig(backend="hnsw", shards=4, backend_params={"M": 16}).shards
        4
    """

    backend: str = "exact"
    shards: int = 2
    cpus_per_shard: float = 1.0
    start_timeout_s: float = 120.0
    call_timeout_s: float | None = None
    backend_params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.backend, str) or self.backend == "sharded":
            raise InvalidInputError(f"backend must be a registered non-sharded kind, got {self.backend!r}")
        cls = index_class(self.backend)  # UnknownNameError lists the kinds
        if type(self.shards) is not int or self.shards < 1:
            raise InvalidInputError(f"shards must be a positive int, got {self.shards!r}")
        for name in ("cpus_per_shard", "start_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise InvalidInputError(f"ShardedConfig.{name} must be a number >= 0, got {value!r}")
        if self.start_timeout_s <= 0:
            raise InvalidInputError(f"start_timeout_s must be > 0, got {self.start_timeout_s}")
        t = self.call_timeout_s
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0):
            raise InvalidInputError(f"call_timeout_s must be None or a number > 0, got {t!r}")
        if not isinstance(self.backend_params, dict):
            raise InvalidInputError(
                f"backend_params must be a dict, got {type(self.backend_params).__name__}"
            )
        make_config(cls.config_class, dict(self.backend_params))  # unknown / invalid params, now


class _Shard:
    """The state of one shard actor: a backend index (Ray wraps this class with ``ray.remote``)."""

    def __init__(self, kind: str, space: EmbeddingSpace, params: dict[str, Any], path: str | None) -> None:
        cls = index_class(kind)
        self.index: Any = cls(space, **params) if path is None else None
        self.kind, self.space, self.path = kind, space, path

    def load(self, shard: int, shards: int) -> int:
        """Load (and verify) this shard's directory; check that its ids hash to it."""
        assert self.path is not None
        cls = index_class(self.kind)
        self.index = cls.load(self.path, expected_space=self.space)
        ids = self.index.ids()
        wrong = ids[shard_of(ids, shards) != shard]
        if wrong.size:
            raise CorruptFileError(
                f"{self.path} holds ids {wrong[:5].tolist()} that belong to other shards "
                f"({ROUTING} over {shards} shards); the manifest does not match its shards"
            )
        return len(self.index)

    def ready(self) -> int:
        return os.getpid()

    def present(self, ids: I64) -> npt.NDArray[np.bool_]:
        return np.fromiter((int(i) in self.index for i in ids.tolist()), dtype=bool, count=ids.shape[0])

    def add(self, ids: I64, vecs: F32) -> None:
        self.index.add(ids, vecs)

    def upsert(self, ids: I64, vecs: F32) -> int:
        before = len(self.index)
        self.index.upsert(ids, vecs)
        return len(self.index) - before

    def remove(self, ids: I64) -> None:
        self.index.remove(ids)

    def search(self, q: F32, k: int, allow: I64 | None, deny: I64 | None) -> SearchResult:
        if len(self.index) == 0:
            return padding(q.shape[0], k)
        return self.index.search(q, k, allow=allow, deny=deny)  # type: ignore[no-any-return]

    def get_vectors(self, ids: I64) -> F32:
        return self.index.get_vectors(ids)  # type: ignore[no-any-return]

    def ids(self) -> I64:
        return self.index.ids()  # type: ignore[no-any-return]

    def save(self, path: str) -> tuple[str, int]:
        self.index.save(path)
        return sha256_file(Path(path) / MANIFEST), len(self.index)

    def set_params(self, params: dict[str, Any]) -> None:
        self.index.set_params(**params)


@register_index("sharded")
class ShardedIndex:
    """A vector index partitioned over Ray actors by a hash of the id; same API as every backend.

    Args:
        space: the embedding space (checked on every write and, when given, every query).
        backend: the kind each shard holds (default ``"exact"``; ``"hnsw"``, ``"faiss"``).
        shards: number of shard actors (default 2).
        cpus_per_shard, start_timeout_s, call_timeout_s: see :class:`ShardedConfig`.
        **backend_params: the backend's own parameters (``M=16``, ``factory="HNSW32"``, ...).

    Connects to the Ray cluster of this process, or starts one with ``ray.init()``.

    Raises:
        MissingDependencyError: Ray is not installed (``pip install 'mlsys-common[ray]'``).
        InvalidInputError: the cluster has fewer CPUs than ``shards * cpus_per_shard``.
        UnknownNameError: unknown backend or backend parameter.
        ShardUnavailableError: the shard actors did not start within ``start_timeout_s``.

    Example:
        >>> import numpy as np, ray  # doctest: +SKIP
        >>> from mlsys.common.ann import make_index  # doctest: +SKIP
        >>> ray.init(num_cpus=2)  # doctest: +SKIP
        >>> index = make_index("sharded", space, backend="hnsw", shards=2, M=16)  # doctest: +SKIP
        >>> index.add(ids, vectors)  # routed by hash(id)  # doctest: +SKIP
        >>> ids, scores = index.search(queries, k=10, allow=in_stock)  # doctest: +SKIP
        >>> index.save("catalog.idx")  # shard-00000/, shard-00001/, manifest.json  # doctest: +SKIP
    """

    kind: ClassVar[str] = "sharded"
    config_class: ClassVar[type[ShardedConfig]] = ShardedConfig
    _CONFIG_FIELDS: ClassVar[tuple[str, ...]] = (
        "backend",
        "shards",
        "cpus_per_shard",
        "start_timeout_s",
        "call_timeout_s",
    )

    def __init__(self, space: EmbeddingSpace, **params: Any) -> None:
        if not isinstance(space, EmbeddingSpace):
            raise InvalidInputError(f"space must be an EmbeddingSpace, got {type(space).__name__}")
        own = {k: params.pop(k) for k in self._CONFIG_FIELDS if k in params}
        if "backend_params" in params:
            raise InvalidInputError("pass the backend's parameters as keywords (M=16), not backend_params=")
        config = ShardedConfig(**own, backend_params=params)
        self._init(space, config, None)

    def _init(self, space: EmbeddingSpace, config: ShardedConfig, dirs: list[Path] | None) -> None:
        self._space = space
        self._config = config
        self._dim = space.dim
        self._cosine = space.metric == "cosine"
        self._normalize_queries = self._cosine and not space.normalized
        self._lock = RWLock()
        self._counts = [0] * config.shards
        self._actors: list[Any] = []
        self._start(dirs)

    # ------------------------------------------------------------------ actors
    def _names(self, shards: list[int] | None = None) -> list[str]:
        n = self._config.shards
        return [f"shard {i} of {n}" for i in (range(n) if shards is None else shards)]

    def _start(self, dirs: list[Path] | None) -> None:
        ray = ensure_ray()
        cfg = self._config
        total = float(ray.cluster_resources().get("CPU", 0.0))
        need = cfg.shards * cfg.cpus_per_shard
        if need > total + 1e-9:
            fits = math.floor(total / cfg.shards * 100) / 100
            raise InvalidInputError(
                f"{cfg.shards} shards x {cfg.cpus_per_shard} CPU = {need:g} CPUs requested, the Ray cluster "
                f"has {total:g}; use fewer shards, cpus_per_shard={fits:g} (shards share cores) or a "
                "larger cluster"
            )
        remote = ray.remote(num_cpus=cfg.cpus_per_shard, max_restarts=0)(_Shard)
        self._actors = [
            remote.remote(
                cfg.backend, self._space, cfg.backend_params, None if dirs is None else str(dirs[i])
            )
            for i in range(cfg.shards)
        ]
        try:
            try:
                ray_get(
                    [a.ready.remote() for a in self._actors], what=self._names(), timeout=cfg.start_timeout_s
                )
            except ShardUnavailableError as exc:
                free = float(ray.available_resources().get("CPU", 0.0))
                raise ShardUnavailableError(
                    f"the {cfg.shards} shard actors did not start within {cfg.start_timeout_s} s: each needs "
                    f"{cfg.cpus_per_shard} CPU and the cluster has {free:g} of {total:g} CPUs free ({exc})"
                ) from exc
            if dirs is not None:
                counts = ray_get(
                    [a.load.remote(i, cfg.shards) for i, a in enumerate(self._actors)],
                    what=[f"{name} ({d})" for name, d in zip(self._names(), dirs)],
                )
                self._counts = [int(c) for c in counts]
        except BaseException:
            for actor in self._actors:  # a failed start or load leaves no actor behind
                ray.kill(actor)
            self._actors = []
            raise

    def _get(self, refs: list[Any], shards: list[int]) -> list[Any]:
        return ray_get(refs, what=self._names(shards), timeout=self._config.call_timeout_s)  # type: ignore[no-any-return]

    @property
    def actors(self) -> list[Any]:
        """The Ray actor handle of each shard (for monitoring or fault injection), in shard order."""
        return list(self._actors)

    # ------------------------------------------------------------------ properties
    @property
    def space(self) -> EmbeddingSpace:
        """The embedding space this index is bound to."""
        return self._space

    @property
    def config(self) -> ShardedConfig:
        """The (frozen) configuration: backend, shards, CPUs and the backend's parameters."""
        return self._config

    def shard_sizes(self) -> list[int]:
        """Live items per shard, in shard order (from the bookkeeping of the calling process)."""
        return list(self._counts)

    def __len__(self) -> int:
        return sum(self._counts)

    def __contains__(self, item: object) -> bool:
        try:
            i = int(item)  # type: ignore[call-overload]
        except (TypeError, ValueError, OverflowError):
            return False
        if i < 0 or i > np.iinfo(np.int64).max:
            return False
        s = int(shard_of([i], self._config.shards)[0])
        with self._lock.read():
            return bool(self._get([self._actors[s].present.remote(np.array([i], dtype=np.int64))], [s])[0][0])

    def __repr__(self) -> str:
        return f"ShardedIndex(space={self._space}, n={len(self)}, config={self._config})"

    def __reduce__(self) -> Any:
        raise TypeError("a ShardedIndex holds live Ray actors and cannot be pickled; save() it instead")

    # ------------------------------------------------------------------ validation
    def _prepare_items(self, ids: Any, vectors: Any, space: EmbeddingSpace | None) -> tuple[I64, F32]:
        if space is not None:
            self._space.check_same(space, what="vectors")
        vecs = as_vectors(vectors, dim=self._dim, name="vectors", allow_empty=True)
        id_arr = as_ids(ids, n=vecs.shape[0])
        if id_arr.size and id_arr.min() < 0:
            raise InvalidInputError(
                f"ids must be non-negative (-1 is the padding id), got {id_arr[id_arr < 0][:5].tolist()}"
            )
        check_unique(id_arr)
        if self._cosine:
            _normalized(vecs, "vectors")  # refuses zero vectors; the shards normalise the originals
        return id_arr, vecs

    def _route(self, ids: I64) -> list[tuple[int, npt.NDArray[np.intp]]]:
        """``[(shard, positions in ids)]`` for the shards that own at least one id."""
        owner = shard_of(ids, self._config.shards)
        return [(s, np.flatnonzero(owner == s)) for s in np.unique(owner).tolist()]

    def _present(self, ids: I64) -> tuple[npt.NDArray[np.bool_], list[tuple[int, npt.NDArray[np.intp]]]]:
        routes = self._route(ids)
        found = self._get(
            [self._actors[s].present.remote(ids[pos]) for s, pos in routes], [s for s, _ in routes]
        )
        present = np.zeros(ids.shape[0], dtype=bool)
        for (_, pos), got in zip(routes, found):
            present[pos] = got
        return present, routes

    # ------------------------------------------------------------------ mutation
    def add(self, ids: Any, vectors: Any, *, space: EmbeddingSpace | None = None) -> None:
        """Insert new items, each on the shard that owns its id.

        Raises:
            DuplicateIdError: an id repeats or is already present (nothing is written then).
            DimensionMismatchError, InvalidInputError, EmbeddingSpaceMismatchError: bad input.
            ShardUnavailableError: a shard died (the index must be reloaded from its last save).
        """
        id_arr, vecs = self._prepare_items(ids, vectors, space)
        if id_arr.size == 0:
            return
        with self._lock.write():
            present, routes = self._present(id_arr)
            if present.any():
                raise DuplicateIdError(
                    f"ids {id_arr[present][:5].tolist()} are already in the index; use upsert to replace them"
                )
            self._get(
                [self._actors[s].add.remote(id_arr[pos], vecs[pos]) for s, pos in routes],
                [s for s, _ in routes],
            )
            for s, pos in routes:
                self._counts[s] += int(pos.size)

    def upsert(self, ids: Any, vectors: Any, *, space: EmbeddingSpace | None = None) -> None:
        """Insert new items and replace the vectors of existing ones (routed by id)."""
        id_arr, vecs = self._prepare_items(ids, vectors, space)
        if id_arr.size == 0:
            return
        with self._lock.write():
            routes = self._route(id_arr)
            added = self._get(
                [self._actors[s].upsert.remote(id_arr[pos], vecs[pos]) for s, pos in routes],
                [s for s, _ in routes],
            )
            for (s, _), n_new in zip(routes, added):
                self._counts[s] += int(n_new)

    def remove(self, ids: Any) -> None:
        """Delete items from the shards that own them.

        Raises:
            UnknownIdError: an id is not in the index (nothing is removed then).
            DuplicateIdError: an id repeats within ``ids``.
        """
        id_arr = as_ids(ids)
        check_unique(id_arr)
        if id_arr.size == 0:
            return
        with self._lock.write():
            present, routes = self._present(id_arr)
            if not present.all():
                raise UnknownIdError(
                    f"ids {id_arr[~present][:5].tolist()} are not in the index; expected ids of live items"
                )
            self._get(
                [self._actors[s].remove.remote(id_arr[pos]) for s, pos in routes], [s for s, _ in routes]
            )
            for s, pos in routes:
                self._counts[s] -= int(pos.size)

    def set_params(self, **params: Any) -> None:
        """Change the shards' search-time parameters (``ef``, ``ef_search``, ``nprobe``, ...) on every shard."""
        cls = index_class(self._config.backend)
        fixed = sorted(set(params) - set(cls.search_params))
        if fixed:
            raise InvalidInputError(
                f"parameters {fixed} of {cls.__name__} cannot change on a built index; "
                f"changeable: {sorted(cls.search_params)}"
            )
        new = {**self._config.backend_params, **params}
        make_config(cls.config_class, new)  # validates values before any shard is touched
        with self._lock.write():
            shards = list(range(self._config.shards))
            self._get([a.set_params.remote(params) for a in self._actors], shards)
            self._config = replace(self._config, backend_params=new)

    # ------------------------------------------------------------------ reading
    def ids(self) -> I64:
        """All live ids, ascending (gathered from every shard)."""
        with self._lock.read():
            parts = self._get([a.ids.remote() for a in self._actors], list(range(self._config.shards)))
        return np.sort(np.concatenate([np.empty(0, dtype=np.int64), *parts]))

    def get_vectors(self, ids: Any) -> F32:
        """The stored vectors of ``ids``, in the order given (fetched from their shards).

        Raises:
            UnknownIdError: an id is not in the index.
        """
        id_arr = as_ids(ids)
        out = np.empty((id_arr.shape[0], self._dim), dtype=np.float32)
        if id_arr.size == 0:
            return out
        with self._lock.read():
            routes = self._route(id_arr)
            got = self._get(
                [self._actors[s].get_vectors.remote(id_arr[pos]) for s, pos in routes], [s for s, _ in routes]
            )
        for (_, pos), vecs in zip(routes, got):
            out[pos] = vecs
        return out

    def search(
        self,
        queries: Any,
        k: int,
        *,
        allow: Any = None,
        deny: Any = None,
        space: EmbeddingSpace | None = None,
    ) -> SearchResult:
        """Top-``k`` ids and scores per query: every shard's top-``k``, merged by score.

        The queries are validated here, sent once to the object store and searched by every
        shard in parallel; ``allow``/``deny`` are split by owning shard. Results are sorted by
        score descending, ties by id ascending, padded with ``-1``/``-inf`` only when fewer than
        ``k`` live items pass the filter.

        Raises:
            EmptyIndexError: the index holds no items.
            InvalidInputError, DimensionMismatchError, EmbeddingSpaceMismatchError: bad input.
            ShardUnavailableError: a shard died or timed out (no partial result is returned).
        """
        if space is not None:
            self._space.check_same(space, what="queries")
        q = as_vectors(queries, dim=self._dim, name="queries")
        if self._normalize_queries:
            _normalized(q, "queries")  # refuses zero queries; the shards normalise the originals
        k = check_k(k)
        check_result_size(q.shape[0], k)
        allow_ids = None if allow is None else as_id_filter(allow, name="allow")
        deny_ids = None if deny is None else as_id_filter(deny, name="deny")
        n_shards = self._config.shards
        with self._lock.read():
            if len(self) == 0:
                raise EmptyIndexError("cannot search an empty ShardedIndex; expected at least one added item")
            owner_allow = None if allow_ids is None else shard_of(allow_ids, n_shards)
            owner_deny = None if deny_ids is None else shard_of(deny_ids, n_shards)
            ray = ensure_ray()
            q_ref = ray.put(q)
            refs, shards = [], []
            for s, actor in enumerate(self._actors):
                a = None if allow_ids is None else allow_ids[owner_allow == s]
                if a is not None and a.size == 0:
                    continue  # nothing this shard holds may be returned
                d = None if deny_ids is None else deny_ids[owner_deny == s]
                refs.append(actor.search.remote(q_ref, k, a, None if d is None or d.size == 0 else d))
                shards.append(s)
            if not refs:
                return padding(q.shape[0], k)
            parts = self._get(refs, shards)
        ids = np.concatenate([p[0] for p in parts], axis=1)
        scores = np.concatenate([p[1] for p in parts], axis=1)
        ids, scores = sort_results(ids, scores)
        return np.ascontiguousarray(ids[:, :k]), np.ascontiguousarray(scores[:, :k])

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write one directory per shard (written by the shard actors) and a manifest over them.

        ``path`` must be on storage that every shard's node can write (a local disk for a local
        cluster, a shared file system otherwise). The directory is replaced atomically.
        """
        with self._lock.read(), atomic_directory(path) as tmp:
            names = [f"shard-{s:05d}" for s in range(self._config.shards)]
            saved = self._get(
                [a.save.remote(str(tmp / name)) for a, name in zip(self._actors, names)],
                list(range(self._config.shards)),
            )
            write_manifest(
                tmp,
                kind=self.kind,
                cls=type(self).__name__,
                config=asdict(self._config),
                space=self._space,
                count=len(self),
                state={
                    "routing": ROUTING,
                    "shards": [
                        {
                            "dir": name,
                            "kind": self._config.backend,
                            "count": int(count),
                            "manifest_sha256": digest,
                        }
                        for name, (digest, count) in zip(names, saved)
                    ],
                },
                libraries={"numpy": np.__version__},
            )

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, expected_space: EmbeddingSpace | None = None
    ) -> ShardedIndex:
        """Read an index written by :meth:`save`: the manifest, every shard's manifest checksum and
        count, then each shard's payloads (verified by the shard actor that loads them).

        Raises:
            CorruptFileError: a missing, altered or mismatched shard (the whole load fails), or a
                manifest that does not describe its shards.
            FormatVersionError: another format version.
            EmbeddingSpaceMismatchError: the file's space is not ``expected_space``.
        """
        manifest = read_manifest(path, expected_space=expected_space)
        if manifest["kind"] != cls.kind or manifest["class"] != cls.__name__:
            raise CorruptFileError(
                f"{path} holds a {manifest['class']} (kind {manifest['kind']!r}), expected a {cls.__name__} "
                "(use mlsys.common.ann.load_index to load any backend)"
            )
        try:
            config = ShardedConfig(**manifest["config"])
        except (TypeError, InvalidInputError, UnknownNameError) as exc:
            raise CorruptFileError(f"{path} holds an invalid ShardedConfig: {exc}") from exc
        state = manifest["state"]
        entries = state.get("shards") if isinstance(state, dict) else None
        if state.get("routing") != ROUTING or not isinstance(entries, list) or len(entries) != config.shards:
            raise CorruptFileError(
                f"{path}: the manifest describes {len(entries) if isinstance(entries, list) else 'no'} shards "
                f"with routing {state.get('routing')!r}, expected {config.shards} with {ROUTING!r}"
            )
        root = Path(path)
        dirs = []
        for s, entry in enumerate(entries):
            d = root / f"shard-{s:05d}"
            if entry.get("dir") != d.name or entry.get("kind") != config.backend:
                raise CorruptFileError(f"{path}: manifest entry {s} is {entry!r}, expected dir {d.name!r}")
            if not (d / MANIFEST).is_file():
                raise CorruptFileError(f"shard {s} of {config.shards} is missing: {d / MANIFEST} not found")
            digest = sha256_file(d / MANIFEST)
            if digest != entry.get("manifest_sha256"):
                raise CorruptFileError(
                    f"shard {s} of {config.shards} at {d} does not match the manifest (sha256 {digest[:16]}…, "
                    f"expected {str(entry.get('manifest_sha256'))[:16]}…): altered or from another save"
                )
            dirs.append(d)
        index = cls.__new__(cls)
        index._init(manifest["space"], config, dirs)
        for s, entry in enumerate(entries):
            if index._counts[s] != entry.get("count"):
                raise CorruptFileError(
                    f"shard {s} of {config.shards} restored {index._counts[s]} items, the manifest says {entry.get('count')}"
                )
        if len(index) != manifest["count"]:
            raise CorruptFileError(
                f"{path} restored {len(index)} items but its manifest says {manifest['count']}"
            )
        return index
