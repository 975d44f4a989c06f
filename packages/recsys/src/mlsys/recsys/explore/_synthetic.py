"""A synthetic contextual bandit with known ground truth, for checking off-policy estimators."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from mlsys.common.errors import InvalidInputError
from mlsys.common.limits import check_size
from mlsys.recsys.explore._feedback import BanditFeedback, FloatArray
from mlsys.recsys.explore._policies import EpsilonGreedy, Softmax

__all__ = ["SyntheticBandit", "synthetic_bandit"]


@dataclass(frozen=True, eq=False)
class SyntheticBandit:
    """Logged feedback plus everything a real log hides.

    Attributes:
        feedback: rows logged by the logging policy (one action per round).
        expected_reward: ``(n, n_actions)`` true click probability ``q(x, a)``.
        logging_dist, target_dist: ``(n, n_actions, 1)`` both policies' action distributions.
        true_value: the target policy's value on these contexts, ``mean_i sum_a pi_e(a|x_i) q(x_i, a)``.
    """

    feedback: BanditFeedback
    expected_reward: FloatArray
    logging_dist: FloatArray
    target_dist: FloatArray
    true_value: float


def synthetic_bandit(
    n_rounds: int = 10_000,
    n_actions: int = 10,
    dim: int = 5,
    *,
    logging_temperature: float = 1.0,
    target_epsilon: float = 0.3,
    seed: int = 0,
) -> SyntheticBandit:
    """Contexts ``x ~ N(0, I)``, rewards ``Bernoulli(sigmoid(x . theta_a + b_a))``; the logging
    policy is a softmax over the true click logits (``temperature``), the target policy an
    epsilon-greedy over the true click probabilities: two different policies with full support.

    Example:
        >>> b = synthetic_bandit(1000, seed=0)
        >>> b.feedback.n_rows, b.target_dist.shape, 0 < b.true_value < 1
        (1000, (1000, 10, 1), True)
    """
    for name, v in (("n_rounds", n_rounds), ("n_actions", n_actions), ("dim", dim), ("seed", seed)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise InvalidInputError(f"{name} must be an int, got {v!r}")
    if n_rounds <= 0 or n_actions < 2 or dim <= 0:
        raise InvalidInputError(
            f"need n_rounds > 0, n_actions >= 2, dim > 0; got {n_rounds}, {n_actions}, {dim}"
        )
    check_size(int(n_rounds) * (int(n_actions) + int(dim)), "max_buffer", name="n_rounds x (n_actions + dim)")
    rng = np.random.default_rng(seed)
    theta = rng.normal(0.0, 1.0 / np.sqrt(dim), size=(n_actions, dim))
    bias = rng.normal(-0.5, 0.5, size=n_actions)
    x = rng.normal(size=(n_rounds, dim))
    logits = x @ theta.T + bias
    q = expit(logits)
    logging = Softmax(logging_temperature, seed=rng)
    shown = logging.select(logits)
    action = shown.actions[:, 0]
    reward = (rng.random(n_rounds) < q[np.arange(n_rounds), action]).astype(np.float64)
    target_dist = EpsilonGreedy(target_epsilon).action_distribution(q)
    fb = BanditFeedback(
        action=action, reward=reward, propensity=shown.propensities[:, 0], n_actions=n_actions, context=x
    )
    truth = float((target_dist[:, :, 0] * q).sum(axis=1).mean())
    return SyntheticBandit(fb, q, logging.action_distribution(logits), target_dist, truth)
