"""Off-policy estimators: the value of a target policy from logs of another one.

Every estimator here is a mean of per-row terms (over a mean of per-row weights for SNIPS), with
the same formulas as Open Bandit Pipeline 0.5.7 (a test checks the values to 1e-9):

* IPS: ``mean(w * r)`` with ``w = pi_e(a | x, pos) / pi_0(a | x, pos)``;
* SNIPS: ``mean(w * r) / mean(w)``;
* DM: ``mean(sum_a pi_e(a | x, pos) * q(x, a, pos))``;
* DR: DM plus ``mean(w * (r - q(x, a_logged, pos)))``.

``clip`` caps the weights from above (``min(w, clip)``: less variance, some bias). Bootstrap
intervals (:func:`estimate_interval`) re-compute the estimator on each resample (for SNIPS the
normaliser is re-computed too, which obp does not do).

Before estimating, the target policy's support is checked: mass that it puts on (action, position)
pairs that never appear in the log cannot be evaluated by any of these estimators, and a number
computed anyway looks fine while silently ignoring that mass. By default that raises
:class:`SupportDeficiencyError`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from mlsys.common._display import DisplayTable, TabularDisplay
from mlsys.common.errors import InvalidInputError, UnknownNameError
from mlsys.recsys.explore._feedback import (
    BanditFeedback,
    FloatArray,
    _check_seed,
    as_action_dist,
    as_row_action_position,
)

__all__ = [
    "ESTIMATORS",
    "PolicyValueInterval",
    "SupportDeficiencyError",
    "SupportReport",
    "direct_method",
    "doubly_robust",
    "estimate_interval",
    "evaluate_policy",
    "importance_weights",
    "ips",
    "snips",
    "support_report",
]

SupportPolicy = Literal["raise", "warn", "ignore"]


class SupportDeficiencyError(InvalidInputError):
    """The target policy puts probability on actions the logging policy never showed."""


@dataclass(frozen=True)
class SupportReport(TabularDisplay):
    """How much of the target policy's mass the log cannot evaluate.

    ``deficient_mass`` is the mean over logged rows of the target's probability, at the row's
    position, on actions the logging policy could not have shown there (0 = fully supported).
    ``unlogged`` lists ``(action, position)`` pairs with target mass but no logged row (at most 20);
    ``deterministic_rows`` counts rows logged with propensity 1 (the logger showed nothing else
    there). ``exact`` says whether the logging policy's distribution was given: without it the
    check only sees what the log proves (never-logged pairs, deterministic rows), a lower bound.

    Displays as a one-row HTML table in a notebook; :meth:`to_pandas` gives that row.
    """

    _pandas_extra = "mlsys-recsys[pandas]"

    deficient_mass: float
    unlogged: tuple[tuple[int, int], ...]
    n_unlogged: int
    deterministic_rows: int = 0
    exact: bool = False

    @property
    def supported(self) -> bool:
        """Whether the log can evaluate the whole target policy (no deficient mass)."""
        return self.deficient_mass == 0.0

    def __repr__(self) -> str:
        return (
            f"SupportReport(deficient_mass={self.deficient_mass:.4g}, n_unlogged={self.n_unlogged}, "
            f"deterministic_rows={self.deterministic_rows}, exact={self.exact})"
        )

    def _display_table(self) -> DisplayTable:
        shown = ", ".join(f"({a}, {p})" for a, p in self.unlogged)
        return DisplayTable(
            "SupportReport",
            ("deficient_mass", "supported", "n_unlogged", "deterministic_rows", "exact"),
            ((self.deficient_mass, self.supported, self.n_unlogged, self.deterministic_rows, self.exact),),
            details=(("unlogged (action, position)", shown or "none"),),
        )


def _check_feedback(feedback: Any) -> BanditFeedback:
    if not isinstance(feedback, BanditFeedback):
        raise InvalidInputError(f"feedback must be a BanditFeedback, got {type(feedback).__name__}")
    return feedback


def support_report(
    feedback: BanditFeedback, action_dist: Any, *, logging_action_dist: Any | None = None
) -> SupportReport:
    """Measure the target policy's mass outside the logging policy's support.

    With ``logging_action_dist`` (the logging policy's full ``(n, n_actions, slate_size)``
    distribution) the support is exact and per row: ``pi_0 > 0``. Without it, the log proves two
    kinds of gap: (action, position) pairs that appear in no row, and, in a row logged with
    propensity 1, every other action at that position (a deterministic logger, e.g. greedy, showed
    nothing else in that context). Other per-context gaps are invisible without the logging
    distribution: pass it whenever the logging policy is contextual.

    Example:
        >>> import numpy as np
        >>> fb = BanditFeedback(action=[0, 1], reward=[1, 0], propensity=[1.0, 1.0], n_actions=2)
        >>> support_report(fb, np.array([[0.5, 0.5], [0.5, 0.5]])).deficient_mass  # greedy logger
        0.5
    """
    _check_feedback(feedback)
    pi_e = as_action_dist(action_dist, feedback)
    rows = np.arange(feedback.n_rows)
    pi_at = pi_e[rows, :, feedback.position]  # (n, A): the target at each row's own position
    deterministic = feedback.propensity >= 1.0 - 1e-12
    if logging_action_dist is not None:
        pi_0 = as_action_dist(logging_action_dist, feedback, name="logging_action_dist")
        outside = pi_0[rows, :, feedback.position] <= 0
        pairs_mask = ((pi_0 <= 0) & (pi_e > 0)).any(axis=0)
    else:
        logged = np.zeros((feedback.n_actions, feedback.slate_size), dtype=bool)
        logged[feedback.action, feedback.position] = True
        outside = ~logged[:, feedback.position].T  # (n, A)
        pairs_mask = (pi_e > 0).any(axis=0) & ~logged
        # a row logged with probability 1 proves the logger showed no other action there
        other = np.ones(outside.shape, dtype=bool)
        other[rows, feedback.action] = False
        outside = outside | (other & deterministic[:, None])
    mass = float((pi_at * outside).sum(axis=1).mean())
    pairs = np.argwhere(pairs_mask)
    return SupportReport(
        deficient_mass=mass,
        unlogged=tuple((int(a), int(p)) for a, p in pairs[:20]),
        n_unlogged=int(pairs.shape[0]),
        deterministic_rows=int(deterministic.sum()),
        exact=logging_action_dist is not None,
    )


def _check_support(
    feedback: BanditFeedback,
    pi_e: FloatArray,
    support: SupportPolicy,
    tolerance: float,
    logging_action_dist: Any | None,
) -> None:
    if support not in ("raise", "warn", "ignore"):
        raise UnknownNameError(f"support must be 'raise', 'warn' or 'ignore', got {support!r}")
    if (
        isinstance(tolerance, bool)
        or not isinstance(tolerance, int | float | np.floating)
        or not 0.0 <= float(tolerance) <= 1.0
    ):
        raise InvalidInputError(f"support_tolerance must be a number in [0, 1], got {tolerance!r}")
    if support == "ignore":
        return
    rep = support_report(feedback, pi_e, logging_action_dist=logging_action_dist)
    if rep.deficient_mass <= tolerance:
        return
    msg = (
        f"the target policy puts {rep.deficient_mass:.4g} of its mass (mean over logged rows) on actions the "
        f"logging policy could not have shown there ({rep.n_unlogged} (action, position) pairs never logged, e.g. "
        f"{list(rep.unlogged[:5])}; {rep.deterministic_rows} rows logged with propensity 1); "
        "no importance-weighted estimate can see that mass. Log with more exploration, restrict the target "
        "policy to the logged support, or pass support='warn'/'ignore' to estimate the supported part only"
    )
    if support == "raise":
        raise SupportDeficiencyError(msg)
    warnings.warn(msg, stacklevel=3)


def _check_clip(clip: float | None) -> None:
    if clip is not None and not (isinstance(clip, int | float) and clip > 0 and np.isfinite(clip)):
        raise InvalidInputError(f"clip must be a positive finite number or None, got {clip!r}")


def importance_weights(
    feedback: BanditFeedback,
    action_dist: Any,
    *,
    clip: float | None = None,
    support: SupportPolicy = "raise",
    support_tolerance: float = 0.0,
    logging_action_dist: Any | None = None,
) -> FloatArray:
    """Per-row importance weights ``pi_e(a | x, pos) / propensity``, capped at ``clip``.

    Also the sample-weight hook for IPS-weighted training: pass them as a model's
    ``sample_weight``, or as ``Interactions(weights=...)`` for ``TwoTowerModel.fit(weighted=True)``
    after dropping the rows whose weight is 0 (``feedback.subset(w > 0)``: they carry no evidence
    for the target, and interaction weights must be positive).

    Example:
        >>> fb = BanditFeedback(action=[0, 1], reward=[1, 0], propensity=[0.5, 0.5])
        >>> importance_weights(fb, [[1.0, 0.0], [0.0, 1.0]]).tolist()
        [2.0, 2.0]
    """
    _check_feedback(feedback)
    _check_clip(clip)
    pi_e = as_action_dist(action_dist, feedback)
    _check_support(feedback, pi_e, support, support_tolerance, logging_action_dist)
    return _weights(feedback, pi_e, clip)


def _weights(feedback: BanditFeedback, pi_e: FloatArray, clip: float | None) -> FloatArray:
    iw = pi_e[np.arange(feedback.n_rows), feedback.action, feedback.position] / feedback.propensity
    if clip is not None:
        iw = np.minimum(iw, clip)
    return iw


# Each estimator reduces to (per-row numerator terms, per-row denominator terms or None): the value
# is mean(num) / mean(den) (den None: 1). The bootstrap resamples rows of both.
_Terms = tuple[FloatArray, FloatArray | None]


def _ips_terms(fb: BanditFeedback, pi_e: FloatArray, q: FloatArray | None, clip: float | None) -> _Terms:
    return fb.reward * _weights(fb, pi_e, clip), None


def _snips_terms(fb: BanditFeedback, pi_e: FloatArray, q: FloatArray | None, clip: float | None) -> _Terms:
    w = _weights(fb, pi_e, clip)
    return fb.reward * w, w


def _dm_baseline(fb: BanditFeedback, pi_e: FloatArray, q: FloatArray) -> FloatArray:
    rows = np.arange(fb.n_rows)
    return np.einsum("ia,ia->i", pi_e[rows, :, fb.position], q[rows, :, fb.position])


def _dm_terms(fb: BanditFeedback, pi_e: FloatArray, q: FloatArray | None, clip: float | None) -> _Terms:
    assert q is not None
    return _dm_baseline(fb, pi_e, q), None


def _dr_terms(fb: BanditFeedback, pi_e: FloatArray, q: FloatArray | None, clip: float | None) -> _Terms:
    assert q is not None
    w = _weights(fb, pi_e, clip)
    q_logged = q[np.arange(fb.n_rows), fb.action, fb.position]
    return _dm_baseline(fb, pi_e, q) + w * (fb.reward - q_logged), None


_TermFn = Callable[[BanditFeedback, FloatArray, "FloatArray | None", "float | None"], _Terms]

#: the estimators by name, and whether each needs a reward model.
ESTIMATORS: dict[str, tuple[_TermFn, bool]] = {
    "ips": (_ips_terms, False),
    "snips": (_snips_terms, False),
    "dm": (_dm_terms, True),
    "dr": (_dr_terms, True),
}
"""The off-policy estimators by name, and whether each needs a reward model."""


def _prepare(
    name: str,
    feedback: BanditFeedback,
    action_dist: Any,
    estimated_rewards: Any | None,
    clip: float | None,
    support: SupportPolicy,
    support_tolerance: float,
    logging_action_dist: Any | None,
) -> _Terms:
    _check_feedback(feedback)
    if name not in ESTIMATORS:
        raise UnknownNameError(f"unknown estimator {name!r}; expected one of {sorted(ESTIMATORS)}")
    fn, needs_q = ESTIMATORS[name]
    _check_clip(clip)
    pi_e = as_action_dist(action_dist, feedback)
    q = None
    if needs_q:
        if estimated_rewards is None:
            raise InvalidInputError(
                f"estimator {name!r} needs estimated_rewards (a reward model's predictions)"
            )
        q = as_row_action_position(estimated_rewards, feedback, "estimated_rewards")
    if name != "dm":
        _check_support(feedback, pi_e, support, support_tolerance, logging_action_dist)
    return fn(feedback, pi_e, q, clip)


def _value(terms: _Terms) -> float:
    num, den = terms
    if den is None:
        return float(num.mean())
    d = den.mean()
    if d <= 0:
        raise InvalidInputError("every importance weight is 0: the target policy never takes a logged action")
    return float(num.mean() / d)


def ips(
    feedback: BanditFeedback,
    action_dist: Any,
    *,
    clip: float | None = None,
    support: SupportPolicy = "raise",
    support_tolerance: float = 0.0,
    logging_action_dist: Any | None = None,
) -> float:
    """Inverse propensity scoring: ``mean(min(w, clip) * r)``.

    Args:
        feedback: the logged rows.
        action_dist: the target policy's ``(n_rows, n_actions, slate_size)`` probabilities.
        clip: cap on the importance weights (``None``: no cap).
        support: what a target policy with mass outside the logged support does: ``"raise"``
            :class:`SupportDeficiencyError`, ``"warn"``, or ``"ignore"``.
        support_tolerance: deficient mass tolerated before ``support`` applies.
        logging_action_dist: the logging policy's distribution, for an exact support check.

    Example:
        >>> fb = BanditFeedback(action=[0, 1, 0, 1], reward=[1, 0, 1, 1], propensity=[0.5] * 4)
        >>> ips(fb, [[1.0, 0.0]] * 4)
        1.0
    """
    return _value(
        _prepare("ips", feedback, action_dist, None, clip, support, support_tolerance, logging_action_dist)
    )


def snips(
    feedback: BanditFeedback,
    action_dist: Any,
    *,
    clip: float | None = None,
    support: SupportPolicy = "raise",
    support_tolerance: float = 0.0,
    logging_action_dist: Any | None = None,
) -> float:
    """Self-normalised IPS: ``mean(w * r) / mean(w)`` (arguments as :func:`ips`).

    Example:
        >>> fb = BanditFeedback(action=[0, 1, 0], reward=[1, 0, 0], propensity=[0.5] * 3)
        >>> snips(fb, [[1.0, 0.0]] * 3)
        0.5
    """
    return _value(
        _prepare("snips", feedback, action_dist, None, clip, support, support_tolerance, logging_action_dist)
    )


def direct_method(feedback: BanditFeedback, action_dist: Any, estimated_rewards: Any) -> float:
    """The reward model's value of the target policy: ``mean(sum_a pi_e(a) q(x, a, pos))``.

    ``estimated_rewards`` is ``(n_rows, n_actions, slate_size)`` (see :func:`cross_fit_rewards`).
    No weights, so no support check: the value is only as good as the model.
    """
    return _value(_prepare("dm", feedback, action_dist, estimated_rewards, None, "ignore", 0.0, None))


def doubly_robust(
    feedback: BanditFeedback,
    action_dist: Any,
    estimated_rewards: Any,
    *,
    clip: float | None = None,
    support: SupportPolicy = "raise",
    support_tolerance: float = 0.0,
    logging_action_dist: Any | None = None,
) -> float:
    """Doubly robust: the direct method plus the IPS-weighted residual of the reward model.

    Unbiased when either the propensities or the reward model are right. ``estimated_rewards``
    is ``(n_rows, n_actions, slate_size)``; other arguments as :func:`ips`.

    Example:
        >>> import numpy as np
        >>> fb = BanditFeedback(action=[0, 1], reward=[1, 0], propensity=[0.5, 0.5])
        >>> doubly_robust(fb, [[1.0, 0.0]] * 2, np.full((2, 2), 0.5))
        1.0
    """
    return _value(
        _prepare(
            "dr",
            feedback,
            action_dist,
            estimated_rewards,
            clip,
            support,
            support_tolerance,
            logging_action_dist,
        )
    )


@dataclass(frozen=True)
class PolicyValueInterval:
    """A point estimate with a percentile bootstrap interval."""

    estimator: str
    value: float
    lower: float
    upper: float
    alpha: float
    n_bootstrap: int

    def relative_error(self, truth: float) -> float:
        """``|value - truth| / |truth|``."""
        if truth == 0:
            raise InvalidInputError("relative error to a truth of 0 is undefined; compare absolute errors")
        return abs(self.value - truth) / abs(truth)

    def covers(self, value: float) -> bool:
        """Whether ``value`` lies inside ``[lower, upper]``."""
        return self.lower <= value <= self.upper


def estimate_interval(
    estimator: str,
    feedback: BanditFeedback,
    action_dist: Any,
    estimated_rewards: Any | None = None,
    *,
    clip: float | None = None,
    alpha: float = 0.05,
    n_bootstrap: int = 1000,
    seed: int | np.random.Generator | None = 0,
    support: SupportPolicy = "raise",
    support_tolerance: float = 0.0,
    logging_action_dist: Any | None = None,
) -> PolicyValueInterval:
    """Point estimate and a ``1 - alpha`` percentile bootstrap interval (rows resampled with replacement).

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> fb = BanditFeedback(action=rng.integers(0, 2, 500), reward=rng.integers(0, 2, 500), propensity=np.full(500, 0.5))
        >>> iv = estimate_interval("snips", fb, np.tile([0.7, 0.3], (500, 1)), seed=0)
        >>> iv.lower < iv.value < iv.upper
        True
    """
    _check_bootstrap(alpha, n_bootstrap)
    terms = _prepare(
        estimator,
        feedback,
        action_dist,
        estimated_rewards,
        clip,
        support,
        support_tolerance,
        logging_action_dist,
    )
    return _interval(estimator, terms, alpha, n_bootstrap, seed)


def _check_bootstrap(alpha: Any, n_bootstrap: Any) -> None:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float | np.floating) or not 0 < alpha < 1:
        raise InvalidInputError(f"alpha must be in (0, 1), got {alpha!r}")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 10:
        raise InvalidInputError(f"n_bootstrap must be an int >= 10, got {n_bootstrap!r}")


def _interval(
    estimator: str, terms: _Terms, alpha: float, n_bootstrap: int, seed: int | np.random.Generator | None
) -> PolicyValueInterval:
    """The point estimate of ``terms`` and its percentile bootstrap interval (rows resampled)."""
    num, den = terms
    value = _value(terms)
    rng = _check_seed(seed)
    n = num.shape[0]
    boot = np.empty(n_bootstrap)
    chunk = max(1, min(n_bootstrap, 4_000_000 // n))
    for start in range(0, n_bootstrap, chunk):
        stop = min(n_bootstrap, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        m = num[idx].mean(axis=1)
        if den is not None:
            d = den[idx].mean(axis=1)
            m = np.divide(m, d, out=np.zeros_like(m), where=d > 0)
        boot[start:stop] = m
    lower, upper = np.percentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return PolicyValueInterval(estimator, value, float(lower), float(upper), alpha, n_bootstrap)


def evaluate_policy(
    feedback: BanditFeedback,
    action_dist: Any,
    estimated_rewards: Any | None = None,
    *,
    estimators: tuple[str, ...] | None = None,
    clip: float | None = None,
    alpha: float = 0.05,
    n_bootstrap: int = 1000,
    seed: int = 0,
    support: SupportPolicy = "raise",
    logging_action_dist: Any | None = None,
) -> dict[str, PolicyValueInterval]:
    """Every applicable estimator with its bootstrap interval: IPS and SNIPS, plus DM and DR when
    ``estimated_rewards`` is given. The support is checked once, before any estimate."""
    names = estimators or (
        ("ips", "snips", "dm", "dr") if estimated_rewards is not None else ("ips", "snips")
    )
    _check_bootstrap(alpha, n_bootstrap)
    _check_clip(clip)
    for name in names:
        if name not in ESTIMATORS:
            raise UnknownNameError(f"unknown estimator {name!r}; expected one of {sorted(ESTIMATORS)}")
        if ESTIMATORS[name][1] and estimated_rewards is None:
            raise InvalidInputError(
                f"estimator {name!r} needs estimated_rewards (a reward model's predictions)"
            )
    # validate the arrays and check the support once, then every estimator reads them as they are
    pi_e = as_action_dist(action_dist, feedback)
    q = (
        None
        if estimated_rewards is None
        else as_row_action_position(estimated_rewards, feedback, "estimated_rewards")
    )
    _check_support(feedback, pi_e, support, 0.0, logging_action_dist)
    return {
        name: _interval(name, ESTIMATORS[name][0](feedback, pi_e, q, clip), alpha, n_bootstrap, seed)
        for name in names
    }
