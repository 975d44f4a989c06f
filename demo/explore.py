"""Tour of mlsys.recsys.explore: exploration with logged propensities, off-policy evaluation from
the logs (against a synthetic ground truth and, when obp's sample is installed, the Open Bandit
Dataset), and the feedback loop that exploration breaks."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from mlsys.common.errors import DatasetNotFoundError
from mlsys.recsys.explore import (
    EpsilonGreedy,
    FeedbackLoopSimulator,
    PropensityLogger,
    ShadowExploration,
    SimulatorConfig,
    cross_fit_rewards,
    evaluate_policy,
    read_log,
    synthetic_bandit,
    to_feedback,
)
from mlsys.recsys.explore.report import format_obd_table, obd_table


def main() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(5_000, 20))
    policy = ShadowExploration(EpsilonGreedy(0.1, slate_size=3, seed=0), fraction=0.05, seed=1)
    slate = policy.select(scores)
    clicks = (rng.random(slate.actions.shape) < 0.1).astype(float)
    with tempfile.TemporaryDirectory() as tmp:
        main_log, shadow_log = Path(tmp, "served.jsonl"), Path(tmp, "uniform.jsonl")
        with PropensityLogger(main_log, shadow_path=shadow_log) as log:
            log.log_slate(slate, clicks, policy=policy, round_ids=np.arange(5_000), contexts=scores)
        records, shadow = read_log(main_log), read_log(shadow_log)
    print(f"logged {len(records)} impressions ({len(shadow)} in the uniform shadow log); exact propensities")
    fb = to_feedback(records, n_actions=20)
    print(f"  {fb}")

    b = synthetic_bandit(10_000, 10, seed=0)
    table = evaluate_policy(b.feedback, b.target_dist, cross_fit_rewards(b.feedback), n_bootstrap=200)
    print(f"\nsynthetic bandit, true value of the target policy {b.true_value:.4f}:")
    for name, iv in table.items():
        print(
            f"  {name:5s} {iv.value:.4f}  95% CI [{iv.lower:.4f}, {iv.upper:.4f}]  "
            f"relative error {iv.relative_error(b.true_value):.4f}"
        )

    try:
        rows = obd_table(campaigns=("all",), n_draws=20_000, n_bootstrap=200)
        print("\nOpen Bandit Dataset (campaign all): Bernoulli TS from the uniform-random logs")
        print(format_obd_table(rows))
    except DatasetNotFoundError as exc:
        print(f"\n(Open Bandit Dataset skipped: {str(exc)[:120]}...)")

    cfg = SimulatorConfig(
        n_users=500, n_items=60, users_per_round=100, warm_start_users=100, propensity_draws=100
    )
    report = FeedbackLoopSimulator(cfg).run(rounds=20, progress=False)
    print(f"\nfeedback loop, 60 items, 20 rounds (warm-start coverage {report.warm_start_coverage:.2f}):")
    for name, s in report.summary().items():
        print(
            f"  {name:15s} coverage {s['coverage_last']:.2f} ({s['coverage_vs_greedy']:.1f}x greedy), "
            f"true utility {s['utility_vs_greedy']:+.1%} vs greedy"
        )
