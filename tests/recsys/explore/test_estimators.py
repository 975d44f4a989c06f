"""Off-policy estimators: known ground truth, hand-computed values, obp parity, support, bad input."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys.common.errors import InvalidInputError, UnknownNameError
from mlsys.recsys.explore import (
    BanditFeedback,
    BayesianLinearRewardModel,
    BernoulliThompsonSampling,
    EpsilonGreedy,
    OpenBanditData,
    SupportDeficiencyError,
    cross_fit_rewards,
    direct_method,
    doubly_robust,
    estimate_interval,
    evaluate_policy,
    importance_weights,
    ips,
    snips,
    support_report,
    synthetic_bandit,
    zozotown_bts_prior,
)

HAS_OBP = importlib.util.find_spec("obp") is not None


def test_relative_error_on_a_synthetic_bandit_with_known_truth() -> None:
    """10 actions, 10,000 rounds, softmax logging vs epsilon-greedy target; mean over 10 data sets."""
    errors = []
    for seed in range(10):
        b = synthetic_bandit(10_000, 10, seed=seed)
        q = cross_fit_rewards(b.feedback, seed=seed)
        values = [
            ips(b.feedback, b.target_dist),
            snips(b.feedback, b.target_dist),
            doubly_robust(b.feedback, b.target_dist, q),
        ]
        errors.append([abs(v - b.true_value) / b.true_value for v in values])
    mean = np.mean(errors, axis=0)
    assert mean[0] <= 0.05, mean
    assert mean[1] <= 0.02, mean
    assert mean[2] <= 0.02, mean


def test_hand_computed_values() -> None:
    fb = BanditFeedback(action=[0, 1, 0, 2], reward=[1.0, 0.0, 0.0, 1.0], propensity=[0.5, 0.25, 0.5, 0.25])
    pi = np.array([[0.6, 0.2, 0.2]] * 4)
    w = np.array([1.2, 0.8, 1.2, 0.8])
    r = fb.reward
    assert ips(fb, pi) == pytest.approx(np.mean(w * r))
    assert snips(fb, pi) == pytest.approx(np.sum(w * r) / np.sum(w))
    q = np.tile([0.5, 0.1, 0.3], (4, 1))
    dm = 0.6 * 0.5 + 0.2 * 0.1 + 0.2 * 0.3
    assert direct_method(fb, pi, q) == pytest.approx(dm)
    q_logged = q[np.arange(4), fb.action]
    assert doubly_robust(fb, pi, q) == pytest.approx(dm + np.mean(w * (r - q_logged)))
    assert ips(fb, pi, clip=1.0) == pytest.approx(np.mean(np.minimum(w, 1.0) * r))
    np.testing.assert_allclose(importance_weights(fb, pi), w)


def test_slates_use_position_wise_propensities() -> None:
    fb = BanditFeedback(action=[0, 1, 1, 0], position=[0, 1, 0, 1], reward=[1, 0, 1, 1], propensity=[0.5] * 4)
    pi = np.zeros((4, 2, 2))
    pi[:, 0, 0] = pi[:, 1, 1] = 1.0  # always shows 0 then 1
    # rows where the target agrees: (0, pos 0) and (1, pos 1): weights 2, others 0
    assert ips(fb, pi) == pytest.approx((2 * 1 + 2 * 0) / 4)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.05, 1.0))
def test_estimators_equal_truth_when_target_equals_logging_and_model_is_exact(seed: int, eps: float) -> None:
    """On-policy: IPS weights are all 1 (IPS = SNIPS = mean reward); DR with the true q equals DM + residual."""
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(200, 5))
    pol = EpsilonGreedy(eps, seed=seed)
    s = pol.select(scores)
    r = rng.integers(0, 2, 200).astype(float)
    fb = BanditFeedback(action=s.actions[:, 0], reward=r, propensity=s.propensities[:, 0], n_actions=5)
    dist = pol.action_distribution(scores)
    assert ips(fb, dist, support="ignore") == pytest.approx(r.mean())
    assert snips(fb, dist, support="ignore") == pytest.approx(r.mean())
    q = np.full((200, 5), 0.5)
    assert doubly_robust(fb, dist, q, support="ignore") == pytest.approx(r.mean())


@pytest.mark.skipif(
    not HAS_OBP, reason="obp not installed (pip install --no-deps --ignore-requires-python obp==0.5.7)"
)
def test_parity_with_obp_on_the_same_logged_data() -> None:
    from obp.ope import DirectMethod, DoublyRobust, InverseProbabilityWeighting
    from obp.ope import SelfNormalizedInverseProbabilityWeighting as SNIPW

    b = synthetic_bandit(5_000, 10, seed=3)
    fb, dist = b.feedback, b.target_dist
    q = cross_fit_rewards(fb)
    kw = dict(
        reward=fb.reward, action=fb.action, position=fb.position, pscore=fb.propensity, action_dist=dist
    )
    pairs = [
        (InverseProbabilityWeighting().estimate_policy_value(**kw), ips(fb, dist)),
        (InverseProbabilityWeighting(lambda_=3.0).estimate_policy_value(**kw), ips(fb, dist, clip=3.0)),
        (SNIPW().estimate_policy_value(**kw), snips(fb, dist)),
        (
            DoublyRobust().estimate_policy_value(estimated_rewards_by_reg_model=q, **kw),
            doubly_robust(fb, dist, q),
        ),
        (
            DoublyRobust(lambda_=3.0).estimate_policy_value(estimated_rewards_by_reg_model=q, **kw),
            doubly_robust(fb, dist, q, clip=3.0),
        ),
    ]
    kw.pop("pscore")
    pairs.append(
        (
            DirectMethod().estimate_policy_value(estimated_rewards_by_reg_model=q, **kw),
            direct_method(fb, dist, q),
        )
    )
    for theirs, ours in pairs:
        assert abs(theirs - ours) <= 1e-9


def test_bootstrap_interval_is_seeded_covers_truth_and_shrinks() -> None:
    b = synthetic_bandit(4_000, 10, seed=1)
    a1 = estimate_interval("snips", b.feedback, b.target_dist, seed=5, n_bootstrap=300)
    a2 = estimate_interval("snips", b.feedback, b.target_dist, seed=5, n_bootstrap=300)
    assert a1 == a2
    assert a1.lower < a1.value < a1.upper and a1.covers(b.true_value)
    big = synthetic_bandit(16_000, 10, seed=1)
    a3 = estimate_interval("snips", big.feedback, big.target_dist, seed=5, n_bootstrap=300)
    assert (a3.upper - a3.lower) < 0.7 * (a1.upper - a1.lower)  # ~1/2 with 4x the data
    q = cross_fit_rewards(b.feedback)
    table = evaluate_policy(b.feedback, b.target_dist, q, n_bootstrap=100)
    assert set(table) == {"ips", "snips", "dm", "dr"}
    assert table["dr"].value == pytest.approx(doubly_robust(b.feedback, b.target_dist, q))


def test_support_deficiency_is_reported_not_hidden() -> None:
    fb = BanditFeedback(action=[0, 1, 0, 1], reward=[1, 0, 1, 0], propensity=[0.5] * 4, n_actions=3)
    pi = np.tile([0.25, 0.25, 0.5], (4, 1))  # half its mass on action 2, never logged
    rep = support_report(fb, pi)
    assert rep.deficient_mass == pytest.approx(0.5) and rep.unlogged == ((2, 0),) and not rep.supported
    for fn in (ips, snips):
        with pytest.raises(SupportDeficiencyError, match=r"0\.5 of its mass"):
            fn(fb, pi)
    with pytest.raises(SupportDeficiencyError):
        doubly_robust(fb, pi, np.zeros((4, 3)))
    with pytest.warns(UserWarning, match="could not have shown"):
        ips(fb, pi, support="warn")
    assert ips(fb, pi, support_tolerance=0.5) == pytest.approx(0.5 * 1.0 * 2 / 4)
    # exact support from the logging policy's distribution: action 1 has pi_0 = 0 in row 0
    logging = np.tile([0.5, 0.5, 0.0], (4, 1))
    logging[0] = [1.0, 0.0, 0.0]
    exact = support_report(fb, np.tile([0.5, 0.5, 0.0], (4, 1)), logging_action_dist=logging)
    assert exact.deficient_mass == pytest.approx(0.5 / 4)
    with pytest.raises(UnknownNameError):
        ips(fb, pi, support="maybe")  # type: ignore[arg-type]
    for bad_tol in (float("nan"), -0.1, 2.0, "x"):
        with pytest.raises(InvalidInputError, match="support_tolerance"):
            ips(fb, pi, support_tolerance=bad_tol)  # type: ignore[arg-type]


def test_a_greedy_contextual_logger_cannot_evaluate_another_greedy_policy() -> None:
    """Every action was logged somewhere (the pooled check passes) but each row shows one action
    with probability 1: the target's other choices are unsupported row by row."""
    rng = np.random.default_rng(0)
    n, n_act = 2_000, 5
    q = rng.random((n, n_act))
    logger = EpsilonGreedy(0.0).select(q)  # greedy on q: propensity 1 everywhere
    fb = BanditFeedback(
        action=logger.actions[:, 0],
        reward=rng.random(n) < 0.5,
        propensity=logger.propensities[:, 0],
        n_actions=n_act,
    )
    assert set(fb.action.tolist()) == set(range(n_act))  # pooled support looks complete
    target = EpsilonGreedy(0.0).action_distribution(-q)  # greedy on the opposite preference
    rep = support_report(fb, target)
    assert rep.deficient_mass == pytest.approx(1.0) and rep.deterministic_rows == n and not rep.exact
    with pytest.raises(SupportDeficiencyError, match="propensity 1"):
        ips(fb, target)
    with pytest.raises(SupportDeficiencyError):
        importance_weights(fb, target)
    # the exact check agrees
    assert support_report(
        fb, target, logging_action_dist=EpsilonGreedy(0.0).action_distribution(q)
    ).deficient_mass == pytest.approx(1.0)


