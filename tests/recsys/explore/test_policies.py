"""Exploration policies: propensities are probabilities, match what the policy does, and are seeded."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mlsys.common.errors import InvalidInputError, NotFittedError
from mlsys.recsys.explore import (
    BayesianLinearRewardModel,
    BernoulliThompsonSampling,
    EpsilonGreedy,
    LinearThompsonSampling,
    ShadowExploration,
    Softmax,
    UniformRandom,
    greedy_slate,
)


def _frequencies(actions: np.ndarray, n_actions: int) -> np.ndarray:
    """(draws, k) actions of one context -> (n_actions, k) empirical frequencies."""
    k = actions.shape[1]
    out = np.zeros((n_actions, k))
    for p in range(k):
        out[:, p] = np.bincount(actions[:, p], minlength=n_actions) / actions.shape[0]
    return out


def _assert_close_to_frequencies(dist: np.ndarray, freq: np.ndarray, n: int) -> None:
    # 5 standard errors of a binomial proportion, plus a floor for the Monte-Carlo propensities
    se = np.sqrt(np.maximum(dist * (1 - dist), 1e-12) / n)
    assert np.all(np.abs(dist - freq) <= 5 * se + 2e-3), np.abs(dist - freq).max()


scores_st = st.integers(1, 4).flatmap(
    lambda k: st.tuples(
        st.just(k),
        arrays(
            np.float64,
            st.tuples(st.integers(1, 5), st.integers(k + 1, 9)),
            elements=st.sampled_from([-np.inf, 0.0, 0.5, 1.0, 2.0, 3.5]),
        ),
        st.floats(0.0, 1.0),
    )
)


@settings(max_examples=150, deadline=None)
@given(scores_st)
def test_epsilon_greedy_distribution_is_a_distribution(args: tuple[int, np.ndarray, float]) -> None:
    k, scores, eps = args
    scores[:, : k + 1] = np.maximum(scores[:, : k + 1], 0.0)  # at least k + 1 candidates per row
    dist = EpsilonGreedy(eps, k).action_distribution(scores)
    assert dist.shape == (scores.shape[0], scores.shape[1], k)
    np.testing.assert_allclose(dist.sum(axis=1), 1.0, atol=1e-12)  # each slot: a distribution
    assert (dist >= 0).all() and (dist.sum(axis=2) <= 1 + 1e-12).all()  # an action fills at most one slot
    assert (dist[np.isinf(scores)] == 0).all()  # a non-candidate is never shown
    slate = EpsilonGreedy(eps, k, seed=1).select(scores)
    rows = np.arange(scores.shape[0])[:, None]
    np.testing.assert_allclose(slate.propensities, dist[rows, slate.actions, np.arange(k)])
    assert all(len(set(r)) == k for r in slate.actions.tolist())
    assert np.isfinite(scores[rows, slate.actions]).all()


def test_epsilon_greedy_matches_empirical_frequencies() -> None:
    scores = np.array([[0.3, 2.0, -np.inf, 1.0, 0.5, 0.4]])
    pol = EpsilonGreedy(0.3, 2, seed=0)
    n = 40_000
    slate = pol.select(np.repeat(scores, n, axis=0))
    _assert_close_to_frequencies(pol.action_distribution(scores)[0], _frequencies(slate.actions, 6), n)
    # whole-slate propensity: greedy slate (1-eps) + eps / (5 * 4), any other eps / 20
    greedy = (slate.actions == [1, 3]).all(axis=1)
    np.testing.assert_allclose(slate.slate_propensities[greedy], 0.7 + 0.3 / 20)
    np.testing.assert_allclose(slate.slate_propensities[~greedy], 0.3 / 20)
    assert abs(greedy.mean() - (0.7 + 0.3 / 20)) < 0.01
    assert not slate.explored[greedy].any()


def test_greedy_breaks_ties_by_lower_index_and_epsilon_zero_is_deterministic() -> None:
    scores = np.array([[1.0, 2.0, 2.0, 0.0]])
    assert greedy_slate(scores, 3).tolist() == [[1, 2, 0]]
    s = EpsilonGreedy(0.0, 2, seed=3).select(np.repeat(scores, 50, axis=0))
    assert (s.actions == [1, 2]).all() and (s.propensities == 1).all()


def test_uniform_random_is_uniform_over_candidates() -> None:
    scores = np.array([[0.0, -np.inf, 0.0, 0.0, 0.0]])
    pol = UniformRandom(2, seed=0)
    dist = pol.action_distribution(scores)[0]
    np.testing.assert_allclose(dist[[0, 2, 3, 4]], 0.25)
    assert (dist[1] == 0).all()
    n = 20_000
    s = pol.select(np.repeat(scores, n, axis=0))
    assert (s.actions != 1).all()
    np.testing.assert_allclose(s.slate_propensities, 1 / 12)
    _assert_close_to_frequencies(dist, _frequencies(s.actions, 5), n)


def test_softmax_first_slot_exact_and_slate_probabilities_sum_to_one() -> None:
    scores = np.array([[0.0, 1.0, 0.5, -0.3]])
    pol = Softmax(0.7, 2, n_draws=50_000, seed=0)
    dist = pol.action_distribution(scores)[0]
    z = np.exp(scores[0] / 0.7)
    np.testing.assert_allclose(dist[:, 0], z / z.sum(), atol=1e-12)
    # Plackett-Luce over all 12 ordered slates sums to 1
    total = 0.0
    for a, b in itertools.permutations(range(4), 2):
        total += z[a] / z.sum() * z[b] / (z.sum() - z[a])
    assert abs(total - 1) < 1e-12
    n = 40_000
    s = Softmax(0.7, 2, n_draws=20, seed=1).select(np.repeat(scores, n, axis=0))
    _assert_close_to_frequencies(dist, _frequencies(s.actions, 4), n)
    first = s.actions[:, 0]
    second = s.actions[:, 1]
    expected = z[first] / z.sum() * z[second] / (z.sum() - z[first])
    np.testing.assert_allclose(s.slate_propensities, expected)


def test_bernoulli_ts_monte_carlo_propensities_converge_to_empirical_frequencies() -> None:
    alpha = np.array([2.0, 5.0, 3.0, 1.0, 8.0])
    beta = np.array([8.0, 5.0, 6.0, 1.0, 12.0])
    n = 40_000
    errors = []
    for draws in (200, 50_000):
        pol = BernoulliThompsonSampling(5, 2, alpha=alpha, beta=beta, n_draws=draws, seed=0)
        freq = _frequencies(pol.select(n).actions, 5)
        errors.append(np.abs(pol.slot_distribution() - freq).max())
        assert pol.action_distribution(3).shape == (3, 5, 2)
    # more draws, closer to what the policy does
    assert errors[1] < errors[0]
    pol = BernoulliThompsonSampling(5, 2, alpha=alpha, beta=beta, n_draws=50_000, seed=0)
    _assert_close_to_frequencies(pol.slot_distribution(), _frequencies(pol.select(n).actions, 5), n)
    np.testing.assert_allclose(pol.slot_distribution().sum(axis=0), 1.0)


def test_bernoulli_ts_update_and_bad_input() -> None:
    pol = BernoulliThompsonSampling(3, seed=0).update([0, 2, 2], [1, 0, 1])
    assert pol.alpha_.tolist() == [2.0, 1.0, 2.0] and pol.beta_.tolist() == [1.0, 1.0, 2.0]
    with pytest.raises(InvalidInputError, match="0 or 1"):
        pol.update([0], [0.5])
    with pytest.raises(InvalidInputError, match="differ in length"):
        pol.update([0, 1], [1])
    with pytest.raises(InvalidInputError, match=r"\[0, 3\)"):
        pol.update([3], [1])
    with pytest.raises(InvalidInputError, match="slate_size"):
        BernoulliThompsonSampling(2, 3)
    with pytest.raises(InvalidInputError, match="positive"):
        BernoulliThompsonSampling(3, alpha=[1, 0, 1])


def test_linear_ts_propensities_match_its_draws() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    a = rng.integers(0, 4, 300)
    r = (rng.random(300) < 0.3 + 0.1 * a).astype(float)
    model = BayesianLinearRewardModel(4).fit(x, a, r)
    ctx = x[:1]
    pol = LinearThompsonSampling(model, 2, n_draws=50_000, seed=0)
    dist = pol.action_distribution(ctx)[0]
    n = 20_000
    pol_fast = LinearThompsonSampling(model, 2, n_draws=10, seed=1)
    freq = _frequencies(pol_fast.select(np.repeat(ctx, n, axis=0)).actions, 4)
    _assert_close_to_frequencies(dist, freq, n)
    with pytest.raises(NotFittedError):
        LinearThompsonSampling(BayesianLinearRewardModel(4)).select(ctx)


def test_shadow_exploration_mixes_exactly() -> None:
    scores = np.array([[3.0, 1.0, 2.0, 0.0]])
    pol = ShadowExploration(EpsilonGreedy(0.1, 1), fraction=0.2, seed=0)
    dist = pol.action_distribution(scores)[0, :, 0]
    np.testing.assert_allclose(dist, 0.8 * np.array([0.925, 0.025, 0.025, 0.025]) + 0.2 * 0.25)
    s = pol.select(np.repeat(scores, 20_000, axis=0))
    assert abs(s.shadow.mean() - 0.2) < 0.01
    np.testing.assert_allclose(s.shadow_propensities, 0.25)
    np.testing.assert_allclose(s.propensities[:, 0], dist[s.actions[:, 0]])


def test_policies_are_seeded() -> None:
    scores = np.random.default_rng(0).normal(size=(50, 8))
    for make in (
        lambda: EpsilonGreedy(0.5, 2, seed=7),
        lambda: Softmax(1.0, 2, n_draws=100, seed=7),
        lambda: UniformRandom(2, seed=7),
    ):
        a, b = make().select(scores), make().select(scores)
        assert np.array_equal(a.actions, b.actions) and np.array_equal(a.propensities, b.propensities)
    t1, t2 = (
        BernoulliThompsonSampling(8, 2, seed=7).select(50),
        BernoulliThompsonSampling(8, 2, seed=7).select(50),
    )
    assert np.array_equal(t1.actions, t2.actions)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: EpsilonGreedy(1.5), "epsilon"),
        (lambda: EpsilonGreedy(0.1, 0), "slate_size"),
        (lambda: Softmax(0.0), "temperature"),
        (lambda: EpsilonGreedy(0.1).select([[np.nan, 1.0]]), "NaN"),
        (lambda: EpsilonGreedy(0.1, 2).select([[1.0, -np.inf, -np.inf]]), "fewer than slate_size"),
        (lambda: UniformRandom(1).select(np.zeros((0, 3))), "shape"),
        (lambda: BernoulliThompsonSampling(3).select(0), "positive number of rounds"),
        (lambda: Softmax(1.0, n_draws=0), "n_draws"),
    ],
)
def test_bad_input_is_a_typed_error(call, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInputError, match=match):
        call()


def test_policy_versions_are_stable_across_processes_and_track_parameters() -> None:
    import subprocess
    import sys

    code = (
        "from mlsys.recsys.explore import BernoulliThompsonSampling as B;print(B(3, alpha=[1, 2, 3]).version)"
    )
    other_process = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    pol = BernoulliThompsonSampling(3, alpha=[1, 2, 3])
    assert pol.version == other_process.strip()  # hash() of bytes would differ between processes
    before = pol.version
    pol.update([0], [1])
    assert pol.version != before
    assert EpsilonGreedy(0.1).version != EpsilonGreedy(0.2).version


@settings(max_examples=12, deadline=None)
@given(st.integers(2, 7), st.integers(1, 3), st.floats(0.0, 1.0), st.integers(0, 2**31 - 1))
def test_epsilon_greedy_propensities_match_empirical_frequencies(
    n_actions: int, k: int, eps: float, seed: int
) -> None:
    k = min(k, n_actions)
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(1, n_actions))
    if n_actions > k + 1:
        scores[0, rng.integers(0, n_actions)] = -np.inf  # one non-candidate
    pol = EpsilonGreedy(eps, k, seed=seed)
    n = 8_000
    freq = _frequencies(pol.select(np.repeat(scores, n, axis=0)).actions, n_actions)
    dist = pol.action_distribution(scores)[0]
    np.testing.assert_allclose(dist.sum(axis=0), 1.0)
    _assert_close_to_frequencies(dist, freq, n)


def test_softmax_is_finite_at_extreme_temperatures_and_scores() -> None:
    pol = Softmax(0.05, 3, n_draws=5, seed=0)
    s = pol.select(np.array([[0.0, 0.5, 1.0, 3.0]] * 20))
    assert np.isfinite(s.slate_propensities).all() and (s.slate_propensities <= 1).all()
    assert (s.propensities > 0).all()  # Monte-Carlo slots that missed every draw are floored, not 0
    big = Softmax(1e-3).action_distribution([[1e306, -1e306]])
    assert np.isfinite(big).all() and big[0, 0, 0] == 1.0
    wide = Softmax(1.0, 3, n_draws=5, seed=0).select(np.random.default_rng(0).normal(size=(400, 60)))
    assert (wide.propensities > 0).all()


def test_shadow_exploration_over_thompson_sampling() -> None:
    bts = BernoulliThompsonSampling(6, 2, alpha=[5, 1, 1, 1, 1, 1], n_draws=2_000, seed=0)
    pol = ShadowExploration(bts, fraction=0.3, seed=1)
    s = pol.select(500)
    assert s.actions.shape == (500, 2) and 0.2 < s.shadow.mean() < 0.4
    np.testing.assert_allclose(s.shadow_propensities, 1 / 6)
    dist = pol.action_distribution(3)
    np.testing.assert_allclose(dist.sum(axis=1), 1.0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    model = BayesianLinearRewardModel(5).fit(x, rng.integers(0, 5, 200), rng.random(200))
    lin = ShadowExploration(LinearThompsonSampling(model, 2, n_draws=200, seed=0), fraction=0.5, seed=2)
    s2 = lin.select(x[:50])
    assert s2.actions.shape == (50, 2) and (s2.propensities > 0).all()
    np.testing.assert_allclose(s2.shadow_propensities, 1 / 5)


def test_linear_ts_is_seeded() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 2))
    model = BayesianLinearRewardModel(4).fit(x, rng.integers(0, 4, 100), rng.random(100))
    a = LinearThompsonSampling(model, 2, n_draws=100, seed=5).select(x[:20])
    b = LinearThompsonSampling(model, 2, n_draws=100, seed=5).select(x[:20])
    c = LinearThompsonSampling(model, 2, n_draws=100, seed=6).select(x[:20])
    assert np.array_equal(a.actions, b.actions) and np.array_equal(a.propensities, b.propensities)
    assert not np.array_equal(a.actions, c.actions)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: greedy_slate([[1.0, 2.0]], -1), "slate_size"),
        (lambda: greedy_slate([[1.0, 2.0]], 0), "slate_size"),
        (lambda: EpsilonGreedy(True), "number"),
        (lambda: EpsilonGreedy(0.1, seed="x"), "seed"),
        (lambda: BernoulliThompsonSampling(True), "n_actions"),
        (lambda: BernoulliThompsonSampling(3, alpha=[1, 2]), "length n_actions"),
        (lambda: LinearThompsonSampling(BayesianLinearRewardModel(2), scale="x"), "scale"),
        (lambda: BayesianLinearRewardModel(2, prior_variance="x"), "prior_variance"),
        (
            lambda: BayesianLinearRewardModel(2, prior_variance=1e300).fit(
                np.ones((3, 1)), [0, 1, 0], [1, 0, 1]
            ),
            "prior_variance",
        ),
    ],
)
def test_more_bad_input_is_typed(call, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInputError, match=match):
        call()
    assert EpsilonGreedy(np.float32(0.25)).epsilon == 0.25
    assert BernoulliThompsonSampling(3).update([], []).alpha_.tolist() == [1.0, 1.0, 1.0]


def test_size_parameters_are_bounded_before_allocating() -> None:
    from mlsys.common.errors import LimitExceededError
    from mlsys.recsys.explore import SimulatorConfig, synthetic_bandit

    for call in (
        lambda: Softmax(n_draws=10**12),
        lambda: BernoulliThompsonSampling(10**12),
        lambda: BernoulliThompsonSampling(80, 3).action_distribution(10**9),
        lambda: BernoulliThompsonSampling(80, 3).select(10**12),
        lambda: LinearThompsonSampling(BayesianLinearRewardModel(3), n_draws=10**12),
        lambda: synthetic_bandit(10**12),
        lambda: SimulatorConfig(n_users=10**12),
    ):
        with pytest.raises(LimitExceededError):
            call()
