"""A reference recommendation service: the :mod:`mlsys.recsys.cascade` behind FastAPI.

Serving state lives in one immutable :class:`Bundle` (version, two-tower model + its ANN item
index, EASE, popularity, the cascade built from them, and a digest of all of it) referenced by the
single attribute :attr:`RecsysService.bundle`. A request reads that reference **once**, computes
its whole answer from that bundle alone and returns the bundle's version and digest. A hot swap
(``POST /admin/swap``) builds the next bundle completely off the request path (retrains the
two-tower model with a new seed, re-encodes every item into a new
:class:`~mlsys.common.spaces.EmbeddingSpace`, builds a new exact index, refits EASE/popularity)
and then replaces the reference in one assignment. In-flight requests finish on the bundle they
started with; no request can see half of each, and none fails because of the swap.

The inventory (:class:`~mlsys.recsys.cascade.InventoryMask`) is business state, not model state:
every bundle shares the same mask, so a stock update applies to all versions at once and survives
swaps. One process holds one bundle: run a single uvicorn worker (several workers would each hold
and swap their own copy).

Endpoints:

- ``GET /health``: status, serving version, digest, embedding space, catalogue size.
- ``GET /metrics``: service counters (requests, errors, swaps, responses per version), the
  cascade counters (``Cascade.stats_dict()``: per-stage calls, candidates, overruns,
  degradations; out-of-stock filtered / caught late / served) of the serving bundle and summed
  over every bundle that served, and per-stage latency count/mean/p50/p95/p99/max in ms.
- ``POST /recommend`` ``{"user_ids": [...], "k": 10}``: one slate per user.
- ``POST /admin/swap`` ``{"seed": 7}`` (seed optional): build and swap in the next version.
- ``POST /admin/inventory`` ``{"out_of_stock": [...], "in_stock": [...]}``.

Admin endpoints need the ``X-Admin-Token`` header when the service has an ``admin_token``; the
server binds to loopback by default. Put real authentication in front before exposing it.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel, Field

from mlsys.common.errors import InvalidInputError, UnknownIdError
from mlsys.common.profiling import LatencyProfiler
from mlsys.common.spaces import EmbeddingSpace
from mlsys.recsys import (
    EASE,
    Popularity,
    RecsysDataset,
    TwoTowerConfig,
    TwoTowerModel,
    TwoTowerRetriever,
    load_movielens,
    synthetic_dataset,
)
from mlsys.recsys.cascade import Cascade, DiversityStage, InventoryMask, RetrievalStage, ScoringStage

__all__ = [
    "MAX_BATCH",
    "MAX_K",
    "Bundle",
    "ServiceConfig",
    "RecsysService",
    "build_bundle",
    "create_app",
    "load_data",
]

#: largest slate a request may ask for (the diversity stage keeps this many candidates).
MAX_K = 20
#: most users in one request.
MAX_BATCH = 64


@dataclass(frozen=True)
class ServiceConfig:
    """Data and model sizes. The defaults start in a few seconds on one core."""

    data: str = "synthetic"  # "synthetic" or a MovieLens-100K folder
    n_users: int = 400
    n_items: int = 300
    per_user: int = 15
    data_seed: int = 0
    dim: int = 16
    hidden: int = 32
    epochs: int = 4
    ease_l2: float = 50.0
    two_tower_k: int = 50
    ease_k: int = 50
    popularity_k: int = 20
    retrieval_cutoff: int = 80
    scoring_cutoff: int = 40
    dpp_strength: float = 0.8

    def __post_init__(self) -> None:
        for f in ("n_users", "n_items", "per_user", "dim", "epochs", "two_tower_k", "ease_k"):
            if getattr(self, f) <= 0:
                raise InvalidInputError(f"ServiceConfig.{f} must be > 0, got {getattr(self, f)!r}")
        if self.scoring_cutoff < MAX_K:
            raise InvalidInputError(f"scoring_cutoff must be >= MAX_K={MAX_K}, got {self.scoring_cutoff}")


def load_data(cfg: ServiceConfig) -> RecsysDataset:
    """The synthetic data set of ``cfg`` or MovieLens-100K from the folder ``cfg.data``."""
    if cfg.data == "synthetic":
        return synthetic_dataset(cfg.n_users, cfg.n_items, per_user=cfg.per_user, seed=cfg.data_seed)
    return load_movielens(cfg.data)


@dataclass(frozen=True, eq=False)
class Bundle:
    """Everything one model version serves with; never mutated after construction.

    Attributes:
        version: ``"v<generation>"``, reported in every response.
        generation: 1 for the first bundle, +1 per swap.
        seed: the two-tower training seed.
        space: the two-tower model's embedding space (its ``version`` hashes the trained weights);
            the item index is bound to it.
        digest: sha256 (16 hex) over the space, the item ids, the indexed item vectors and the
            EASE weights; it identifies the exact serving state.
        cascade: the cascade built from this bundle's models only.
        item_ids: the catalogue (read-only).
        build_seconds: time to build the bundle.
    """

    version: str
    generation: int
    seed: int
    space: EmbeddingSpace
    digest: str
    cascade: Cascade
    item_ids: npt.NDArray[np.int64]
    build_seconds: float


def _readonly(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


def build_bundle(
    data: RecsysDataset,
    cfg: ServiceConfig,
    *,
    generation: int,
    seed: int,
    inventory: InventoryMask,
    profiler: LatencyProfiler,
) -> Bundle:
    """Train and index one version: two-tower retrieval (exact index), EASE, popularity, cascade.

    The cascade: retrieval (two-tower ANN + EASE + popularity, reciprocal-rank fusion) ->
    ``light`` (EASE scores blended with the two-tower score) -> ``diversity`` (greedy DPP over the
    two-tower item vectors, unit-normalised).
    """
    t0 = time.perf_counter()
    x = data.interactions
    tt = TwoTowerModel(
        TwoTowerConfig(
            dim=cfg.dim,
            hidden=cfg.hidden,
            epochs=cfg.epochs,
            seed=seed,
            name="recsys-service-two-tower",
            # Trained once with these values: a validation search (five runs or more) would make the
            # hot-swap build outlast the load test; the library's benchmarks show the tuned model.
            tune=False,
        )
    ).fit(x, items=data.items, users=data.users, progress=False)
    retriever = TwoTowerRetriever(tt, data.items, index="exact")
    catalogue = data.items.ids
    ease = EASE(l2=cfg.ease_l2)
    ease.fit(x, catalogue=catalogue)
    pop = Popularity().fit(x, catalogue=catalogue)

    # Item vectors as indexed (so the diversity stage uses exactly the index's embeddings).
    item_ids = _readonly(ease.item_ids_.copy())
    raw = retriever.index.get_vectors(item_ids)
    unit = raw[:, : cfg.dim] / np.maximum(np.linalg.norm(raw[:, : cfg.dim], axis=1, keepdims=True), 1e-12)
    unit = _readonly(unit.astype(np.float32))
    position = ease.item_index_

    def vectors(ids: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        return unit[position.positions(ids)]

    def light_scores(users: npt.NDArray[np.int64], items: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        pos = position.positions(items.ravel(), missing="mask").reshape(items.shape)
        safe = np.maximum(pos, 0)
        rows = np.arange(len(users))[:, None]
        e = ease.score(users)[rows, safe]
        q = retriever.encode_users(users)[:, : cfg.dim]
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        t = np.einsum("nd,ncd->nc", q, unit[safe])
        return np.where(pos >= 0, e + 0.1 * t, -np.inf).astype(np.float32)

    retrieval = RetrievalStage(
        [
            ("two_tower", retriever, cfg.two_tower_k),
            ("ease", ease, cfg.ease_k),
            ("pop", pop, cfg.popularity_k),
        ],
        cutoff=cfg.retrieval_cutoff,
    )
    cascade = Cascade(
        retrieval,
        [
            ScoringStage("light", light_scores, cutoff=cfg.scoring_cutoff),
            DiversityStage("diversity", vectors, cutoff=MAX_K, strength=cfg.dpp_strength),
        ],
        inventory=inventory,
        profiler=profiler,
    )
    h = hashlib.sha256()
    h.update(f"{generation}:{seed}:{tt.space.name}:{tt.space.version}".encode())
    h.update(item_ids.tobytes())
    h.update(np.ascontiguousarray(raw).tobytes())
    h.update(ease.weights_.tobytes())
    return Bundle(
        version=f"v{generation}",
        generation=generation,
        seed=seed,
        space=tt.space,
        digest=h.hexdigest()[:16],
        cascade=cascade,
        item_ids=item_ids,
        build_seconds=time.perf_counter() - t0,
    )


_TOTAL_KEYS = ("out_of_stock_filtered", "out_of_stock_caught_late", "out_of_stock_served", "degradations")


class SwapInProgressError(RuntimeError):
    """Another swap is being built."""


class RecsysService:
    """The serving state and the operations the endpoints expose (usable without HTTP).

    Args:
        cfg: data and model sizes.
        seed: the first bundle's two-tower seed; each swap uses the next seed unless given one.
        data: a ready data set (default: :func:`load_data` of ``cfg``).
        admin_token: when set, admin calls must present it.
    """

    #: bundles kept referenced after a swap (the serving one included): their live counters feed
    #: the all-versions totals; an older one is folded into the retired totals and released (by then
    #: no request is still running on it), so memory holds at most this many model versions.
    KEEP_BUNDLES = 3

    def __init__(
        self,
        cfg: ServiceConfig | None = None,
        *,
        seed: int = 0,
        data: RecsysDataset | None = None,
        admin_token: str | None = None,
    ) -> None:
        self.cfg = cfg or ServiceConfig()
        self.data = data if data is not None else load_data(self.cfg)
        self.admin_token = admin_token
        self.inventory = InventoryMask()
        self.profiler = LatencyProfiler()
        self.started_at = time.time()
        self._swap_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self.requests = 0
        self.client_errors = 0
        self.server_errors = 0
        self.swaps = 0
        self.failed_swaps = 0
        self.responses_by_version: dict[str, int] = {}
        self._known_users = np.unique(self.data.interactions.users)
        # The one reference every request reads once. Assigning an attribute is atomic in Python:
        # a reader sees either the old bundle or the new one, never a mixture.
        self.bundle: Bundle = self._build(1, seed)
        self._bundles: list[Bundle] = [self.bundle]
        self._retired = {_k: 0 for _k in _TOTAL_KEYS}
        self._retired_versions: list[str] = []

    def _build(self, generation: int, seed: int) -> Bundle:
        return build_bundle(
            self.data,
            self.cfg,
            generation=generation,
            seed=seed,
            inventory=self.inventory,
            profiler=self.profiler,
        )

    @property
    def known_users(self) -> npt.NDArray[np.int64]:
        """Users with a training history (the ones the service can serve)."""
        return self._known_users

    def _count(self, field_name: str) -> None:
        with self._count_lock:
            setattr(self, field_name, getattr(self, field_name) + 1)

    def _count_response(self, version: str) -> None:
        with self._count_lock:
            self.responses_by_version[version] = self.responses_by_version.get(version, 0) + 1

    # ------------------------------------------------------------------ operations
    def recommend(self, user_ids: list[int], k: int) -> dict[str, Any]:
        """Slates for ``user_ids`` from the bundle serving when the call starts (and only from it)."""
        bundle = self.bundle  # read once; everything below uses this bundle only
        res = bundle.cascade.recommend(np.asarray(user_ids, dtype=np.int64), k)
        items = [[int(i) for i in row if i >= 0] for row in res.ids]
        scores = [[float(s) for s, i in zip(srow, irow) if i >= 0] for srow, irow in zip(res.scores, res.ids)]
        return {
            "version": bundle.version,
            "digest": bundle.digest,
            "embedding_space": f"{bundle.space.name}@{bundle.space.version}",
            "items": items,
            "scores": scores,
            "degraded_stages": list(res.degraded_stages),
        }

    def swap(self, seed: int | None = None) -> dict[str, Any]:
        """Build the next bundle off the request path, then swap the reference atomically."""
        if not self._swap_lock.acquire(blocking=False):
            raise SwapInProgressError("a swap is already being built")
        try:
            old = self.bundle
            new_seed = old.seed + 1 if seed is None else int(seed)
            try:
                new = self._build(old.generation + 1, new_seed)
            except Exception:
                self._count("failed_swaps")
                raise
            self.bundle = new  # the swap: one reference assignment
            with self._count_lock:
                self.swaps += 1
                self._bundles.append(new)
                for gone in self._bundles[: -self.KEEP_BUNDLES]:
                    st = gone.cascade.stats_dict()
                    for key in _TOTAL_KEYS[:-1]:
                        self._retired[key] += st[key]
                    self._retired["degradations"] += sum(x["degraded"] for x in st["stages"].values())
                    self._retired_versions.append(gone.version)
                del self._bundles[: -self.KEEP_BUNDLES]
            return {
                "previous": old.version,
                "version": new.version,
                "digest": new.digest,
                "embedding_space": f"{new.space.name}@{new.space.version}",
                "seed": new_seed,
                "build_seconds": round(new.build_seconds, 4),
            }
        finally:
            self._swap_lock.release()

    def update_inventory(self, out_of_stock: list[int], in_stock: list[int]) -> dict[str, Any]:
        both = set(out_of_stock) & set(in_stock)
        if both:
            raise InvalidInputError(f"items {sorted(both)[:5]} are both out_of_stock and in_stock")
        if out_of_stock:
            self.inventory.set_out_of_stock(out_of_stock)
        if in_stock:
            self.inventory.set_in_stock(in_stock)
        oos = self.inventory.out_of_stock()
        return {"out_of_stock_count": int(oos.shape[0]), "inventory_version": self.inventory.version}

    def health(self) -> dict[str, Any]:
        b = self.bundle
        return {
            "status": "ok",
            "version": b.version,
            "digest": b.digest,
            "embedding_space": f"{b.space.name}@{b.space.version}",
            "items": int(b.item_ids.shape[0]),
            "users": int(self._known_users.shape[0]),
            "sample_user_ids": self._known_users[:256].tolist(),
            "max_k": MAX_K,
            "swapping": self._swap_lock.locked(),
            "uptime_s": round(time.time() - self.started_at, 3),
        }

    def metrics(self) -> dict[str, Any]:
        b = self.bundle
        with self._count_lock:
            service = {
                "requests": self.requests,
                "client_errors": self.client_errors,
                "server_errors": self.server_errors,
                "swaps": self.swaps,
                "failed_swaps": self.failed_swaps,
                "responses_by_version": dict(self.responses_by_version),
            }
            bundles = list(self._bundles)
            totals = dict(self._retired)
            retired_versions = list(self._retired_versions)
        for bb in bundles:
            st = bb.cascade.stats_dict()
            for key in _TOTAL_KEYS[:-1]:
                totals[key] += st[key]
            totals["degradations"] += sum(s["degraded"] for s in st["stages"].values())
        latency = {
            name: {
                "count": s.count,
                "mean_ms": s.mean * 1e3,
                "p50_ms": s.p50 * 1e3,
                "p95_ms": s.p95 * 1e3,
                "p99_ms": s.p99 * 1e3,
                "max_ms": s.max * 1e3,
            }
            for name, s in self.profiler.stats().items()
        }
        return {
            "version": b.version,
            "digest": b.digest,
            "service": service,
            "cascade": b.cascade.stats_dict(),
            "all_versions": {
                **totals,
                "live_bundles": [x.version for x in bundles],
                "retired_bundles": retired_versions,
            },
            "inventory": {
                "out_of_stock_count": int(self.inventory.out_of_stock().shape[0]),
                "version": self.inventory.version,
            },
            "latency": latency,
        }


# ---------------------------------------------------------------------- HTTP layer
class RecommendRequest(BaseModel):
    user_ids: list[int] = Field(min_length=1, max_length=MAX_BATCH)
    k: int = Field(default=10, ge=1, le=MAX_K)


class SwapRequest(BaseModel):
    seed: int | None = None


class InventoryRequest(BaseModel):
    out_of_stock: list[int] = Field(default_factory=list, max_length=100_000)
    in_stock: list[int] = Field(default_factory=list, max_length=100_000)


def create_app(service: RecsysService) -> FastAPI:
    """The FastAPI app over ``service``. Handlers are plain ``def``: they run in the threadpool,
    so numpy/torch work never blocks the event loop."""
    app = FastAPI(title="mlsys recsys reference service", version="1")
    app.state.service = service

    def check_admin(token: str | None) -> None:
        if service.admin_token is not None and token != service.admin_token:
            raise HTTPException(status_code=401, detail="missing or wrong X-Admin-Token")

    def timed(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            service.profiler.record(name, time.perf_counter() - t0)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return service.health()

    @app.get("/metrics")
    def metrics() -> dict[str, Any]:
        return service.metrics()

    @app.post("/recommend")
    def recommend(req: RecommendRequest) -> dict[str, Any]:
        service._count("requests")
        try:
            out = timed("http_recommend", lambda: service.recommend(req.user_ids, req.k))
        except UnknownIdError as exc:
            service._count("client_errors")
            raise HTTPException(status_code=404, detail=str(exc).strip("'\"")) from exc
        except InvalidInputError as exc:
            service._count("client_errors")
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        except Exception as exc:
            service._count("server_errors")
            raise HTTPException(status_code=500, detail=f"{type(exc).__name__}: {exc}") from exc
        service._count_response(out["version"])
        return out

    @app.post("/admin/swap")
    def swap(
        req: SwapRequest | None = None, x_admin_token: str | None = Header(default=None)
    ) -> dict[str, Any]:
        check_admin(x_admin_token)
        try:
            return service.swap(None if req is None else req.seed)
        except SwapInProgressError as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from exc
        except InvalidInputError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc

    @app.post("/admin/inventory")
    def inventory(req: InventoryRequest, x_admin_token: str | None = Header(default=None)) -> dict[str, Any]:
        check_admin(x_admin_token)
        try:
            return service.update_inventory(req.out_of_stock, req.in_stock)
        except InvalidInputError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc

    return app