def test_non_feedback_and_zero_truth_are_typed_errors() -> None:
    for fn in (support_report, importance_weights, evaluate_policy):
        with pytest.raises(InvalidInputError, match="BanditFeedback"):
            fn(None, np.ones((1, 1)))  # type: ignore[arg-type]
    fb = BanditFeedback(action=[0, 1] * 20, reward=[1.0, 0.0] * 20, propensity=[0.5] * 40)
    iv = estimate_interval("ips", fb, np.full((40, 2), 0.5), n_bootstrap=10)
    with pytest.raises(InvalidInputError, match="truth of 0"):
        iv.relative_error(0.0)
    with pytest.raises(InvalidInputError, match="alpha"):
        estimate_interval("ips", fb, np.full((40, 2), 0.5), alpha="x")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="seed"):
        estimate_interval("ips", fb, np.full((40, 2), 0.5), seed="x")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(propensity=[0.0, 0.5]), r"propensity must be in \(0, 1\]"),
        (dict(propensity=[1.5, 0.5]), r"propensity must be in \(0, 1\]"),
        (dict(reward=[2.0, 0.0]), "outside the declared reward_range"),
        (dict(reward=[np.nan, 0.0]), "NaN"),
        (dict(reward=[1.0]), "length 1, expected 2"),
        (dict(position=[0, 0, 0]), "length 3, expected 2"),
        (dict(action=[0, -1]), "negative"),
        (dict(action=[0, 5], n_actions=3), r"expected values in \[0, 3\)"),
        (dict(action=[], reward=[], propensity=[]), "empty"),
        (dict(action=[0.5, 1]), "integers"),
    ],
)
def test_bad_feedback_is_a_typed_error(kwargs, match) -> None:  # type: ignore[no-untyped-def]
    args = dict(action=[0, 1], reward=[1.0, 0.0], propensity=[0.5, 0.5])
    args.update(kwargs)
    with pytest.raises(InvalidInputError, match=match):
        BanditFeedback(**args)


