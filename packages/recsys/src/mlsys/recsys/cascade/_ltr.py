"""A learned ranking stage over retrieval candidates: LightGBM learning-to-rank on out-of-fold features.

:class:`LearnedRanker` retrieves candidates from several sources (EASE, ItemKNN with a per-target
neighbourhood, implicit ALS when installed, popularity; by default merged from EASE, ItemKNN, ALS
and popularity) and re-ranks them with a LightGBM ranking model (``rank_xendcg`` by default,
``lambdarank`` or ``binary`` on request) that also reads RP3beta, user-kNN, sequence co-occurrence
and time-localised popularity scores. It never sees a test split: everything it learns comes from
the training interactions passed to :meth:`~LearnedRanker.fit`.

On MovieLens-100K (warm protocol, seeds 0/1/2) it reaches NDCG@10 0.4731 / 0.4671 / 0.4642 against
EASE's 0.4529 / 0.4513 / 0.4551 (``benchmarks/recsys/README.md``; 0.4686 / 0.4612 / 0.4597 before
ALS's confidence and penalty were chosen on the first fold, like EASE's ``l2``). Fitting refits every source
``n_folds * n_models`` times (plus ``n_folds`` for the inner holdout of ``serving="auto"``): dense
item-item and user-user matrices, so it suits catalogues and user bases of up to a few tens of
thousands; cross-fitted serving keeps ``n_folds`` sets of sources in memory and featurises each
candidate ``n_folds`` times.

How it is trained (the ways out of the failure in ``FINDINGS.md``, "a learned re-ranker over
retrievers' scores can lose to its best retriever"):

1. Each user's distinct training items are dealt into ``n_folds`` folds (seeded). For each fold,
   the sources are fit on the training interactions *minus* that fold; candidates are retrieved for
   the users with items in the fold, and a candidate's label is 1 when it is one of those items.
   Every training interaction is a label exactly once, and the ranker learns from sources fit on
   ``(n_folds - 1) / n_folds`` of the data, as close as k-fold gets to the serving sources (fit on
   all of it).
2. Source features are given raw *and* scale-free (per-user rank, z-score, ratio to the user's best
   score), so that the shift of score scales between fold and full fits does not move the ranker.
3. Features the sources do not encode: item popularity and its share inside the user's active time
   window, item first/last/mean event time relative to the user, co-occurrence with the user's last
   items, history length, genre overlap and entropy, release-year bucket, popularity in the user's
   demographic bucket.
4. EASE's ``l2`` is chosen on the first fold (``ease_l2=None``) and scaled by the ratio of full to
   fold events when the serving sources are fit.
5. The booster is early-stopped on NDCG@10 of a held-out *group* split of the validation users (no
   user in both), then optionally refit on every group with the chosen number of rounds;
   ``n_models`` boosters on independent fold dealings are averaged.
6. Cross-fitted serving (``serving="folds"``): the model scores a candidate with each fold's
   sources, fit on the training split minus that fold exactly as in training (the user's training
   items masked), and averages over the folds, so it never reads features from a regime it was not
   trained in (sources fit on all the data score differently: more events per item, longer user
   histories). ``serving="auto"`` (the default) decides between that and the full-data sources on
   an inner holdout of the training data, since with few folds or short histories the fold sources
   can miss too much.
7. The heavy model: LightGBM or a torch MLP over the same features (listwise softmax loss), or a
   blend of both; ``model="auto"`` fits the inner holdout's ranker once with both and keeps the
   one that ranks the holdout better, together with the serving mode.

:meth:`LearnedRanker.candidates` and :meth:`LearnedRanker.score_candidates` are the two halves for
a cascade; :meth:`~mlsys.recsys.Recommender.recommend` runs both (non-candidates rank after every
candidate, in EASE order).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from mlsys.common.errors import InvalidInputError, NotFittedError
from mlsys.common.limits import check_result_size
from mlsys.common.persist import atomic_directory
from mlsys.common.validation import as_ids, check_k
from mlsys.recsys._base import Recommender, top_k
from mlsys.recsys._data import FeatureSpec, FeatureTable, IdIndex, Interactions
from mlsys.recsys.cascade._features import (
    ALS_DEFAULT_ALPHA,
    ALS_DEFAULT_REGULARIZATION,
    Signals,
    SignalSettings,
    ease_weights,
    fit_als,
)

__all__ = ["LearnedRanker", "LearnedRankerConfig"]

_CLASS = "mlsys.recsys.cascade.LearnedRanker"
_FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, 2)  # 1: before cross-fitted serving; read as serving="full"

_SOURCES = ("ease", "knn", "als", "pop", "seq", "tpop", "rp3", "uknn")
_OBJECTIVES = ("lambdarank", "rank_xendcg", "binary")
_MODELS = ("auto", "lightgbm", "mlp", "blend")
_SERVING = ("auto", "folds", "full")


def _check_int(value: object, name: str, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidInputError(f"{name} must be an int >= {low}, got {value!r}")


def _check_pos(value: object, name: str) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value <= 0:  # type: ignore[operator]
        raise InvalidInputError(f"{name} must be a finite number > 0, got {value!r}")


@dataclass(frozen=True)
class LearnedRankerConfig:
    """Configuration of :class:`LearnedRanker` (validated on construction).

    Attributes:
        n_candidates: candidates retrieved per user and re-ranked.
        candidate_mix: ``(source, weight)`` pairs; candidates are merged by ``rank / weight`` over
            the sources (a weight-2 source contributes twice as deep as a weight-1 source).
            Sources: ``"ease"``, ``"knn"``, ``"als"`` (skipped when ``als_factors=0``), ``"pop"``.
        n_folds: folds of each user's training items that produce the ranker's training data (>= 2).
        ease_l2: EASE's regularisation; ``None`` chooses it from ``ease_l2_grid`` on the first fold.
        ease_l2_grid: candidates for ``ease_l2``.
        scale_l2: multiply the chosen ``l2`` by (full events / fold events) for the serving EASE.
        knn_neighbors: ItemKNN keeps this many source items per target item.
        als_factors: implicit ALS factors (0 disables ALS; needs the ``implicit`` package).
        als_iterations: ALS iterations.
        als_alpha, als_regularization: ALS's confidence weight (``1 + alpha * x``) and L2 penalty;
            ``None`` chooses it on the first fold, like ``ease_l2``, from ``als_alpha_grid`` x
            ``als_regularization_grid`` (the pair whose ALS ranks the held-out fold best by
            NDCG@10). With ``scale_l2`` the serving ALS's penalty is scaled like EASE's. On
            MovieLens-100K implicit's defaults (alpha 1, regularization 0.01) rank a validation fold
            at 0.159 NDCG@10 and the chosen pair at about 0.20 (``benchmarks/recsys/README.md``).
        als_alpha_grid, als_regularization_grid: candidates for ``als_alpha`` / ``als_regularization``.
        recent_items: the "last items" of a user for co-occurrence features.
        time_bins: quantile bins of training timestamps for the time-window features.
        item_genre_feature: multi-hot item column for genre features (ignored when absent).
        item_year_feature: categorical item column used as a release-year feature (ignored when absent).
        user_features: categorical user columns forming the demographic bucket (ignored when absent).
        early_stopping_fraction: share of validation users held out (as whole groups) for early stopping.
        refit: after early stopping, refit on every group with the best number of rounds.
        objective: LightGBM objective: ``"lambdarank"`` (LambdaMART), ``"rank_xendcg"`` (listwise
            cross-entropy NDCG surrogate) or ``"binary"`` (pointwise).
        model: the heavy model: ``"lightgbm"`` (default, the field's standard), ``"mlp"`` (a torch
            MLP over the same features with a listwise softmax loss), ``"blend"`` (both; their
            per-user z-scored scores mixed with the weight from ``blend_grid`` that maximises
            NDCG@10 on the early-stopping users) or ``"auto"`` (``"lightgbm"`` or ``"mlp"``,
            whichever ranks the inner 80/20 holdout of the training data better, measured with the
            same one-model ranker that chooses ``serving``, fit once with both models; ties:
            ``"lightgbm"``; about a fifth more fitting time). What it resolved to is ``model_``,
            reported in ``validation_``. On MovieLens-100K the two models are within noise of each
            other and ``"auto"`` did not help (``benchmarks/recsys/README.md``).
        mlp_hidden, mlp_layers, mlp_dropout, mlp_lr, mlp_epochs, mlp_patience, mlp_batch_groups: the
            MLP's width, hidden layers, dropout, Adam learning rate, maximum epochs (early-stopped on
            the early-stopping users' NDCG@10 with ``mlp_patience`` epochs of patience) and groups
            (users of a fold) per step.
        blend_grid: candidate weights of the LightGBM scores in ``"blend"`` (the MLP gets 1 - w).
        n_models: boosters trained on independent fold dealings (own early-stopping split and
            seed); their scores are averaged.
        serving: which sources the ranking model reads when it scores candidates. ``"folds"``
            (cross-fitted serving): the ``n_folds`` sources of the first dealing, each fit on the
            training split minus one fold exactly as the model was trained, the user's training
            items masked; the model's scores are averaged over the folds. ``"full"``: the sources
            refit on the whole training split (one featurisation, ``n_folds`` times cheaper to
            score, but the model reads features from a regime it was not trained in). ``"auto"``
            (default) chooses between the two on the training data: a ranker with one booster is
            fit on a per-user random 80% of the training interactions and both modes rank the other
            20%; the higher NDCG@10 wins (ties: ``"full"``). That costs about a third more fitting
            time; the choice and both figures are in ``validation_``. Candidates are retrieved by
            the full-data sources in every mode.
        monotone: constrain the ranker to be non-decreasing in every collaborative source's score,
            z-score and ratio and non-increasing in its rank (``ease``, ``knn``, ``als``, ``seq``).
        n_dealings: fold dealings pooled into each booster's training data (more groups per
            booster; the early-stopping split stays by user, so no user is on both sides).
        num_leaves, learning_rate, min_data_in_leaf, feature_fraction, lambda_l2, max_rounds, early_stopping_rounds: LightGBM
            LambdaMART parameters.
        num_threads: LightGBM / ALS threads; ``-1`` uses every core. Same ``num_threads`` and seed,
            same model; a different thread count may move scores in the last digits.
        batch_size: users featurised at once when serving.
        seed: folds, the early-stopping split, ALS and LightGBM.

    Example:
        >>> LearnedRankerConfig(n_candidates=100).n_folds
        10
    """

    n_candidates: int = 50
    candidate_mix: tuple[tuple[str, float], ...] = (("ease", 2.0), ("knn", 1.0), ("als", 1.0), ("pop", 0.5))
    n_folds: int = 10
    ease_l2: float | None = None
    ease_l2_grid: tuple[float, ...] = (100.0, 200.0, 300.0, 500.0, 800.0)
    scale_l2: bool = True
    knn_neighbors: int = 100
    als_factors: int = 64
    als_iterations: int = 15
    als_alpha: float | None = None
    als_regularization: float | None = None
    als_alpha_grid: tuple[float, ...] = (1.0, 3.0, 8.0, 20.0)
    als_regularization_grid: tuple[float, ...] = (0.01, 1.0, 5.0, 20.0, 50.0, 200.0)
    recent_items: int = 5
    seq_window: int = 10
    time_bins: int = 256
    item_genre_feature: str | None = "genres"
    item_year_feature: str | None = "year"
    user_features: tuple[str, ...] = ("age", "gender")
    early_stopping_fraction: float = 0.2
    refit: bool = True
    objective: str = "rank_xendcg"
    n_models: int = 3
    n_dealings: int = 1
    serving: str = "auto"
    monotone: bool = False
    model: str = "lightgbm"
    mlp_hidden: int = 128
    mlp_layers: int = 2
    mlp_dropout: float = 0.1
    mlp_lr: float = 1e-3
    mlp_epochs: int = 40
    mlp_patience: int = 4
    mlp_batch_groups: int = 128
    blend_grid: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    num_leaves: int = 31
    learning_rate: float = 0.05
    min_data_in_leaf: int = 50
    feature_fraction: float = 0.8
    lambda_l2: float = 1.0
    max_rounds: int = 1000
    early_stopping_rounds: int = 50
    num_threads: int = -1
    batch_size: int = 512
    seed: int = 0
    extra_params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_int(self.n_candidates, "n_candidates", 1)
        check_k(self.n_candidates, name="n_candidates")
        _check_int(self.n_folds, "n_folds", 2)
        _check_int(self.n_models, "n_models", 1)
        _check_int(self.n_dealings, "n_dealings", 1)
        if self.objective not in _OBJECTIVES:
            raise InvalidInputError(f"objective must be one of {_OBJECTIVES}, got {self.objective!r}")
        if self.model not in _MODELS:
            raise InvalidInputError(f"model must be one of {_MODELS}, got {self.model!r}")
        if self.serving not in _SERVING:
            raise InvalidInputError(f"serving must be one of {_SERVING}, got {self.serving!r}")
        for name in ("mlp_hidden", "mlp_layers", "mlp_epochs", "mlp_patience", "mlp_batch_groups"):
            _check_int(getattr(self, name), name, 1)
        _check_pos(self.mlp_lr, "mlp_lr")
        d = self.mlp_dropout
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0.0 <= d < 1.0:
            raise InvalidInputError(f"mlp_dropout must be in [0, 1), got {d!r}")
        if not self.blend_grid or any(
            isinstance(w, bool) or not isinstance(w, (int, float)) or not 0.0 <= w <= 1.0
            for w in self.blend_grid
        ):
            raise InvalidInputError(
                f"blend_grid must be non-empty weights in [0, 1], got {self.blend_grid!r}"
            )
        _check_int(self.knn_neighbors, "knn_neighbors", 1)
        _check_int(self.als_factors, "als_factors", 0)
        _check_int(self.als_iterations, "als_iterations", 1)
        _check_int(self.recent_items, "recent_items", 1)
        _check_int(self.seq_window, "seq_window", 1)
        _check_int(self.time_bins, "time_bins", 1)
        _check_int(self.num_leaves, "num_leaves", 2)
        _check_int(self.min_data_in_leaf, "min_data_in_leaf", 1)
        _check_int(self.max_rounds, "max_rounds", 1)
        _check_int(self.early_stopping_rounds, "early_stopping_rounds", 1)
        _check_int(self.batch_size, "batch_size", 1)
        _check_int(self.seed, "seed", 0)
        if (
            isinstance(self.num_threads, bool)
            or not isinstance(self.num_threads, int)
            or not (self.num_threads == -1 or self.num_threads >= 1)
        ):
            raise InvalidInputError(f"num_threads must be -1 or an int >= 1, got {self.num_threads!r}")
        if self.ease_l2 is not None:
            _check_pos(self.ease_l2, "ease_l2")
        if not self.ease_l2_grid:
            raise InvalidInputError("ease_l2_grid is empty; expected at least one l2 value")
        for v in self.ease_l2_grid:
            _check_pos(v, "ease_l2_grid value")
        for name in ("als_alpha", "als_regularization"):
            if getattr(self, name) is not None:
                _check_pos(getattr(self, name), name)
            grid = getattr(self, name + "_grid")
            if not isinstance(grid, tuple) or not grid:
                raise InvalidInputError(
                    f"{name}_grid must be a non-empty tuple of positive numbers, got {grid!r}"
                )
            for v in grid:
                _check_pos(v, f"{name}_grid value")
        for name in ("learning_rate", "feature_fraction"):
            _check_pos(getattr(self, name), name)
        if self.feature_fraction > 1.0:
            raise InvalidInputError(f"feature_fraction must be in (0, 1], got {self.feature_fraction!r}")
        if not (isinstance(self.lambda_l2, (int, float)) and self.lambda_l2 >= 0):
            raise InvalidInputError(f"lambda_l2 must be >= 0, got {self.lambda_l2!r}")
        f = self.early_stopping_fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.0 < f < 1.0:
            raise InvalidInputError(f"early_stopping_fraction must be in (0, 1), got {f!r}")
        if not self.candidate_mix:
            raise InvalidInputError("candidate_mix is empty; expected (source, weight) pairs")
        seen: set[str] = set()
        for pair in self.candidate_mix:
            if not (isinstance(pair, tuple) and len(pair) == 2):
                raise InvalidInputError(f"candidate_mix entries must be (source, weight), got {pair!r}")
            src, w = pair
            if src not in _SOURCES:
                raise InvalidInputError(f"unknown candidate source {src!r}; expected one of {_SOURCES}")
            if src in seen:
                raise InvalidInputError(f"candidate source {src!r} appears twice in candidate_mix")
            seen.add(src)
            _check_pos(w, f"candidate_mix weight of {src!r}")
        if not isinstance(self.user_features, tuple):
            raise InvalidInputError(f"user_features must be a tuple of names, got {self.user_features!r}")

    def threads(self) -> int:
        """The effective thread count (``-1`` resolved to the number of cores)."""
        return (os.cpu_count() or 1) if self.num_threads == -1 else self.num_threads


def _to_json(value: Any) -> Any:
    """JSON form of a config or report: numpy scalars as numbers, tuples as lists, and a dict with
    non-string keys as ``{"__pairs__": [[key, value], ...]}`` so that :func:`_from_json` restores it."""
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: _to_json(v) for k, v in value.items()}
        return {"__pairs__": [[_to_json(k), _to_json(v)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return _to_json(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__pairs__"}:
            return {_from_json(k): _from_json(v) for k, v in value["__pairs__"]}
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def _config_from_json(data: Any) -> LearnedRankerConfig:
    """A :class:`LearnedRankerConfig` from its JSON form (lists back to the tuples the fields hold)."""
    if not isinstance(data, dict):
        raise TypeError(f"config must be a JSON object, got {type(data).__name__}")
    known = {f.name for f in fields(LearnedRankerConfig)}
    if set(data) - known:
        raise ValueError(f"unknown config fields {sorted(set(data) - known)}")
    kw = dict(_from_json(data))
    for name in ("ease_l2_grid", "als_alpha_grid", "als_regularization_grid", "user_features", "blend_grid"):
        if name in kw:
            kw[name] = tuple(kw[name])
    if "candidate_mix" in kw:
        kw["candidate_mix"] = tuple(tuple(p) for p in kw["candidate_mix"])
    return LearnedRankerConfig(**kw)


def _monotone(names: list[str]) -> list[int]:
    """+1 for collaborative sources' scores, z-scores and ratios, -1 for their ranks, 0 elsewhere."""
    out = []
    for n in names:
        src, _, kind = n.rpartition("_")
        if src in ("ease", "knn", "als", "seq", "rp3", "uknn"):
            out.append(-1 if kind == "rank" else 1)
        else:
            out.append(0)
    return out


