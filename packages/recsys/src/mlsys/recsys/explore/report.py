"""The exploration figures: estimators on a synthetic bandit and on the Open Bandit Dataset, and
the feedback-loop simulation.

``python -m mlsys.recsys.explore.report [--obd PATH] [--plot loop.png] [--rounds 40]`` prints the
three Markdown tables of ``benchmarks/recsys/README.md``.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

import numpy as np

from mlsys.common.errors import DatasetNotFoundError
from mlsys.recsys.explore._estimators import evaluate_policy
from mlsys.recsys.explore._obd import load_open_bandit_dataset, zozotown_bts_prior
from mlsys.recsys.explore._policies import BernoulliThompsonSampling
from mlsys.recsys.explore._reward_model import cross_fit_rewards
from mlsys.recsys.explore._simulator import FeedbackLoopSimulator, SimulationReport, SimulatorConfig
from mlsys.recsys.explore._synthetic import synthetic_bandit

__all__ = ["ObdRow", "format_obd_table", "obd_table", "simulation", "synthetic_table"]


def synthetic_table(
    n_datasets: int = 20, n_rounds: int = 10_000, n_actions: int = 10
) -> dict[str, np.ndarray]:
    """Relative error of IPS, SNIPS, DM and DR on ``n_datasets`` seeded synthetic bandits:
    ``{estimator: (n_datasets,) relative errors}`` (cross-fitted linear reward model for DM/DR)."""
    out: dict[str, list[float]] = {"ips": [], "snips": [], "dm": [], "dr": []}
    for seed in range(n_datasets):
        b = synthetic_bandit(n_rounds, n_actions, seed=seed)
        q = cross_fit_rewards(b.feedback, seed=seed)
        res = evaluate_policy(b.feedback, b.target_dist, q, n_bootstrap=10, seed=seed)
        for name, iv in res.items():
            out[name].append(iv.relative_error(b.true_value))
    return {k: np.array(v) for k, v in out.items()}


@dataclass(frozen=True)
class ObdRow:
    """One row of the Open Bandit Dataset table: an estimator's value, its interval and the truth."""

    campaign: str
    estimator: str
    truth: float
    value: float
    lower: float
    upper: float

    @property
    def relative_error(self) -> float:
        """``|value - truth| / truth``."""
        return abs(self.value - self.truth) / self.truth


def obd_table(
    path: str | os.PathLike[str] | None = None,
    campaigns: tuple[str, ...] = ("all", "men", "women"),
    *,
    n_draws: int = 100_000,
    n_bootstrap: int = 1000,
    seed: int = 12345,
) -> list[ObdRow]:
    """The Bernoulli-TS policy's click rate estimated from the uniform-random logs (its action
    distribution from the ZOZOTOWN prior, ``n_draws`` Monte-Carlo draws) vs its on-policy rate."""
    rows = []
    for campaign in campaigns:
        rnd = load_open_bandit_dataset("random", campaign, path=path)
        truth = load_open_bandit_dataset("bts", campaign, path=path).on_policy_value
        alpha, beta = zozotown_bts_prior(campaign, path=path)
        fb = rnd.feedback
        policy = BernoulliThompsonSampling(
            fb.n_actions, fb.slate_size, alpha=alpha, beta=beta, n_draws=n_draws, seed=seed
        )
        dist = policy.action_distribution(fb.n_rows)
        res = evaluate_policy(fb, dist, cross_fit_rewards(fb, seed=seed), n_bootstrap=n_bootstrap, seed=seed)
        for name in ("ips", "snips", "dm", "dr"):
            iv = res[name]
            rows.append(ObdRow(campaign, name, truth, iv.value, iv.lower, iv.upper))
    return rows


def simulation(
    rounds: int = 40, config: SimulatorConfig | None = None, *, progress: bool | None = None
) -> SimulationReport:
    """The default feedback-loop simulation (greedy, epsilon-greedy 0.1, linear Thompson sampling)."""
    return FeedbackLoopSimulator(config or SimulatorConfig()).run(rounds=rounds, progress=progress)


def format_obd_table(rows: list[ObdRow]) -> str:
    """The rows of :func:`obd_table` as a Markdown table."""
    lines = [
        "| campaign | estimator | on-policy truth | estimate | 95% CI | relative error | CI covers truth |",
        "| --- | --- | ---: | ---: | --- | ---: | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r.campaign} | {r.estimator} | {r.truth:.6f} | {r.value:.6f} | [{r.lower:.6f}, {r.upper:.6f}] | "
            f"{r.relative_error:.3f} | {'yes' if r.lower <= r.truth <= r.upper else 'no'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--obd", default=None, help="the obp/dataset/obd folder (default: $MLSYS_OBD, installed obp)"
    )
    parser.add_argument("--rounds", type=int, default=40, help="simulation rounds (default 40)")
    parser.add_argument("--datasets", type=int, default=20, help="synthetic data sets (default 20)")
    parser.add_argument("--plot", default=None, help="write the simulation plot to this PNG")
    args = parser.parse_args(argv)

    syn = synthetic_table(args.datasets)
    print(f"## Synthetic bandit (10 actions, 10,000 rounds, {args.datasets} seeded data sets)\n")
    print("| estimator | mean relative error | median | max |\n| --- | ---: | ---: | ---: |")
    for name, errs in syn.items():
        print(f"| {name} | {errs.mean():.4f} | {np.median(errs):.4f} | {errs.max():.4f} |")
    print()
    try:
        rows = obd_table(args.obd)
        print("## Open Bandit Dataset: Bernoulli TS evaluated from the uniform-random logs\n")
        print(format_obd_table(rows))
    except DatasetNotFoundError as exc:
        print(f"(Open Bandit Dataset skipped: {exc})")
    print()
    for rounds in sorted({20, args.rounds}):
        report = simulation(rounds)
        print(f"## Feedback loop, {rounds} rounds (warm-start coverage {report.warm_start_coverage:.2f})\n")
        print(report.format_table())
        print()
        if args.plot and rounds == args.rounds:
            report.plot(args.plot)
            print(f"(plot written to {args.plot})\n")


if __name__ == "__main__":
    main()
