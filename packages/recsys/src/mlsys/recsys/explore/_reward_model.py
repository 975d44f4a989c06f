"""Reward models: a Bayesian linear model per action (the posterior Thompson sampling draws
from), and cross-fitted reward predictions for the direct and doubly robust estimators."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from mlsys.common.errors import InvalidInputError, NotFittedError
from mlsys.recsys.explore._feedback import BanditFeedback, FloatArray, _is_int, _real

__all__ = ["BayesianLinearRewardModel", "cross_fit_rewards"]


def _as_context(context: Any, dim: int | None, n: int | None = None) -> FloatArray:
    c = np.asarray(context, dtype=np.float64)
    if c.ndim == 1:
        c = c[:, None]
    if c.ndim != 2:
        raise InvalidInputError(f"context must have shape (n, d), got {c.shape}")
    if n is not None and c.shape[0] != n:
        raise InvalidInputError(f"context has {c.shape[0]} rows, expected {n}")
    if dim is not None and c.shape[1] != dim:
        raise InvalidInputError(f"context has {c.shape[1]} features, expected {dim} (as at fit)")
    if not np.isfinite(c).all():
        raise InvalidInputError("context holds NaN or inf; expected finite values")
    return c


class BayesianLinearRewardModel:
    """One Bayesian linear regression per action: ``r ~ N(x . theta_a, noise_variance)``,
    ``theta_a ~ N(0, prior_variance * I)``.

    The posterior is closed-form (ridge regression with ``lambda = noise_variance / prior_variance``),
    so a refit on the whole log is exact and cheap. ``predict`` is the posterior mean,
    ``predict_std`` the posterior standard deviation of ``x . theta_a`` (what
    :class:`~mlsys.recsys.explore.LinearThompsonSampling` draws from).

    Args:
        n_actions: number of actions.
        prior_variance: variance of each coefficient a priori; ``None`` (default) sets it from the
            training data (empirical Bayes): ``var(reward) / mean(|x|^2)``, so that the prior
            predictive variance of ``x . theta`` matches the variance of the observed rewards
            rather than a constant that suits one reward scale.
        noise_variance: reward noise variance; ``None`` estimates it from the training rewards
            (``m (1 - m)`` for rewards in [0, 1] with mean ``m``, else their variance), floored at 1e-3.
        fit_intercept: append a constant feature.

    Example:
        >>> import numpy as np
        >>> m = BayesianLinearRewardModel(2).fit(np.ones((4, 1)), [0, 0, 1, 1], [1.0, 1.0, 0.0, 0.0])
        >>> m.predict(np.ones((1, 1))).round(2).tolist()
        [[0.67, 0.0]]
    """

    def __init__(
        self,
        n_actions: int,
        *,
        prior_variance: float | None = None,
        noise_variance: float | None = None,
        fit_intercept: bool = True,
    ) -> None:
        if not _is_int(n_actions) or n_actions <= 0:
            raise InvalidInputError(f"n_actions must be a positive int, got {n_actions!r}")
        inf = float("inf")
        if prior_variance is not None:
            prior_variance = _real(prior_variance, "prior_variance", 0.0, inf, lo_open=True, hi_open=True)
        if noise_variance is not None:
            noise_variance = _real(noise_variance, "noise_variance", 0.0, inf, lo_open=True, hi_open=True)
        self.n_actions = int(n_actions)
        self.prior_variance = None if prior_variance is None else float(prior_variance)
        self.noise_variance = noise_variance
        self.fit_intercept = fit_intercept

    def __repr__(self) -> str:
        return (
            f"BayesianLinearRewardModel(n_actions={self.n_actions}, prior_variance={self.prior_variance}, "
            f"noise_variance={self.noise_variance}, fit_intercept={self.fit_intercept})"
        )

    def _design(self, context: FloatArray) -> FloatArray:
        if self.fit_intercept:
            return np.hstack([context, np.ones((context.shape[0], 1))])
        return context

    def fit(
        self,
        context: Any,
        action: Any,
        reward: Any,
        *,
        sample_weight: Any | None = None,
    ) -> BayesianLinearRewardModel:
        """Posterior given ``(context, action, reward)`` rows; ``sample_weight`` (e.g. importance
        weights from :func:`~mlsys.recsys.explore.importance_weights`) scales each row's evidence."""
        a = np.asarray(action)
        if a.ndim != 1 or (a.size and not np.issubdtype(a.dtype, np.integer)):
            raise InvalidInputError(f"action must be a 1-D int array, got {a.dtype} {a.shape}")
        n = a.shape[0]
        x = self._design(_as_context(context, None, n))
        r = np.asarray(reward, dtype=np.float64)
        if r.shape != (n,) or not np.isfinite(r).all():
            raise InvalidInputError(f"reward must be {n} finite values, got shape {r.shape}")
        if n and (a.min() < 0 or a.max() >= self.n_actions):
            raise InvalidInputError(
                f"action values must be in [0, {self.n_actions}), got [{a.min()}, {a.max()}]"
            )
        w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        if w.shape != (n,) or not np.isfinite(w).all() or (w < 0).any():
            raise InvalidInputError(f"sample_weight must be {n} finite non-negative values")
        if self.noise_variance is not None:
            noise = float(self.noise_variance)
        elif n == 0:
            noise = 0.25
        else:
            m = float(np.average(r, weights=w)) if w.sum() > 0 else float(r.mean())
            noise = m * (1 - m) if r.min() >= 0 and r.max() <= 1 else float(r.var())
            noise = max(noise, 1e-3)
        d = x.shape[1]
        if self.prior_variance is not None:
            prior = self.prior_variance
        elif n == 0:
            prior = 1.0
        else:
            r_var = float(
                np.average(
                    (r - np.average(r, weights=w if w.sum() > 0 else None)) ** 2,
                    weights=w if w.sum() > 0 else None,
                )
            )
            prior = max(r_var, 1e-3) / max(float((x**2).sum(axis=1).mean()), 1e-12)
        lam = noise / prior
        precision = np.broadcast_to(lam * np.eye(d), (self.n_actions, d, d)).copy()
        b = np.zeros((self.n_actions, d))
        order = np.argsort(a, kind="stable")
        bounds = np.searchsorted(a[order], np.arange(self.n_actions + 1))
        for act in range(self.n_actions):
            rows = order[bounds[act] : bounds[act + 1]]
            if rows.size:
                xw = x[rows] * w[rows, None]
                precision[act] += xw.T @ x[rows]
                b[act] = xw.T @ r[rows]
        try:
            cov_unit = np.linalg.inv(precision)  # (A, d, d), posterior covariance / noise
        except np.linalg.LinAlgError:
            raise InvalidInputError(
                "the posterior precision is singular: prior_variance is too large for these features "
                "(or the features are degenerate); use a smaller prior_variance or None"
            ) from None
        if not np.isfinite(cov_unit).all():
            raise InvalidInputError(
                "the posterior is not finite: check the prior_variance and feature scales"
            )
        self.coef_ = np.einsum("ade,ae->ad", cov_unit, b)
        self.covariance_ = cov_unit * noise
        self.noise_variance_ = noise
        self.prior_variance_ = prior
        self.n_features_in_ = d - int(self.fit_intercept)
        return self

    def _check(self, context: Any) -> FloatArray:
        if not hasattr(self, "coef_"):
            raise NotFittedError("BayesianLinearRewardModel is not fitted; call fit() first")
        return self._design(_as_context(context, self.n_features_in_))

    def predict(self, context: Any) -> FloatArray:
        """Posterior mean reward, ``(n, n_actions)``."""
        return self._check(context) @ self.coef_.T

    def predict_std(self, context: Any) -> FloatArray:
        """Posterior standard deviation of the mean reward, ``(n, n_actions)``."""
        x = self._check(context)
        var = np.einsum("nd,ade,ne->na", x, self.covariance_, x)
        return np.sqrt(np.maximum(var, 0.0))


