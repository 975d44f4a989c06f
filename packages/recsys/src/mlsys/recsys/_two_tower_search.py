"""The two-tower's validation search: its report and the validation scorer (used by ``TwoTowerModel.fit``).

:class:`TwoTowerReport` records what a fit tried and chose; :class:`_Validator` computes the
validation NDCG@10 of a model during the search and calibrates the score offset of items that
have no id embedding (see :meth:`mlsys.recsys.TwoTowerModel.fit`).

Example:
    >>> from mlsys.recsys import TwoTowerConfig
    >>> TwoTowerReport.untuned(TwoTowerConfig(), "tune=False").tuned
    False
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from mlsys.common._display import DisplayTable, TabularDisplay
from mlsys.common.errors import CorruptFileError, EmptyIndexError
from mlsys.common.metrics import Qrels, evaluate_ranked
from mlsys.recsys._base import top_k as top_k_positions
from mlsys.recsys._baselines import ease_weights
from mlsys.recsys._data import FeatureTable
from mlsys.recsys._splits import Split

if TYPE_CHECKING:  # pragma: no cover
    from mlsys.recsys._two_tower import TwoTowerConfig, TwoTowerModel, _FitData

__all__ = ["TwoTowerReport"]


@dataclass(frozen=True)
class TwoTowerReport(TabularDisplay):
    """What :meth:`TwoTowerModel.fit` tried, what it chose and why (saved and loaded with the model).

    Attributes:
        tuned: whether the validation search ran.
        reason: one line: how it was tuned, or why not.
        validation: the validation split's description (``""`` when untuned).
        objective: what the search maximised (``""`` when untuned).
        start: the configured starting point (``temperature``, ``lr``, ``epochs``).
        chosen: the values the final model was trained with.
        runs: one dict per search run: ``temperature``, ``lr``, ``distill``, ``epochs_run``, ``best_epoch``,
            ``best_ndcg@10``, ``curve`` (validation NDCG@10 after each epoch) and ``seconds``.
        budget_s: the search's time budget; ``budget_exhausted``: whether it bound.
        teacher_l2_search: ``None``, or how the distillation teacher's ``l2`` was chosen: ``l2``
            (the candidates), ``ndcg@10`` (the teacher EASE's own validation NDCG@10 for each) and
            ``chosen``.
        cold_calibration: ``None``, or the cold-item offset search: ``offsets``, ``ndcg@10`` and
            ``cold_share@10`` per offset (share of top-10 slots given to validation-cold items),
            ``chosen_offset``, ``best_ndcg@10`` and ``tolerance``.
        total_seconds: wall-clock time of the whole fit.

    In a notebook it displays as the table of search runs (the chosen one marked; one row of the
    configured values when untuned), the reason and the calibration folded away; :meth:`to_pandas`
    gives that table (the per-epoch ``curve`` left out).

    Example:
        >>> from mlsys.recsys import TwoTowerConfig
        >>> TwoTowerReport.untuned(TwoTowerConfig(), "tune=False").chosen["epochs"]
        20
    """

    tuned: bool
    reason: str
    validation: str
    objective: str
    start: dict[str, float]
    chosen: dict[str, float]
    runs: tuple[dict[str, Any], ...] = ()
    budget_s: float = 0.0
    budget_exhausted: bool = False
    cold_calibration: dict[str, Any] | None = None
    total_seconds: float = 0.0
    teacher_l2_search: dict[str, Any] | None = None

    _pandas_extra = "mlsys-recsys[pandas]"

    def __repr__(self) -> str:
        chosen = ", ".join(f"{k}={v:g}" for k, v in self.chosen.items())
        return (
            f"TwoTowerReport(tuned={self.tuned}, {chosen}, runs={len(self.runs)}, "
            f"total_seconds={self.total_seconds:.1f})"
        )

    def _display_table(self) -> DisplayTable:
        details: list[tuple[str, Any]] = [("reason", self.reason)]
        if self.tuned:
            details += [("validation", self.validation), ("objective", self.objective)]
            details += [(f"start.{k}", v) for k, v in self.start.items()]
            details += [("budget_s", self.budget_s), ("budget_exhausted", self.budget_exhausted)]
        if self.cold_calibration is not None:
            cal = self.cold_calibration
            details += [
                (f"cold_calibration.{k}", cal[k]) for k in cal if not isinstance(cal[k], (list, tuple))
            ]
        details.append(("total_seconds", self.total_seconds))
        if not self.runs:
            cols = tuple(self.chosen)
            return DisplayTable(
                "TwoTowerReport: trained once (untuned)",
                cols,
                (tuple(self.chosen[c] for c in cols),),
                details=tuple(details),
            )
        cols = tuple(dict.fromkeys(k for r in self.runs for k in r if k != "curve"))
        rows = tuple(
            (
                *(r.get(c) for c in cols),
                r.get("temperature") == self.chosen.get("temperature")
                and r.get("lr") == self.chosen.get("lr")
                and r.get("distill", 0.0) == self.chosen.get("distill", 0.0)
                and r.get("hidden") == self.chosen.get("hidden"),
            )
            for r in self.runs
        )
        chosen = ", ".join(f"{k}={v:g}" for k, v in self.chosen.items())
        return DisplayTable(
            f"TwoTowerReport: {len(self.runs)} search runs, chose {chosen}",
            (*cols, "chosen"),
            rows,
            details=tuple(details),
        )

    @classmethod
    def untuned(cls, cfg: TwoTowerConfig, reason: str) -> TwoTowerReport:
        """The report of a fit that trained once with the configured values."""
        values = {"temperature": cfg.temperature, "lr": cfg.lr, "epochs": cfg.epochs, "distill": cfg.distill}
        return cls(False, reason, "", "", dict(values), dict(values))

    def with_total(self, seconds: float) -> TwoTowerReport:
        """A copy with :attr:`total_seconds` set."""
        return replace(self, total_seconds=float(seconds))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict (round-trips through :meth:`from_dict`)."""
        out = asdict(self)
        out["runs"] = [dict(r) for r in self.runs]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TwoTowerReport:
        """Rebuild from :meth:`to_dict` output; unknown or missing keys are a :class:`CorruptFileError`.

        ``teacher_l2_search`` may be absent (reports saved before distillation existed).
        """
        known = {f.name for f in fields(cls)}
        optional = {"teacher_l2_search"}
        if not isinstance(data, dict) or set(data) - known or (known - optional) - set(data):
            got = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise CorruptFileError(f"a two-tower report needs the keys {sorted(known)}, got {got}")
        data = dict(data)
        data["runs"] = tuple(dict(r) for r in data["runs"])
        return cls(**data)


#: One-sided 95% normal quantile: the confidence of "an offset costs at most the tolerance".
_Z95 = 1.645


def _loss_upper_bound(loss: npt.NDArray[np.float64]) -> float:
    """One-sided 95% upper bound of the mean of per-user losses (``mean + 1.645 SE``).

    Example:
        >>> round(_loss_upper_bound(np.array([0.0, 0.1, 0.0, 0.1])), 4)
        0.0975
    """
    if loss.shape[0] < 2:  # no spread to estimate: only "no loss at all" is surely within a tolerance
        return 0.0 if loss.shape[0] == 1 and loss[0] == 0 else float("inf")
    return float(loss.mean() + _Z95 * loss.std(ddof=1) / np.sqrt(loss.shape[0]))


class _Validator:
    """Validation NDCG@10 of a model during the search, and the cold-item offset calibration.

    Warm objective: rank the trained items (the search's training items masked), relevant = the
    user's held-out pairs on trained items. Cold objective: rank the validation-cold items only,
    relevant = the user's events on them. Calibration: rank both together, relevant = the warm
    pairs and a ``fraction`` sample of the cold pairs (seeded), the shape of a random holdout.
    """

    K = 10

    def __init__(
        self, val: Split, data: _FitData, items: FeatureTable, objective: str, fraction: float, seed: int
    ) -> None:
        self.objective = objective
        self.data = data
        known = data.user_vocab.contains(val.test.users)
        test_u, test_i = val.test.users[known], val.test.items[known]
        self.warm_ids = data.item_vocab.ids
        self.cold_ids = val.candidate_items if val.candidate_items is not None else np.zeros(0, np.int64)
        self.has_cold = self.cold_ids.shape[0] > 0
        self.warm_table = items.rows(self.warm_ids)
        self.cold_table = items.rows(self.cold_ids) if self.has_cold else None
        is_cold = np.isin(test_i, self.cold_ids)
        is_warm = data.item_vocab.contains(test_i)
        self.warm = self._qrels(test_u[is_warm], test_i[is_warm])
        self.cold = self._qrels(test_u[is_cold], test_i[is_cold])
        # Mixed ranking: a validation-cold item holds all its events, a trained item only `fraction` of
        # each user's; keep each cold pair with probability `fraction` so that cold items weigh in
        # the mixed target as new items would in a random holdout (not several times more).
        keep_cold = is_cold & (np.random.default_rng([seed, 1]).random(is_cold.shape[0]) < fraction)
        self.mixed = self._qrels(test_u[is_warm | keep_cold], test_i[is_warm | keep_cold])
        main = self.warm if objective == "warm" else self.cold
        if main is None:
            raise EmptyIndexError(
                f"the validation split has no {objective} validation events of a user with training events"
            )

    @staticmethod
    def _qrels(
        users: npt.NDArray[np.int64], items: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.int64], Qrels] | None:
        if users.size == 0:
            return None
        order = np.lexsort((items, users))
        users, items = users[order], items[order]
        keep = np.ones(users.shape[0], dtype=bool)
        keep[1:] = (users[1:] != users[:-1]) | (items[1:] != items[:-1])
        users, items = users[keep], items[keep]
        uniq, starts = np.unique(users, return_index=True)
        return uniq, Qrels.from_lists(np.split(items, starts[1:]))

    def describe(self) -> str:
        if self.objective == "warm":
            return f"validation NDCG@10 over {self.warm_ids.shape[0]} trained items (train items masked)"
        return f"validation NDCG@10 among {self.cold_ids.shape[0]} validation-cold items"

    def _warm_scores(self, model: TwoTowerModel, users: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        q = model.encode_users(users)
        return self._mask_seen(q @ model.encode_items(self.warm_table).T, users)

    def _mask_seen(
        self, scores: npt.NDArray[np.float32], users: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float32]:
        """``scores`` over the trained items with each user's training items set to ``-inf`` (in place)."""
        seen = self.data.hist[self.data.user_vocab.positions(users)].tocoo()
        scores[seen.row, seen.col] = -np.inf
        return scores

    def _ndcg_values(
        self, pos: npt.NDArray[np.int64], ids: npt.NDArray[np.int64], qrels: Qrels
    ) -> npt.NDArray[np.float64]:
        """Per-user NDCG@K of top-K positions ``pos`` (``-1``: no item) into ``ids``."""
        ranked = np.where(pos >= 0, ids[np.maximum(pos, 0)], -1)
        return np.asarray(evaluate_ranked(ranked, qrels, [f"ndcg@{self.K}"]).per_query[f"ndcg@{self.K}"])

    def _ndcg(self, scores: npt.NDArray[np.float32], ids: npt.NDArray[np.int64], qrels: Qrels) -> float:
        return float(self._ndcg_values(top_k_positions(scores, self.K)[0], ids, qrels).mean())

    def ndcg(self, model: TwoTowerModel) -> float:
        """The search objective for ``model``."""
        if self.objective == "warm":
            assert self.warm is not None
            users, qrels = self.warm
            return self._ndcg(self._warm_scores(model, users), self.warm_ids, qrels)
        assert self.cold is not None and self.cold_table is not None
        users, qrels = self.cold
        scores = model.encode_users(users) @ model.encode_items(self.cold_table).T
        return self._ndcg(scores, self.cold_ids, qrels)

    def choose_ease_l2(self, candidates: list[float], default: float) -> tuple[float, dict[str, Any] | None]:
        """The ``l2`` (of ``candidates``) whose EASE has the best warm validation NDCG@10 (first of equals).

        Without warm validation pairs, ``default`` and no search record. The chosen EASE weights are
        left in the fit data (``data.ease``), so the teacher built next does not invert again.
        """
        if self.warm is None:
            return float(default), None
        users, qrels = self.warm
        x = self.data.hist[self.data.user_vocab.positions(users)]
        scores: list[float] = []
        kept: npt.NDArray[np.float32] | None = None
        for l2 in candidates:
            b = ease_weights(self.data.hist, l2)
            scores.append(
                self._ndcg(self._mask_seen(np.asarray(x @ b, dtype=np.float32), users), self.warm_ids, qrels)
            )
            if scores[-1] > max(scores[:-1], default=-1.0):
                kept = b
        best = int(np.argmax(scores))
        assert kept is not None
        self.data.ease = {float(candidates[best]): kept}
        return float(candidates[best]), {
            "l2": [float(v) for v in candidates],
            "ndcg@10": scores,
            "chosen": float(candidates[best]),
        }

    def calibrate_cold_offset(self, model: TwoTowerModel, tolerance: float) -> tuple[float, dict[str, Any]]:
        """The largest offset for features-only items whose mixed NDCG@10 is surely within ``tolerance`` of the best.

        "Surely": the one-sided 95% upper confidence bound of the mean per-user loss against the
        best offset (``mean + 1.645 standard errors`` of the paired differences) must stay within
        ``tolerance`` times the best figure. Without it, a small validation set's noise lets an
        offset that costs far more than the tolerance pass as "within 1%" (on a 300-user data set
        it gave new items 39% of the top-10 slots and halved NDCG on the test split).
        """
        assert self.mixed is not None and self.cold_table is not None
        users, qrels = self.mixed
        warm = self._warm_scores(model, users)
        cold = model.encode_users(users) @ model.encode_items(self.cold_table).T
        ids = np.concatenate([self.warm_ids, self.cold_ids])
        # Offsets that move a cold item into a user's top 10: the gap between the user's 10th best
        # trained item and best cold item, at quantiles over users (plus 0, the uncorrected score).
        kth = -np.partition(-warm, min(self.K, warm.shape[1]) - 1, axis=1)[:, min(self.K, warm.shape[1]) - 1]
        gap = kth - cold.max(axis=1)
        finite = gap[np.isfinite(gap)]
        grid = (
            np.unique(np.concatenate([np.quantile(finite, np.linspace(0, 1, 21)), [0.0]]))
            if finite.size
            else np.array([0.0])
        )
        grid = np.concatenate([[grid[0] - 1.0], grid])  # below every gap: no cold item in any top 10
        per_user, shares = [], []
        for off in grid:
            scores = np.concatenate([warm, cold + np.float32(off)], axis=1)
            pos, _ = top_k_positions(scores, self.K)
            per_user.append(self._ndcg_values(pos, ids, qrels))
            shares.append(float((pos >= warm.shape[1]).mean()))
        ndcgs = [float(v.mean()) for v in per_user]
        top = int(np.argmax(ndcgs))
        best = ndcgs[top]
        bounds = [_loss_upper_bound(per_user[top] - v) for v in per_user]
        ok = [i for i in range(len(grid)) if i == top or bounds[i] <= tolerance * best]
        chosen = max(ok, key=lambda i: grid[i])
        return float(grid[chosen]), {
            "offsets": [float(g) for g in grid],
            "ndcg@10": ndcgs,
            "cold_share@10": shares,
            "loss_upper_bound": bounds,
            "chosen_offset": float(grid[chosen]),
            "chosen_cold_share@10": shares[chosen],
            "best_ndcg@10": best,
            "tolerance": float(tolerance),
            "validation_cold_items": int(self.cold_ids.shape[0]),
        }