def test_bad_estimator_arguments_are_typed_errors() -> None:
    fb = BanditFeedback(action=[0, 1], reward=[1.0, 0.0], propensity=[0.5, 0.5])
    with pytest.raises(InvalidInputError, match="shape"):
        ips(fb, np.ones((3, 2)) / 2)
    with pytest.raises(InvalidInputError, match="sum to 1"):
        ips(fb, np.ones((2, 2)))
    with pytest.raises(InvalidInputError, match="clip"):
        ips(fb, np.full((2, 2), 0.5), clip=0.0)
    with pytest.raises(InvalidInputError, match="estimated_rewards"):
        doubly_robust(fb, np.full((2, 2), 0.5), np.zeros((2, 3)))
    with pytest.raises(UnknownNameError, match="unknown estimator"):
        estimate_interval("magic", fb, np.full((2, 2), 0.5))
    with pytest.raises(InvalidInputError, match="reward_range"):
        BanditFeedback(action=[0], reward=[5.0], propensity=[1.0], reward_range=(0.0, 1.0))
    ok = BanditFeedback(action=[0], reward=[5.0], propensity=[1.0], reward_range=(0.0, 10.0))
    assert ips(ok, [[1.0]]) == 5.0


def test_cross_fit_rewards_are_out_of_fold_and_in_range() -> None:
    b = synthetic_bandit(3_000, 5, seed=0)
    q = cross_fit_rewards(b.feedback, n_folds=3)
    assert q.shape == (3_000, 5, 1) and q.min() >= 0 and q.max() <= 1
    corr = np.corrcoef(q[:, :, 0].ravel(), b.expected_reward.ravel())[0, 1]
    assert corr > 0.8
    from sklearn.linear_model import LogisticRegression

    q2 = cross_fit_rewards(b.feedback, LogisticRegression(max_iter=200), n_folds=2)
    assert q2.shape == q.shape
    with pytest.raises(InvalidInputError, match="n_folds"):
        cross_fit_rewards(b.feedback, n_folds=1)


