"""A feedback-loop simulator: a recommender retrained every round on the data it produced.

A generated population (seeded) with hidden preferences: user ``u`` has an observable context
``x_u`` and clicks item ``i`` with probability ``sigmoid(base_logit + preference_scale * x_u . w_i + b_i)``,
where the item vectors ``w_i`` and offsets ``b_i`` are hidden. Every arm starts from the same
uniformly random warm-start log; each round, a sample of users gets a slate from the arm's
policy over the arm's model (a :class:`BayesianLinearRewardModel` per item over the user
context), clicks are drawn and appended to the arm's log of (context, item, click), and the model is
refit on that whole log (a plain on-policy refit, as a production retrain would do: the slates'
propensities are computed by the policies but not used for training here). Users, click draws
and warm-start data are shared across arms (common random numbers, drawn per round, so a shorter
run is exactly the first rounds of a longer one), and differences between arms come from the
policies alone.

The report tracks, per round: catalogue coverage and intra-list diversity (``mlsys.common.metrics``,
on the hidden item vectors), true utility (expected clicks per slate under the hidden
probabilities, and its ratio to the oracle's), clicks, and exploration conversions (clicks on
slots where the policy did not show its own greedy choice).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.special import expit
from tqdm.auto import tqdm

from mlsys.common._display import DisplayTable, TabularDisplay, new_figure
from mlsys.common.errors import InvalidInputError
from mlsys.common.limits import check_size
from mlsys.common.metrics import catalog_coverage, intra_list_diversity
from mlsys.recsys.explore._feedback import FloatArray
from mlsys.recsys.explore._policies import EpsilonGreedy, LinearThompsonSampling, Policy, UniformRandom
from mlsys.recsys.explore._reward_model import BayesianLinearRewardModel

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "PolicyFactory",
    "SimulationReport",
    "SimulatorConfig",
    "FeedbackLoopSimulator",
    "default_policies",
]

#: builds an arm's policy from its freshly refit model and the arm's random generator.
PolicyFactory = Callable[[BayesianLinearRewardModel, np.random.Generator], Policy]
"""Builds an arm's policy from its freshly refit reward model and the arm's random generator."""

METRICS = ("coverage", "diversity", "utility", "utility_ratio", "clicks", "exploration_conversions")


@dataclass(frozen=True)
class SimulatorConfig:
    """Population and protocol of a :class:`FeedbackLoopSimulator`.

    Attributes:
        n_users, n_items, dim: population sizes and preference dimension.
        slate_size: items shown per request.
        users_per_round: requests per round (users sampled with replacement).
        warm_start_users: requests served uniformly at random before round 1 (shared by all arms).
        base_logit: click logit offset (``-3`` gives click rates of a few percent).
        preference_scale: strength of the personal preference term.
        prior_variance: prior variance of every arm's Bayesian linear model (``None``: from the data).
        propensity_draws: Monte-Carlo draws for the logged propensities of sampled policies.
        seed: everything random derives from it.
    """

    n_users: int = 2000
    n_items: int = 200
    dim: int = 8
    slate_size: int = 5
    users_per_round: int = 200
    warm_start_users: int = 200
    base_logit: float = -3.0
    preference_scale: float = 2.0
    prior_variance: float | None = None
    propensity_draws: int = 300
    seed: int = 0

    def __post_init__(self) -> None:
        for name in (
            "n_users",
            "n_items",
            "dim",
            "slate_size",
            "users_per_round",
            "warm_start_users",
            "propensity_draws",
        ):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise InvalidInputError(f"SimulatorConfig.{name} must be a positive int, got {v!r}")
        check_size(self.n_users * self.dim + self.n_items * self.dim, "max_buffer", name="population size")
        check_size(
            max(self.users_per_round, self.warm_start_users) * self.n_items, "max_buffer", name="round size"
        )
        if self.slate_size > self.n_items:
            raise InvalidInputError(f"slate_size={self.slate_size} exceeds n_items={self.n_items}")
        if (
            self.prior_variance is not None and not self.prior_variance > 0
        ) or not self.preference_scale >= 0:
            raise InvalidInputError("prior_variance must be > 0 or None, and preference_scale >= 0")


def default_policies(slate_size: int, *, epsilon: float = 0.1) -> dict[str, PolicyFactory]:
    """Greedy (the feedback loop), epsilon-greedy and linear Thompson sampling over the same model."""
    return {
        "greedy": lambda model, rng: EpsilonGreedy(0.0, slate_size, seed=rng),
        "epsilon_greedy": lambda model, rng: EpsilonGreedy(epsilon, slate_size, seed=rng),
        "thompson": lambda model, rng: LinearThompsonSampling(model, slate_size, seed=rng),
    }


@dataclass
class SimulationReport(TabularDisplay):
    """Per-policy, per-round metrics: ``metrics[policy][metric]`` is a ``(rounds,)`` array.

    In a notebook it displays as the :meth:`summary` table (one row per policy, the simulator's
    configuration folded away); :meth:`to_pandas` gives that table with the values unrounded;
    :meth:`plot` draws the rounds.
    """

    _pandas_extra = "mlsys-recsys[pandas]"

    config: SimulatorConfig
    rounds: int
    metrics: dict[str, dict[str, FloatArray]] = field(default_factory=dict)
    oracle_utility: FloatArray = field(default_factory=lambda: np.zeros(0))
    #: catalogue coverage of the shared uniformly random warm-start log (round 0).
    warm_start_coverage: float = 0.0

    def summary(self, last: int = 5) -> dict[str, dict[str, float]]:
        """Per policy: coverage in round 1 and over the ``last`` rounds, mean diversity, mean true
        utility over all rounds and over the ``last`` rounds (and both relative to greedy when a
        ``"greedy"`` arm ran), total exploration conversions."""
        out: dict[str, dict[str, float]] = {}
        for name, m in self.metrics.items():
            out[name] = {
                "coverage_first": float(m["coverage"][0]),
                "coverage_last": float(m["coverage"][-last:].mean()),
                "diversity": float(m["diversity"].mean()),
                "utility": float(m["utility"].mean()),
                "utility_last": float(m["utility"][-last:].mean()),
                "utility_ratio_to_oracle": float(m["utility_ratio"].mean()),
                "exploration_conversions": float(m["exploration_conversions"].sum()),
            }
        if "greedy" in out:
            g = out["greedy"]
            for s in out.values():
                s["coverage_vs_greedy"] = (
                    s["coverage_last"] / g["coverage_last"] if g["coverage_last"] else float("inf")
                )
                s["utility_vs_greedy"] = s["utility"] / g["utility"] - 1.0
                s["utility_last_vs_greedy"] = s["utility_last"] / g["utility_last"] - 1.0
        return out

    def __repr__(self) -> str:
        return (
            f"SimulationReport(policies={list(self.metrics)}, rounds={self.rounds}, "
            f"warm_start_coverage={self.warm_start_coverage:.4f})"
        )

    def _display_table(self) -> DisplayTable:
        rows = self.summary()
        cols = list(next(iter(rows.values()))) if rows else []
        return DisplayTable(
            f"feedback loop: {len(rows)} policies, {self.rounds} rounds (last = mean of the last 5)",
            ("policy", *cols),
            tuple((name, *(s[c] for c in cols)) for name, s in rows.items()),
            index="policy",
            details=(
                ("rounds", self.rounds),
                ("warm_start_coverage", self.warm_start_coverage),
                *((f"config.{k}", v) for k, v in asdict(self.config).items()),
            ),
        )

    def format_table(self, last: int = 5) -> str:
        """The summary as a Markdown table."""
        rows = self.summary(last)
        cols = list(next(iter(rows.values())))
        lines = ["| policy | " + " | ".join(cols) + " |", "| --- |" + " ---: |" * len(cols)]
        for name, s in rows.items():
            lines.append(f"| {name} | " + " | ".join(f"{s[c]:.4g}" for c in cols) + " |")
        return "\n".join(lines)

    def plot(self, path: str | None = None) -> Figure:
        """A 2x2 figure (coverage, diversity, utility, exploration conversions per round); saved to
        ``path`` if given. Built without pyplot (no GUI backend is touched), it displays inline in
        Jupyter. Needs matplotlib (``mlsys-common[plot]``)."""
        fig = new_figure(figsize=(10, 7), layout="constrained")
        axes = fig.subplots(2, 2, sharex=True)
        x = np.arange(1, self.rounds + 1)
        panels = (
            ("coverage", f"catalogue coverage per round (warm start: {self.warm_start_coverage:.2f})"),
            ("diversity", "intra-list diversity (hidden vectors)"),
            ("utility", "true expected clicks per slate"),
            ("exploration_conversions", "clicks on explored slots"),
        )
        for ax, (metric, title) in zip(axes.ravel(), panels):
            for name, m in self.metrics.items():
                ax.plot(x, m[metric], label=name, marker="o", markersize=3)
            if metric == "utility":
                ax.plot(x, self.oracle_utility, "k--", label="oracle", linewidth=1)
            ax.set_title(title)
            ax.grid(alpha=0.3)
        axes[1, 0].set_xlabel("round")
        axes[1, 1].set_xlabel("round")
        axes[0, 0].legend()
        fig.suptitle("Feedback loop: greedy vs exploration (retrained every round on its own logs)")
        if path is not None:
            fig.savefig(path, dpi=110)
        return fig


class FeedbackLoopSimulator:
    """Run policies against a simulated population, each retrained on its own logs every round.

    Example:
        >>> sim = FeedbackLoopSimulator(SimulatorConfig(n_users=100, n_items=30, users_per_round=20,
        ...                                             warm_start_users=20, propensity_draws=50))
        >>> report = sim.run({"greedy": lambda m, rng: EpsilonGreedy(0.0, 5, seed=rng)}, rounds=3, progress=False)
        >>> report.metrics["greedy"]["coverage"].shape
        (3,)
    """

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        self.user_context = rng.normal(size=(cfg.n_users, cfg.dim)) / np.sqrt(cfg.dim)
        self.item_vectors = rng.normal(size=(cfg.n_items, cfg.dim))
        self.item_offsets = rng.normal(0.0, 0.5, size=cfg.n_items)

    def click_probability(self, users: Any) -> FloatArray:
        """True ``(n, n_items)`` click probabilities of ``users`` (indices into the population)."""
        cfg = self.config
        x = self.user_context[np.asarray(users)]
        return expit(cfg.base_logit + cfg.preference_scale * x @ self.item_vectors.T + self.item_offsets)

    def run(
        self,
        policies: Mapping[str, PolicyFactory] | None = None,
        rounds: int = 20,
        *,
        progress: bool | None = None,
    ) -> SimulationReport:
        """Simulate ``rounds`` rounds for every policy (default: :func:`default_policies`)."""
        cfg = self.config
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds <= 0:
            raise InvalidInputError(f"rounds must be a positive int, got {rounds!r}")
        check_size(rounds, "max_batch", name="rounds")
        policies = dict(policies or default_policies(cfg.slate_size))
        if not policies:
            raise InvalidInputError("no policies to simulate")
        k, n_items = cfg.slate_size, cfg.n_items
        master = np.random.default_rng([cfg.seed, 1])
        # Shared randomness: warm-start log, users and click uniforms per round.
        warm_users = master.integers(0, cfg.n_users, cfg.warm_start_users)
        warm_slate = UniformRandom(k, seed=master).select(np.zeros((warm_users.shape[0], n_items)))
        warm_u = master.random((warm_users.shape[0], n_items))
        warm_click = (warm_u < self.click_probability(warm_users))[
            np.arange(warm_users.shape[0])[:, None], warm_slate.actions
        ]
        round_rngs = [np.random.default_rng([cfg.seed, 3, t]) for t in range(rounds)]
        round_users = [g.integers(0, cfg.n_users, cfg.users_per_round) for g in round_rngs]
        round_u = [g.random((cfg.users_per_round, n_items)) for g in round_rngs]

        report = SimulationReport(
            cfg, rounds, warm_start_coverage=catalog_coverage(warm_slate.actions, n_items)
        )
        report.oracle_utility = np.array(
            [np.sort(self.click_probability(u), axis=1)[:, -k:].sum(axis=1).mean() for u in round_users]
        )
        disable = None if progress is None else not progress
        bar = tqdm(total=rounds * len(policies), desc="feedback loop", disable=disable, leave=False)
        for arm, (name, factory) in enumerate(policies.items()):
            rng = np.random.default_rng([cfg.seed, 2, arm])
            ctx_log = [self.user_context[np.repeat(warm_users, k)]]
            act_log = [warm_slate.actions.ravel()]
            rew_log = [warm_click.ravel().astype(np.float64)]
            m = {metric: np.zeros(rounds) for metric in METRICS}
            for t in range(rounds):
                model = BayesianLinearRewardModel(n_items, prior_variance=cfg.prior_variance).fit(
                    np.concatenate(ctx_log), np.concatenate(act_log), np.concatenate(rew_log)
                )
                policy = factory(model, rng)
                if isinstance(policy, LinearThompsonSampling):
                    policy.n_draws = cfg.propensity_draws
                users = round_users[t]
                ctx = self.user_context[users]
                slate = policy.select(
                    ctx if isinstance(policy, LinearThompsonSampling) else model.predict(ctx)
                )
                p_true = self.click_probability(users)
                rows = np.arange(users.shape[0])[:, None]
                clicks = (round_u[t] < p_true)[rows, slate.actions].astype(np.float64)
                m["coverage"][t] = catalog_coverage(slate.actions, n_items)
                m["diversity"][t] = intra_list_diversity(slate.actions, self.item_vectors)
                m["utility"][t] = p_true[rows, slate.actions].sum(axis=1).mean()
                m["utility_ratio"][t] = m["utility"][t] / report.oracle_utility[t]
                m["clicks"][t] = clicks.sum()
                m["exploration_conversions"][t] = (clicks * slate.explored).sum()
                ctx_log.append(np.repeat(ctx, k, axis=0))
                act_log.append(slate.actions.ravel())
                rew_log.append(clicks.ravel())
                bar.update(1)
            report.metrics[name] = m
        bar.close()
        return report
