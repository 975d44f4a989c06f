"""mlsys.recsys.explore: exploration policies, propensity logging, off-policy evaluation, and a
feedback-loop simulator.

A recommender trains on what its previous version showed; without exploration its catalogue
narrows round after round while offline metrics look fine. This package breaks that loop:

* policies that show a slate and say with which probability (:class:`EpsilonGreedy` and
  :class:`Softmax` over any recommender's scores, :class:`BernoulliThompsonSampling`,
  :class:`LinearThompsonSampling`, :class:`UniformRandom`, :class:`ShadowExploration`);
* an append-only :class:`PropensityLogger` (JSON Lines, Parquet with pyarrow) that fails loudly
  on a truncated record and loses nothing before it;
* off-policy estimators (:func:`ips`, :func:`snips`, :func:`direct_method`,
  :func:`doubly_robust`, weight clipping, :func:`estimate_interval` bootstrap intervals) that
  refuse a target policy outside the logged support, and :func:`importance_weights` for
  IPS-weighted training;
* :class:`FeedbackLoopSimulator`, the demonstration that exploration keeps the catalogue open.

Example:
    >>> import numpy as np
    >>> from mlsys.recsys.explore import EpsilonGreedy, BanditFeedback, ips, snips
    >>> scores = np.array([[0.9, 0.1, 0.5]] * 4)
    >>> logging = EpsilonGreedy(0.5, seed=0)
    >>> shown = logging.select(scores)
    >>> fb = BanditFeedback(action=shown.actions[:, 0], reward=[1, 0, 1, 1],
    ...                     propensity=shown.propensities[:, 0], n_actions=3)
    >>> target = EpsilonGreedy(0.2).action_distribution(scores)
    >>> round(snips(fb, target), 3)
    0.84
"""

from mlsys.recsys.explore._estimators import (
    ESTIMATORS,
    PolicyValueInterval,
    SupportDeficiencyError,
    SupportReport,
    direct_method,
    doubly_robust,
    estimate_interval,
    evaluate_policy,
    importance_weights,
    ips,
    snips,
    support_report,
)
from mlsys.recsys.explore._feedback import BanditFeedback, as_action_dist
from mlsys.recsys.explore._logging import (
    CorruptLogError,
    LogRecord,
    PropensityLogger,
    read_log,
    repair_log,
    to_feedback,
    write_parquet,
)
from mlsys.recsys.explore._obd import (
    OpenBanditData,
    find_open_bandit_dataset,
    load_open_bandit_dataset,
    zozotown_bts_prior,
)
from mlsys.recsys.explore._policies import (
    BernoulliThompsonSampling,
    EpsilonGreedy,
    LinearThompsonSampling,
    Policy,
    ShadowExploration,
    Slate,
    Softmax,
    UniformRandom,
    greedy_slate,
)
from mlsys.recsys.explore._reward_model import BayesianLinearRewardModel, cross_fit_rewards
from mlsys.recsys.explore._simulator import (
    FeedbackLoopSimulator,
    PolicyFactory,
    SimulationReport,
    SimulatorConfig,
    default_policies,
)
from mlsys.recsys.explore._synthetic import SyntheticBandit, synthetic_bandit

__all__ = [
    "ESTIMATORS",
    "BanditFeedback",
    "BayesianLinearRewardModel",
    "BernoulliThompsonSampling",
    "CorruptLogError",
    "EpsilonGreedy",
    "FeedbackLoopSimulator",
    "LinearThompsonSampling",
    "LogRecord",
    "OpenBanditData",
    "Policy",
    "PolicyFactory",
    "PolicyValueInterval",
    "PropensityLogger",
    "ShadowExploration",
    "SimulationReport",
    "SimulatorConfig",
    "Slate",
    "Softmax",
    "SupportDeficiencyError",
    "SupportReport",
    "SyntheticBandit",
    "UniformRandom",
    "as_action_dist",
    "cross_fit_rewards",
    "default_policies",
    "direct_method",
    "doubly_robust",
    "estimate_interval",
    "evaluate_policy",
    "find_open_bandit_dataset",
    "greedy_slate",
    "importance_weights",
    "ips",
    "load_open_bandit_dataset",
    "read_log",
    "repair_log",
    "snips",
    "support_report",
    "synthetic_bandit",
    "to_feedback",
    "write_parquet",
    "zozotown_bts_prior",
]
