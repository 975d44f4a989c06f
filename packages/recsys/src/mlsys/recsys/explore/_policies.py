"""Exploration policies over a candidate set: each shows a slate and says with which probability.

Every policy returns a :class:`Slate`: the actions shown per round and position, and the marginal
probability that the policy shows that action at that position in that round (the position-wise
propensity the off-policy estimators divide by). ``action_distribution`` gives the whole
``(n, n_actions, slate_size)`` matrix, the target-policy input of the estimators.

Score-based policies (:class:`EpsilonGreedy`, :class:`Softmax`, :class:`UniformRandom`) take a
``(n, n_actions)`` score matrix from any recommender; ``-inf`` marks an action that is not a
candidate in that round (out of stock, filtered), and is never shown. Where the probabilities are
closed-form they are exact (``Slate.exact``); otherwise they are Monte-Carlo estimates from
``n_draws`` samples of the policy's own randomness (``Slate.n_draws``).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import gammaln

from mlsys.common.errors import InvalidInputError, NotFittedError
from mlsys.common.limits import check_size
from mlsys.common.validation import as_array
from mlsys.recsys.explore._feedback import FloatArray, IntArray, _check_seed, _is_int, _real
from mlsys.recsys.explore._reward_model import BayesianLinearRewardModel

__all__ = [
    "BernoulliThompsonSampling",
    "EpsilonGreedy",
    "LinearThompsonSampling",
    "Policy",
    "ShadowExploration",
    "Slate",
    "Softmax",
    "UniformRandom",
    "greedy_slate",
]


@dataclass(frozen=True, eq=False)
class Slate:
    """What a policy showed, and with which probability.

    Attributes:
        actions: ``(n, slate_size)`` int64 action (item position) per round and slot.
        propensities: ``(n, slate_size)`` marginal probability of showing that action at that slot.
        slate_propensities: ``(n,)`` probability of the whole ordered slate, where closed-form; else ``None``.
        exact: whether ``propensities`` are exact (``False``: Monte-Carlo estimates).
        n_draws: Monte-Carlo draws behind the estimates (``None`` when exact).
        explored: ``(n, slate_size)`` bool, where the slot differs from the policy's greedy choice.
        shadow: ``(n,)`` bool, rounds served by a uniform-random bucket (:class:`ShadowExploration`).
        shadow_propensities: ``(n, slate_size)`` the uniform bucket's own propensities (``1 / m``).
    """

    actions: IntArray
    propensities: FloatArray
    slate_propensities: FloatArray | None
    exact: bool
    n_draws: int | None
    explored: npt.NDArray[np.bool_]
    shadow: npt.NDArray[np.bool_] | None = None
    shadow_propensities: FloatArray | None = None

    def __len__(self) -> int:
        return int(self.actions.shape[0])


def _as_scores(scores: Any, n_actions: int | None = None) -> FloatArray:
    s = as_array(scores, dtype=np.float64, name="scores")
    if s.ndim == 1:
        s = s[None, :]
    if s.ndim != 2 or s.shape[0] == 0 or s.shape[1] == 0:
        raise InvalidInputError(
            f"scores must have shape (n_rounds, n_actions), got {np.asarray(scores).shape}"
        )
    if n_actions is not None and s.shape[1] != n_actions:
        raise InvalidInputError(f"scores have {s.shape[1]} actions, expected {n_actions}")
    if np.isnan(s).any() or np.isposinf(s).any():
        raise InvalidInputError("scores hold NaN or +inf; use -inf to mark an action that is not a candidate")
    return s


def _check_eligible(eligible: npt.NDArray[np.bool_], k: int) -> IntArray:
    m = eligible.sum(axis=1)
    if (m < k).any():
        i = int(np.argmax(m < k))
        raise InvalidInputError(
            f"round {i} has {int(m[i])} candidate actions (finite scores), fewer than slate_size={k}"
        )
    return m.astype(np.int64)


def greedy_slate(scores: Any, k: int) -> IntArray:
    """Top-``k`` actions per row, best first; ties keep the lower action index; ``-inf`` never shown.

    Example:
        >>> greedy_slate([[0.1, 0.9, 0.9, -np.inf]], 2).tolist()
        [[1, 2]]
    """
    k = _check_slate_size(k)
    s = _as_scores(scores)
    _check_eligible(np.isfinite(s), k)
    return np.argsort(-s, axis=1, kind="stable")[:, :k].astype(np.int64)


def _topk_frequencies(samples: FloatArray, k: int) -> FloatArray:
    """``samples`` ``(rows, draws, A)`` -> frequency of each action at each top-k slot ``(rows, A, k)``."""
    rows, draws, n_act = samples.shape
    top = np.argsort(-samples, axis=2, kind="stable")[:, :, :k]  # (rows, draws, k)
    # index (row, action, slot) -> row * A * k + action * k + slot
    flat = np.arange(rows)[:, None, None] * (n_act * k) + top * k + np.arange(k)[None, None, :]
    counts = np.bincount(flat.ravel(), minlength=rows * n_act * k).reshape(rows, n_act, k)
    return counts / draws


def _random_slates(elig: npt.NDArray[np.bool_], k: int, rng: np.random.Generator) -> IntArray:
    """A uniformly random ordered slate of ``k`` distinct candidates per row (``elig``: candidates)."""
    keys = np.where(elig, rng.random(elig.shape), -np.inf)
    return np.argsort(-keys, axis=1, kind="stable")[:, :k].astype(np.int64)


def _uniform_slate_probability(m: IntArray, k: int) -> FloatArray:
    """Probability of one ordered slate of ``k`` among ``m`` candidates: ``(m - k)! / m!``."""
    return np.exp(gammaln(m - k + 1) - gammaln(m + 1))


def _check_slate_size(slate_size: Any) -> int:
    if not _is_int(slate_size) or slate_size <= 0:
        raise InvalidInputError(f"slate_size must be a positive int, got {slate_size!r}")
    return int(slate_size)


def _check_draws(n_draws: Any) -> int:
    if not _is_int(n_draws) or n_draws < 1:
        raise InvalidInputError(f"n_draws must be a positive int, got {n_draws!r}")
    return check_size(int(n_draws), "max_buffer", name="n_draws")


def _check_dist_cells(n: int, n_actions: int, slate_size: int) -> None:
    """An action distribution is ``(n, n_actions, slate_size)``: refuse it before allocating."""
    check_size(
        n * n_actions * slate_size, "max_buffer", name="action distribution cells (rounds x actions x slots)"
    )


class Policy(ABC):
    """A seeded policy: ``select(x) -> Slate`` and ``action_distribution(x)``.

    ``x`` is what the policy decides from: a ``(n, n_actions)`` score matrix for score-based
    policies, a ``(n, d)`` context matrix for contextual ones, the number of rounds ``n`` for
    context-free ones. ``policy_id`` and ``version`` go into every log record.
    """

    policy_id: str = "policy"
    #: whether action_distribution is exact (closed-form) rather than Monte-Carlo.
    exact: bool = True
    #: what ``x`` is: ``"scores"`` (n, n_actions; -inf = not a candidate), ``"context"`` or ``"rounds"``.
    input_kind: str = "scores"

    def __init__(self, slate_size: int = 1, *, seed: int | np.random.Generator | None = 0) -> None:
        self.slate_size = _check_slate_size(slate_size)
        self.seed = seed
        self.rng_ = _check_seed(seed)

    @property
    def version(self) -> str:
        """A string that changes when the policy's parameters change (logged with every record)."""
        return "1"

    @abstractmethod
    def action_distribution(self, x: Any) -> FloatArray:
        """``(n, n_actions, slate_size)``: probability of each action at each slot in each round."""

    @abstractmethod
    def select(self, x: Any) -> Slate:
        """Sample a slate per round, with the propensities of what was shown."""