def _z(x: np.ndarray, valid: npt.NDArray[np.bool_] | None = None) -> np.ndarray:
    """Per-row (last axis) z-scores over the ``valid`` entries (all when ``None``); a constant row
    becomes zeros, invalid entries are 0."""
    x = np.asarray(x, np.float64)
    m = np.ones(x.shape, bool) if valid is None else valid
    n = np.maximum(m.sum(axis=-1, keepdims=True), 1)
    xm = np.where(m, x, 0.0)
    mu = xm.sum(axis=-1, keepdims=True) / n
    sd = np.sqrt((np.where(m, x - mu, 0.0) ** 2).sum(axis=-1, keepdims=True) / n)
    return np.where(m, (x - mu) / np.where(sd > 0, sd, 1.0), 0.0)


def _ndcg_at(
    ranked: npt.NDArray[np.int64], targets: list[np.ndarray], k: int = 10
) -> npt.NDArray[np.float64]:
    """Binary NDCG@k of ranked item positions against each row's target positions."""
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    out = np.zeros(ranked.shape[0])
    for r, t in enumerate(targets):
        if t.size == 0:
            continue
        hits = np.isin(ranked[r, :k], t)
        out[r] = float((hits * disc[: hits.shape[0]]).sum() / disc[: min(t.size, k)].sum())
    return out


