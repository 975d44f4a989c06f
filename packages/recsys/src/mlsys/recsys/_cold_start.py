"""Features → latent factors: the cold-start baseline the literature compares against.

A factor model (implicit's ALS, EASE's low-rank part, or a :class:`~mlsys.recsys.TwoTowerModel`'s
id-aware item vectors) is fitted on the training interactions; a ridge regression then maps each
trained item's features to its latent factors, and an item without training events gets the
factors its features predict. A user's score for an item is ``user factors . item factors``, so a
brand-new item is ranked exactly as the factor model would rank an item with those features. The
ridge penalty is chosen by exact leave-one-out error over trained items (closed form from one SVD
of the design matrix; Golub, Heath & Wahba 1979), never on a test split. This is the "attribute
to latent factor mapping" of Gantner et al. (ICDM 2010).

Example:
    >>> import numpy as np
    >>> from mlsys.recsys import FeatureSpec, FeatureTable, Interactions
    >>> items = FeatureTable(np.arange(6), {"g": np.eye(3)[[0, 1, 2, 0, 1, 2]]}, [FeatureSpec("g", "multi_hot", 3)])
    >>> x = Interactions(users=[1, 1, 2, 2, 3, 3], items=[0, 3, 1, 4, 0, 3])
    >>> m = FeaturesToFactors("ease", factors=2).fit(x, catalogue=items.ids, items=items)
    >>> int(m.recommend([1], 1, allow=[2, 5])[0][0, 0]) in (2, 5), m.n_cold_
    (True, 2)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from mlsys.common._optional import import_optional
from mlsys.common.errors import InvalidInputError
from mlsys.recsys._base import Recommender
from mlsys.recsys._data import FeatureTable, IdIndex, Interactions

__all__ = ["FeaturesToFactors", "ridge_loo"]

#: Ridge penalties tried (relative to the mean squared singular value of the design matrix).
DEFAULT_L2_GRID = tuple(float(x) for x in np.logspace(-4, 2, 13))


def ridge_loo(
    design: npt.NDArray[np.float64], targets: npt.NDArray[np.float64], grid: Sequence[float] = DEFAULT_L2_GRID
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float, dict[float, float]]:
    """Multi-output ridge with an unpenalised intercept, the penalty chosen by exact leave-one-out error.

    Args:
        design: ``(n, p)`` features. targets: ``(n, d)`` outputs.
        grid: penalties as multiples of the mean squared singular value of the centred design
            (scale-free: the same grid suits any feature scaling).

    Returns:
        ``(weights (p, d), intercept (d,), penalty, {penalty: mean LOO squared error})``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(50, 3)); y = x @ np.array([[1.0], [2.0], [0.0]]) + 0.5
        >>> w, b, lam, errs = ridge_loo(x, y)
        >>> (np.round(w[:, 0], 2) + 0.0).tolist(), round(float(b[0]), 2)
        ([1.0, 2.0, 0.0], 0.5)
    """
    try:
        x = np.asarray(design, dtype=np.float64)
        y = np.asarray(targets, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidInputError(f"design and targets must be numeric 2-D arrays: {exc}") from exc
    if not isinstance(grid, (list, tuple)) or not all(
        isinstance(g, (int, float)) and not isinstance(g, bool) for g in grid
    ):
        raise InvalidInputError(f"grid must be a list or tuple of numbers, got {type(grid).__name__}")
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise InvalidInputError(
            f"design (n, p) and targets (n, d) must share n, got {getattr(x, 'shape', None)} and {getattr(y, 'shape', None)}"
        )
    if x.shape[0] < 2:
        raise InvalidInputError(f"ridge needs at least 2 rows, got {x.shape[0]}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise InvalidInputError("design and targets must be finite")
    if not grid or any(not np.isfinite(g) or g <= 0 for g in grid):
        raise InvalidInputError(f"grid must hold positive finite penalties, got {list(grid)}")
    n = x.shape[0]
    xm, ym = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - xm, y - ym
    u, s, vt = np.linalg.svd(xc, full_matrices=False)
    scale = float(np.mean(s**2)) if s.size and np.mean(s**2) > 0 else 1.0
    uty = u.T @ yc
    errors: dict[float, float] = {}
    best: tuple[float, float] | None = None
    for g in grid:
        lam = g * scale
        shrink = s**2 / (s**2 + lam)
        fitted = u @ (shrink[:, None] * uty)
        # Leave-one-out residual of a linear smoother: (y - yhat) / (1 - h_ii); the centring adds 1/n.
        h = (u**2) @ shrink + 1.0 / n
        resid = (yc - fitted) / np.maximum(1.0 - h, 1e-12)[:, None]
        err = float(np.mean(resid**2))
        errors[float(g)] = err
        if best is None or err < best[1]:
            best = (float(g), err)
    assert best is not None
    lam = best[0] * scale
    w = vt.T @ ((s / (s**2 + lam))[:, None] * uty)
    return w, ym - xm @ w, best[0], errors


class FeaturesToFactors(Recommender):
    """Cold-start baseline: item features → a factor model's item factors (ridge), as a :class:`Recommender`.

    Args:
        source: the factor model: ``"als"`` (implicit's ALS; needs the ``implicit`` package),
            ``"ease"`` (a rank-``factors`` SVD of EASE's item-item weights: user factors
            ``x_u U S``, item factors ``V``), or an unfitted :class:`~mlsys.recsys.TwoTowerModel`
            (its query vectors and id-aware item vectors; it is fitted here).
        features: item feature columns used by the regression (default: all).
        factors: latent dimension of ALS and of EASE's low-rank part.
        warm: ``"factors"`` (default) scores trained items with their own factors and only
            items without training events from their features; ``"features"`` scores every item
            from its features (the pure content → factor mapping).
        l2_grid: ridge penalties tried (see :func:`ridge_loo`).
        ease_l2, als_iterations, als_regularization, seed: the factor models' settings.

    After fit: ``l2_`` (the chosen penalty), ``loo_errors_``, ``n_cold_`` (catalogue items scored
    from features), ``user_factors_`` and ``item_factors_``. Unknown users are not served (route
    them through a :class:`~mlsys.recsys.FallbackChain`).
    """

    serves_unknown_users = False

    def __init__(
        self,
        source: Literal["als", "ease"] | Any = "als",
        *,
        features: Sequence[str] | None = None,
        factors: int = 64,
        warm: Literal["factors", "features"] = "factors",
        l2_grid: Sequence[float] = DEFAULT_L2_GRID,
        ease_l2: float = 500.0,
        als_iterations: int = 15,
        als_regularization: float = 0.01,
        seed: int = 0,
    ) -> None:
        from mlsys.recsys._two_tower import TwoTowerModel

        if not (isinstance(source, TwoTowerModel) or (isinstance(source, str) and source in ("als", "ease"))):
            raise InvalidInputError(
                f"source must be 'als', 'ease' or an unfitted TwoTowerModel, got {source!r}"
            )
        if isinstance(factors, bool) or not isinstance(factors, int) or not 1 <= factors <= 4096:
            raise InvalidInputError(f"factors must be an int in [1, 4096], got {factors!r}")
        if warm not in ("factors", "features"):
            raise InvalidInputError(f"warm must be 'factors' or 'features', got {warm!r}")
        if features is not None and (
            isinstance(features, (str, bytes)) or not all(isinstance(f, str) for f in features)
        ):
            raise InvalidInputError(f"features must be a sequence of column names or None, got {features!r}")
        grid = tuple(l2_grid) if isinstance(l2_grid, (list, tuple)) else ()
        if not grid or not all(
            isinstance(g, (int, float)) and not isinstance(g, bool) and np.isfinite(g) and g > 0 for g in grid
        ):
            raise InvalidInputError(f"l2_grid must be positive finite numbers, got {l2_grid!r}")
        for name, v in (("ease_l2", ease_l2), ("als_regularization", als_regularization)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v <= 0:
                raise InvalidInputError(f"{name} must be a finite number > 0, got {v!r}")
        if (
            isinstance(als_iterations, bool)
            or not isinstance(als_iterations, int)
            or not 1 <= als_iterations <= 1000
        ):
            raise InvalidInputError(f"als_iterations must be an int in [1, 1000], got {als_iterations!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidInputError(f"seed must be an int, got {seed!r}")
        self.source = source
        self.features = None if features is None else tuple(features)
        self.factors = factors
        self.warm = warm
        self.l2_grid = tuple(float(g) for g in grid)
        self.ease_l2 = float(ease_l2)
        self.als_iterations = als_iterations
        self.als_regularization = float(als_regularization)
        self.seed = seed
        src = source if isinstance(source, str) else "two_tower"
        self.name = f"features_to_{src}_factors"

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
        if not isinstance(items, FeatureTable):
            raise InvalidInputError(
                "FeaturesToFactors needs items=FeatureTable describing the whole catalogue"
            )
        design_all = items.rows(item_index.ids).dense(self.features).toarray().astype(np.float64)
        trained = np.asarray(seen.sum(axis=0)).ravel() > 0
        if trained.sum() < 2:
            raise InvalidInputError(
                f"FeaturesToFactors needs at least 2 catalogue items with training events, got {int(trained.sum())}"
            )
        user_f, item_f = self._factors(train, seen, trained, user_index, item_index, users, items)
        w, b, lam, errors = ridge_loo(design_all[trained], item_f, self.l2_grid)
        predicted = design_all @ w + b
        out = predicted
        if self.warm == "factors":
            out = predicted.copy()
            out[trained] = item_f
        self.user_factors_ = user_f.astype(np.float32)
        self.item_factors_ = out.astype(np.float32)
        self.l2_ = lam
        self.loo_errors_ = errors
        self.n_cold_ = int((~trained).sum())

    def _factors(
        self,
        train: Interactions,
        seen: sp.csr_matrix,
        trained: npt.NDArray[np.bool_],
        user_index: IdIndex,
        item_index: IdIndex,
        users: FeatureTable | None,
        items: FeatureTable,
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """User factors ``(n_users, d)`` and the trained items' factors ``(n_trained, d)``."""
        warm_seen = seen[:, np.flatnonzero(trained)].tocsr().astype(np.float32)
        if self.source == "als":
            als = import_optional("implicit.als", package="implicit")
            kwargs: dict[str, Any] = {
                "factors": self.factors,
                "iterations": self.als_iterations,
                "regularization": self.als_regularization,
                "random_state": self.seed,
                "num_threads": 1,
            }
            try:
                model = als.AlternatingLeastSquares(use_gpu=False, **kwargs)
            except TypeError:  # older implicit without use_gpu
                model = als.AlternatingLeastSquares(**kwargs)
            model.fit(warm_seen, show_progress=False)
            return np.asarray(model.user_factors, np.float64), np.asarray(model.item_factors, np.float64)
        if self.source == "ease":
            gram = (warm_seen.T @ warm_seen).toarray().astype(np.float64)
            gram[np.diag_indices_from(gram)] += self.ease_l2
            p = np.linalg.inv(gram)
            weights = p / (-np.diag(p))[None, :]
            weights[np.diag_indices_from(weights)] = 0.0
            u, s, vt = np.linalg.svd(weights)
            r = min(self.factors, s.shape[0])
            user_f = np.asarray(warm_seen @ (u[:, :r] * s[:r]), dtype=np.float64)
            return user_f, vt[:r].T.copy()
        from mlsys.recsys._two_tower import TwoTowerModel

        assert isinstance(self.source, TwoTowerModel)
        model = TwoTowerModel(self.source.config)  # a fresh copy: the argument stays unfitted
        model.fit(train.select(np.isin(train.items, item_index.ids[trained])), items=items, users=users)
        self.source_model_ = model
        user_f = model.encode_users(user_index.ids).astype(np.float64)
        item_f = model.encode_items(items.rows(item_index.ids[trained])).astype(np.float64)
        return user_f, item_f

    def _score(self, user_ids: npt.NDArray[np.int64], positions: npt.NDArray[np.int64]) -> np.ndarray:
        return self.user_factors_[positions] @ self.item_factors_.T