class UniformRandom(Policy):
    """A uniformly random ordered slate of distinct candidates: every candidate has probability
    ``1 / m`` at every slot (``m`` candidates in the round). Exact. The policy behind a shadow log.

    Example:
        >>> UniformRandom(2, seed=0).select(np.zeros((1, 4))).propensities.tolist()
        [[0.25, 0.25]]
    """

    policy_id = "uniform"

    def action_distribution(self, x: Any) -> FloatArray:
        s = _as_scores(x)
        elig = np.isfinite(s)
        m = _check_eligible(elig, self.slate_size)
        p = elig / m[:, None]
        return np.repeat(p[:, :, None], self.slate_size, axis=2)

    def select(self, x: Any) -> Slate:
        s = _as_scores(x)
        elig = np.isfinite(s)
        m = _check_eligible(elig, self.slate_size)
        k = self.slate_size
        actions = _random_slates(elig, k, self.rng_)
        props = np.repeat((1.0 / m)[:, None], k, axis=1)
        slate_p = _uniform_slate_probability(m, k)
        greedy = greedy_slate(s, k)
        return Slate(actions, props, slate_p, True, None, actions != greedy)


class EpsilonGreedy(Policy):
    """With probability ``1 - epsilon`` the greedy top-k slate, else a uniformly random ordered slate.

    Propensities are exact: ``P(a at slot p) = (1 - eps) [a = greedy_p] + eps / m``. ``epsilon=0``
    is the greedy policy (propensity 1 for what it shows: useless for off-policy evaluation).

    Example:
        >>> pol = EpsilonGreedy(0.2, slate_size=1, seed=0)
        >>> pol.action_distribution([[3.0, 1.0, 2.0, 0.0]])[0, :, 0].round(3).tolist()
        [0.85, 0.05, 0.05, 0.05]
    """

    policy_id = "epsilon_greedy"

    def __init__(
        self, epsilon: float = 0.1, slate_size: int = 1, *, seed: int | np.random.Generator | None = 0
    ) -> None:
        eps = _real(epsilon, "epsilon", 0.0, 1.0)
        super().__init__(slate_size, seed=seed)
        self.epsilon = eps

    @property
    def version(self) -> str:
        return f"eps={self.epsilon:g}"

    def __repr__(self) -> str:
        return f"EpsilonGreedy(epsilon={self.epsilon}, slate_size={self.slate_size})"

    def action_distribution(self, x: Any) -> FloatArray:
        s = _as_scores(x)
        elig = np.isfinite(s)
        m = _check_eligible(elig, self.slate_size)
        greedy = greedy_slate(s, self.slate_size)
        dist = np.repeat((self.epsilon * elig / m[:, None])[:, :, None], self.slate_size, axis=2)
        rows = np.arange(s.shape[0])[:, None]
        dist[rows, greedy, np.arange(self.slate_size)[None, :]] += 1.0 - self.epsilon
        return dist

    def select(self, x: Any) -> Slate:
        s = _as_scores(x)
        elig = np.isfinite(s)
        m = _check_eligible(elig, self.slate_size)
        k = self.slate_size
        greedy = greedy_slate(s, k)
        explore = np.less(self.rng_.random(s.shape[0]), self.epsilon)
        actions = np.where(explore[:, None], _random_slates(elig, k, self.rng_), greedy)
        props = self.epsilon / m[:, None] + (1 - self.epsilon) * (actions == greedy)
        slate_p = self.epsilon * _uniform_slate_probability(m, k) + (1 - self.epsilon) * (
            actions == greedy
        ).all(axis=1)
        return Slate(actions, props.astype(np.float64), slate_p, True, None, actions != greedy)