@dataclass
class _TrainingData:
    """Out-of-fold ranking data: one entry per (fold, user) group."""

    feats: list[npt.NDArray[np.float32]]
    labels: list[npt.NDArray[np.float32]]
    groups: list[int]
    g_users: list[int]
    n_targets: list[int]
    names: list[str]


class _MLPPrep:
    """Standardise features with the training rows' mean/std; NaN/inf -> 0 plus a missing indicator."""

    def __init__(self, mean: np.ndarray, std: np.ndarray, missing: np.ndarray) -> None:
        self.mean, self.std, self.missing = mean, std, missing

    def __call__(self, x: np.ndarray) -> np.ndarray:
        bad = ~np.isfinite(x)
        z = (np.where(bad, self.mean, x) - self.mean) / self.std
        return np.concatenate([z, bad[:, self.missing].astype(np.float32)], axis=1).astype(np.float32)


def _mlp_net(n_in: int, hidden: int, layers: int, dropout: float) -> Any:
    from torch import nn

    mods: list[Any] = []
    width = n_in
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
        width = hidden
    mods.append(nn.Linear(width, 1))
    return nn.Sequential(*mods)


class _MLPScorer:
    """A fitted MLP ranker with LightGBM's ``predict(x, num_threads=)`` shape of call."""

    def __init__(self, net: Any, prep: _MLPPrep) -> None:
        self.net, self.prep = net, prep

    def predict(self, x: np.ndarray, num_threads: int = 1, **_: Any) -> np.ndarray:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(num_threads)
        try:
            with torch.no_grad():
                return self.net(torch.from_numpy(self.prep(np.asarray(x, np.float32)))).squeeze(-1).numpy()
        finally:
            torch.set_num_threads(threads)