def test_importance_weighted_training_targets_the_target_policy() -> None:
    """A reward model fit with importance weights estimates the target policy's reward, not the logger's."""
    b = synthetic_bandit(20_000, 4, seed=2)
    fb = b.feedback
    w = importance_weights(fb, b.target_dist)
    x1 = np.ones((fb.n_rows, 1))
    # a context-free model per action: weighting by w re-weights rows towards the target's contexts
    plain = BayesianLinearRewardModel(4, fit_intercept=False).fit(x1, fb.action, fb.reward)
    weighted = BayesianLinearRewardModel(4, fit_intercept=False).fit(
        x1, fb.action, fb.reward, sample_weight=w
    )
    pi = b.target_dist[:, :, 0]
    truth_per_action = (pi * b.expected_reward).sum(axis=0) / pi.sum(axis=0)  # E[q(x, a) | target shows a]
    err_plain = np.abs(plain.predict(np.ones((1, 1)))[0] - truth_per_action).mean()
    err_weighted = np.abs(weighted.predict(np.ones((1, 1)))[0] - truth_per_action).mean()
    assert err_weighted < err_plain


def test_obd_bts_policy_from_random_logs(obd: dict[str, OpenBanditData]) -> None:
    """The Bernoulli-TS policy's click rate from the uniform-random logs, against its on-policy rate."""
    rnd, bts = obd["random"], obd["bts"]
    alpha, beta = zozotown_bts_prior("all")
    assert alpha.shape == beta.shape == (80,)
    fb = rnd.feedback
    assert (fb.n_actions, fb.slate_size, fb.n_rows) == (80, 3, 10_000)
    dist = BernoulliThompsonSampling(
        80, 3, alpha=alpha, beta=beta, n_draws=100_000, seed=12345
    ).action_distribution(fb.n_rows)
    truth = bts.on_policy_value
    assert truth == pytest.approx(0.0042, abs=5e-5)
    table = evaluate_policy(fb, dist, cross_fit_rewards(fb), n_bootstrap=200)
    for name in ("ips", "snips", "dr"):
        assert table[name].covers(truth), (name, table[name])
        assert table[name].relative_error(truth) < 0.25, (name, table[name])
    # obp's own figure for IPW with the same prior: 0.004553 (Monte-Carlo noise of the action distribution aside)
    assert table["ips"].value == pytest.approx(0.004553, rel=0.02)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(n_actions=2.5), "n_actions"),
        (dict(n_actions="x"), "n_actions"),
        (dict(slate_size=True), "slate_size"),
        (dict(reward_range="ab"), "reward_range"),
        (dict(reward_range=(0.0, 1.0, 2.0)), "reward_range"),
        (dict(context=[["a"], ["b"]]), "context"),
        (dict(action=[0, 1e20]), "integers"),
    ],
)
def test_more_bad_feedback_is_typed(kwargs, match) -> None:  # type: ignore[no-untyped-def]
    args = dict(action=[0, 1], reward=[1.0, 0.0], propensity=[0.5, 0.5])
    args.update(kwargs)
    with pytest.raises(InvalidInputError, match=match):
        BanditFeedback(**args)


def test_cross_fit_with_a_classifier_on_a_one_class_fold_is_typed() -> None:
    from sklearn.linear_model import LogisticRegression

    fb = BanditFeedback(action=[0, 1, 0, 1, 0, 1], reward=[0.0] * 6, propensity=[0.5] * 6)
    with pytest.raises(InvalidInputError, match="failed to fit fold"):
        cross_fit_rewards(fb, LogisticRegression(), n_folds=2)
    with pytest.raises(InvalidInputError, match="seed"):
        cross_fit_rewards(fb, seed="x")  # type: ignore[arg-type]
