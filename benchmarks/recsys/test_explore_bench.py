"""mlsys.recsys.explore benchmarks: estimator accuracy (synthetic bandit, Open Bandit Dataset), the
feedback-loop simulation, and speed against Open Bandit Pipeline where it is installed.

Full run: ``nox -s bench -- benchmarks/recsys/test_explore_bench.py -s`` (about a minute); the
tables also come from ``python -m mlsys.recsys.explore.report``. Smoke mode shrinks every size.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from conftest import SMOKE, interleaved, size
from mlsys.common.errors import DatasetNotFoundError
from mlsys.recsys.evaluate import machine_facts
from mlsys.recsys.explore import (
    BernoulliThompsonSampling,
    SimulatorConfig,
    estimate_interval,
    synthetic_bandit,
)
from mlsys.recsys.explore.report import format_obd_table, obd_table, simulation, synthetic_table

HAS_OBP = importlib.util.find_spec("obp") is not None


def test_estimators_on_synthetic_bandits(benchmark) -> None:  # type: ignore[no-untyped-def]
    n_sets, n_rounds = size(20, 2), size(10_000, 2_000)
    out: dict[str, np.ndarray] = {}
    benchmark.pedantic(lambda: out.update(synthetic_table(n_sets, n_rounds)), rounds=1, iterations=1)
    print(f"\nsynthetic bandit: 10 actions, {n_rounds} rounds, {n_sets} data sets; {machine_facts()}")
    for name, errs in out.items():
        print(
            f"  {name:6s} mean relative error {errs.mean():.4f}  median {np.median(errs):.4f}  max {errs.max():.4f}"
        )
    if not SMOKE:
        assert out["ips"].mean() <= 0.05 and out["snips"].mean() <= 0.02 and out["dr"].mean() <= 0.02


def test_estimators_on_open_bandit_dataset(benchmark) -> None:  # type: ignore[no-untyped-def]
    rows: list = []  # type: ignore[type-arg]
    campaigns = ("all",) if SMOKE else ("all", "men", "women")

    def run() -> None:
        rows.extend(obd_table(campaigns=campaigns, n_draws=size(100_000, 5_000), n_bootstrap=size(1000, 50)))

    try:
        benchmark.pedantic(run, rounds=1, iterations=1)
    except DatasetNotFoundError as exc:
        pytest.skip(str(exc))
    print("\n" + format_obd_table(rows))


def test_feedback_loop_simulation(benchmark) -> None:  # type: ignore[no-untyped-def]
    cfg = (
        SimulatorConfig(n_users=200, n_items=40, users_per_round=40, warm_start_users=40, propensity_draws=20)
        if SMOKE
        else SimulatorConfig()
    )
    rounds = size(40, 3)
    out = {}
    benchmark.pedantic(lambda: out.update(r=simulation(rounds, cfg, progress=False)), rounds=1, iterations=1)
    report = out["r"]
    print(f"\nfeedback loop: {rounds} rounds, warm-start coverage {report.warm_start_coverage:.2f}\n")
    print(report.format_table())
    if not SMOKE:
        s = report.summary()
        assert s["thompson"]["coverage_vs_greedy"] >= 2.0


@pytest.mark.skipif(not HAS_OBP, reason="obp not installed")
def test_speed_against_obp(benchmark) -> None:  # type: ignore[no-untyped-def]
    """Thompson-sampling propensities (Monte-Carlo, same number of draws) and a 1,000-resample
    bootstrap interval: ours (vectorised) vs obp's Python loops, side by side."""
    from obp.ope import InverseProbabilityWeighting
    from obp.policy import BernoulliTS

    n_draws = size(20_000, 500)
    alpha = np.random.default_rng(0).uniform(1, 50, 80)
    beta = np.random.default_rng(1).uniform(1000, 5000, 80)

    def ours_ts() -> object:
        return BernoulliThompsonSampling(
            80, 3, alpha=alpha, beta=beta, n_draws=n_draws, seed=0
        ).slot_distribution()

    def obp_ts() -> object:
        pol = BernoulliTS(n_actions=80, len_list=3, alpha=alpha, beta=beta, random_state=0)
        return pol.compute_batch_action_dist(n_rounds=1, n_sim=n_draws)

    b = synthetic_bandit(size(10_000, 1_000), 10, seed=0)
    n_boot = size(1000, 20)
    kw = dict(
        reward=b.feedback.reward,
        action=b.feedback.action,
        pscore=b.feedback.propensity,
        action_dist=b.target_dist,
    )
    ours_boot = lambda: estimate_interval("ips", b.feedback, b.target_dist, n_bootstrap=n_boot, seed=0)  # noqa: E731
    obp_boot = lambda: InverseProbabilityWeighting().estimate_interval(  # noqa: E731
        **kw, n_bootstrap_samples=n_boot, random_state=0
    )
    times: dict[str, list[float]] = {}
    benchmark.pedantic(
        lambda: times.update(
            interleaved(
                {"ours_ts": ours_ts, "obp_ts": obp_ts, "ours_boot": ours_boot, "obp_boot": obp_boot},
                size(3, 1),
            )
        ),
        rounds=1,
        iterations=1,
    )
    best = {k: min(v) for k, v in times.items()}
    benchmark.extra_info["ratios"] = {  # ours / obp (best of the interleaved repeats)
        "ts_propensities_vs_obp": best["ours_ts"] / best["obp_ts"],
        "ips_bootstrap_vs_obp": best["ours_boot"] / best["obp_boot"],
    }
    print(f"\n{machine_facts()}")
    print(
        f"TS propensities, {n_draws} draws, 80 actions x 3 slots: ours {best['ours_ts'] * 1e3:.1f} ms, "
        f"obp {best['obp_ts'] * 1e3:.1f} ms ({best['obp_ts'] / best['ours_ts']:.1f}x)"
    )
    print(
        f"IPS bootstrap, {n_boot} resamples of {b.feedback.n_rows} rows: ours {best['ours_boot'] * 1e3:.1f} ms, "
        f"obp {best['obp_boot'] * 1e3:.1f} ms ({best['obp_boot'] / best['ours_boot']:.1f}x)"
    )