class LearnedRanker(Recommender):
    """LambdaMART over multi-source retrieval candidates, trained on out-of-fold features (module docs).

    A :class:`~mlsys.recsys.Recommender`: ``fit(train, catalogue=, users=, items=)``, then
    ``recommend`` / ``score`` / :func:`~mlsys.recsys.evaluate_recommender` as any model; and the
    cascade halves :meth:`candidates` and :meth:`score_candidates`. Needs ``lightgbm``
    (``pip install 'mlsys-recsys[ltr]'``); ALS features need ``implicit`` (else set
    ``als_factors=0``). :meth:`save` / :meth:`load` persist a fitted ranker (no pickle).

    Learned state: ``booster_`` (the LightGBM model), ``feature_names_``, ``ease_l2_`` (serving
    ``l2``), ``als_alpha_`` / ``als_regularization_`` / ``fold_als_regularization_`` (ALS's
    confidence weight and its serving and fold penalties), ``validation_`` (what was measured on the validation folds), ``training_targets_``
    (the labelled (user, item) pairs it learned from: all of them training interactions),
    ``serving_`` (``"folds"`` or ``"full"``, what ``config.serving`` resolved to), ``model_``
    (``"lightgbm"``, ``"mlp"`` or ``"blend"``, what ``config.model`` resolved to) and
    ``fold_signals_`` (the fold sources scoring reads when ``serving_ == "folds"``).

    Example:
        >>> from mlsys.recsys import synthetic_dataset
        >>> ds = synthetic_dataset(n_users=60, n_items=40, per_user=10, seed=0)
        >>> cfg = LearnedRankerConfig(n_candidates=20, n_folds=2, ease_l2=10.0, als_factors=0,
        ...                           max_rounds=20, min_data_in_leaf=5, n_models=1, num_threads=1)
        >>> ranker = LearnedRanker(cfg).fit(ds.interactions, users=ds.users, items=ds.items)
        >>> ids, per_source = ranker.candidates([1, 2], 5)
        >>> ids.shape, sorted(per_source)
        ((2, 5), ['ease', 'knn', 'pop', 'rp3', 'seq', 'tpop', 'uknn'])
        >>> float(ranker.score_candidates([1], [[ids[0, 0], -1]])[0, 1])
        -inf
        >>> ranker.recommend([1], 3)[0].shape
        (1, 3)
    """

    def __init__(self, config: LearnedRankerConfig | None = None) -> None:
        if config is not None and not isinstance(config, LearnedRankerConfig):
            raise InvalidInputError(f"config must be a LearnedRankerConfig, got {type(config).__name__}")
        self.config = config or LearnedRankerConfig()
        self.name = "learned_ranker"

    # -- fitting ---------------------------------------------------------------------------------
    def fit(
        self,
        train: Interactions,
        *,
        catalogue: npt.ArrayLike | None = None,
        users: FeatureTable | None = None,
        items: FeatureTable | None = None,
    ) -> LearnedRanker:
        """Fit sources, out-of-fold ranking data and the booster(s) on ``train`` only (module docs).

        ``users``/``items`` feature tables add demographic, genre and release-year features when
        they hold the configured columns (others are ignored). Raises
        :class:`~mlsys.common.errors.MissingDependencyError` without lightgbm (or implicit with
        ``als_factors > 0``) and :class:`~mlsys.common.errors.InvalidInputError` when too few users
        have items to hold out.
        """
        super().fit(train, catalogue=catalogue, users=users, items=items)
        return self

    def _settings(self, l2: float, als_reg: float) -> SignalSettings:
        c = self.config
        return SignalSettings(
            ease_l2=float(l2),
            knn_neighbors=c.knn_neighbors,
            als_factors=c.als_factors,
            als_iterations=c.als_iterations,
            als_regularization=float(als_reg),
            als_alpha=float(self.als_alpha_),
            recent_items=c.recent_items,
            seq_window=c.seq_window,
            time_bins=c.time_bins,
            item_genre_feature=c.item_genre_feature,
            item_year_feature=c.item_year_feature,
            user_features=c.user_features,
            seed=c.seed,
            num_threads=c.threads(),
        )

    @staticmethod
    def _events(
        train: Interactions, user_index: IdIndex, item_index: IdIndex
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        u = user_index.positions(train.users, missing="mask")
        i = item_index.positions(train.items, missing="mask")
        keep = (u >= 0) & (i >= 0)
        return u[keep], i[keep], train.timestamps[keep].astype(np.float64)

    @staticmethod
    def _user_ts(
        events: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]], n_users: int
    ) -> npt.NDArray[np.float64]:
        u, _, ts = events
        out = np.zeros((n_users, 3))
        if ts.size == 0:
            return out
        order = np.lexsort((ts, u))
        us, tss = u[order], ts[order]
        start = np.r_[0, np.flatnonzero(np.diff(us)) + 1]
        stop = np.r_[start[1:], us.shape[0]]
        rows = us[start]
        out[:, :] = float(np.median(ts))
        out[rows, 0] = tss[start]
        out[rows, 1] = tss[stop - 1]
        out[rows, 2] = tss[(start + stop - 1) // 2]
        return out

    def _signals(
        self,
        events: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]],
        shape: tuple[int, int],
        l2: float,
        edges: npt.NDArray[np.float64],
        user_index: IdIndex,
        item_index: IdIndex,
        users: FeatureTable | None,
        items: FeatureTable | None,
        als: tuple[np.ndarray, np.ndarray] | None = None,
        *,
        als_reg: float,
    ) -> Signals:
        u, i, _ = events
        x = sp.csr_matrix((np.ones(u.shape[0], np.float32), (u, i)), shape=shape)
        x.sum_duplicates()
        x.data[:] = 1.0
        x.sort_indices()
        return Signals(
            x, self._user_ts(events, shape[0]), events, user_index, item_index, users, items,
            self._settings(l2, als_reg), edges, als=als,
        )  # fmt: skip

    def _fit(
        self,
        train: Interactions,
        seen: sp.csr_matrix,
        user_index: IdIndex,
        item_index: IdIndex,
        *,
        users: FeatureTable | None,
        items: FeatureTable | None,
    ) -> None:
        from mlsys.common._optional import import_optional

        c = self.config
        if c.model != "mlp":
            import_optional("lightgbm", package="lightgbm", extra="mlsys-recsys[ltr]")
        if c.als_factors > 0:
            import_optional("implicit", package="implicit")
        serving, model = c.serving, c.model
        serving_report: dict[str, Any] = {}
        if serving == "auto" or model == "auto":
            serving, model, serving_report = self._choose_serving(train, item_index, users, items)
        events = self._events(train, user_index, item_index)
        shape = (len(user_index), len(item_index))
        ts = events[2]
        edges = (
            np.unique(np.quantile(ts, np.linspace(0, 1, c.time_bins + 1)[1:-1])) if ts.size else np.zeros(0)
        )

        # 1. deal each user's distinct items into folds (seeded; users with one item never validate)
        row_of = np.repeat(np.arange(shape[0]), np.diff(seen.indptr))
        event_pair = self._event_pairs(events, seen)
        n_deal = c.n_models * c.n_dealings
        folds = [self._deal_folds(seen, c.n_folds, np.random.default_rng([c.seed, m])) for m in range(n_deal)]

        if np.unique(row_of[folds[0] >= 0]).shape[0] < 2:
            raise InvalidInputError(
                "too little training data for the learned ranker: need at least 2 users with 2 or more "
                "distinct training items (one to hold out, one to keep)"
            )

        # 2. choose EASE's l2 and ALS's (alpha, regularization) on fold 0 of the first dealing
        grid_scores: dict[float, float] = {}
        als_scores: dict[tuple[float, float], float] = {}
        fold_of = folds[0]
        ev_fold = fold_of[event_pair]
        tune_als = c.als_factors > 0 and (c.als_alpha is None or c.als_regularization is None)
        fold_l2 = float(c.ease_l2) if c.ease_l2 is not None else 0.0
        alpha = float(c.als_alpha) if c.als_alpha is not None else ALS_DEFAULT_ALPHA
        fold_reg = (
            float(c.als_regularization) if c.als_regularization is not None else ALS_DEFAULT_REGULARIZATION
        )
        if c.ease_l2 is None or tune_als:
            keep = ev_fold != 0
            x0 = sp.csr_matrix(
                (np.ones(int(keep.sum()), np.float32), (events[0][keep], events[1][keep])), shape=shape
            )
            x0.sum_duplicates()
            x0.data[:] = 1.0
            val_users = np.unique(row_of[fold_of == 0])
            targets = [seen.indices[seen.indptr[r] : seen.indptr[r + 1]][fold_of[seen.indptr[r] : seen.indptr[r + 1]] == 0] for r in val_users]  # fmt: skip
            xu = x0[val_users]
            coo = xu.tocoo()

            def fold_ndcg(sc: np.ndarray) -> float:
                sc = np.asarray(sc, dtype=np.float32)
                sc[coo.row, coo.col] = -np.inf
                top = np.argsort(-sc, axis=1, kind="stable")[:, :10]
                return float(_ndcg_at(top, targets).mean())

            if c.ease_l2 is None:
                for l2 in c.ease_l2_grid:
                    grid_scores[float(l2)] = fold_ndcg(xu @ ease_weights(x0, float(l2)))
                fold_l2 = max(grid_scores, key=lambda k: (grid_scores[k], -k))
            if tune_als:
                alphas = c.als_alpha_grid if c.als_alpha is None else (c.als_alpha,)
                regs = c.als_regularization_grid if c.als_regularization is None else (c.als_regularization,)
                for a_ in alphas:
                    for r_ in regs:
                        uf, itf = fit_als(
                            x0, c.als_factors, c.als_iterations, float(r_), float(a_), c.seed, c.threads()
                        )
                        als_scores[(float(a_), float(r_))] = fold_ndcg(uf[val_users] @ itf.T)
                # ties: the smaller alpha, then the larger penalty (the smoother model)
                alpha, fold_reg = max(als_scores, key=lambda k: (als_scores[k], -k[0], k[1]))
        n_fold_events = float(np.mean([(ev_fold != f).sum() for f in range(c.n_folds)]))
        scale = ts.shape[0] / n_fold_events if c.scale_l2 and n_fold_events > 0 else 1.0
        serve_l2 = fold_l2 * scale
        serve_reg = fold_reg * scale
        self.als_alpha_ = alpha
        self.fold_als_regularization_ = fold_reg
        self.als_regularization_ = serve_reg

        # 3. per dealing: out-of-fold features and labels, then one booster
        boosters, infos = [], []
        mlps: list[_MLPScorer] = []
        mlp_infos: list[dict[str, Any]] = []
        blend_scores: dict[float, list[float]] = {}
        recalls: list[float] = []
        names: list[str] = []
        tgt_u: list[np.ndarray] = []
        tgt_i: list[np.ndarray] = []
        feats, labels, groups, g_users, n_targets = [], [], [], [], []
        fold_signals: list[Signals] = []
        for d, fold_of in enumerate(folds):
            m = d // c.n_dealings
            ev_fold = fold_of[event_pair]
            for f in range(c.n_folds):
                keep = ev_fold != f
                sub = (events[0][keep], events[1][keep], events[2][keep])
                sig = self._signals(
                    sub, shape, fold_l2, edges, user_index, item_index, users, items, als_reg=fold_reg
                )
                if d == 0 and serving == "folds":
                    fold_signals.append(sig)  # cross-fitted serving reads these
                names = sig.feature_names()
                vu = np.unique(row_of[fold_of == f])
                for s0 in range(0, vu.shape[0], c.batch_size):
                    upos = vu[s0 : s0 + c.batch_size]
                    scores = sig.source_scores(upos)
                    cand = self._merge(scores, c.n_candidates)
                    x = sig.features(upos, cand, scores)
                    for r, up in enumerate(upos):
                        lo, hi = seen.indptr[up], seen.indptr[up + 1]
                        t = seen.indices[lo:hi][fold_of[lo:hi] == f]
                        valid = cand[r] >= 0
                        y = np.isin(cand[r][valid], t).astype(np.float32)
                        if d == 0:
                            tgt_u.append(np.full(t.shape[0], up))
                            tgt_i.append(t)
                            recalls.append(float(y.sum() / max(t.size, 1)))
                        feats.append(x[r][valid])
                        labels.append(y)
                        groups.append(int(valid.sum()))
                        n_targets.append(int(t.size))
                        g_users.append(int(up))
            if (d + 1) % c.n_dealings:
                continue  # pool the next dealing's groups into the same booster
            td = _TrainingData(feats, labels, groups, g_users, n_targets, names)
            if model in ("lightgbm", "blend"):
                booster, info_m = self._train_booster(td, m)
                boosters.append(booster)
                infos.append(info_m)
            if model in ("mlp", "blend"):
                net, info_n = self._train_mlp(td, m)
                mlps.append(net)
                mlp_infos.append(info_n)
            if model == "blend":
                es_groups = info_m["_es_groups"]
                for w in c.blend_grid:
                    mixed = [
                        w * _z(a) + (1.0 - w) * _z(b) for a, b in zip(info_m["_es_pred"], info_n["_es_pred"])
                    ]
                    blend_scores.setdefault(float(w), []).append(self._es_ndcg(td, es_groups, mixed))
            if m == 0:
                self._training_data = td  # kept for inspection and for refitting the booster alone
            del td
            feats, labels, groups, g_users, n_targets = [], [], [], [], []
        self.feature_names_ = names
        self.boosters_ = boosters
        self.mlps_ = mlps
        self.booster_ = boosters[0] if boosters else mlps[0]
        self.fold_l2_ = fold_l2
        self.ease_l2_ = float(serve_l2)
        tu, ti = np.concatenate(tgt_u), np.concatenate(tgt_i)
        self.training_targets_ = Interactions(users=user_index.ids[tu], items=item_index.ids[ti])
        info: dict[str, Any] = {}
        if infos:
            info.update({k: float(np.mean([i[k] for i in infos])) if k.startswith("ndcg") else infos[0][k] for k in infos[0] if not k.startswith("_")})  # fmt: skip
            info["best_iteration"] = [i["best_iteration"] for i in infos]
        if mlp_infos:
            info["ndcg@10_mlp"] = float(np.mean([i["ndcg@10_mlp"] for i in mlp_infos]))
            info["mlp_best_epoch"] = [i["best_epoch"] for i in mlp_infos]
            info["mlp_curve"] = mlp_infos[0]["curve"]
            if not infos:
                info.update({k: mlp_infos[0][k] for k in ("n_groups", "early_stopping_users")})
                info["ndcg@10_ease"] = float(np.mean([i["ndcg@10_ease"] for i in mlp_infos]))
                info["ndcg@10_ranker"] = info["ndcg@10_mlp"]
        self.blend_weight_: float | None = None
        if blend_scores:
            means = {w: float(np.mean(v)) for w, v in blend_scores.items()}
            self.blend_weight_ = max(means, key=lambda w: (means[w], w))  # ties: more LightGBM
            info["blend_grid_ndcg@10"] = means
            info["blend_weight"] = self.blend_weight_
            info["ndcg@10_lightgbm"] = info["ndcg@10_ranker"]
            info["ndcg@10_ranker"] = means[self.blend_weight_]
        self.serving_ = serving
        self.validation_ = {
            **serving_report,
            "ease_l2_grid_ndcg@10": grid_scores,
            "fold_l2": fold_l2,
            "serve_l2": float(serve_l2),
            "als_grid_ndcg@10": {
                f"alpha={a_:g},regularization={r_:g}": v for (a_, r_), v in als_scores.items()
            },
            "als_alpha": alpha,
            "fold_als_regularization": fold_reg,
            "serve_als_regularization": float(serve_reg),
            "candidate_recall": float(np.mean(recalls)),
            **info,
        }
        # 5. serving sources on the full training data (candidates; features when serving="full")
        self.signals_ = self._signals(
            events, shape, serve_l2, edges, user_index, item_index, users, items, als_reg=serve_reg
        )
        self.fold_signals_ = fold_signals
        self.serve_fold_of_ = folds[0] if fold_signals else np.zeros(0, dtype=np.int64)

    def _choose_serving(
        self, train: Interactions, item_index: IdIndex, users: FeatureTable | None, items: FeatureTable | None
    ) -> tuple[str, str, dict[str, Any]]:
        """``serving="auto"`` / ``model="auto"``: every open combination of serving mode and model,
        ranked by a one-model ranker on an inner 80/20 holdout of ``train``; returns the best
        ``(serving, model)`` and the figures. With ``model="auto"`` the inner ranker is fit once
        with both models (``"blend"``) and each is measured alone (blend weight 1 or 0: the same
        order as that model's scores). Ties go to ``"full"`` and ``"lightgbm"`` (the cheaper)."""
        from mlsys.recsys._evaluation import evaluate_recommender
        from mlsys.recsys._splits import random_holdout

        c = self.config
        servings = ["full", "folds"] if c.serving == "auto" else [c.serving]
        models = ["lightgbm", "mlp"] if c.model == "auto" else [c.model]
        inner_split = random_holdout(train, train_fraction=0.8, seed=c.seed)
        fit_model = "blend" if c.model == "auto" else c.model
        inner_serving = "folds" if "folds" in servings else "full"  # "full" keeps no fold sources
        inner = LearnedRanker(replace(c, serving=inner_serving, model=fit_model, n_models=1))
        try:
            inner.fit(inner_split.train, catalogue=item_index.ids, users=users, items=items)
        except InvalidInputError as exc:  # too little data to hold anything out twice
            serving, model = servings[0], models[0]
            return serving, model, {
                "serving": serving, "model": model, "serving_reason": f"inner holdout not possible ({exc})"
            }  # fmt: skip
        fold_signals = inner.fold_signals_
        got: dict[str, float] = {}
        for serving in servings:
            inner.fold_signals_ = fold_signals if serving == "folds" else []
            for model in models:
                if c.model == "auto":
                    inner.blend_weight_ = 1.0 if model == "lightgbm" else 0.0
                ndcg = evaluate_recommender(inner, inner_split, ks=(10,)).metrics["ndcg@10"]
                got[f"{serving}/{model}"] = float(ndcg)
        best = max(got, key=lambda k: got[k])  # first maximum: full before folds, lightgbm before mlp
        serving, model = best.split("/")
        report: dict[str, Any] = {"serving": serving, "model": model, "inner_ndcg@10": got}
        if c.serving == "auto":
            report["serving_ndcg@10"] = {
                s: max(v for k, v in got.items() if k.startswith(s + "/")) for s in servings
            }
        return serving, model, report

    def _rebuild_fold_signals(
        self,
        events: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]],
        seen: sp.csr_matrix,
        fold_of: npt.NDArray[np.int64],
        edges: npt.NDArray[np.float64],
        users: FeatureTable | None,
        items: FeatureTable | None,
        als: list[tuple[np.ndarray, np.ndarray] | None],
    ) -> list[Signals]:
        """The serving fold sources of a loaded ranker: what ``_fit`` built for dealing 0."""
        shape = seen.shape
        ev_fold = fold_of[self._event_pairs(events, seen)]
        out = []
        for f in range(self.config.n_folds):
            keep = ev_fold != f
            sub = (events[0][keep], events[1][keep], events[2][keep])
            out.append(
                self._signals(
                    sub,
                    shape,
                    self.fold_l2_,
                    edges,
                    self.user_index_,
                    self.item_index_,
                    users,
                    items,
                    als=als[f],
                    als_reg=self.fold_als_regularization_,
                )
            )
        return out

    @staticmethod
    def _event_pairs(
        events: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]],
        seen: sp.csr_matrix,
    ) -> npt.NDArray[np.int64]:
        """Position of each event's (user, item) pair among ``seen``'s stored pairs (what a fold labels)."""
        n_items = seen.shape[1]
        row_of = np.repeat(np.arange(seen.shape[0]), np.diff(seen.indptr))
        key_pairs = row_of * n_items + seen.indices  # sorted: CSR rows, sorted columns
        return np.searchsorted(key_pairs, events[0] * n_items + events[1]).astype(np.int64)

    @staticmethod
    def _deal_folds(seen: sp.csr_matrix, n_folds: int, rng: np.random.Generator) -> npt.NDArray[np.int64]:
        """Fold of each stored (user, item) pair of ``seen``: a seeded round-robin over each user's items."""
        fold_of = np.full(seen.nnz, -1, dtype=np.int64)
        for r in range(seen.shape[0]):
            a, b = seen.indptr[r], seen.indptr[r + 1]
            if b - a >= 2:
                fold_of[a:b] = np.arange(b - a)[rng.permutation(b - a)] % n_folds
        return fold_of

    def _es_split(
        self, td: _TrainingData, model: int
    ) -> tuple[
        npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_], npt.NDArray[np.bool_], int
    ]:
        """Group split of the validation users for early stopping: ``(train groups, early-stopping
        groups, is_es per group, has a positive per group, number of early-stopping users)``."""
        c = self.config
        g_users_arr = np.asarray(td.g_users)
        has_pos = np.array([lab.sum() > 0 for lab in td.labels])
        uniq = np.unique(g_users_arr[has_pos]) if has_pos.any() else np.zeros(0, np.int64)
        if uniq.shape[0] < 2:
            raise InvalidInputError(
                "too little training data for the learned ranker: need at least 2 users with a held-out "
                f"training item among their candidates, got {uniq.shape[0]}; use more interactions per "
                "user or more candidates"
            )
        es_rng = np.random.default_rng([c.seed, 1, model])
        n_es = max(1, round(c.early_stopping_fraction * uniq.shape[0]))
        es_users = es_rng.choice(uniq, size=min(n_es, max(uniq.shape[0] - 1, 1)), replace=False)
        is_es = np.isin(g_users_arr, es_users)
        tr_idx = np.flatnonzero(~is_es & has_pos)
        es_idx = np.flatnonzero(is_es & has_pos)
        if tr_idx.size == 0 or es_idx.size == 0:
            raise InvalidInputError(
                "too little training data for the learned ranker: need validation users with held-out "
                f"items among their candidates in both the training and early-stopping groups (got "
                f"{tr_idx.size} and {es_idx.size} groups); use more interactions or more candidates"
            )
        return tr_idx, es_idx, is_es, has_pos, int(es_users.shape[0])

    @staticmethod
    def _es_ndcg(td: _TrainingData, groups: npt.NDArray[np.int64], preds: list[np.ndarray]) -> float:
        """Mean NDCG@10 over ``groups`` of ``preds`` (IDCG over every held-out item of the group)."""
        disc = 1.0 / np.log2(np.arange(2, 12))
        out = []
        for j, sc in zip(groups, preds):
            lab, n_pos_all = td.labels[j], td.n_targets[j]
            order = np.argsort(-sc, kind="stable")[:10]
            dcg = float((lab[order] * disc[: order.shape[0]]).sum())
            idcg = float(disc[: min(max(n_pos_all, 1), 10)].sum())
            out.append(dcg / idcg if n_pos_all > 0 else 0.0)
        return float(np.mean(out)) if out else 0.0

    def _train_booster(self, td: _TrainingData, model: int = 0) -> tuple[Any, dict[str, Any]]:
        """Early-stop LambdaMART on a group split of the validation users, optionally refit on all."""
        from mlsys.common._optional import import_optional

        lgb = import_optional("lightgbm", package="lightgbm", extra="mlsys-recsys[ltr]")
        c = self.config
        group_sizes = np.asarray(td.groups)
        tr_idx, es_idx, is_es, has_pos, n_es_users = self._es_split(td, model)

        def stack(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            return (
                np.concatenate([td.feats[j] for j in idx]),
                np.concatenate([td.labels[j] for j in idx]),
                group_sizes[idx],
            )

        params = {
            "objective": c.objective,
            "metric": "ndcg",
            "eval_at": [10],
            "lambdarank_truncation_level": 20,
            "num_leaves": c.num_leaves,
            "learning_rate": c.learning_rate,
            "min_data_in_leaf": c.min_data_in_leaf,
            "feature_fraction": c.feature_fraction,
            "lambda_l2": c.lambda_l2,
            "num_threads": c.threads(),
            "seed": c.seed + model,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
            **({"monotone_constraints": _monotone(td.names)} if c.monotone else {}),
            **c.extra_params,
        }
        xt, yt, gt = stack(tr_idx)
        xe, ye, ge = stack(es_idx)
        dtrain = lgb.Dataset(xt, yt, group=gt, feature_name=td.names, free_raw_data=True)
        deval = lgb.Dataset(xe, ye, group=ge, reference=dtrain)
        booster = lgb.train(
            params,
            dtrain,
            num_boost_round=c.max_rounds,
            valid_sets=[deval],
            callbacks=[lgb.early_stopping(c.early_stopping_rounds, verbose=False)],
        )
        best = int(booster.best_iteration or c.max_rounds)
        # validation NDCG@10 (early-stopping groups; IDCG over every held-out item of the group)
        es_groups = np.flatnonzero(is_es)
        es_pred = [np.asarray(booster.predict(td.feats[j], num_iteration=best, num_threads=c.threads())) for j in es_groups]  # fmt: skip
        ease_col = td.names.index("ease_score")
        if c.refit:
            xa, ya, ga = stack(np.flatnonzero(has_pos))
            booster = lgb.train(params | {"metric": "None"}, lgb.Dataset(xa, ya, group=ga, feature_name=td.names),
                                num_boost_round=best)  # fmt: skip
        info = {
            "best_iteration": best,
            "n_groups": int(has_pos.sum()),
            "n_rows": int(group_sizes.sum()),
            "early_stopping_users": n_es_users,
            "ndcg@10_ranker": self._es_ndcg(td, es_groups, es_pred),
            "ndcg@10_ease": self._es_ndcg(td, es_groups, [td.feats[j][:, ease_col] for j in es_groups]),
            "_es_groups": es_groups,
            "_es_pred": es_pred,
        }
        return booster, info

    def _train_mlp(self, td: _TrainingData, model: int = 0) -> tuple[_MLPScorer, dict[str, Any]]:
        """A torch MLP over the same features: listwise softmax cross-entropy per group (ListNet with
        one-hot relevance), Adam, early-stopped on the early-stopping users' NDCG@10 (best epoch kept)."""
        import torch

        c = self.config
        tr_idx, _, is_es, has_pos, n_es_users = self._es_split(td, model)
        es_groups = np.flatnonzero(is_es)
        xt = np.concatenate([td.feats[j] for j in tr_idx])
        mean = np.nanmean(np.where(np.isfinite(xt), xt, np.nan), axis=0)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        std = np.nanstd(np.where(np.isfinite(xt), xt, np.nan), axis=0)
        std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
        missing = np.flatnonzero(~np.isfinite(xt).all(axis=0))  # columns that get a missing indicator
        del xt
        prep = _MLPPrep(mean.astype(np.float32), std.astype(np.float32), missing.astype(np.int64))
        width = max(td.groups[j] for j in tr_idx)
        n_in = len(td.names) + missing.shape[0]

        def padded(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            x = np.zeros((idx.shape[0], width, n_in), np.float32)
            y = np.zeros((idx.shape[0], width), np.float32)
            m = np.zeros((idx.shape[0], width), bool)
            for r, j in enumerate(idx):
                g = td.groups[j]
                x[r, :g] = prep(td.feats[j])
                y[r, :g] = td.labels[j]
                m[r, :g] = True
            return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(m)

        xs, ys, ms = padded(tr_idx)
        es_x = [torch.from_numpy(prep(td.feats[j])) for j in es_groups]
        threads = torch.get_num_threads()
        torch.set_num_threads(c.threads())
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(c.seed * 1000 + model)
                net = _mlp_net(n_in, c.mlp_hidden, c.mlp_layers, c.mlp_dropout)
                opt = torch.optim.Adam(net.parameters(), lr=c.mlp_lr)
                gen = torch.Generator().manual_seed(c.seed * 1000 + model)
                best, best_state, best_epoch, stale, curve = -1.0, None, 0, 0, []
                for epoch in range(c.mlp_epochs):
                    net.train()
                    perm = torch.randperm(xs.shape[0], generator=gen)
                    for b0 in range(0, xs.shape[0], c.mlp_batch_groups):
                        rows = perm[b0 : b0 + c.mlp_batch_groups]
                        s = net(xs[rows]).squeeze(-1).masked_fill(~ms[rows], -1e9)
                        y = ys[rows]
                        loss = -(y * torch.log_softmax(s, dim=1)).sum(1) / y.sum(1).clamp_min(1.0)
                        opt.zero_grad()
                        loss.mean().backward()
                        opt.step()
                    net.eval()
                    with torch.no_grad():
                        preds = [net(x).squeeze(-1).numpy() for x in es_x]
                    score = self._es_ndcg(td, es_groups, preds)
                    curve.append(score)
                    if score > best:
                        best, best_epoch, stale = score, epoch + 1, 0
                        best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                        best_preds = preds
                    else:
                        stale += 1
                        if stale >= c.mlp_patience:
                            break
                assert best_state is not None
                net.load_state_dict(best_state)
                net.eval()
        finally:
            torch.set_num_threads(threads)
        ease_col = td.names.index("ease_score")
        info = {
            "best_epoch": best_epoch,
            "n_groups": int(has_pos.sum()),
            "early_stopping_users": n_es_users,
            "ndcg@10_mlp": best,
            "ndcg@10_ease": self._es_ndcg(td, es_groups, [td.feats[j][:, ease_col] for j in es_groups]),
            "curve": curve,
            "_es_groups": es_groups,
            "_es_pred": best_preds,
        }
        return _MLPScorer(net, prep), info

    # -- the cascade halves ----------------------------------------------------------------------
    def _merge(self, scores: dict[str, npt.NDArray[np.float32]], n: int) -> npt.NDArray[np.int64]:
        """Candidate positions ``(b, n)`` merged over sources by ``rank / weight``; ``-1`` pads."""
        mix = [(s, w) for s, w in self.config.candidate_mix if s in scores]
        b, m = next(iter(scores.values())).shape
        prio = np.full((b, m), np.inf)
        for j, (s, w) in enumerate(mix):
            order = np.argsort(-scores[s], axis=1, kind="stable")
            rank = np.empty((b, m))
            rank[np.arange(b)[:, None], order] = np.arange(m)[None, :]
            p = rank / w + j * 1e-6
            p[~np.isfinite(scores[s])] = np.inf
            prio = np.minimum(prio, p)
        kk = min(n, m)
        pos = np.argsort(prio, axis=1, kind="stable")[:, :kk]
        bad = ~np.isfinite(np.take_along_axis(prio, pos, axis=1))
        pos = np.where(bad, -1, pos)
        if kk < n:
            pos = np.pad(pos, ((0, 0), (0, n - kk)), constant_values=-1)
        return pos.astype(np.int64)

    @property
    def model_(self) -> str:
        """What ``config.model`` resolved to: ``"lightgbm"``, ``"mlp"`` or ``"blend"`` (the kinds of
        model trained for serving)."""
        self._check_ready()
        if not self.boosters_:
            return "mlp"
        return "blend" if self.mlps_ else "lightgbm"

    def _check_ready(self) -> None:
        self._check_fitted()
        if not hasattr(self, "booster_"):
            raise NotFittedError("LearnedRanker is not fitted; call fit(train) first")

    def source(self, name: str) -> _SourceRecommender:
        """One of the fitted retrieval sources (``signals_.sources``: ``"ease"``, ``"knn"``, ...) as a
        retrieval source with the recommender contract (``recommend(users, k)``, training items
        excluded), e.g. for a :class:`~mlsys.recsys.cascade.RetrievalStage` or to evaluate it alone.

        Raises:
            NotFittedError: before ``fit``. InvalidInputError: an unknown source name.
        """
        self._check_ready()
        if name not in self.signals_.sources:
            raise InvalidInputError(f"unknown source {name!r}; this ranker has {list(self.signals_.sources)}")
        return _SourceRecommender(self, name)

    def candidates(
        self, users: npt.ArrayLike, n: int
    ) -> tuple[npt.NDArray[np.int64], dict[str, npt.NDArray[np.float32]]]:
        """Retrieve ``n`` candidates per user (training items excluded), merged over the sources.

        Returns:
            ``ids (n_users, n)`` int64 padded with ``-1``, and ``{source: scores (n_users, n)}``
            float32 (each source's raw score of each candidate; ``-inf`` at padding).

        Raises:
            UnknownIdError: a user not seen at fit.
        """
        self._check_ready()
        n = check_k(n, name="n")
        ids = as_ids(users, name="users")
        check_result_size(ids.shape[0], n)
        upos = self.user_index_.positions(ids)
        out_ids = np.full((ids.shape[0], n), -1, dtype=np.int64)
        per: dict[str, npt.NDArray[np.float32]] = {
            s: np.full((ids.shape[0], n), -np.inf, np.float32) for s in self.signals_.sources
        }
        cat = self.item_index_.ids
        for s0 in range(0, ids.shape[0], self.config.batch_size):
            up = upos[s0 : s0 + self.config.batch_size]
            scores = self.signals_.source_scores(up)
            cand = self._merge(scores, n)
            rows = slice(s0, s0 + up.shape[0])
            out_ids[rows] = np.where(cand >= 0, cat[np.maximum(cand, 0)], -1)
            for s, v in scores.items():
                g = np.take_along_axis(v, np.maximum(cand, 0), axis=1)
                per[s][rows] = np.where(cand >= 0, g, -np.inf)
        return out_ids, per

    def score_candidates(self, users: npt.ArrayLike, item_ids: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Ranker scores ``(n_users, C)`` float32 of candidate ``item_ids (n_users, C)``; ``-1`` scores ``-inf``.

        Raises:
            UnknownIdError: a user not seen at fit, or an item id outside the catalogue.
            InvalidInputError: ``item_ids`` is not an int ``(n_users, C)`` array.
        """
        self._check_ready()
        ids = as_ids(users, name="users")
        upos = self.user_index_.positions(ids)
        arr = np.asarray(item_ids)
        if arr.ndim != 2 or arr.shape[0] != ids.shape[0]:
            raise InvalidInputError(f"item_ids must have shape (n_users={ids.shape[0]}, C), got {arr.shape}")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise InvalidInputError(f"item_ids must be integers, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
        pad = arr == -1
        cand = np.full(arr.shape, -1, dtype=np.int64)
        if (~pad).any():
            cand[~pad] = self.item_index_.positions(arr[~pad])  # raises UnknownIdError
        return self._score_positions(upos, cand)

    def _score_positions(
        self, upos: npt.NDArray[np.int64], cand: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float32]:
        out = np.full(cand.shape, -np.inf, dtype=np.float32)
        if cand.shape[1] == 0:
            return out
        bs = self.config.batch_size
        folds = self.fold_signals_
        for s0 in range(0, upos.shape[0], bs):
            up, cd = upos[s0 : s0 + bs], cand[s0 : s0 + bs]
            valid = cd >= 0
            if folds:
                # cross-fitted: each fold's sources as in training, all the user's training items masked
                seen = self.signals_.x[up]
                pred: npt.NDArray[Any] = np.zeros(cd.shape, dtype=np.float64)
                for fs in folds:
                    pred += self._predict(fs.features(up, cd, fs.source_scores(up, seen)), valid)
                pred /= len(folds)
            else:
                pred = self._predict(self.signals_.features(up, cd), valid)
            out[s0 : s0 + bs] = np.where(valid, pred, -np.inf)
        return out

    def _predict(self, x: np.ndarray, valid: npt.NDArray[np.bool_]) -> npt.NDArray[np.float32]:
        """Model scores ``(b, C)`` of features ``(b, C, F)``: the boosters' mean, the MLPs' mean, or
        their blend (each model's scores z-scored per user over the valid candidates)."""
        t = self.config.threads()
        flat = x.reshape(-1, x.shape[2])

        def mean_of(models: list[Any]) -> np.ndarray:
            preds = [np.asarray(m.predict(flat, num_threads=t), np.float64) for m in models]
            return np.mean(preds, axis=0).reshape(valid.shape)

        if not self.mlps_:
            return mean_of(self.boosters_).astype(np.float32)
        if not self.boosters_:
            return mean_of(self.mlps_).astype(np.float32)
        w = float(self.blend_weight_ if self.blend_weight_ is not None else 0.5)
        a, b = mean_of(self.boosters_), mean_of(self.mlps_)
        return (w * _z(a, valid) + (1.0 - w) * _z(b, valid)).astype(np.float32)

    def _score(self, user_ids: npt.NDArray[np.int64], positions: npt.NDArray[np.int64]) -> np.ndarray:
        self._check_ready()
        n_items = len(self.item_index_)
        out = np.empty((positions.shape[0], n_items), dtype=np.float32)
        bs = self.config.batch_size
        for s0 in range(0, positions.shape[0], bs):
            up = positions[s0 : s0 + bs]
            scores = self.signals_.source_scores(up)
            cand = self._merge(scores, self.config.n_candidates)
            pred = self._score_positions(up, cand)
            # non-candidates rank after every candidate, in EASE order
            ease = scores["ease"]
            order = np.argsort(-ease, axis=1, kind="stable")
            rank = np.empty(ease.shape, dtype=np.float32)
            rank[np.arange(up.shape[0])[:, None], order] = np.arange(n_items, dtype=np.float32)[None, :]
            finite = np.where(np.isfinite(pred), pred, np.inf)
            floor = np.minimum(finite.min(axis=1, keepdims=True), 0.0) - 1.0
            block = floor - rank / max(n_items, 1)
            rows = np.arange(up.shape[0])[:, None]
            ok = cand >= 0
            block[np.broadcast_to(rows, cand.shape)[ok], cand[ok]] = pred[ok]
            out[s0 : s0 + bs] = block
        return out

    def feature_importance(self, kind: str = "gain") -> dict[str, float]:
        """Feature importances of the LightGBM model (``"gain"`` or ``"split"``), largest first, summing to 1."""
        self._check_ready()
        if kind not in ("gain", "split"):
            raise InvalidInputError(f"kind must be 'gain' or 'split', got {kind!r}")
        if not self.boosters_:
            raise InvalidInputError(
                "feature importances exist for LightGBM models only (this ranker is an MLP)"
            )
        imp = np.asarray(self.boosters_[0].feature_importance(importance_type=kind), dtype=np.float64)
        total = imp.sum() or 1.0
        pairs = sorted(zip(self.feature_names_, imp / total), key=lambda p: -p[1])
        return {k: float(v) for k, v in pairs}

    # -- persistence ------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the fitted ranker to a directory (``manifest.json``, ``state.npz``, LightGBM text
        models, safetensors MLP weights; nothing pickled), replacing an earlier save at ``path``.

        What is stored: the config, the id maps and training matrix, the training events and the
        feature-table columns the features read, the ALS factors, the ranking models, the
        validation report and a probe (the scores of a few users' candidates). :meth:`load`
        rebuilds the closed-form sources (EASE, ItemKNN, RP3beta, user-kNN, co-occurrence, time and
        genre statistics) from the stored events and checks the probe, so a loaded ranker scores
        exactly as the saved one. The out-of-fold training data (``_training_data``) is not saved.

        Raises:
            NotFittedError: before ``fit``.
        """
        self._check_ready()
        from mlsys.common.persist import write_manifest

        sig = self.signals_
        arrays: dict[str, np.ndarray] = {
            "user_ids": self.user_index_.ids,
            "item_ids": self.item_index_.ids,
            "seen_indptr": self.seen_.indptr.astype(np.int64),
            "seen_indices": self.seen_.indices.astype(np.int64),
            "seen_data": np.asarray(self.seen_.data),
            "event_users": sig.events[0],
            "event_items": sig.events[1],
            "event_ts": sig.events[2],
            "time_edges": sig.edges,
            "target_users": self.training_targets_.users,
            "target_items": self.training_targets_.items,
        }
        if sig.als is not None:
            arrays["als_users"], arrays["als_items"] = sig.als
        arrays["serve_fold_of"] = self.serve_fold_of_
        for f, fs in enumerate(self.fold_signals_):
            if fs.als is not None:
                arrays[f"als_users_fold{f}"], arrays[f"als_items_fold{f}"] = fs.als
        tables: dict[str, Any] = {}
        for key, table, names in (
            ("users", sig.users, self.config.user_features),
            ("items", sig.items, (self.config.item_genre_feature, self.config.item_year_feature)),
        ):
            if table is None:
                continue
            specs = [s for s in table.specs if s.name in names]
            arrays[f"{key}_ids"] = table.ids
            for spec in specs:
                arrays[f"{key}_col_{spec.name}"] = table.column(spec.name)
            tables[key] = [spec.to_dict() for spec in specs]
        for m, mlp in enumerate(self.mlps_):
            arrays[f"mlp{m}_mean"] = mlp.prep.mean
            arrays[f"mlp{m}_std"] = mlp.prep.std
            arrays[f"mlp{m}_missing"] = mlp.prep.missing
        probe_users, probe_items = self._probe()
        arrays["probe_users"], arrays["probe_items"] = probe_users, probe_items
        arrays["probe_scores"] = self.score_candidates(probe_users, probe_items)
        with atomic_directory(path) as d:
            savez: Any = np.savez  # (the stub's **kwds overlap its allow_pickle keyword)
            savez(
                d / "state.npz", allow_pickle=False, **{k: np.ascontiguousarray(v) for k, v in arrays.items()}
            )
            files = ["state.npz"]
            for m, booster in enumerate(self.boosters_):
                (d / f"booster{m}.txt").write_text(booster.model_to_string(), encoding="utf-8")
                files.append(f"booster{m}.txt")
            if self.mlps_:
                from safetensors.torch import save_file

                for m, mlp in enumerate(self.mlps_):
                    state = {k: v.detach().cpu().contiguous() for k, v in mlp.net.state_dict().items()}
                    save_file(state, str(d / f"mlp{m}.safetensors"))
                    files.append(f"mlp{m}.safetensors")
            write_manifest(
                d,
                cls=_CLASS,
                format_version=_FORMAT_VERSION,
                config=_to_json(asdict(self.config)),
                files=files,
                extra={
                    "name": self.name,
                    "feature_names": list(self.feature_names_),
                    "sources": list(sig.sources),
                    "ease_l2": self.ease_l2_,
                    "fold_l2": _to_json(self.fold_l2_),
                    "als": {
                        "alpha": self.als_alpha_,
                        "fold_regularization": self.fold_als_regularization_,
                        "regularization": self.als_regularization_,
                    },
                    "blend_weight": self.blend_weight_,
                    "n_boosters": len(self.boosters_),
                    "n_mlps": len(self.mlps_),
                    "n_serving_folds": len(self.fold_signals_),
                    "serving": self.serving_,
                    "tables": tables,
                    "validation": _to_json(self.validation_),
                },
            )

    def _probe(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """A few users and their top candidates: the scores :meth:`load` must reproduce."""
        users = self.user_index_.ids[: min(8, len(self.user_index_))]
        ids, _ = self.candidates(users, min(self.config.n_candidates, 20))
        return users, ids

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LearnedRanker:
        """Load a ranker written by :meth:`save`; it ranks exactly as the saved one.

        Rebuilding the closed-form sources takes about as long as fitting them once (seconds on
        MovieLens-100K), not the minutes of the out-of-fold training.

        Raises:
            CorruptFileError: missing or altered files, another class's directory, unreadable
                payloads, or rebuilt sources that do not reproduce the saved scores (for example a
                file edited with a valid checksum, or a numerical library that computes them
                differently).
            FormatVersionError: a format version this code does not read.
            MissingDependencyError: lightgbm (or torch, for MLP rankers) is not installed.
        """
        from mlsys.common._optional import import_optional
        from mlsys.common.errors import CorruptFileError, FormatVersionError
        from mlsys.common.persist import read_manifest

        d = Path(path)
        m = read_manifest(d, cls=_CLASS)
        if m["format_version"] not in _READABLE_VERSIONS:
            raise FormatVersionError(
                f"{d}: format_version {m['format_version']!r}, this code reads {_READABLE_VERSIONS}"
            )
        try:
            config = _config_from_json(m["config"])
            if m["format_version"] == 1:  # saved before cross-fitted serving existed
                config = replace(config, serving="full")
            n_serving = int(m.get("n_serving_folds", 0))
            with np.load(d / "state.npz", allow_pickle=False) as z:
                a = {k: z[k] for k in z.files}
            n_boosters, n_mlps = int(m["n_boosters"]), int(m["n_mlps"])
            names = [str(n) for n in m["feature_names"]]
            user_index, item_index = IdIndex(a["user_ids"]), IdIndex(a["item_ids"])
            shape = (len(user_index), len(item_index))
            seen = sp.csr_matrix((a["seen_data"], a["seen_indices"], a["seen_indptr"]), shape=shape)
            events = (a["event_users"], a["event_items"], a["event_ts"])
            tables: dict[str, FeatureTable | None] = {"users": None, "items": None}
            for key, specs in dict(m["tables"]).items():
                fs = [FeatureSpec(**s) for s in specs]
                cols = {s.name: a[f"{key}_col_{s.name}"] for s in fs}
                tables[key] = FeatureTable(a[f"{key}_ids"], cols, fs)
            als = (a["als_users"], a["als_items"]) if "als_users" in a else None
            fold_als = [
                (a[f"als_users_fold{f}"], a[f"als_items_fold{f}"]) if f"als_users_fold{f}" in a else None
                for f in range(n_serving)
            ]
            serve_fold_of = a["serve_fold_of"] if n_serving else np.zeros(0, dtype=np.int64)
            if n_serving and (n_serving != config.n_folds or serve_fold_of.shape != (seen.nnz,)):
                raise ValueError(
                    f"{n_serving} serving folds and {serve_fold_of.shape} fold labels for "
                    f"n_folds={config.n_folds} and {seen.nnz} training pairs"
                )
        except (KeyError, TypeError, ValueError, OSError, InvalidInputError) as exc:
            raise CorruptFileError(
                f"{d}: unreadable ranker files ({type(exc).__name__}: {str(exc)[:200]})"
            ) from None
        boosters: list[Any] = []
        if n_boosters:
            lgb = import_optional("lightgbm", package="lightgbm", extra="mlsys-recsys[ltr]")
            for i in range(n_boosters):
                try:
                    b = lgb.Booster(model_str=(d / f"booster{i}.txt").read_text(encoding="utf-8"))
                except (OSError, ValueError, lgb.basic.LightGBMError) as exc:
                    raise CorruptFileError(f"{d}: unreadable booster{i}.txt ({str(exc)[:200]})") from None
                if b.num_feature() != len(names):
                    raise CorruptFileError(
                        f"{d}: booster{i} has {b.num_feature()} features, the manifest names {len(names)}"
                    )
                boosters.append(b)
        mlps: list[_MLPScorer] = []
        if n_mlps:
            from safetensors.torch import load_file

            for i in range(n_mlps):
                try:
                    state = load_file(str(d / f"mlp{i}.safetensors"))
                    prep = _MLPPrep(a[f"mlp{i}_mean"], a[f"mlp{i}_std"], a[f"mlp{i}_missing"])
                    net = _mlp_net(
                        int(state["0.weight"].shape[1]),
                        config.mlp_hidden,
                        config.mlp_layers,
                        config.mlp_dropout,
                    )
                    net.load_state_dict(state)
                except (OSError, KeyError, RuntimeError, ValueError) as exc:
                    raise CorruptFileError(f"{d}: unreadable mlp{i} ({str(exc)[:200]})") from None
                net.eval()
                mlps.append(_MLPScorer(net, prep))
        if not boosters and not mlps:
            raise CorruptFileError(f"{d}: the manifest lists no ranking model")
        out = cls(config)
        out.name = str(m.get("name", out.name))
        out.feature_names_ = names
        out.boosters_, out.mlps_ = boosters, mlps
        out.booster_ = boosters[0] if boosters else mlps[0]
        out.fold_l2_ = float(m["fold_l2"])
        out.ease_l2_ = float(m["ease_l2"])
        # format-2 directories written before ALS was tuned used implicit's defaults
        als_m = m.get("als") or {
            "alpha": ALS_DEFAULT_ALPHA,
            "fold_regularization": ALS_DEFAULT_REGULARIZATION,
            "regularization": ALS_DEFAULT_REGULARIZATION,
        }
        try:
            out.als_alpha_ = float(als_m["alpha"])
            out.fold_als_regularization_ = float(als_m["fold_regularization"])
            out.als_regularization_ = float(als_m["regularization"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptFileError(f"{d}: unreadable ALS settings in the manifest ({exc!r})") from None
        bw = m.get("blend_weight")
        out.blend_weight_ = None if bw is None else float(bw)
        out.validation_ = _from_json(m["validation"])
        out.training_targets_ = Interactions(users=a["target_users"], items=a["target_items"])
        out.signals_ = out._signals(
            events, shape, out.ease_l2_, a["time_edges"], user_index, item_index,
            tables["users"], tables["items"], als=als, als_reg=out.als_regularization_,
        )  # fmt: skip
        out.item_index_, out.user_index_, out.seen_ = item_index, user_index, seen
        out.serve_fold_of_ = serve_fold_of
        out.serving_ = "folds" if n_serving else "full"  # what the stored state serves with
        out.fold_signals_ = (
            out._rebuild_fold_signals(
                events, seen, serve_fold_of, a["time_edges"], tables["users"], tables["items"], fold_als
            )
            if n_serving
            else []
        )
        if list(out.signals_.sources) != [str(s) for s in m["sources"]]:
            raise CorruptFileError(
                f"{d}: rebuilt sources {out.signals_.sources} differ from the saved {m['sources']}"
            )
        got = out.score_candidates(a["probe_users"], a["probe_items"])
        if not np.allclose(got, a["probe_scores"], rtol=1e-5, atol=1e-6, equal_nan=True):
            raise CorruptFileError(
                f"{d}: the rebuilt ranker does not reproduce the saved scores (max difference "
                f"{float(np.nanmax(np.abs(np.where(np.isfinite(got), got, 0) - np.where(np.isfinite(a['probe_scores']), a['probe_scores'], 0)))):.3g}); "
                "the files were altered or the sources compute differently here"
            )
        return out

    def __repr__(self) -> str:
        return f"LearnedRanker({asdict(self.config)!r})"


class _SourceRecommender:
    """A fitted ranker's source ranked over the whole catalogue (see :meth:`LearnedRanker.source`)."""

    def __init__(self, ranker: LearnedRanker, name: str) -> None:
        self.ranker, self.name = ranker, name
        self.item_ids_ = ranker.item_ids_

    def recommend(
        self, users: Any, k: int, *, exclude_seen: bool = True, allow: npt.ArrayLike | None = None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Top-``k`` ids and scores of this source (training items always excluded; ``allow`` restricts)."""
        k = check_k(k)
        ids = as_ids(users, name="users")
        check_result_size(ids.shape[0], k)
        scores = self.ranker.signals_.source_scores(self.ranker.user_index_.positions(ids))[self.name]
        scores = np.where(np.isfinite(scores), scores, -np.inf).astype(np.float32)  # seen items are -inf
        if allow is not None:
            ok = np.zeros(scores.shape[1], dtype=bool)
            pos = self.ranker.item_index_.positions(as_ids(allow, name="allow"), missing="mask")
            ok[pos[pos >= 0]] = True
            scores[:, ~ok] = -np.inf
        p, sc = top_k(scores, k)
        return np.where(p >= 0, self.item_ids_[np.maximum(p, 0)], -1), sc