def _features(
    context: FloatArray | None, n: int, position: npt.NDArray[np.int64], slate_size: int
) -> FloatArray:
    parts = [context if context is not None else np.zeros((n, 0))]
    if slate_size > 1:
        parts.append(np.eye(slate_size)[position])
    return np.hstack(parts)


def cross_fit_rewards(
    feedback: BanditFeedback,
    model: Any | None = None,
    *,
    n_folds: int = 3,
    seed: int = 0,
) -> FloatArray:
    """Out-of-fold reward predictions ``q(x_i, a, pos)`` for every row, action and position.

    Each row is predicted by a model fit on the other folds, so the doubly robust correction is not
    fit on the residuals it corrects. ``model`` is ``None`` (a :class:`BayesianLinearRewardModel`
    per action over the context and a position one-hot) or a scikit-learn estimator, fit on
    ``[context, action one-hot, position one-hot]`` (``predict_proba[:, 1]`` when it has it).
    Predictions are clipped to ``feedback.reward_range``.

    Returns:
        ``(n_rows, n_actions, slate_size)`` float64.
    """
    if not isinstance(feedback, BanditFeedback):
        raise InvalidInputError(f"feedback must be a BanditFeedback, got {type(feedback).__name__}")
    if not _is_int(seed):
        raise InvalidInputError(f"seed must be an int, got {seed!r}")
    if not _is_int(n_folds) or n_folds < 2:
        raise InvalidInputError(f"n_folds must be an int >= 2, got {n_folds!r}")
    n, n_act, k = feedback.n_rows, feedback.n_actions, feedback.slate_size
    if n < n_folds:
        raise InvalidInputError(f"{n} logged rows cannot be split into {n_folds} folds")
    folds = np.random.default_rng(seed).permutation(n) % n_folds
    out = np.empty((n, n_act, k))
    lo, hi = feedback.reward_range
    eye_a = np.eye(n_act)
    for f in range(n_folds):
        train, test = folds != f, folds == f
        ctx = feedback.context
        x_tr = _features(None if ctx is None else ctx[train], int(train.sum()), feedback.position[train], k)
        if model is None:
            m = BayesianLinearRewardModel(n_act).fit(x_tr, feedback.action[train], feedback.reward[train])
            for p in range(k):
                pos = np.full(int(test.sum()), p, np.int64)
                x_te = _features(None if ctx is None else ctx[test], int(test.sum()), pos, k)
                out[test, :, p] = m.predict(x_te)
        else:
            from sklearn.base import clone

            est = clone(model)
            try:
                est.fit(np.hstack([x_tr, eye_a[feedback.action[train]]]), feedback.reward[train])
            except ValueError as exc:  # e.g. a classifier on a fold with one class
                raise InvalidInputError(
                    f"the reward model failed to fit fold {f} of {n_folds}: {exc}"
                ) from None
            n_te = int(test.sum())
            for p in range(k):
                pos = np.full(n_te, p, np.int64)
                base = _features(None if ctx is None else ctx[test], n_te, pos, k)
                for act in range(n_act):
                    xa = np.hstack([base, np.broadcast_to(eye_a[act], (n_te, n_act))])
                    pred = est.predict_proba(xa)[:, 1] if hasattr(est, "predict_proba") else est.predict(xa)
                    out[test, act, p] = pred
    return np.clip(out, lo, hi)