class Softmax(Policy):
    """Boltzmann exploration: a Plackett-Luce slate with weights ``exp(score / temperature)``.

    The first slot's probabilities are the softmax (exact), and so is the probability of a whole
    ordered slate; later slots' marginals are Monte-Carlo estimates (Gumbel top-k, ``n_draws``).

    Example:
        >>> Softmax(1.0, seed=0).action_distribution([[0.0, np.log(3.0)]])[0, :, 0].round(2).tolist()
        [0.25, 0.75]
    """

    policy_id = "softmax"

    def __init__(
        self,
        temperature: float = 1.0,
        slate_size: int = 1,
        *,
        n_draws: int = 10_000,
        seed: int | np.random.Generator | None = 0,
    ) -> None:
        temp = _real(temperature, "temperature", 0.0, float("inf"), lo_open=True, hi_open=True)
        super().__init__(slate_size, seed=seed)
        self.temperature = temp
        self.n_draws = _check_draws(n_draws)
        self.exact = slate_size == 1

    @property
    def version(self) -> str:
        return f"T={self.temperature:g}"

    def _logits(self, s: FloatArray) -> FloatArray:
        # subtract the max before dividing: huge scores over a tiny temperature would overflow to NaN
        with np.errstate(over="ignore"):  # -huge / tiny -> -inf: probability 0, as it should be
            return (s - s.max(axis=1, keepdims=True)) / self.temperature

    def action_distribution(self, x: Any) -> FloatArray:
        s = _as_scores(x)
        _check_eligible(np.isfinite(s), self.slate_size)
        z = self._logits(s)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        if self.slate_size == 1:
            return p[:, :, None]
        out = np.empty((s.shape[0], s.shape[1], self.slate_size))
        draws = self.n_draws
        chunk = max(1, 2_000_000 // (draws * s.shape[1]))
        for start in range(0, s.shape[0], chunk):
            zz = z[start : start + chunk]
            g = self.rng_.gumbel(size=(zz.shape[0], draws, zz.shape[1])) + zz[:, None, :]
            out[start : start + chunk] = _topk_frequencies(g, self.slate_size)
        out[:, :, 0] = p  # the first slot is exact
        return out

    def select(self, x: Any) -> Slate:
        s = _as_scores(x)
        _check_eligible(np.isfinite(s), self.slate_size)
        k = self.slate_size
        z = self._logits(s)
        keys = z + self.rng_.gumbel(size=z.shape)
        actions = np.argsort(-keys, axis=1, kind="stable")[:, :k].astype(np.int64)
        # exact probability of the ordered slate under Plackett-Luce, from the unchosen weights
        # (a running ``total - chosen`` cancels to 0 when one weight dominates)
        w = np.exp(z)
        rows = np.arange(s.shape[0])
        chosen = np.zeros(w.shape, dtype=bool)
        slate_p = np.ones(s.shape[0])
        for j in range(k):
            remaining = np.where(chosen, 0.0, w).sum(axis=1)
            slate_p *= w[rows, actions[:, j]] / remaining
            chosen[rows, actions[:, j]] = True
        dist = self.action_distribution(s) if k > 1 else (w / w.sum(axis=1, keepdims=True))[:, :, None]
        props = dist[rows[:, None], actions, np.arange(k)[None, :]]
        if k > 1:  # a shown action always had positive probability; a rare one can miss every MC draw
            props = np.maximum(props, 1.0 / (self.n_draws + 1))
        greedy = greedy_slate(s, k)
        return Slate(actions, props, slate_p, k == 1, None if k == 1 else self.n_draws, actions != greedy)


class BernoulliThompsonSampling(Policy):
    """Context-free Thompson sampling with a Beta-Bernoulli posterior per action.

    Each round draws ``theta_a ~ Beta(alpha_a, beta_a)`` and shows the top-``slate_size`` draws.
    :meth:`update` adds clicks to ``alpha`` and non-clicks to ``beta``. Propensities are
    Monte-Carlo estimates from ``n_draws`` posterior draws (shared by every round: the policy does
    not depend on context), standard error at most ``0.5 / sqrt(n_draws)``.

    Args:
        n_actions: number of actions.
        slate_size: slots per slate.
        alpha, beta: prior parameters (scalars or ``(n_actions,)``), default ``Beta(1, 1)``.
        n_draws: Monte-Carlo draws for the propensities.

    Example:
        >>> ts = BernoulliThompsonSampling(3, seed=0).update([0, 0, 1], [1, 1, 0])
        >>> ts.alpha_.tolist(), ts.beta_.tolist()
        ([3.0, 1.0, 1.0], [1.0, 2.0, 1.0])
    """

    policy_id = "bernoulli_ts"
    exact = False
    input_kind = "rounds"

    def __init__(
        self,
        n_actions: int,
        slate_size: int = 1,
        *,
        alpha: Any = 1.0,
        beta: Any = 1.0,
        n_draws: int = 10_000,
        seed: int | np.random.Generator | None = 0,
    ) -> None:
        super().__init__(slate_size, seed=seed)
        if not _is_int(n_actions) or n_actions < self.slate_size:
            raise InvalidInputError(
                f"n_actions must be an int >= slate_size={self.slate_size}, got {n_actions!r}"
            )
        self.n_actions = (
            check_size(int(n_actions) * self.slate_size, "max_buffer", name="n_actions x slate_size")
            // self.slate_size
        )
        self.n_draws = _check_draws(n_draws)
        try:
            a = np.broadcast_to(np.asarray(alpha, dtype=np.float64), (self.n_actions,)).copy()
            b = np.broadcast_to(np.asarray(beta, dtype=np.float64), (self.n_actions,)).copy()
        except (ValueError, TypeError):
            raise InvalidInputError(
                f"alpha and beta must be numbers or arrays of length n_actions={self.n_actions}"
            ) from None
        if not (np.isfinite(a).all() and np.isfinite(b).all() and (a > 0).all() and (b > 0).all()):
            raise InvalidInputError("alpha and beta must be positive and finite")
        self.alpha_, self.beta_ = a, b
        self._dist_cache: FloatArray | None = None

    @property
    def version(self) -> str:
        # a content hash, stable across processes (Python's hash() of bytes is salted per process)
        digest = hashlib.sha256(self.alpha_.tobytes() + self.beta_.tobytes()).hexdigest()[:12]
        return f"beta-posterior-{digest}"

    def update(self, actions: Any, rewards: Any) -> BernoulliThompsonSampling:
        """Posterior update with binary rewards (1 click, 0 no click) for the shown actions."""
        a = np.asarray(actions).ravel()
        r = as_array(rewards, dtype=np.float64, name="rewards").ravel()
        if a.size == 0 and r.size == 0:
            return self
        if a.shape != r.shape:
            raise InvalidInputError(f"actions and rewards differ in length: {a.shape[0]} vs {r.shape[0]}")
        if a.size and (not np.issubdtype(a.dtype, np.integer) or a.min() < 0 or a.max() >= self.n_actions):
            raise InvalidInputError(f"actions must be ints in [0, {self.n_actions})")
        if not np.isin(r, (0.0, 1.0)).all():
            raise InvalidInputError("rewards must be 0 or 1 for a Beta-Bernoulli posterior")
        self.alpha_ += np.bincount(a, weights=r, minlength=self.n_actions)
        self.beta_ += np.bincount(a, weights=1 - r, minlength=self.n_actions)
        self._dist_cache = None
        return self

    def _n_rounds(self, x: Any) -> int:
        if isinstance(x, int | np.integer) and not isinstance(x, bool):
            n = int(x)
        else:
            n = int(np.shape(x)[0]) if np.ndim(x) else -1
        if n <= 0:
            raise InvalidInputError(
                f"expected a positive number of rounds (or an array with one row per round), got {x!r}"
            )
        return n

    def slot_distribution(self) -> FloatArray:
        """``(n_actions, slate_size)`` Monte-Carlo probability of each action at each slot."""
        if self._dist_cache is None:
            rng = np.random.default_rng(self.rng_.integers(2**63))
            freq = np.zeros((self.n_actions, self.slate_size))
            done = 0
            chunk = max(1, 4_000_000 // self.n_actions)
            while done < self.n_draws:
                m = min(chunk, self.n_draws - done)
                theta = rng.beta(self.alpha_, self.beta_, size=(m, self.n_actions))
                freq += _topk_frequencies(theta[None], self.slate_size)[0] * m
                done += m
            self._dist_cache = freq / self.n_draws
        return self._dist_cache

    def action_distribution(self, x: Any) -> FloatArray:
        n = self._n_rounds(x)
        _check_dist_cells(n, self.n_actions, self.slate_size)
        return np.broadcast_to(self.slot_distribution(), (n, self.n_actions, self.slate_size)).copy()

    def select(self, x: Any) -> Slate:
        n = self._n_rounds(x)
        k = self.slate_size
        _check_dist_cells(n, self.n_actions, 1)
        theta = self.rng_.beta(self.alpha_, self.beta_, size=(n, self.n_actions))
        actions = np.argsort(-theta, axis=1, kind="stable")[:, :k].astype(np.int64)
        props = self.slot_distribution()[actions, np.arange(k)[None, :]]
        # a shown action always had positive probability; a rare one can miss every MC draw
        props = np.maximum(props, 1.0 / (self.n_draws + 1))
        mean = self.alpha_ / (self.alpha_ + self.beta_)
        greedy = np.argsort(-mean, kind="stable")[:k]
        return Slate(actions, props, None, False, self.n_draws, actions != greedy[None, :])


class LinearThompsonSampling(Policy):
    """Contextual Thompson sampling over a :class:`BayesianLinearRewardModel` (linear-Gaussian).

    Each round draws every action's mean reward from its posterior given the context,
    ``N(x . mu_a, scale^2 x' Sigma_a x)``, and shows the top draws. Propensities are Monte-Carlo
    estimates from ``n_draws`` draws per round. ``scale`` > 1 explores more.

    Example:
        >>> m = BayesianLinearRewardModel(3).fit(np.ones((6, 1)), [0, 0, 1, 1, 2, 2], [1, 1, 0, 0, 1, 0])
        >>> s = LinearThompsonSampling(m, seed=0, n_draws=2000).select(np.ones((2, 1)))
        >>> s.actions.shape, bool((s.propensities > 0).all())
        ((2, 1), True)
    """

    policy_id = "linear_ts"
    exact = False
    input_kind = "context"

    def __init__(
        self,
        model: BayesianLinearRewardModel,
        slate_size: int = 1,
        *,
        scale: float = 1.0,
        n_draws: int = 2_000,
        seed: int | np.random.Generator | None = 0,
    ) -> None:
        super().__init__(slate_size, seed=seed)
        if not isinstance(model, BayesianLinearRewardModel):
            raise InvalidInputError(f"model must be a BayesianLinearRewardModel, got {type(model).__name__}")
        scale = _real(scale, "scale", 0.0, float("inf"), lo_open=True, hi_open=True)
        if model.n_actions < self.slate_size:
            raise InvalidInputError(
                f"the model has {model.n_actions} actions, fewer than slate_size={self.slate_size}"
            )
        self.model = model
        self.scale = float(scale)
        self.n_draws = _check_draws(n_draws)

    def _posterior(self, x: Any) -> tuple[FloatArray, FloatArray]:
        if not hasattr(self.model, "coef_"):
            raise NotFittedError("the reward model is not fitted; call model.fit(...) first")
        return self.model.predict(x), self.model.predict_std(x) * self.scale

    def action_distribution(self, x: Any) -> FloatArray:
        return self._distribution(*self._posterior(x))

    def _distribution(self, mean: FloatArray, std: FloatArray) -> FloatArray:
        n, n_act = mean.shape
        out = np.empty((n, n_act, self.slate_size))
        chunk = max(1, 2_000_000 // (self.n_draws * n_act))
        for start in range(0, n, chunk):
            mu, sd = mean[start : start + chunk], std[start : start + chunk]
            z = self.rng_.standard_normal((mu.shape[0], self.n_draws, n_act))
            out[start : start + chunk] = _topk_frequencies(
                mu[:, None, :] + sd[:, None, :] * z, self.slate_size
            )
        return out

    def select(self, x: Any) -> Slate:
        mean, std = self._posterior(x)
        k = self.slate_size
        draw = mean + std * self.rng_.standard_normal(mean.shape)
        actions = np.argsort(-draw, axis=1, kind="stable")[:, :k].astype(np.int64)
        dist = self._distribution(mean, std)  # the same posterior: predict it once
        rows = np.arange(mean.shape[0])[:, None]
        props = dist[rows, actions, np.arange(k)[None, :]]
        # a shown action always had positive probability; a rare one can miss every MC draw
        props = np.maximum(props, 1.0 / (self.n_draws + 1))
        greedy = greedy_slate(mean, k)
        return Slate(actions, props, None, False, self.n_draws, actions != greedy)


class ShadowExploration(Policy):
    """Serve a ``fraction`` of rounds uniformly at random, the rest with ``policy``.

    ``policy`` may be any policy: over a score-based one the uniform bucket draws from the round's
    candidates (finite scores), over a contextual or context-free one from every action. The
    uniform rounds form a clean randomised log (``Slate.shadow`` marks them and
    :class:`~mlsys.recsys.explore.PropensityLogger` mirrors them to its shadow log), the
    counterfactual data every later policy can be evaluated on without support gaps. The logged
    propensities are the mixture's, ``(1 - f) pi(a) + f / m``: exact when ``policy`` is exact.

    Example:
        >>> pol = ShadowExploration(EpsilonGreedy(0.0), fraction=0.5, seed=0)
        >>> pol.action_distribution([[1.0, 0.0]])[0, :, 0].tolist()
        [0.75, 0.25]
    """

    policy_id = "shadow_exploration"

    def __init__(
        self, policy: Policy, fraction: float = 0.05, *, seed: int | np.random.Generator | None = 0
    ) -> None:
        if not isinstance(policy, Policy):
            raise InvalidInputError(f"policy must be a Policy, got {type(policy).__name__}")
        frac = _real(fraction, "fraction", 0.0, 1.0)
        super().__init__(policy.slate_size, seed=seed)
        self.policy = policy
        self.fraction = frac
        self.uniform = UniformRandom(policy.slate_size, seed=self.rng_)
        self.exact = policy.exact
        self.policy_id = f"{policy.policy_id}+uniform"

    @property
    def version(self) -> str:
        return f"{self.policy.version};f={self.fraction:g}"

    def _uniform_input(self, x: Any, base: FloatArray) -> Any:
        # score-based policies: uniform over the round's candidates; others: over every action
        if self.policy.input_kind == "scores":
            return x
        return np.zeros(base.shape[:2])

    def _mixture(self, base: FloatArray, ux: Any) -> FloatArray:
        return (1 - self.fraction) * base + self.fraction * self.uniform.action_distribution(ux)

    def action_distribution(self, x: Any) -> FloatArray:
        base = self.policy.action_distribution(x)
        return self._mixture(base, self._uniform_input(x, base))

    def select(self, x: Any) -> Slate:
        base_slate = self.policy.select(x)
        base = self.policy.action_distribution(x)
        ux = self._uniform_input(x, base)
        uni = self.uniform.select(ux)
        n = base_slate.actions.shape[0]
        shadow = np.less(self.rng_.random(n), self.fraction)
        actions = np.where(shadow[:, None], uni.actions, base_slate.actions)
        dist = self._mixture(base, ux)
        rows = np.arange(n)[:, None]
        props = dist[rows, actions, np.arange(self.slate_size)[None, :]]
        if not base_slate.exact:
            props = np.maximum(props, 1.0 / ((base_slate.n_draws or 0) + 1))
        explored = np.where(shadow[:, None], uni.explored, base_slate.explored)
        return Slate(
            actions, props, None, base_slate.exact, base_slate.n_draws, explored, shadow, uni.propensities
        )
