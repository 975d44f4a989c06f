"""A learned re-ranker: LightGBM LambdaMART over :class:`RerankFeatures`, with validated hyperparameters.

Training takes candidate lists with graded labels (e.g. the hybrid retriever's top 100 for each
training query, labelled from the qrels), carves a validation slice out of *those* queries (a
seeded group split), picks the hyperparameters and the number of boosting rounds on it (early
stopping on validation nDCG@10), and refits on all training queries with the chosen setting.
Nothing about the test split is ever seen.

Persistence is a directory: ``manifest.json`` (class, format and feature versions, configuration,
feature names, the embedding spaces the features were computed in, checksums) and ``model.txt``
(LightGBM's own text format, parsed, never executed). Loading refuses a model whose sentence or
store embedding space differs from the feature extractor it is given
(:class:`~mlsys.common.errors.EmbeddingSpaceMismatchError`): its similarity features would mean
something else.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mlsys.common._optional import import_optional
from mlsys.common.errors import (
    CorruptFileError,
    EmbeddingSpaceMismatchError,
    FormatVersionError,
    InvalidInputError,
    NotFittedError,
)
from mlsys.common.spaces import EmbeddingSpace
from mlsys.rag._persist import read_manifest, write_manifest
from mlsys.rag._retrievers import Hit
from mlsys.rag.rerank._features import FEATURE_VERSION, RerankFeatures
from mlsys.rag.rerank._protocol import F32, BaseReranker, check_candidates

__all__ = ["LearnedReranker", "LearnedRerankerConfig", "labels_from_qrels"]

_FORMAT_VERSION = 1


def labels_from_qrels(candidates: Sequence[Sequence[Hit]], qrels: Sequence[Mapping[str, int]]) -> list[F32]:
    """Graded labels of candidate lists from per-query judgements ``{doc_id: relevance}``.

    Example:
        >>> labels_from_qrels([[Hit(1, 1, 0.0, doc_id="a"), Hit(2, 2, 0.0, doc_id="b")]], [{"b": 2}])[0].tolist()
        [0.0, 2.0]
    """
    if not isinstance(candidates, Sequence) or not isinstance(qrels, Sequence) or isinstance(qrels, str):
        raise InvalidInputError(
            "candidates and qrels must be sequences (one candidate list and one {doc_id: grade} per query)"
        )
    lists = [check_candidates(c, what=f"candidates[{i}]", need_text=False) for i, c in enumerate(candidates)]
    if not all(isinstance(q, Mapping) for q in qrels):
        raise InvalidInputError("each qrels row must be a mapping {doc_id: relevance}")
    if len(candidates) != len(qrels):
        raise InvalidInputError(f"got {len(qrels)} judgement rows for {len(candidates)} candidate lists")
    return [
        np.array([max(0, _grade(q.get(h.doc_id or "", 0))) for h in c], dtype=np.float32)
        for c, q in zip(lists, qrels)
    ]


def _grade(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise InvalidInputError(f"relevance grades must be ints, got {v!r}")
    return int(v)


@dataclass(frozen=True)
class LearnedRerankerConfig:
    """Training configuration; the grids are searched on the validation slice of the training queries.

    Args:
        num_leaves, min_data_in_leaf, learning_rate: hyperparameter grids (every combination tried).
        max_rounds, early_stopping_rounds: boosting rounds and patience on validation nDCG@10.
        validation_fraction: share of the training queries held out for the selection.
        feature_fraction, lambda_l2: fixed LightGBM regularisation.
        seed: split and LightGBM seed.
        num_threads: LightGBM threads (``-1``: all cores; results are deterministic either way).
    """

    num_leaves: tuple[int, ...] = (7, 15, 31)
    min_data_in_leaf: tuple[int, ...] = (20, 50)
    learning_rate: tuple[float, ...] = (0.05,)
    max_rounds: int = 600
    early_stopping_rounds: int = 60
    validation_fraction: float = 0.2
    feature_fraction: float = 0.8
    lambda_l2: float = 1.0
    seed: int = 0
    num_threads: int = -1
    extra_params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("num_leaves", "min_data_in_leaf", "learning_rate"):
            grid = tuple(getattr(self, name))
            if not grid or any(
                isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0 for v in grid
            ):
                raise InvalidInputError(f"{name} must be a non-empty tuple of positive numbers, got {grid!r}")
            object.__setattr__(self, name, grid)
        for name in ("max_rounds", "early_stopping_rounds"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InvalidInputError(f"{name} must be a positive int, got {v!r}")
        if not isinstance(self.validation_fraction, float) or not 0.0 < self.validation_fraction < 1.0:
            raise InvalidInputError(
                f"validation_fraction must be a float in (0, 1), got {self.validation_fraction!r}"
            )
        if not 0.0 < self.feature_fraction <= 1.0:
            raise InvalidInputError(f"feature_fraction must be in (0, 1], got {self.feature_fraction!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise InvalidInputError(f"seed must be a non-negative int, got {self.seed!r}")
        if (
            isinstance(self.num_threads, bool)
            or not isinstance(self.num_threads, int)
            or self.num_threads == 0
        ):
            raise InvalidInputError(f"num_threads must be -1 or a positive int, got {self.num_threads!r}")

    def threads(self) -> int:
        """The thread count LightGBM gets."""
        return os.cpu_count() or 1 if self.num_threads == -1 else self.num_threads

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        d = asdict(self)
        d["extra_params"] = dict(self.extra_params)
        return d


def _ndcg10(labels: F32, scores: npt.NDArray[np.float64]) -> float:
    order = np.argsort(-scores, kind="stable")[:10]
    disc = 1.0 / np.log2(np.arange(2, 12))
    gains = 2.0 ** labels.astype(np.float64) - 1.0
    dcg = float((gains[order] * disc[: order.shape[0]]).sum())
    ideal = np.sort(gains)[::-1][:10]
    idcg = float((ideal * disc[: ideal.shape[0]]).sum())
    return dcg / idcg if idcg > 0 else 0.0


class LearnedReranker(BaseReranker):
    """LambdaMART (LightGBM ``lambdarank``) over the features of (query, candidate) pairs.

    Args:
        features: the :class:`RerankFeatures` extractor (bound to a store and a sentence embedder).
        config: :class:`LearnedRerankerConfig`.
        top_n: candidates scored per query (the latency cut); the rest keep their order below.
        name: provenance label.

    Attributes (after :meth:`fit`): ``booster_`` (a ``lightgbm.Booster``), ``params_`` (the chosen
    hyperparameters), ``validation_`` (validation nDCG@10 of every grid point, the chosen one, the
    input order's nDCG@10 on the same slice, the number of rounds).

    Example:
        >>> from mlsys.rag import DocumentStore, HashingEmbedder
        >>> store = DocumentStore(HashingEmbedder(dim=64))
        >>> _ = store.upsert({f"d{i}": f"topic{i % 5} word{i} filler text" for i in range(40)})
        >>> feats = RerankFeatures(store, HashingEmbedder(dim=64, seed=3))
        >>> qs = [f"topic{i % 5} word{i}" for i in range(40)]
        >>> cands = store.hybrid_retriever().retrieve(qs, k=8)
        >>> labels = labels_from_qrels([c.hits for c in cands], [{f"d{i}": 1} for i in range(40)])
        >>> cfg = LearnedRerankerConfig(num_leaves=(3,), min_data_in_leaf=(5,), max_rounds=20, early_stopping_rounds=5)
        >>> rr = LearnedReranker(feats, cfg).fit(qs, [c.hits for c in cands], labels)
        >>> rr.rerank("topic2 word7", cands[7].hits, top_k=1)[0].doc_id
        'd7'
    """

    name = "learned"

    def __init__(
        self,
        features: RerankFeatures,
        config: LearnedRerankerConfig | None = None,
        *,
        top_n: int | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(top_n=top_n, name=name)
        if not isinstance(features, RerankFeatures):
            raise InvalidInputError(f"features must be a RerankFeatures, got {type(features).__name__}")
        self.features = features
        self.config = config if config is not None else LearnedRerankerConfig()
        if not isinstance(self.config, LearnedRerankerConfig):
            raise InvalidInputError(
                f"config must be a LearnedRerankerConfig, got {type(self.config).__name__}"
            )

    def __repr__(self) -> str:
        return f"LearnedReranker(top_n={self.top_n}, features={len(self.features.names)}, fitted={hasattr(self, 'booster_')})"

    # -- training ---------------------------------------------------------------------------------
    def fit(
        self, queries: Sequence[str], candidates: Sequence[Sequence[Hit]], labels: Sequence[Any]
    ) -> LearnedReranker:
        """Compute the features of every (query, candidate) and train; returns ``self``."""
        if len(queries) != len(candidates):
            raise InvalidInputError(f"got {len(candidates)} candidate lists for {len(queries)} queries")
        return self.fit_matrices(self.features.matrices(list(queries), candidates), labels)

    def fit_matrices(self, matrices: Sequence[Any], labels: Sequence[Any]) -> LearnedReranker:
        """Train from precomputed feature matrices (one ``(n_i, n_features)`` array per query).

        Raises:
            InvalidInputError: mismatched shapes, or fewer than 2 queries with a positive label in
                either the fitting or the validation slice.
        """
        lgb = import_optional("lightgbm", package="lightgbm", extra="mlsys-rag[rerank]")
        width = len(self.features.names)
        if len(matrices) != len(labels):
            raise InvalidInputError(f"got {len(labels)} label arrays for {len(matrices)} feature matrices")
        xs, ys = [], []
        for i, (m, y) in enumerate(zip(matrices, labels)):
            m = np.asarray(m, dtype=np.float32)
            y = np.asarray(y, dtype=np.float32)
            if m.ndim != 2 or m.shape[1] != width or y.shape != (m.shape[0],):
                raise InvalidInputError(
                    f"query {i}: features {m.shape} and labels {y.shape}; expected (n, {width}) and (n,)"
                )
            if y.size and (not np.isfinite(y).all() or (y < 0).any()):
                raise InvalidInputError(f"query {i}: labels must be finite and >= 0")
            xs.append(m)
            ys.append(y)
        useful = np.array([y.size > 0 and y.max() > 0 for y in ys])
        idx = np.flatnonzero(useful)
        c = self.config
        rng = np.random.default_rng(c.seed)
        perm = rng.permutation(idx)
        n_val = max(1, round(c.validation_fraction * perm.shape[0]))
        val, fit = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        if fit.shape[0] < 2 or val.shape[0] < 2:
            raise InvalidInputError(
                f"too few queries with a relevant candidate to train and validate ({idx.shape[0]}); "
                "expected at least 4 (2 for fitting, 2 for validation)"
            )

        def stack(rows: npt.NDArray[np.int64]) -> tuple[F32, F32, list[int]]:
            return (
                np.concatenate([xs[j] for j in rows]),
                np.concatenate([ys[j] for j in rows]),
                [len(ys[j]) for j in rows],
            )

        xf, yf, gf = stack(fit)
        xv, yv, gv = stack(val)
        base = {
            "objective": "lambdarank",
            "metric": "ndcg",
            "eval_at": [10],
            "feature_fraction": c.feature_fraction,
            "lambda_l2": c.lambda_l2,
            "num_threads": c.threads(),
            "seed": c.seed,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
            "label_gain": [float(2**g - 1) for g in range(32)],
            **dict(c.extra_params),
        }
        names = list(self.features.names)
        grid_scores: list[dict[str, Any]] = []
        best: tuple[float, dict[str, Any], int] | None = None
        for nl in c.num_leaves:
            for md in c.min_data_in_leaf:
                for lr in c.learning_rate:
                    params = base | {
                        "num_leaves": int(nl),
                        "min_data_in_leaf": int(md),
                        "learning_rate": float(lr),
                    }
                    dtrain = lgb.Dataset(xf, yf, group=gf, feature_name=names, free_raw_data=False)
                    dval = lgb.Dataset(xv, yv, group=gv, reference=dtrain)
                    booster = lgb.train(
                        params, dtrain, num_boost_round=c.max_rounds, valid_sets=[dval],
                        callbacks=[lgb.early_stopping(c.early_stopping_rounds, verbose=False)],
                    )  # fmt: skip
                    rounds = int(booster.best_iteration or c.max_rounds)
                    nd = float(np.mean([
                        _ndcg10(ys[j], booster.predict(xs[j], num_iteration=rounds)) for j in val
                    ]))  # fmt: skip
                    grid_scores.append({"num_leaves": int(nl), "min_data_in_leaf": int(md),
                                        "learning_rate": float(lr), "rounds": rounds, "ndcg@10": nd})  # fmt: skip
                    if best is None or nd > best[0] + 1e-12:
                        best = (nd, params, rounds)
        assert best is not None
        nd, params, rounds = best
        input_order = float(np.mean([_ndcg10(ys[j], -np.arange(len(ys[j]), dtype=np.float64)) for j in val]))
        xa, ya, ga = stack(np.sort(idx))
        final = params | {"metric": "None"}
        final.pop("eval_at", None)
        self.booster_ = lgb.train(
            final, lgb.Dataset(xa, ya, group=ga, feature_name=names), num_boost_round=rounds
        )
        self.params_ = {k: params[k] for k in ("num_leaves", "min_data_in_leaf", "learning_rate")} | {
            "rounds": rounds
        }
        self.validation_ = {
            "grid": grid_scores,
            "chosen_ndcg@10": nd,
            "input_order_ndcg@10": input_order,
            "n_fit_queries": int(fit.shape[0]),
            "n_validation_queries": int(val.shape[0]),
            "n_training_queries": int(idx.shape[0]),
            "n_rows": int(ya.shape[0]),
        }
        return self

    # -- scoring ----------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "booster_"):
            raise NotFittedError("LearnedReranker is not fitted; call fit(...) or LearnedReranker.load(...)")

    def predict_matrix(self, matrix: Any) -> F32:
        """Raw LambdaMART scores of precomputed feature rows ``(n, n_features)``."""
        self._check_fitted()
        m = np.asarray(matrix, dtype=np.float32)
        if m.ndim != 2 or m.shape[1] != len(self.features.names):
            raise InvalidInputError(f"feature matrix {m.shape}; expected (n, {len(self.features.names)})")
        if m.shape[0] == 0:
            return np.zeros(0, np.float32)
        return np.asarray(self.booster_.predict(m, num_threads=self.config.threads()), dtype=np.float32)

    def _score_batch(self, queries: list[str], candidates: list[list[Hit]]) -> list[F32]:
        self._check_fitted()
        return [self.predict_matrix(m) for m in self.features.matrices(queries, candidates)]

    # -- persistence ------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``manifest.json`` and ``model.txt`` (LightGBM text) to a directory."""
        self._check_fitted()
        d = Path(path)
        d.mkdir(parents=True, exist_ok=True)
        (d / "model.txt").write_text(self.booster_.model_to_string(), encoding="utf-8")
        write_manifest(
            d,
            cls="LearnedReranker",
            format_version=_FORMAT_VERSION,
            config=self.config.to_dict(),
            files=["model.txt"],
            extra={
                "feature_version": FEATURE_VERSION,
                "feature_names": list(self.features.names),
                "retrievers": list(self.features.retrievers),
                "sentence_space": None
                if self.features.sentence_space is None
                else self.features.sentence_space.to_dict(),
                "store_space": self.features.store.space.to_dict(),
                "params": self.params_,
                "validation": self.validation_,
                "top_n": self.top_n,
                "name": self.name,
            },
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str], features: RerankFeatures) -> LearnedReranker:
        """Load a saved re-ranker for this feature extractor.

        Raises:
            CorruptFileError: missing or modified files, another class's directory.
            FormatVersionError: a format or feature version this code does not read.
            EmbeddingSpaceMismatchError: the model was trained on features from another sentence or
                store embedding space.
            InvalidInputError: the extractor's feature names (retrievers) differ from the model's.
        """
        d = Path(path)
        m = read_manifest(d, cls="LearnedReranker")
        if m["format_version"] != _FORMAT_VERSION:
            raise FormatVersionError(
                f"{d}: format version {m['format_version']!r}, expected {_FORMAT_VERSION}"
            )
        if m.get("feature_version") != FEATURE_VERSION:
            raise FormatVersionError(
                f"{d}: features of version {m.get('feature_version')!r}, this code computes version {FEATURE_VERSION}"
            )
        if not isinstance(features, RerankFeatures):
            raise InvalidInputError(f"features must be a RerankFeatures, got {type(features).__name__}")
        for key, have, what in (
            ("sentence_space", features.sentence_space, "sentence embedder"),
            ("store_space", features.store.space, "store's dense index"),
        ):
            try:
                saved = None if m[key] is None else EmbeddingSpace.from_dict(m[key])
            except (KeyError, TypeError, ValueError) as exc:
                raise CorruptFileError(f"{d}: manifest has no valid {key} ({exc})") from exc
            if saved != have:
                raise EmbeddingSpaceMismatchError(
                    f"{d}: re-ranker trained with the {what} in {saved}, but the given features use {have}; "
                    "its similarity features would not mean the same - retrain it for this space"
                )
        if list(m.get("feature_names", [])) != list(features.names):
            raise InvalidInputError(
                f"{d}: model features {m.get('feature_names')} differ from the extractor's {list(features.names)}"
            )
        lgb = import_optional("lightgbm", package="lightgbm", extra="mlsys-rag[rerank]")
        cfg_dict = dict(m["config"])
        try:
            for k in ("num_leaves", "min_data_in_leaf", "learning_rate"):
                cfg_dict[k] = tuple(cfg_dict[k])
            config = LearnedRerankerConfig(**cfg_dict)
            booster = lgb.Booster(model_str=(d / "model.txt").read_text(encoding="utf-8"))
        except (TypeError, ValueError, KeyError, lgb.basic.LightGBMError) as exc:
            raise CorruptFileError(f"{d}: unreadable re-ranker ({exc})") from exc
        if booster.num_feature() != len(features.names):
            raise CorruptFileError(
                f"{d}: model has {booster.num_feature()} features, manifest {len(features.names)}"
            )
        out = cls(features, config, top_n=m.get("top_n"), name=m.get("name"))
        out.booster_ = booster
        out.params_ = dict(m.get("params", {}))
        out.validation_ = dict(m.get("validation", {}))
        return out
