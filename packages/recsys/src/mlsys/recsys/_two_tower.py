"""Two-tower retrieval model (torch) whose item tower works from item features alone.

User tower: declared user features (demographics), optionally a user-id embedding, and a pooled
embedding of the user's training items (the "history bag"; for each training example the target
item is left out of its own bag so the model cannot learn to copy it). Item tower: declared item
features (genres multi-hot, title tokens through an ``EmbeddingBag``, year bucket, ...) and an
optional item-id embedding that is dropped out during training (``item_id_dropout``), so the
tower learns to rely on features and a brand-new item, which has no id embedding, still gets a
meaningful vector.

Training: in-batch sampled softmax with temperature over L2-normalised embeddings, logQ correction
with the sign of Yi et al. (RecSys 2019) -- ``logit - log p(item)`` -- from a static or streaming
frequency estimator, and accidental-hit masking (the same item twice in a batch is not a negative
of itself). Seeded; a tqdm bar shows progress.

Example:
    >>> import numpy as np
    >>> from mlsys.recsys import FeatureSpec, FeatureTable, Interactions
    >>> items = FeatureTable(np.arange(4), {"g": np.eye(4)}, [FeatureSpec("g", "multi_hot", 4)])
    >>> x = Interactions(users=[0, 0, 1, 1], items=[0, 1, 2, 3])
    >>> m = TwoTowerModel(TwoTowerConfig(dim=8, epochs=2, batch_size=4)).fit(x, items=items, progress=False)
    >>> m.encode_items(items).shape, m.space.dim  # dim 8 plus the item bias
    ((4, 9), 9)
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import torch
from torch import nn
from tqdm.auto import tqdm

from mlsys.common.devices import resolve_device
from mlsys.common.errors import (
    CorruptFileError,
    EmptyIndexError,
    FormatVersionError,
    InvalidInputError,
    NotFittedError,
    UnknownIdError,
)
from mlsys.common.spaces import EmbeddingSpace
from mlsys.common.validation import as_ids, check_k
from mlsys.recsys._baselines import ease_weights
from mlsys.recsys._data import FeatureSpec, FeatureTable, IdIndex, Interactions
from mlsys.recsys._frequency import StaticFrequencyEstimator, StreamingFrequencyEstimator
from mlsys.recsys._splits import validation_holdout
from mlsys.recsys._two_tower_search import TwoTowerReport, _Validator

__all__ = ["TwoTowerConfig", "TwoTowerModel", "TwoTowerReport", "in_batch_softmax_loss"]

FORMAT_VERSION = 1
_DEVICE_NAME = re.compile(r"cpu|auto|mps|cuda(:[0-9]+)?")
LogQ = Literal["subtract", "add", "none"]


@dataclass(frozen=True)
class TwoTowerConfig:
    """Configuration of :class:`TwoTowerModel` (validated on construction).

    Args:
        dim: output embedding width.
        feature_dim: width of each feature's embedding before the tower MLP.
        hidden: hidden width of the tower MLP (0: a single linear projection).
        temperature: softmax temperature over cosine similarities.
        logq: ``"subtract"`` (correct: ``logit - log p(item)``), ``"none"``, or ``"add"`` (the wrong
            sign; kept only to measure how much it hurts).
        frequency: ``"static"`` (training counts) or ``"streaming"`` (Yi et al. hashing estimator).
        streaming_buckets, streaming_alpha: parameters of the streaming estimator.
        mask_accidental_hits: do not treat another copy of the positive item in the batch as a negative.
        item_id_embedding: give warm items an id embedding on top of their features.
        item_id_dropout: probability of dropping a training item's id embedding (0..1).
        item_bias: the item tower also outputs a scalar bias (popularity prior from features, and
            id when present): score = ``u . v / temperature + b``. Served exactly by inner-product
            search on ``[u / temperature, 1]`` and ``[v, b]`` (the space then has ``dim + 1``).
        user_id_embedding: give users an id embedding.
        user_history: pool the embeddings of the user's training items into the user tower.
        history_dropout: probability of dropping each history item during training.
        epochs, batch_size, lr, weight_decay: optimisation (Adam).
        seed: seeds initialisation, shuffling and dropout.
        name: model name of the :class:`EmbeddingSpace`.
        item_features, user_features: the feature columns the towers use (``None``: every column
            of the table given to ``fit``); tables with more columns are accepted and narrowed.
        negatives: ``"in_batch"`` (sampled softmax over the batch's items, logQ-corrected; scales to
            any catalogue) or ``"catalogue"`` (a full softmax over every training item at each step,
            the user's other training items masked; exact, costs one item-tower pass over the
            catalogue per step: for catalogues up to a few ten thousand items).
        tune: choose temperature, learning rate and epochs on a validation split carved from the
            training data (:func:`~mlsys.recsys.validation_holdout`) before training on all of it
            (see :meth:`TwoTowerModel.fit`); ``False`` trains once with the values given.
        validation_fraction: share of each user's distinct training pairs held out for validation.
        validation_cold_fraction: share of the training items held out entirely (validation-cold
            items): they calibrate how items without an id embedding are mixed with trained ones,
            and are the validation target of a features-only model.
        tune_objective: ``"warm"`` (NDCG@10 over the trained items), ``"cold"`` (NDCG@10 among the
            validation-cold items) or ``"auto"`` (``"cold"`` when the model has no item-id embedding).
        temperature_factors, lr_factors: the search grid, as multiples of ``temperature`` and ``lr``
            (the configured values are always tried; after the distillation weights, temperatures at
            the given learning rate, then learning rates at the best temperature).
        max_epochs: most epochs of one search run (``0``: ``2 * epochs``); early stopping picks the count.
        patience: epochs without a better validation NDCG before a search run stops.
        tune_budget_s: wall-clock budget of the search (seconds); a run that would start after it
            is skipped and a run in progress stops at the end of its epoch (the report says so: such
            a result depends on the machine's speed).
        cold_tolerance: the cold-item score offset is the largest one whose validation NDCG loss
            against the best offset is within this share of the best figure at 95% confidence (the
            mean per-user loss plus 1.645 standard errors): more exposure for new items at a
            bounded cost that validation noise cannot hide.
        distill: weight of the distillation term: the KL divergence from a teacher's distribution
            over the catalogue (EASE, Steck 2019, fit on the same training matrix; each user's
            scores z-scored over the items they have not seen, softmax at ``distill_temperature``)
            to the two-tower's own softmax over every training item (seen items excluded), added to
            the retrieval loss (``0``: no teacher). It costs one item-tower pass over the
            catalogue per step and a dense ``items x items`` matrix (at most
            ``DISTILL_MAX_ITEMS`` training items).
        distill_l2: the teacher EASE's ``l2``; ``None``: chosen on the validation split from
            ``distill_l2_factors`` times the mean number of events per training item when
            tuning, ``10x`` that mean otherwise (a scale that follows the data, not a constant).
        distill_temperature: softmax temperature of the teacher's z-scored scores.
        distill_grid: distillation weights the search tries first, at the configured temperature
            and learning rate (``distill`` is always tried); empty: keep ``distill``.
        distill_l2_factors: multiples of the mean events per item that the search tries for ``distill_l2``.
        members: how many networks the final fit trains at the chosen values (seeds ``seed``,
            ``seed + 1``, ...); their scores are averaged in one embedding space (each user and
            item vector is the members' vectors side by side, so the space is ``members`` times
            wider and any inner-product index serves the average). More members cost more
            training and memory and remove seed variance, which is large for a features-only item
            tower. The search trains single networks.
        hidden_grid: other tower widths (``hidden`` values; ``0``: a linear tower) the search tries
            in its first stage, each with every distillation weight; empty (the default): keep
            ``hidden``. A features-only item tower can overfit the feature combinations of the
            training items, and a linear one then ranks new items better; the validation split decides.
        device: where training and scoring run: ``"cpu"`` (the reproducible default), ``"auto"``
            (a GPU when one is present), ``"cuda"`` or ``"cuda:N"``; resolved by
            :func:`mlsys.common.devices.resolve_device` at ``fit`` (a device the machine lacks is a
            :class:`~mlsys.common.errors.DeviceUnavailableError`). Seeded randomness (shuffling,
            dropout) is drawn on the CPU whatever the device, and a saved model loads on the CPU.

    Example:
        >>> TwoTowerConfig(dim=32).temperature
        0.05
    """

    dim: int = 64
    feature_dim: int = 32
    hidden: int = 256
    temperature: float = 0.05
    logq: LogQ = "subtract"
    frequency: Literal["static", "streaming"] = "static"
    streaming_buckets: int = 1 << 16
    streaming_alpha: float = 0.01
    mask_accidental_hits: bool = True
    item_id_embedding: bool = True
    item_id_dropout: float = 0.5
    item_bias: bool = True
    user_id_embedding: bool = False
    user_history: bool = True
    history_dropout: float = 0.0
    epochs: int = 20
    batch_size: int = 1024
    lr: float = 2e-3
    weight_decay: float = 0.0
    seed: int = 0
    name: str = "two-tower"
    item_features: tuple[str, ...] | None = None
    user_features: tuple[str, ...] | None = None
    negatives: Literal["in_batch", "catalogue"] = "in_batch"
    tune: bool = True
    validation_fraction: float = 0.1
    validation_cold_fraction: float = 0.1
    tune_objective: Literal["auto", "warm", "cold"] = "auto"
    temperature_factors: tuple[float, ...] = (0.5, 1.0, 2.0)
    lr_factors: tuple[float, ...] = (0.5, 1.0, 2.0)
    max_epochs: int = 0
    patience: int = 2
    tune_budget_s: float = 600.0
    cold_tolerance: float = 0.01
    distill: float = 0.0
    distill_l2: float | None = None
    distill_temperature: float = 1.0
    distill_grid: tuple[float, ...] = (0.0, 1.0)
    distill_l2_factors: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0)
    hidden_grid: tuple[int, ...] = ()
    members: int = 1
    device: str = "cpu"

    def __post_init__(self) -> None:
        for f in ("dim", "feature_dim", "epochs", "batch_size", "streaming_buckets"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise InvalidInputError(f"TwoTowerConfig.{f} must be a positive int, got {v!r}")
        if isinstance(self.hidden, bool) or not isinstance(self.hidden, int) or self.hidden < 0:
            raise InvalidInputError(f"TwoTowerConfig.hidden must be an int >= 0, got {self.hidden!r}")
        for f in ("temperature", "lr"):
            v = getattr(self, f)
            if not isinstance(v, (int, float)) or not np.isfinite(v) or v <= 0:
                raise InvalidInputError(f"TwoTowerConfig.{f} must be a finite number > 0, got {v!r}")
        for f in ("item_id_dropout", "history_dropout", "weight_decay"):
            v = getattr(self, f)
            if (
                not isinstance(v, (int, float))
                or not np.isfinite(v)
                or v < 0
                or (f != "weight_decay" and v >= 1)
            ):
                raise InvalidInputError(
                    f"TwoTowerConfig.{f} must be in [0, 1) (weight_decay: >= 0), got {v!r}"
                )
        if not 0 < self.streaming_alpha <= 1:
            raise InvalidInputError(
                f"TwoTowerConfig.streaming_alpha must be in (0, 1], got {self.streaming_alpha!r}"
            )
        if self.logq not in ("subtract", "add", "none"):
            raise InvalidInputError(
                f"TwoTowerConfig.logq must be 'subtract', 'add' or 'none', got {self.logq!r}"
            )
        if self.frequency not in ("static", "streaming"):
            raise InvalidInputError(
                f"TwoTowerConfig.frequency must be 'static' or 'streaming', got {self.frequency!r}"
            )
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise InvalidInputError(f"TwoTowerConfig.seed must be an int, got {self.seed!r}")
        for f in ("item_features", "user_features"):
            v = getattr(self, f)
            if v is not None:
                if isinstance(v, str) or not all(isinstance(n, str) for n in v):
                    raise InvalidInputError(
                        f"TwoTowerConfig.{f} must be a tuple of column names or None, got {v!r}"
                    )
                object.__setattr__(self, f, tuple(v))
        if not isinstance(self.name, str) or not self.name:
            raise InvalidInputError(f"TwoTowerConfig.name must be a non-empty string, got {self.name!r}")
        self._check_tuning()
        if not isinstance(self.device, str) or not _DEVICE_NAME.fullmatch(self.device.strip().lower()):
            raise InvalidInputError(
                f"TwoTowerConfig.device must be 'cpu', 'auto', 'cuda', 'cuda:N' or 'mps', got {self.device!r}"
            )
        object.__setattr__(self, "device", self.device.strip().lower())

    def _check_tuning(self) -> None:
        if self.negatives not in ("in_batch", "catalogue"):
            raise InvalidInputError(
                f"TwoTowerConfig.negatives must be 'in_batch' or 'catalogue', got {self.negatives!r}"
            )
        if self.tune_objective not in ("auto", "warm", "cold"):
            raise InvalidInputError(
                f"TwoTowerConfig.tune_objective must be 'auto', 'warm' or 'cold', got {self.tune_objective!r}"
            )
        if not isinstance(self.tune, (bool, np.bool_)):
            raise InvalidInputError(f"TwoTowerConfig.tune must be a bool, got {self.tune!r}")
        object.__setattr__(self, "tune", bool(self.tune))
        for f, lo_open in (("validation_fraction", True), ("validation_cold_fraction", False)):
            v = getattr(self, f)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) and v < 1
            if not ok or (v <= 0 if lo_open else v < 0):
                raise InvalidInputError(
                    f"TwoTowerConfig.{f} must be in {'(0, 1)' if lo_open else '[0, 1)'}, got {v!r}"
                )
        for f in ("max_epochs", "patience"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if f == "max_epochs" else 1):
                raise InvalidInputError(
                    f"TwoTowerConfig.{f} must be an int >= {0 if f == 'max_epochs' else 1}, got {v!r}"
                )
        for f in ("tune_budget_s", "cold_tolerance"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0:
                raise InvalidInputError(f"TwoTowerConfig.{f} must be a finite number >= 0, got {v!r}")
        for f in ("temperature_factors", "lr_factors"):
            v = getattr(self, f)
            if (
                isinstance(v, (str, bytes))
                or not isinstance(v, (tuple, list))
                or not v
                or len(v) > 8
                or not all(
                    isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x) and x > 0
                    for x in v
                )
            ):
                raise InvalidInputError(
                    f"TwoTowerConfig.{f} must be 1 to 8 finite numbers > 0 (multiples of the start value), got {v!r}"
                )
            object.__setattr__(self, f, tuple(float(x) for x in v))

        self._check_distill()

    def _check_distill(self) -> None:
        def number(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and bool(np.isfinite(v))

        if not number(self.distill) or self.distill < 0:
            raise InvalidInputError(
                f"TwoTowerConfig.distill must be a finite number >= 0, got {self.distill!r}"
            )
        if self.distill_l2 is not None and (not number(self.distill_l2) or self.distill_l2 <= 0):
            raise InvalidInputError(
                f"TwoTowerConfig.distill_l2 must be None or a finite number > 0, got {self.distill_l2!r}"
            )
        if not number(self.distill_temperature) or self.distill_temperature <= 0:
            raise InvalidInputError(
                f"TwoTowerConfig.distill_temperature must be a finite number > 0, got {self.distill_temperature!r}"
            )
        for f, lo, empty_ok in (("distill_grid", 0.0, True), ("distill_l2_factors", None, False)):
            v = getattr(self, f)
            ok = isinstance(v, (tuple, list)) and (empty_ok or len(v) > 0) and len(v) <= 8
            ok = ok and all(number(x) and (x >= 0 if lo is not None else x > 0) for x in v)
            if not ok:
                want = "0 to 8 finite numbers >= 0" if empty_ok else "1 to 8 finite numbers > 0"
                raise InvalidInputError(f"TwoTowerConfig.{f} must be {want}, got {v!r}")
            object.__setattr__(self, f, tuple(float(x) for x in v))
        v = self.hidden_grid
        if (
            not isinstance(v, (tuple, list))
            or len(v) > 4
            or not all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) and x >= 0 for x in v)
        ):
            raise InvalidInputError(f"TwoTowerConfig.hidden_grid must be 0 to 4 ints >= 0, got {v!r}")
        object.__setattr__(self, "hidden_grid", tuple(int(x) for x in v))
        m = self.members
        if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or not 1 <= m <= 16:
            raise InvalidInputError(f"TwoTowerConfig.members must be an int in [1, 16], got {m!r}")
        object.__setattr__(self, "members", int(m))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TwoTowerConfig:
        """Rebuild from :func:`dataclasses.asdict` output; unknown keys are refused."""
        known = {f.name for f in fields(cls)}
        if set(data) - known:
            raise InvalidInputError(f"unknown TwoTowerConfig fields {sorted(set(data) - known)}")
        data = dict(data)
        for f in (
            "item_features", "user_features", "temperature_factors", "lr_factors", "distill_grid",
            "distill_l2_factors", "hidden_grid",
        ):  # fmt: skip
            if data.get(f) is not None:
                data[f] = tuple(data[f])
        return cls(**data)


class _FeatureEncoder(nn.Module):
    """Embeds each declared feature to ``feature_dim`` and concatenates them."""

    def __init__(self, specs: Sequence[FeatureSpec], feature_dim: int) -> None:
        super().__init__()
        self.specs = tuple(specs)
        self.layers = nn.ModuleDict()
        for s in self.specs:
            if s.kind == "categorical":
                self.layers[s.name] = nn.Embedding(s.size, feature_dim)
            elif s.kind == "tokens":
                bag = nn.EmbeddingBag(s.size, feature_dim, mode="mean", padding_idx=0)
                # Zero init: a word that never occurs in training (a new item's title) adds nothing.
                nn.init.zeros_(bag.weight)
                self.layers[s.name] = bag
            else:
                self.layers[s.name] = nn.Linear(s.size, feature_dim, bias=s.kind == "numeric")
        self.out_dim = feature_dim * len(self.specs)

    def forward(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for s in self.specs:
            x = batch[s.name]
            layer = self.layers[s.name]
            if s.kind == "multi_hot":
                x = x / x.sum(dim=1, keepdim=True).clamp_min(1.0)
            out.append(layer(x))
        return out


def _mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Module:
    if hidden == 0:
        return nn.Linear(in_dim, out_dim)
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


class _TwoTowerNet(nn.Module):
    def __init__(
        self,
        cfg: TwoTowerConfig,
        user_specs: Sequence[FeatureSpec],
        item_specs: Sequence[FeatureSpec],
        n_user_ids: int,
        n_item_ids: int,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.user_features = _FeatureEncoder(user_specs, cfg.feature_dim)
        self.item_features = _FeatureEncoder(item_specs, cfg.feature_dim)
        u_in = self.user_features.out_dim
        i_in = self.item_features.out_dim
        # Row 0 of every id table is "no id": a zero vector that never trains (cold users/items).
        self.user_ids = (
            nn.Embedding(n_user_ids + 1, cfg.dim, padding_idx=0) if cfg.user_id_embedding else None
        )
        self.item_ids = (
            nn.Embedding(n_item_ids + 1, cfg.dim, padding_idx=0) if cfg.item_id_embedding else None
        )
        self.history = (
            nn.EmbeddingBag(n_item_ids + 1, cfg.dim, mode="sum", padding_idx=0) if cfg.user_history else None
        )
        if self.user_ids is not None:
            u_in += cfg.dim
        if self.history is not None:
            nn.init.normal_(self.history.weight, std=0.1)
            with torch.no_grad():
                self.history.weight[0].zero_()
            u_in += cfg.dim
        if self.item_ids is not None:
            i_in += cfg.dim
        if u_in == 0 or i_in == 0:
            raise InvalidInputError(
                "a tower has no input: give the users features, user_history or user_id_embedding, "
                "and the items features or item_id_embedding"
            )
        self.user_mlp = _mlp(u_in, cfg.hidden, cfg.dim)
        self.item_mlp = _mlp(i_in, cfg.hidden, cfg.dim + (1 if cfg.item_bias else 0))

    def user_tower(
        self,
        feats: dict[str, torch.Tensor],
        uid: torch.Tensor,
        hist_idx: torch.Tensor,
        hist_off: torch.Tensor,
        hist_w: torch.Tensor,
    ) -> torch.Tensor:
        parts = self.user_features(feats)
        if self.user_ids is not None:
            parts.append(self.user_ids(uid))
        if self.history is not None:
            if hist_idx.dtype == torch.float32:  # dense weights (small catalogue): one matmul
                parts.append(hist_idx @ self.history.weight)
            else:
                parts.append(self.history(hist_idx, hist_off, per_sample_weights=hist_w))
        return nn.functional.normalize(self.user_mlp(torch.cat(parts, dim=1)), dim=1)

    def item_tower(
        self, feats: dict[str, torch.Tensor], iid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Unit-norm item vectors and, with ``item_bias``, a scalar bias per item."""
        parts = self.item_features(feats)
        if self.item_ids is not None:
            parts.append(self.item_ids(iid))
        out = self.item_mlp(torch.cat(parts, dim=1))
        vec = nn.functional.normalize(out[:, : self.cfg.dim], dim=1)
        return vec, (out[:, self.cfg.dim] if self.cfg.item_bias else None)


def _to_device(t: torch.Tensor, device: torch.device | None) -> torch.Tensor:
    """``t`` on ``device``: unchanged on the CPU; on a GPU copied from pinned memory, non-blocking."""
    if device is None or device.type == "cpu":
        return t
    if device.type == "cuda":
        t = t.pin_memory()
    return t.to(device, non_blocking=True)


def _feature_tensors(
    table: FeatureTable, positions: npt.NDArray[np.int64], device: torch.device | None = None
) -> dict[str, torch.Tensor]:
    out = {}
    for s in table.specs:
        col = table.column(s.name)[positions]
        out[s.name] = _to_device(torch.from_numpy(np.ascontiguousarray(col)), device)
    return out


#: Up to this many entries (batch x catalogue), the history bag is a dense matrix product, which is
#: several times faster on CPU than ``EmbeddingBag`` with per-sample weights; above it, a bag.
_DENSE_HISTORY_LIMIT = 1 << 25


def _history_bags(
    hist: sp.csr_matrix,
    rows: npt.NDArray[np.int64],
    leave_out: npt.NDArray[np.int64] | None,
    drop: float,
    rng: np.random.Generator | None,
    device: torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean-pooling inputs for history rows (``-1``: no history).

    Returns ``(indices, offsets, weights)`` for an ``EmbeddingBag`` (indices are item position + 1),
    or, for small catalogues, ``(dense weights (n, n_items + 1), empty, empty)``.
    """
    indptr = hist.indptr
    valid = rows >= 0
    r = np.where(valid, rows, 0)
    lengths = np.where(valid, indptr[r + 1] - indptr[r], 0)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    total = int(lengths.sum())
    starts = np.repeat(indptr[r] - offsets, lengths)
    flat = hist.indices[np.arange(total) + starts].astype(np.int64)
    owner = np.repeat(np.arange(rows.shape[0]), lengths)
    keep = np.ones(total, dtype=bool)
    if leave_out is not None:
        keep &= flat != leave_out[owner]
    if drop > 0 and rng is not None:
        keep &= rng.random(total) >= drop
    counts = np.bincount(owner[keep], minlength=rows.shape[0]).astype(np.float32)
    w = np.where(keep, 1.0 / np.maximum(counts[owner], 1.0), 0.0).astype(np.float32)
    n_cols = hist.shape[1] + 1
    if rows.shape[0] * n_cols <= _DENSE_HISTORY_LIMIT:
        dense = np.zeros((rows.shape[0], n_cols), dtype=np.float32)
        dense[owner, flat + 1] = w  # (row, item) pairs are unique: a CSR row has no repeated column
        empty = _to_device(torch.zeros(0, dtype=torch.int64), device)
        return _to_device(torch.from_numpy(dense), device), empty, empty
    return (
        _to_device(torch.from_numpy(flat + 1), device),
        _to_device(torch.from_numpy(offsets), device),
        _to_device(torch.from_numpy(w), device),
    )


def in_batch_softmax_loss(
    user_vecs: torch.Tensor,
    item_vecs: torch.Tensor,
    items: torch.Tensor,
    *,
    temperature: float,
    log_q: torch.Tensor | None = None,
    logq: LogQ = "subtract",
    mask_accidental_hits: bool = True,
    item_bias: torch.Tensor | None = None,
    sample_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """In-batch sampled softmax: row ``i``'s positive is column ``i``; the other columns are negatives.

    Args:
        user_vecs, item_vecs: ``(B, d)`` tower outputs (row ``i`` of each is one training pair).
        items: ``(B,)`` item ids of the batch (to find accidental hits).
        temperature: logits are ``u . v / temperature``.
        log_q: ``(B,)`` log sampling probability of each batch item.
        logq: ``"subtract"`` applies Yi et al.'s correction ``logit - log q`` (the correct sign),
            ``"add"`` the wrong sign (ablation), ``"none"`` ignores ``log_q``.
        mask_accidental_hits: a column holding the same item as row ``i``'s positive (other than
            the positive itself) is not a negative: its logit is masked out.
        item_bias: ``(B,)`` optional per-item bias added to every logit of its column.
        sample_weight: ``(B,)`` optional non-negative weight of each row's loss (e.g. importance
            weights from :func:`mlsys.recsys.explore.importance_weights`); the loss is
            ``mean(w_i * ce_i)``, so weights of mean 1 keep the unweighted loss's scale.

    Example:
        >>> u = torch.eye(2)
        >>> round(float(in_batch_softmax_loss(u, u, torch.tensor([0, 1]), temperature=1.0)), 4)
        0.3133
    """
    logits = (user_vecs @ item_vecs.T) / temperature
    if item_bias is not None:
        logits = logits + item_bias[None, :]
    if log_q is not None and logq != "none":
        # Yi et al. 2019: s_c(x, y) = s(x, y) - log p(y). "add" is the wrong sign, kept for ablations.
        logits = logits - log_q[None, :] if logq == "subtract" else logits + log_q[None, :]
    if mask_accidental_hits:
        same = items[:, None] == items[None, :]
        same.fill_diagonal_(False)
        logits = logits.masked_fill(same, torch.finfo(logits.dtype).min)
    target = torch.arange(items.shape[0], device=logits.device)
    if sample_weight is None:
        return nn.functional.cross_entropy(logits, target)
    if sample_weight.shape != (items.shape[0],):
        raise InvalidInputError(
            f"sample_weight has shape {tuple(sample_weight.shape)}, expected ({items.shape[0]},) (one per row)"
        )
    if not bool(torch.isfinite(sample_weight).all()) or bool((sample_weight < 0).any()):
        raise InvalidInputError("sample_weight must be finite and non-negative")
    per_row = nn.functional.cross_entropy(logits, target, reduction="none")
    return (per_row * sample_weight).mean()


#: Most training items the distillation teacher handles (its dense ``items x items`` EASE matrix).
DISTILL_MAX_ITEMS = 20_000


def _check_teacher_items(n_items: int) -> None:
    """The distillation teacher is a dense ``items x items`` matrix: refuse more than ``DISTILL_MAX_ITEMS``."""
    if n_items > DISTILL_MAX_ITEMS:
        raise InvalidInputError(
            f"distillation needs a dense items x items teacher: {n_items} training items > "
            f"DISTILL_MAX_ITEMS={DISTILL_MAX_ITEMS}; set distill=0 and distill_grid=()"
        )


def default_distill_l2(hist: sp.csr_matrix, factor: float = 10.0) -> float:
    """``factor`` times the mean number of events per training item (the teacher's default ``l2``)."""
    return float(factor * max(hist.nnz, 1) / max(hist.shape[1], 1))


class _Teacher:
    """EASE (Steck 2019) over a training matrix, as per-user log-probabilities over the catalogue.

    Each user's scores are z-scored over the items they have not seen and divided by
    ``temperature``; seen items get probability 0.
    """

    def __init__(self, hist: sp.csr_matrix, b: npt.NDArray[np.float32], temperature: float) -> None:
        self.b = b
        self.temperature = float(temperature)
        self.table: torch.Tensor | None = None
        if hist.shape[0] * hist.shape[1] <= _DENSE_HISTORY_LIMIT:  # small: every user's row once
            chunks = [
                self._compute(hist, np.arange(lo, min(lo + 1024, hist.shape[0])))[0]
                for lo in range(0, hist.shape[0], 1024)
            ]
            self.table = torch.cat(chunks)

    def log_probs(
        self, hist: sp.csr_matrix, rows: npt.NDArray[np.int64]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log p (n, items), seen mask (n, items))`` for the history rows ``rows``."""
        if self.table is not None:
            log_t = self.table[torch.from_numpy(rows)]
            return log_t, torch.isneginf(log_t)
        return self._compute(hist, rows)

    def _compute(self, hist: sp.csr_matrix, rows: npt.NDArray[np.int64]) -> tuple[torch.Tensor, torch.Tensor]:
        xs = hist[rows]
        scores = torch.from_numpy(np.asarray(xs @ self.b, dtype=np.float32))
        seen = torch.from_numpy(xs.toarray() > 0)
        unseen = (~seen).to(scores.dtype)
        count = unseen.sum(dim=1, keepdim=True).clamp_min(1.0)
        mean = (scores * unseen).sum(dim=1, keepdim=True) / count
        var = (((scores - mean) * unseen) ** 2).sum(dim=1, keepdim=True) / count
        z = (scores - mean) / (var.sqrt() + 1e-6) / self.temperature
        return torch.log_softmax(z.masked_fill(seen, float("-inf")), dim=1), seen


@dataclass
class _FitData:
    """Everything one training run reads, built once per training set."""

    items: FeatureTable
    users: FeatureTable | None
    item_vocab: IdIndex
    user_vocab: IdIndex
    hist: sp.csr_matrix
    item_rows: npt.NDArray[np.int64]
    user_rows: npt.NDArray[np.int64] | None
    ex_user: npt.NDArray[np.int64]
    ex_item: npt.NDArray[np.int64]
    pair_weight: npt.NDArray[np.float32] | None
    counts: npt.NDArray[np.float64]
    teachers: dict[tuple[float, float], _Teacher] = field(default_factory=dict, repr=False)
    #: EASE weights already computed on ``hist`` (the search's ``l2`` choice leaves its pick here).
    ease: dict[float, npt.NDArray[np.float32]] = field(default_factory=dict, repr=False)

    def teacher(self, l2: float, temperature: float) -> _Teacher:
        """The EASE teacher of this training matrix (built once per ``(l2, temperature)``)."""
        key = (float(l2), float(temperature))
        if key not in self.teachers:
            _check_teacher_items(self.hist.shape[1])
            b = self.ease.get(key[0])
            self.teachers[key] = _Teacher(
                self.hist, ease_weights(self.hist, l2) if b is None else b, temperature
            )
        return self.teachers[key]

    @classmethod
    def build(
        cls, train: Interactions, items: FeatureTable, users: FeatureTable | None, weighted: bool
    ) -> _FitData:
        train.require_nonempty("training interactions")
        item_vocab = IdIndex(np.unique(train.items))
        user_vocab = IdIndex(np.unique(train.users))
        hist = train.to_csr(user_vocab, item_vocab)
        pair_weight: npt.NDArray[np.float32] | None = None
        if weighted:
            wsum = train.to_csr(user_vocab, item_vocab, binary=False).tocoo()
            if not np.all(wsum.data > 0):
                raise InvalidInputError(
                    "weighted training needs positive weights for every (user, item) pair"
                )
            pair_weight = (wsum.data / wsum.data.mean()).astype(np.float32)
            check = hist.tocoo()
            assert np.array_equal(check.row, wsum.row) and np.array_equal(check.col, wsum.col)
        # One training example per distinct (user, item) pair.
        coo = hist.tocoo()
        ex_user, ex_item = coo.row.astype(np.int64), coo.col.astype(np.int64)
        return cls(
            items=items,
            users=users,
            item_vocab=item_vocab,
            user_vocab=user_vocab,
            hist=hist,
            item_rows=items.index.positions(item_vocab.ids),
            user_rows=users.index.positions(user_vocab.ids) if users is not None else None,
            ex_user=ex_user,
            ex_item=ex_item,
            pair_weight=pair_weight,
            counts=np.bincount(ex_item, minlength=len(item_vocab)).astype(np.float64),
        )


def _train_run(
    cfg: TwoTowerConfig,
    data: _FitData,
    device: torch.device,
    progress: bool | None,
    *,
    epochs: int,
    on_epoch: Callable[[int, _TwoTowerNet], bool] | None = None,
) -> tuple[_TwoTowerNet, list[float], float]:
    """Train a fresh network (seeded by ``cfg.seed``) for up to ``epochs`` epochs.

    ``on_epoch(epoch, net)`` runs after each epoch (net in eval mode) and returns whether to stop.
    Returns the network, the mean loss of each epoch and the training seconds.
    """
    user_specs = data.users.specs if data.users is not None else ()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        net = _TwoTowerNet(cfg, user_specs, data.items.specs, len(data.user_vocab), len(data.item_vocab))
    net.to(device)  # initialised on the CPU: the same seed gives the same weights on every device
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    estimator: StaticFrequencyEstimator | StreamingFrequencyEstimator
    if cfg.frequency == "static":
        estimator = StaticFrequencyEstimator(data.counts)
    else:
        estimator = StreamingFrequencyEstimator(cfg.streaming_buckets, cfg.streaming_alpha, seed=cfg.seed)
    try:  # the fused CPU kernel is ~3x faster than the per-parameter loop
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step = _Step(cfg, net, opt, estimator, data, rng, gen, device)
    n = data.ex_user.shape[0]
    steps = (n + cfg.batch_size - 1) // cfg.batch_size
    # disable=None: tqdm shows the bar only on a terminal.
    disable = None if progress is None else not progress
    bar = tqdm(total=epochs * steps, desc=f"{cfg.name} training", disable=disable, leave=False)
    losses: list[float] = []
    net.train()
    t0 = time.perf_counter()
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=gen).numpy()
        total = 0.0
        for s in range(steps):
            b = perm[s * cfg.batch_size : (s + 1) * cfg.batch_size]
            total += step(b) * b.shape[0]
            bar.update(1)
        losses.append(total / n)
        bar.set_postfix(loss=f"{total / n:.4f}")
        if on_epoch is not None:
            net.eval()
            stop = on_epoch(epoch, net)
            net.train()
            if stop:
                break
    bar.close()
    net.eval()
    return net, losses, time.perf_counter() - t0


class _Step:
    """One optimisation step on a batch of training pairs (the context of one training run)."""

    def __init__(
        self,
        cfg: TwoTowerConfig,
        net: _TwoTowerNet,
        opt: torch.optim.Optimizer,
        estimator: StaticFrequencyEstimator | StreamingFrequencyEstimator,
        data: _FitData,
        rng: np.random.Generator,
        gen: torch.Generator,
        device: torch.device,
    ) -> None:
        self.cfg, self.net, self.opt, self.estimator = cfg, net, opt, estimator
        self.data, self.rng, self.gen, self.device = data, rng, gen, device
        self.all_items: dict[str, torch.Tensor] | None = None
        if cfg.negatives == "catalogue" or cfg.distill > 0:
            self.all_items = _feature_tensors(data.items, data.item_rows, device)
        self.teacher: _Teacher | None = None
        if cfg.distill > 0:
            l2 = cfg.distill_l2 if cfg.distill_l2 is not None else default_distill_l2(data.hist)
            self.teacher = data.teacher(l2, cfg.distill_temperature)

    def __call__(self, b: npt.NDArray[np.int64]) -> float:
        cfg, net, data, device = self.cfg, self.net, self.data, self.device
        bu, bi = data.ex_user[b], data.ex_item[b]
        bw = None if data.pair_weight is None else _to_device(torch.from_numpy(data.pair_weight[b]), device)
        users, user_rows = data.users, data.user_rows
        ufeats = (
            _feature_tensors(users, user_rows[bu], device)
            if users is not None and user_rows is not None
            else {}
        )
        hidx, hoff, hw = (
            _history_bags(data.hist, bu, bi, cfg.history_dropout, self.rng, device)
            if cfg.user_history
            else (
                torch.zeros(0, dtype=torch.int64, device=device),
                torch.zeros(bu.shape[0], dtype=torch.int64, device=device),
                torch.zeros(0, device=device),
            )
        )
        u = net.user_tower(ufeats, _to_device(torch.from_numpy(bu + 1), device), hidx, hoff, hw)
        if cfg.negatives == "catalogue":
            loss = self._catalogue_loss(u, bu, bi, bw)
        else:
            iid = torch.from_numpy(bi + 1)
            if cfg.item_id_embedding and cfg.item_id_dropout > 0:
                # Drawn on the CPU generator: the same seed drops the same ids on every device.
                drop = torch.rand(bi.shape[0], generator=self.gen) < cfg.item_id_dropout
                iid = torch.where(drop, torch.zeros_like(iid), iid)
            v, bias = net.item_tower(
                _feature_tensors(data.items, data.item_rows[bi], device), _to_device(iid, device)
            )
            self.estimator.update(bi)
            log_q = (
                _to_device(torch.from_numpy(self.estimator.log_prob(bi).astype(np.float32)), device)
                if cfg.logq != "none"
                else None
            )
            loss = in_batch_softmax_loss(
                u,
                v,
                _to_device(torch.from_numpy(bi), device),
                temperature=cfg.temperature,
                log_q=log_q,
                logq=cfg.logq,
                mask_accidental_hits=cfg.mask_accidental_hits,
                item_bias=bias,
                sample_weight=bw,
            )
        if self.teacher is not None:
            loss = loss + cfg.distill * self._distill_loss(u, bu)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return float(loss.detach())

    def _distill_loss(self, u: torch.Tensor, bu: npt.NDArray[np.int64]) -> torch.Tensor:
        """KL(teacher || two-tower) over every training item the user has not seen, mean over the batch."""
        assert self.teacher is not None and self.all_items is not None
        n_items = len(self.data.item_vocab)
        v, bias = self.net.item_tower(self.all_items, _to_device(torch.arange(1, n_items + 1), self.device))
        logits = (u @ v.T) / self.cfg.temperature
        if bias is not None:
            logits = logits + bias[None, :]
        log_t, seen = self.teacher.log_probs(self.data.hist, bu)
        log_t, seen = _to_device(log_t, self.device), _to_device(seen, self.device)
        log_s = torch.log_softmax(logits.masked_fill(seen, torch.finfo(logits.dtype).min), dim=1)
        p_t = log_t.exp()  # exactly 0 on seen items
        kl = p_t * (log_t.masked_fill(seen, 0.0) - log_s.masked_fill(seen, 0.0))
        return kl.sum(dim=1).mean()

    def _catalogue_loss(
        self,
        u: torch.Tensor,
        bu: npt.NDArray[np.int64],
        bi: npt.NDArray[np.int64],
        bw: torch.Tensor | None,
    ) -> torch.Tensor:
        """Full softmax over every training item; the user's other training items are not negatives."""
        cfg, data = self.cfg, self.data
        assert self.all_items is not None
        n_items = len(data.item_vocab)
        iid = torch.arange(1, n_items + 1)
        if cfg.item_id_embedding and cfg.item_id_dropout > 0:
            drop = torch.rand(n_items, generator=self.gen) < cfg.item_id_dropout
            iid = torch.where(drop, torch.zeros_like(iid), iid)
        v, bias = self.net.item_tower(self.all_items, _to_device(iid, self.device))
        logits = (u @ v.T) / cfg.temperature
        if bias is not None:
            logits = logits + bias[None, :]
        rows = data.hist[bu]
        owner = np.repeat(np.arange(bu.shape[0]), np.diff(rows.indptr))
        other = rows.indices != bi[owner]
        mask = torch.zeros(logits.shape, dtype=torch.bool)
        mask[torch.from_numpy(owner[other]), torch.from_numpy(rows.indices[other].astype(np.int64))] = True
        logits = logits.masked_fill(_to_device(mask, self.device), torch.finfo(logits.dtype).min)
        target = _to_device(torch.from_numpy(bi), self.device)
        per_row = nn.functional.cross_entropy(logits, target, reduction="none")
        return per_row.mean() if bw is None else (per_row * bw).mean()


def _weights_file(member: int) -> str:
    """The weights file of a member network (the first keeps the name of single-network models)."""
    return "weights.safetensors" if member == 0 else f"weights_member{member}.safetensors"


class TwoTowerModel:
    """A trained two-tower model: ``fit``, ``encode_users``, ``encode_items``, ``save``/``load``.

    Args:
        config: :class:`TwoTowerConfig`.

    After :meth:`fit`, :attr:`space` is the :class:`EmbeddingSpace` of both towers' outputs
    (``name`` from the config, ``version`` a hash of the trained weights, metric ``"ip"``; ``dim``
    is ``config.dim + 1`` with ``item_bias``).

    Example:
        >>> import numpy as np
        >>> from mlsys.recsys import FeatureSpec, FeatureTable, Interactions
        >>> items = FeatureTable(np.arange(3), {"g": np.eye(3)}, [FeatureSpec("g", "multi_hot", 3)])
        >>> m = TwoTowerModel(TwoTowerConfig(dim=4, epochs=1)).fit(
        ...     Interactions(users=[1, 2], items=[0, 1]), items=items, progress=False)
        >>> m.encode_users([1]).dtype
        dtype('float32')
    """

    def __init__(self, config: TwoTowerConfig | None = None) -> None:
        self.config = config or TwoTowerConfig()

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        train: Interactions,
        *,
        items: FeatureTable,
        users: FeatureTable | None = None,
        progress: bool | None = None,
        weighted: bool = False,
    ) -> TwoTowerModel:
        """Train on ``train`` (implicit positives); ``items`` must describe every training item.

        With ``config.tune`` (the default) the model first fits the data it gets:

        1. a validation split is carved from ``train`` with :func:`~mlsys.recsys.validation_holdout`
           (``validation_fraction`` of each user's pairs, ``validation_cold_fraction`` of the items,
           ``default_rng(config.seed)``); the test split is never seen;
        2. search runs train on the rest, each up to ``max_epochs`` with early stopping on
           validation NDCG@10 (``patience``): first the configured values with each distillation
           weight of ``distill_grid`` (the teacher's ``l2`` chosen on the same validation split)
           and each tower width of ``hidden_grid``, then each of ``temperature_factors`` times the
           configured temperature at the best weight and width, then each of ``lr_factors`` times
           the learning rate at the best temperature, within ``tune_budget_s`` seconds;
        3. with an item-id embedding and an item bias, the score offset of items that have no id
           embedding (new items, scored from features) is calibrated on the validation-cold items
           mixed with the trained ones (:attr:`cold_offset_`; the largest offset whose NDCG loss
           is within ``cold_tolerance`` at 95% confidence);
        4. the model is trained on all of ``train`` with the chosen temperature, learning rate and
           epoch count. :attr:`config` is then the chosen configuration and :attr:`report_` says
           what was tried (every run's validation curve), what was chosen and why.

        Data too small to validate on (no user with ``1 / validation_fraction`` distinct items)
        trains once with the configured values; the report says so. Results are reproducible for a
        seed unless the time budget binds (the report's ``budget_exhausted``).

        ``weighted=True`` is the sample-weight hook for IPS-weighted training: each distinct
        (user, item) pair's loss is weighted by the sum of its events' ``train.weights`` (e.g.
        :func:`mlsys.recsys.explore.importance_weights` of logged clicks), normalised to mean 1
        over the training pairs. With equal weights per pair (the same total weight for every
        (user, item) pair) it trains exactly as ``weighted=False``; repeated events of a pair add up.

        ``users`` (optional) must describe every training user. ``progress`` shows a tqdm bar
        (default: only on a terminal). Empty interactions raise
        :class:`~mlsys.common.errors.EmptyIndexError`; items or users missing from their tables
        raise :class:`~mlsys.common.errors.UnknownIdError`; a device the machine lacks raises
        :class:`~mlsys.common.errors.DeviceUnavailableError`. A failed fit leaves the model as it was.
        """
        cfg = self.config
        train.require_nonempty("training interactions")
        if not isinstance(items, FeatureTable):
            raise InvalidInputError(f"items must be a FeatureTable, got {type(items).__name__}")
        if users is not None and not isinstance(users, FeatureTable):
            raise InvalidInputError(f"users must be a FeatureTable or None, got {type(users).__name__}")
        if cfg.item_features is not None:
            items = items.select(cfg.item_features)
        if users is not None and cfg.user_features is not None:
            users = users.select(cfg.user_features)
        items.index.positions(train.items)  # every training item needs features
        if users is not None:
            users.index.positions(train.users)
        device = resolve_device(cfg.device)
        data = _FitData.build(train, items, users, weighted)
        if cfg.distill > 0:  # before the search: fail fast
            _check_teacher_items(len(data.item_vocab))
        t0 = time.perf_counter()
        report: TwoTowerReport
        cold_offset = 0.0
        final = cfg
        if cfg.tune:
            final, report, cold_offset = self._search(train, items, users, weighted, device, progress)
        else:
            report = TwoTowerReport.untuned(cfg, "tune=False: trained once with the configured values")
        # One network per member, seeds seed, seed + 1, ... (the first is the single-network model).
        trained = [
            _train_run(replace(final, seed=final.seed + k), data, device, progress, epochs=final.epochs)
            for k in range(final.members)
        ]
        self.config = final
        self.loss_history_: list[float] = trained[0][1]
        self.train_seconds_ = sum(t[2] for t in trained)
        self.report_ = report.with_total(time.perf_counter() - t0)
        self.cold_offset_ = cold_offset
        self._install(trained[0][0], data, device, [t[0] for t in trained[1:]])
        return self

    def _install(
        self, net: _TwoTowerNet, data: _FitData, device: torch.device, extra: Sequence[_TwoTowerNet] = ()
    ) -> None:
        for n in (net, *extra):
            n.eval()
        self.net_ = net
        self.extra_nets_ = list(extra)
        self.device_ = device
        self.item_vocab_ = data.item_vocab
        self.user_vocab_ = data.user_vocab
        self.history_ = data.hist
        self.users_ = data.users
        self.item_specs_ = data.items.specs
        if not hasattr(self, "cold_offset_"):
            self.cold_offset_ = 0.0
        self.space = self._make_space()

    def _search(
        self,
        train: Interactions,
        items: FeatureTable,
        users: FeatureTable | None,
        weighted: bool,
        device: torch.device,
        progress: bool | None,
    ) -> tuple[TwoTowerConfig, TwoTowerReport, float]:
        """Steps 1-3 of :meth:`fit`: the chosen config, the report and the cold-item offset."""
        cfg = self.config
        objective = cfg.tune_objective
        if objective == "auto":
            objective = "warm" if cfg.item_id_embedding else "cold"
        try:
            val = validation_holdout(
                train,
                fraction=cfg.validation_fraction,
                cold_fraction=cfg.validation_cold_fraction,
                seed=cfg.seed,
            )
            data = _FitData.build(val.train, items, users, weighted)
            validator = _Validator(val, data, items, objective, cfg.validation_fraction, cfg.seed)
        except (InvalidInputError, EmptyIndexError) as exc:
            return cfg, TwoTowerReport.untuned(cfg, f"not tuned: {exc}"), 0.0
        budget_end = time.perf_counter() + cfg.tune_budget_s
        max_epochs = cfg.max_epochs or 2 * cfg.epochs
        runs: list[dict[str, Any]] = []
        best_net: tuple[float, _TwoTowerNet] | None = None
        exhausted = False

        def run(temperature: float, lr: float, distill: float, hidden: int) -> None:
            nonlocal best_net, exhausted
            if time.perf_counter() > budget_end:
                exhausted = True
                return
            cand = replace(
                cfg, temperature=temperature, lr=lr, distill=distill, distill_l2=teacher_l2, hidden=hidden
            )
            curve: list[float] = []
            state: dict[str, dict[str, torch.Tensor]] = {}

            def on_epoch(epoch: int, net: _TwoTowerNet) -> bool:
                nonlocal exhausted
                score = validator.ndcg(self._probe(cand, net, data, device))
                if score > max(curve, default=-1.0):  # ties keep the earlier (shorter) epoch
                    state["best"] = {k: v.detach().clone() for k, v in net.state_dict().items()}
                curve.append(score)
                if time.perf_counter() > budget_end:
                    exhausted = True
                    return True
                best_epoch = int(np.argmax(curve))
                return len(curve) - 1 - best_epoch >= cfg.patience

            net, _, secs = _train_run(cand, data, device, progress, epochs=max_epochs, on_epoch=on_epoch)
            best_epoch = int(np.argmax(curve))
            runs.append(
                {
                    "temperature": temperature,
                    "lr": lr,
                    "distill": distill,
                    **({"hidden": hidden} if cfg.hidden_grid else {}),
                    "epochs_run": len(curve),
                    "best_epoch": best_epoch + 1,
                    "best_ndcg@10": curve[best_epoch],
                    "curve": curve,
                    "seconds": secs,
                }
            )
            if best_net is None or curve[best_epoch] > best_net[0]:
                net.load_state_dict(state["best"])
                net.eval()
                best_net = (curve[best_epoch], net)

        wants_teacher = cfg.distill > 0 or any(w > 0 for w in cfg.distill_grid)
        too_many = len(data.item_vocab) > DISTILL_MAX_ITEMS
        teacher_l2, l2_search = cfg.distill_l2, None
        if wants_teacher and not too_many and teacher_l2 is None:
            teacher_l2, l2_search = validator.choose_ease_l2(
                [default_distill_l2(data.hist, f) for f in cfg.distill_l2_factors],
                default_distill_l2(data.hist),
            )
        # The configured point with each distillation weight, then temperatures at the best weight,
        # then learning rates at the best temperature (each step keeps the earlier choices).
        for h in dict.fromkeys((cfg.hidden, *cfg.hidden_grid)):
            for w in dict.fromkeys((cfg.distill, *cfg.distill_grid)):
                if not (w > 0 and too_many):
                    run(cfg.temperature, cfg.lr, w, h)

        def best_of(**fixed: float) -> dict[str, Any] | None:
            pool = [r for r in runs if all(r.get(k, cfg.hidden) == v for k, v in fixed.items())]
            return max(pool, key=lambda r: r["best_ndcg@10"]) if pool else None

        top = best_of()
        best_w = top["distill"] if top is not None else cfg.distill
        best_h = top.get("hidden", cfg.hidden) if top is not None else cfg.hidden
        for f in cfg.temperature_factors:
            if f != 1.0:
                run(cfg.temperature * f, cfg.lr, best_w, best_h)
        top = best_of(distill=best_w, hidden=best_h)
        best_t = top["temperature"] if top is not None else cfg.temperature
        for f in cfg.lr_factors:
            if f != 1.0:
                run(best_t, cfg.lr * f, best_w, best_h)
        if not runs:
            return (
                cfg,
                TwoTowerReport.untuned(cfg, "not tuned: the time budget ended before the first run"),
                0.0,
            )
        best = max(runs, key=lambda r: r["best_ndcg@10"])  # first of equals: the earlier, simpler choice
        chosen = replace(
            cfg,
            temperature=best["temperature"],
            lr=best["lr"],
            epochs=best["best_epoch"],
            distill=best["distill"],
            distill_l2=teacher_l2 if best["distill"] > 0 else cfg.distill_l2,
            hidden=best.get("hidden", cfg.hidden),
        )
        offset, calibration = 0.0, None
        if best_net is not None and cfg.item_id_embedding and cfg.item_bias and validator.has_cold:
            probe = self._probe(
                replace(cfg, temperature=best["temperature"], hidden=chosen.hidden), best_net[1], data, device
            )
            offset, calibration = validator.calibrate_cold_offset(probe, cfg.cold_tolerance)
        reason = "tuned on a validation split carved from the training data"
        if wants_teacher and too_many:
            reason += (
                f"; no distillation: {len(data.item_vocab)} items > DISTILL_MAX_ITEMS={DISTILL_MAX_ITEMS}"
            )
        chosen_values = {
            "temperature": chosen.temperature, "lr": chosen.lr, "epochs": chosen.epochs, "distill": chosen.distill,
        }  # fmt: skip
        if chosen.distill > 0 and chosen.distill_l2 is not None:
            chosen_values["distill_l2"] = chosen.distill_l2
        if cfg.hidden_grid:
            chosen_values["hidden"] = chosen.hidden
        report = TwoTowerReport(
            tuned=True,
            reason=reason,
            validation=val.description,
            objective=validator.describe(),
            start={
                "temperature": cfg.temperature,
                "lr": cfg.lr,
                "epochs": cfg.epochs,
                "distill": cfg.distill,
                **({"hidden": cfg.hidden} if cfg.hidden_grid else {}),
            },
            chosen=chosen_values,
            teacher_l2_search=l2_search,
            runs=tuple(runs),
            budget_s=float(cfg.tune_budget_s),
            budget_exhausted=exhausted,
            cold_calibration=calibration,
        )
        return chosen, report, offset

    def _probe(
        self, cfg: TwoTowerConfig, net: _TwoTowerNet, data: _FitData, device: torch.device
    ) -> TwoTowerModel:
        """A model over ``net`` as it is now (for validation scoring during the search)."""
        probe = TwoTowerModel(cfg)
        probe.cold_offset_ = 0.0
        was_training = net.training
        probe._install(net, data, device)
        if was_training:
            net.train()
        return probe

    def _make_space(self) -> EmbeddingSpace:
        h = hashlib.sha256()
        for i, net in enumerate(self._nets()):
            for k, t in sorted(net.state_dict().items()):
                h.update((f"member{i}." if i else "").encode() + k.encode())
                h.update(t.detach().cpu().numpy().tobytes())
        h.update(np.float64(getattr(self, "cold_offset_", 0.0)).tobytes())
        bias = self.config.item_bias
        return EmbeddingSpace(
            self.config.name,
            f"sha256:{h.hexdigest()[:12]}",
            len(self._nets()) * (self.config.dim + (1 if bias else 0)),
            metric="ip",
            normalized=not bias,
        )

    def _nets(self) -> list[_TwoTowerNet]:
        """The fitted networks: the first one and the other members (:attr:`TwoTowerConfig.members`)."""
        return [self.net_, *getattr(self, "extra_nets_", [])]

    def _check_fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise NotFittedError(
                "TwoTowerModel is not fitted; call fit(train, items=...) or TwoTowerModel.load(path)"
            )

    # ------------------------------------------------------------------ encoding
    def knows_user(self, users: Any) -> npt.NDArray[np.bool_]:
        """Which users have a training history."""
        self._check_fitted()
        return self.user_vocab_.contains(users)

    def encode_users(
        self, users: Any, *, features: FeatureTable | None = None, batch_size: int = 4096
    ) -> npt.NDArray[np.float32]:
        """User vectors ``(n, space.dim)`` float32: unit norm, or ``[u / temperature, 1]`` with ``item_bias``.

        Known users use their training history (and id embedding); user features come from
        ``features`` when given, else from the table seen at fit. A user with no history needs a
        feature row (or a user tower without features): otherwise :class:`UnknownIdError`.
        """
        self._check_fitted()
        batch_size = check_k(batch_size, name="batch_size", limit="max_batch")
        ids = as_ids(users, name="users")
        table = features if features is not None else self.users_
        user_specs = self.net_.user_features.specs
        if table is not None and self.config.user_features is not None and table is not self.users_:
            table = table.select(self.config.user_features)
        if table is not None:
            table.check_schema(user_specs, what="user features")
        rows_hist = self.user_vocab_.positions(ids, missing="mask")
        if table is not None and user_specs:
            feat_rows = table.index.positions(ids, missing="mask")
            missing = feat_rows < 0
            if missing.any():
                raise UnknownIdError(
                    f"users {ids[missing][:5].tolist()} have no feature row; expected ids of the user feature table"
                )
        else:
            feat_rows = np.zeros(ids.shape[0], dtype=np.int64)
            if not self.config.user_history and not self.config.user_id_embedding:
                raise InvalidInputError("this model's user tower has no input")
        cfg = self.config
        nets = self._nets()
        width = cfg.dim + (1 if cfg.item_bias else 0)
        out = np.ones((ids.shape[0], len(nets) * width), dtype=np.float32)
        dev = self.device_
        with torch.inference_mode():
            for s in range(0, ids.shape[0], batch_size):
                sl = slice(s, s + batch_size)
                r = rows_hist[sl]
                feats = (
                    _feature_tensors(table, feat_rows[sl], dev) if table is not None and user_specs else {}
                )
                hidx, hoff, hw = _history_bags(self.history_, r, None, 0.0, None, dev)
                uid = _to_device(torch.from_numpy(np.where(r >= 0, r + 1, 0)), dev)
                for m, net in enumerate(nets):
                    u = net.user_tower(feats, uid, hidx, hoff, hw).cpu().numpy()
                    # With an item bias the score is u.v / T + b: queries carry 1/T and a constant 1.
                    out[sl, m * width : m * width + cfg.dim] = u / cfg.temperature if cfg.item_bias else u
        return self._member_scale(out, query=True)

    def _member_scale(self, vecs: npt.NDArray[np.float32], *, query: bool) -> npt.NDArray[np.float32]:
        """Scale side-by-side member vectors so that their inner product is the members' mean score.

        Unit-norm members: both sides by ``1 / sqrt(members)`` (the result is unit norm again, the
        mean of the cosines). With an item bias: the query side by ``1 / members``.
        """
        n = len(self._nets())
        if n == 1:
            return vecs
        if not self.config.item_bias:
            vecs *= np.float32(1.0 / np.sqrt(n))
        elif query:
            vecs *= np.float32(1.0 / n)
        return vecs

    def encode_items(
        self, items: FeatureTable, *, use_ids: bool = True, batch_size: int = 8192
    ) -> npt.NDArray[np.float32]:
        """Item vectors ``(items.n, space.dim)`` float32 in the table's row order: unit norm, or ``[v, b]`` with ``item_bias``.

        Items seen in training also use their id embedding (unless ``use_ids=False``); any other
        item is encoded from its features alone. The table must have the training schema.
        """
        self._check_fitted()
        batch_size = check_k(batch_size, name="batch_size", limit="max_batch")
        if not isinstance(items, FeatureTable):
            raise InvalidInputError(f"items must be a FeatureTable, got {type(items).__name__}")
        if self.config.item_features is not None:
            items = items.select(self.config.item_features)
        items.check_schema(self.item_specs_, what="item features")
        pos = self.item_vocab_.positions(items.ids, missing="mask")
        iid = np.where((pos >= 0) & use_ids, pos + 1, 0)
        cfg = self.config
        nets = self._nets()
        width = cfg.dim + (1 if cfg.item_bias else 0)
        out = np.empty((items.n, len(nets) * width), dtype=np.float32)
        with torch.inference_mode():
            for s in range(0, items.n, batch_size):
                rows = np.arange(s, min(items.n, s + batch_size))
                feats = _feature_tensors(items, rows, self.device_)
                ids_t = _to_device(torch.from_numpy(iid[rows]), self.device_)
                # Items without an id embedding carry the calibrated offset (fit step 3).
                offset = np.where(iid[rows] == 0, self.cold_offset_, 0.0)
                for m, net in enumerate(nets):
                    vec, bias = net.item_tower(feats, ids_t)
                    out[rows, m * width : m * width + cfg.dim] = vec.cpu().numpy()
                    if bias is not None:
                        out[rows, m * width + cfg.dim] = bias.cpu().numpy() + offset
        return self._member_scale(out, query=False)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write a directory: ``manifest.json`` + ``weights.safetensors`` + ``.npy`` state (no pickle)."""
        self._check_fitted()
        from safetensors.torch import save_file

        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        payloads: dict[str, bytes] = {}
        for i, net in enumerate(self._nets()):
            state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
            tmp = out / _weights_file(i)
            save_file(state, str(tmp))
            payloads[_weights_file(i)] = tmp.read_bytes()
        arrays = {
            "item_vocab.npy": self.item_vocab_.ids,
            "user_vocab.npy": self.user_vocab_.ids,
            "history_indptr.npy": self.history_.indptr.astype(np.int64),
            "history_indices.npy": self.history_.indices.astype(np.int64),
        }
        if self.users_ is not None:
            arrays["users_ids.npy"] = self.users_.ids
            for s in self.users_.specs:
                arrays[f"users_col_{s.name}.npy"] = self.users_.column(s.name)
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
            payloads[name] = buf.getvalue()
            (out / name).write_bytes(payloads[name])
        manifest = {
            "format_version": FORMAT_VERSION,
            "class": "mlsys.recsys.TwoTowerModel",
            "config": asdict(self.config),
            "space": self.space.to_dict(),
            "user_specs": [s.to_dict() for s in self.net_.user_features.specs],
            "item_specs": [s.to_dict() for s in self.item_specs_],
            "has_user_table": self.users_ is not None,
            "cold_offset": float(self.cold_offset_),
            "report": self.report_.to_dict() if hasattr(self, "report_") else None,
            "checksums": {k: hashlib.sha256(v).hexdigest() for k, v in payloads.items()},
        }
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, device: str = "cpu") -> TwoTowerModel:
        """Load a model written by :meth:`save`, verifying format version, class, checksums and space.

        The weights load on ``device`` (default the CPU, whatever device trained the model); the
        stored config keeps the device it was trained with.
        """
        from safetensors.torch import load as load_safetensors

        dev = resolve_device(device)
        base = Path(path)
        try:
            manifest = json.loads((base / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:  # RecursionError: nested too deep
            raise CorruptFileError(f"cannot read {base / 'manifest.json'}: {str(exc)[:200]}") from None
        if not isinstance(manifest, dict):
            raise CorruptFileError(
                f"{base / 'manifest.json'} must hold a JSON object, got {type(manifest).__name__}"
            )
        if manifest.get("format_version") != FORMAT_VERSION:
            raise FormatVersionError(
                f"{base} has format_version {manifest.get('format_version')!r}, expected {FORMAT_VERSION}"
            )
        if manifest.get("class") != "mlsys.recsys.TwoTowerModel":
            raise CorruptFileError(
                f"{base} holds {manifest.get('class')!r}, expected 'mlsys.recsys.TwoTowerModel'"
            )
        checksums = manifest.get("checksums")
        required = ("config", "user_specs", "item_specs", "has_user_table")
        if (
            not isinstance(checksums, dict)
            or not all(isinstance(n, str) and isinstance(d, str) for n, d in checksums.items())
            or any(Path(n).name != n for n in checksums)
            or any(k not in manifest for k in required)
        ):
            raise CorruptFileError(
                f"{base / 'manifest.json'} is malformed: expected 'checksums' (file name -> sha256) "
                f"and the keys {list(required)}"
            )
        blobs: dict[str, bytes] = {}
        for name, digest in checksums.items():
            p = base / name
            if not p.is_file():
                raise CorruptFileError(f"{p} is missing (listed in the manifest)")
            data = p.read_bytes()
            if hashlib.sha256(data).hexdigest() != digest:
                raise CorruptFileError(f"{p} fails its sha256 checksum; the file is corrupt or was modified")
            blobs[name] = data

        def arr(name: str) -> np.ndarray:
            return np.load(io.BytesIO(blobs[name]), allow_pickle=False)

        try:  # the manifest passed its checks, but a field of the wrong shape is still a corrupt file
            cfg = TwoTowerConfig.from_dict(manifest["config"])
            user_specs = [FeatureSpec(**s) for s in manifest["user_specs"]]
            item_specs = [FeatureSpec(**s) for s in manifest["item_specs"]]
            item_vocab = IdIndex(arr("item_vocab.npy"))
            user_vocab = IdIndex(arr("user_vocab.npy"))
            indices = arr("history_indices.npy")
            hist = sp.csr_matrix(
                (np.ones(indices.shape[0], np.float32), indices, arr("history_indptr.npy")),
                shape=(len(user_vocab), len(item_vocab)),
            )
            users = None
            if manifest["has_user_table"]:
                users = FeatureTable(
                    arr("users_ids.npy"),
                    {s.name: arr(f"users_col_{s.name}.npy") for s in user_specs},
                    user_specs,
                )
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptFileError(
                f"{base}: malformed model files ({type(exc).__name__}: {str(exc)[:200]})"
            ) from None
        nets = []
        for i in range(cfg.members):
            if _weights_file(i) not in blobs:
                raise CorruptFileError(f"{base}: {_weights_file(i)} is not listed ({cfg.members} members)")
            net = _TwoTowerNet(cfg, user_specs, item_specs, len(user_vocab), len(item_vocab))
            try:
                net.load_state_dict(load_safetensors(blobs[_weights_file(i)]))
            except RuntimeError as exc:
                raise CorruptFileError(
                    f"{base}: weights do not match the manifest's architecture: {exc}"
                ) from exc
            net.eval()
            net.to(dev)
            nets.append(net)
        model = cls(cfg)
        model.net_ = nets[0]
        model.extra_nets_ = nets[1:]
        model.device_ = dev
        model.item_vocab_ = item_vocab
        model.user_vocab_ = user_vocab
        model.history_ = hist
        model.users_ = users
        model.item_specs_ = tuple(item_specs)
        offset = manifest.get("cold_offset", 0.0)
        if isinstance(offset, bool) or not isinstance(offset, (int, float)) or not np.isfinite(offset):
            raise CorruptFileError(f"{base}: cold_offset must be a finite number, got {offset!r}")
        model.cold_offset_ = float(offset)
        if manifest.get("report") is not None:
            model.report_ = TwoTowerReport.from_dict(manifest["report"])
        model.space = model._make_space()
        expected = EmbeddingSpace.from_dict(manifest["space"])
        expected.check_same(model.space, what="the loaded weights")
        return model
