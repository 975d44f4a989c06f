"""The feedback-loop simulator: greedy narrows the catalogue, exploration keeps it open."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from mlsys.common.errors import InvalidInputError
from mlsys.recsys.explore import (
    EpsilonGreedy,
    FeedbackLoopSimulator,
    SimulatorConfig,
    Softmax,
    default_policies,
)

SMALL = SimulatorConfig(
    n_users=500, n_items=60, users_per_round=100, warm_start_users=100, propensity_draws=100
)


@pytest.fixture(scope="module")
def small_report():  # type: ignore[no-untyped-def]
    return FeedbackLoopSimulator(SMALL).run(rounds=20, progress=False)


def test_greedy_narrows_while_thompson_keeps_coverage(small_report) -> None:  # type: ignore[no-untyped-def]
    s = small_report.summary()
    g, ts, eg = s["greedy"], s["thompson"], s["epsilon_greedy"]
    # the warm start was uniform (it covers the catalogue); greedy collapses to a fraction and stays there
    assert small_report.warm_start_coverage > 0.9
    assert g["coverage_last"] < 0.5 * small_report.warm_start_coverage
    assert g["exploration_conversions"] == 0
    assert ts["coverage_vs_greedy"] >= 2.0
    assert eg["coverage_last"] > g["coverage_last"]
    assert ts["exploration_conversions"] > eg["exploration_conversions"] > 0
    # exploration does not cost more than 5% of true utility over the run on this population
    assert ts["utility_vs_greedy"] > -0.05
    for m in small_report.metrics.values():
        assert (m["utility_ratio"] <= 1 + 1e-12).all() and (m["utility_ratio"] > 0).all()
    assert "| thompson |" in small_report.format_table()


def test_simulation_is_seeded_and_arms_share_users() -> None:
    pol = {"eg": lambda m, rng: EpsilonGreedy(0.2, 5, seed=rng)}
    cfg = SimulatorConfig(
        n_users=100, n_items=30, users_per_round=20, warm_start_users=20, propensity_draws=20
    )
    a = FeedbackLoopSimulator(cfg).run(pol, rounds=4, progress=False)
    b = FeedbackLoopSimulator(cfg).run(pol, rounds=4, progress=False)
    for metric in a.metrics["eg"]:
        assert np.array_equal(a.metrics["eg"][metric], b.metrics["eg"][metric])
    longer = FeedbackLoopSimulator(cfg).run(pol, rounds=6, progress=False)
    for metric in a.metrics["eg"]:  # a shorter run is exactly the first rounds of a longer one
        assert np.array_equal(a.metrics["eg"][metric], longer.metrics["eg"][metric][:4])
    c = FeedbackLoopSimulator(cfg).run(
        {**pol, "sm": lambda m, rng: Softmax(0.1, 5, n_draws=50, seed=rng)}, rounds=4, progress=False
    )
    assert np.array_equal(c.oracle_utility, a.oracle_utility)  # same users whatever the arms


def test_true_click_probabilities_follow_hidden_preferences() -> None:
    sim = FeedbackLoopSimulator(SimulatorConfig(n_users=50, n_items=20))
    p = sim.click_probability(np.arange(50))
    assert p.shape == (50, 20) and (p > 0).all() and (p < 1).all()
    assert np.argmax(p, axis=1).tolist() != [np.argmax(p[0])] * 50  # preferences are personal


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="matplotlib not installed")
def test_plot_is_written(small_report, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "loop.png"
    fig = small_report.plot(str(out))
    assert out.stat().st_size > 10_000 and len(fig.axes) == 4


def test_bad_config_is_a_typed_error() -> None:
    with pytest.raises(InvalidInputError, match="n_items"):
        SimulatorConfig(n_items=0)
    with pytest.raises(InvalidInputError, match="slate_size"):
        SimulatorConfig(n_items=3, slate_size=5)
    with pytest.raises(InvalidInputError, match="rounds"):
        FeedbackLoopSimulator(SMALL).run(default_policies(5), rounds=0)


@pytest.mark.slow
def test_reference_figure_default_population() -> None:
    """The figure in benchmarks/recsys/README.md: 2,000 users, 200 items, 40 rounds."""
    report = FeedbackLoopSimulator(SimulatorConfig()).run(rounds=40, progress=False)
    s = report.summary()
    assert s["thompson"]["coverage_vs_greedy"] >= 2.0
    assert s["thompson"]["utility_vs_greedy"] > -0.05
    assert report.metrics["greedy"]["coverage"][-5:].mean() < report.metrics["greedy"]["coverage"][0]
