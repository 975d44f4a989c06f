"""mlsys.recsys on Ray (the optional extra ``mlsys-recsys[ray]``): distributed evaluation and training.

- :func:`evaluate_recommender_ray` scores every evaluated user against the catalogue in Ray tasks,
  each task ranking whole batches of users exactly as :func:`~mlsys.recsys.evaluate_recommender`
  batches them (same ``batch_size`` boundaries, so every ``recommend`` call sees the same input),
  then computes the metrics in this process with the single-process code: the metrics are equal
  to the last digit.
- :func:`fit_two_tower_ray` trains a :class:`~mlsys.recsys.TwoTowerModel` with Ray Train's
  ``TorchTrainer`` on ``num_workers`` CPU workers, data-parallel: every worker starts from the same
  seeded weights, takes its slice of each global batch, and gradients are averaged over the
  workers with ``torch.distributed.all_reduce`` (gloo, the process group TorchTrainer sets up)
  before every optimiser step, which is what ``DistributedDataParallel`` does. (The
  ``DistributedDataParallel`` wrapper itself needs one ``forward`` per step; the two-tower step
  calls the user and item towers separately, so the gradient average is done explicitly.) The
  result is an ordinary fitted model: ``save``/``load``/``TwoTowerRetriever`` work unchanged.

Ray is imported lazily; without it, :class:`~mlsys.common.errors.MissingDependencyError` names
the extra.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from mlsys.common.distributed import ensure_ray, ray_get
from mlsys.common.errors import InvalidInputError
from mlsys.common.validation import check_k
from mlsys.recsys._data import FeatureTable, Interactions
from mlsys.recsys._evaluation import EvaluationResult, evaluate_recommender, split_qrels
from mlsys.recsys._splits import Split
from mlsys.recsys._two_tower import (
    TwoTowerConfig,
    TwoTowerModel,
    _FitData,
    _Step,
    _TwoTowerNet,
)
from mlsys.recsys._two_tower_search import TwoTowerReport

__all__ = ["evaluate_recommender_ray", "fit_two_tower_ray"]

RAY_EXTRA = "mlsys-recsys[ray]"
I64 = npt.NDArray[np.int64]


# ----------------------------------------------------------------------------------- evaluation
def _rank_batches(model: Any, users: I64, bounds: list[tuple[int, int]], k: int, allow: Any) -> list[I64]:
    """One Ray task: the ``recommend`` rows of the given user batches."""
    torch.set_num_threads(1)
    return [model.recommend(users[a:b], k, exclude_seen=True, allow=allow)[0] for a, b in bounds]


class _Precomputed:
    """A stand-in model that answers ``recommend`` from rows ranked by the Ray tasks."""

    def __init__(self, model: Any, users: I64, rows: npt.NDArray[np.int64]) -> None:
        self._model, self._rows = model, rows
        self._pos = {int(u): i for i, u in enumerate(users.tolist())}
        self.name = str(getattr(model, "name", type(model).__name__))

    def __getattr__(self, name: str) -> Any:  # item_ids_ and friends
        return getattr(self._model, name)

    def recommend(
        self, users: Any, k: int, *, exclude_seen: bool = True, allow: Any = None
    ) -> tuple[Any, Any]:
        idx = np.fromiter((self._pos[int(u)] for u in users), dtype=np.int64)
        ids = self._rows[idx, :k]
        return ids, np.zeros(ids.shape, dtype=np.float32)


def evaluate_recommender_ray(
    model: Any,
    split: Split,
    *,
    catalogue: npt.ArrayLike | None = None,
    ks: Sequence[int] = (10, 20),
    name: str | None = None,
    fit_seconds: float | None = None,
    batch_size: int = 2048,
    num_tasks: int | None = None,
    cpus_per_task: float = 1.0,
) -> EvaluationResult:
    """:func:`~mlsys.recsys.evaluate_recommender`, with the users ranked in parallel Ray tasks.

    The model is put once into the object store; each task ranks a contiguous run of whole
    ``batch_size`` batches (so results equal the single-process run bit for bit), and the metrics
    are computed here by :func:`~mlsys.recsys.evaluate_recommender` itself.

    Args:
        model, split, catalogue, ks, name, fit_seconds, batch_size: as for ``evaluate_recommender``.
        num_tasks: tasks to split the batches into (default: the cluster's CPUs / ``cpus_per_task``).
        cpus_per_task: Ray CPUs per task.

    Raises:
        MissingDependencyError: Ray is not installed (``pip install 'mlsys-recsys[ray]'``).
        ShardUnavailableError: a task's worker died; nothing is returned.

    Example:
        >>> import ray  # doctest: +SKIP
        >>> ray.init(num_cpus=2)  # doctest: +SKIP
        >>> res = evaluate_recommender_ray(Popularity().fit(split.train), split, batch_size=256)  # doctest: +SKIP
        >>> res.metrics == evaluate_recommender(model, split, batch_size=256).metrics  # doctest: +SKIP
        True
    """
    ray = ensure_ray(RAY_EXTRA)
    cut = [check_k(k) for k in ks]
    if not cut:
        raise InvalidInputError("ks is empty; expected at least one cutoff such as (10, 20)")
    batch_size = check_k(batch_size, name="batch_size", limit="max_batch")
    if isinstance(cpus_per_task, bool) or not isinstance(cpus_per_task, (int, float)) or cpus_per_task <= 0:
        raise InvalidInputError(f"cpus_per_task must be a number > 0, got {cpus_per_task!r}")
    users, _ = split_qrels(split)
    bounds = [(s, min(users.shape[0], s + batch_size)) for s in range(0, users.shape[0], batch_size)]
    if num_tasks is None:
        num_tasks = max(1, int(float(ray.cluster_resources().get("CPU", 1.0)) // cpus_per_task))
    num_tasks = check_k(num_tasks, name="num_tasks")
    groups = [g.tolist() for g in np.array_split(np.arange(len(bounds)), min(num_tasks, max(1, len(bounds))))]
    task = ray.remote(num_cpus=cpus_per_task, max_retries=0)(_rank_batches)
    model_ref, users_ref = ray.put(model), ray.put(users)
    refs = [
        task.remote(model_ref, users_ref, [bounds[i] for i in g], max(cut), split.candidate_items)
        for g in groups
        if g
    ]
    parts = ray_get(refs, what=[f"ranking task {i} of {len(refs)}" for i in range(len(refs))])
    rows = [r for part in parts for r in part]
    ranked = np.concatenate(rows) if rows else np.empty((0, max(cut)), dtype=np.int64)
    return evaluate_recommender(
        _Precomputed(model, users, ranked),  # type: ignore[arg-type]
        split,
        catalogue=catalogue,
        ks=ks,
        name=name or str(getattr(model, "name", type(model).__name__)),
        fit_seconds=fit_seconds,
        batch_size=batch_size,
    )


# ------------------------------------------------------------------------------------- training
class _AllReduceOptimizer:
    """An optimiser whose ``step`` first averages every gradient over the workers (DDP's all-reduce)."""

    def __init__(self, opt: torch.optim.Optimizer, params: list[torch.nn.Parameter], world: int) -> None:
        self.opt, self.params, self.world = opt, params, world

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.opt.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        import torch.distributed as dist

        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        flat = torch.cat([g.reshape(-1) for g in grads])  # one all-reduce per step, not one per tensor
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for p, g in zip(self.params, grads):
            n = g.numel()
            p.grad = flat[offset : offset + n].view_as(p).clone()
            offset += n
        self.opt.step()


def _train_worker(config: dict[str, Any]) -> None:
    """Ray Train's per-worker loop: the same seeded net on every worker, a slice of each batch each."""
    import ray.train
    import torch.distributed as dist

    torch.set_num_threads(1)
    cfg: TwoTowerConfig = config["cfg"]
    data: _FitData = config["data"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    user_specs = data.users.specs if data.users is not None else ()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        net = _TwoTowerNet(cfg, user_specs, data.items.specs, len(data.user_vocab), len(data.item_vocab))
    params = [p for p in net.parameters() if p.requires_grad]
    for p in params:  # identical start on every worker, whatever the seed did
        dist.broadcast(p.data, src=0)
    from mlsys.recsys._frequency import StaticFrequencyEstimator, StreamingFrequencyEstimator

    estimator: Any = (
        StaticFrequencyEstimator(data.counts)
        if cfg.frequency == "static"
        else StreamingFrequencyEstimator(cfg.streaming_buckets, cfg.streaming_alpha, seed=cfg.seed)
    )
    opt = _AllReduceOptimizer(
        torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay), params, world
    )
    rng = np.random.default_rng(cfg.seed + rank)  # history dropout: independent per worker
    gen = torch.Generator().manual_seed(cfg.seed)  # the batch order: the same on every worker
    step = _Step(cfg, net, opt, estimator, data, rng, gen, torch.device("cpu"))  # type: ignore[arg-type]
    n = data.ex_user.shape[0]
    steps = (n + cfg.batch_size - 1) // cfg.batch_size
    losses = []
    net.train()
    t0 = time.perf_counter()
    for _ in range(cfg.epochs):
        perm = torch.randperm(n, generator=gen).numpy()
        total = 0.0
        for s in range(steps):
            b = perm[s * cfg.batch_size : (s + 1) * cfg.batch_size][rank::world]
            total += step(b) * b.shape[0] if b.size else 0.0
        loss = torch.tensor([total], dtype=torch.float64)
        dist.all_reduce(loss)
        losses.append(float(loss.item()) / n)
    seconds = time.perf_counter() - t0
    metrics = {"loss": losses[-1], "losses": losses, "train_seconds": seconds}
    if rank == 0:
        with tempfile.TemporaryDirectory() as d:
            torch.save(net.state_dict(), Path(d) / "weights.pt")
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
    else:
        ray.train.report(metrics)


def fit_two_tower_ray(
    train: Interactions,
    *,
    items: FeatureTable,
    users: FeatureTable | None = None,
    config: TwoTowerConfig | None = None,
    num_workers: int = 2,
    cpus_per_worker: float = 1.0,
    storage_path: str | None = None,
) -> TwoTowerModel:
    """Train a :class:`~mlsys.recsys.TwoTowerModel` data-parallel with Ray Train's ``TorchTrainer``.

    The configuration is trained once as given (``tune`` is ignored: the validation search is a
    single-process feature); each of the ``num_workers`` workers runs ``config.batch_size / num_workers``
    examples of every global batch and the gradients are averaged before each step (module docs).

    Args:
        train, items, users: as for :meth:`TwoTowerModel.fit`.
        config: the model configuration (default ``TwoTowerConfig()``); must be on the CPU.
        num_workers: Ray Train workers (processes).
        cpus_per_worker: Ray CPUs each worker reserves.
        storage_path: where Ray Train keeps its run and checkpoint (default: a temporary directory).

    Returns:
        A fitted model (``report_`` says it was trained on Ray, ``loss_history_`` the global losses).

    Raises:
        MissingDependencyError: Ray is not installed (``pip install 'mlsys-recsys[ray]'``).
        InvalidInputError: a GPU device in the config, bad ``num_workers``.

    Example:
        >>> import ray  # doctest: +SKIP
        >>> ray.init(num_cpus=2)  # doctest: +SKIP
        >>> model = fit_two_tower_ray(data.interactions, items=data.items, num_workers=2)  # doctest: +SKIP
        >>> TwoTowerRetriever(model, data.items).recommend([1, 2], 10)  # doctest: +SKIP
    """
    ensure_ray(RAY_EXTRA)
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    cfg = config or TwoTowerConfig()
    if cfg.device not in ("cpu", "auto"):
        raise InvalidInputError(f"fit_two_tower_ray trains on CPU workers; config.device is {cfg.device!r}")
    num_workers = check_k(num_workers, name="num_workers")
    if (
        isinstance(cpus_per_worker, bool)
        or not isinstance(cpus_per_worker, (int, float))
        or cpus_per_worker <= 0
    ):
        raise InvalidInputError(f"cpus_per_worker must be a number > 0, got {cpus_per_worker!r}")
    train.require_nonempty("training interactions")
    if cfg.item_features is not None:
        items = items.select(cfg.item_features)
    if users is not None and cfg.user_features is not None:
        users = users.select(cfg.user_features)
    items.index.positions(train.items)
    if users is not None:
        users.index.positions(train.users)
    data = _FitData.build(train, items, users, weighted=False)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = TorchTrainer(
            _train_worker,
            train_loop_config={"cfg": cfg, "data": data},
            scaling_config=ScalingConfig(
                num_workers=num_workers, use_gpu=False, resources_per_worker={"CPU": cpus_per_worker}
            ),
            torch_config=None,
            run_config=RunConfig(storage_path=storage_path or tmp, name="two_tower"),
        )
        result = trainer.fit()
        if result.error is not None:  # pragma: no cover - raised by fit() in current Ray
            raise result.error
        assert result.checkpoint is not None
        with result.checkpoint.as_directory() as d:
            state = torch.load(Path(d) / "weights.pt", weights_only=True)
    user_specs = data.users.specs if data.users is not None else ()
    net = _TwoTowerNet(cfg, user_specs, data.items.specs, len(data.user_vocab), len(data.item_vocab))
    net.load_state_dict(state)
    model = TwoTowerModel(cfg)
    metrics = result.metrics or {}
    model.loss_history_ = list(metrics.get("losses", []))
    model.train_seconds_ = float(metrics.get("train_seconds", 0.0))
    model.report_ = TwoTowerReport.untuned(
        cfg, f"trained once on Ray Train ({num_workers} workers, gradient all-reduce); tune not run"
    ).with_total(time.perf_counter() - t0)
    model.cold_offset_ = 0.0
    model._install(net, data, torch.device("cpu"))
    return model
