"""The evaluation protocol: full ranking, training items masked, metrics from :mod:`mlsys.common.metrics`.

For every test user (a user with at least one test event and at least one training event), the
model ranks the whole catalogue (or a split's ``candidate_items``, e.g. the held-out items of an
item cold-start split) with the user's training items masked; the user's distinct test items are
the relevant set (binary). NDCG uses binary gain with the ideal DCG over ``min(|test|, K)``;
Recall is ``hits / |test|``; HR is 1 if any hit; MRR is the reciprocal rank of the first hit.
Coverage is the share of candidates recommended to at least one user; novelty is the mean
``-log2 p(i)`` of recommended items with ``p(i) = (training users of i + 1) / (training users + 1)``.

Example:
    >>> from mlsys.recsys import Interactions, Popularity, random_holdout
    >>> x = Interactions(users=[1, 1, 1, 1, 1, 2, 2, 2, 2, 2], items=[1, 2, 3, 4, 5, 1, 2, 3, 4, 6])
    >>> split = random_holdout(x, seed=0)
    >>> r = evaluate_recommender(Popularity().fit(split.train, catalogue=range(1, 7)), split, ks=(2,))
    >>> sorted(r.metrics)
    ['coverage@2', 'hit_rate@2', 'mrr@2', 'ndcg@2', 'novelty@2', 'recall@2']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from mlsys.common._display import DisplayTable, TabularDisplay, format_value
from mlsys.common.errors import EmptyIndexError, InvalidInputError
from mlsys.common.metrics import Qrels, catalog_coverage, evaluate_ranked, novelty
from mlsys.common.validation import as_ids, check_k
from mlsys.recsys._splits import Split

__all__ = [
    "EvaluationResult",
    "EvaluationTable",
    "SupportsRecommend",
    "evaluate_recommender",
    "format_table",
    "split_qrels",
]

ACCURACY = ("ndcg", "recall", "hit_rate", "mrr")
#: the extra that installs pandas for ``to_pandas()``
PANDAS_EXTRA = "mlsys-recsys[pandas]"


class SupportsRecommend(Protocol):
    """Anything with ``recommend(users, k, *, exclude_seen, allow) -> (ids, scores)``."""

    def recommend(
        self, users: Any, k: int, *, exclude_seen: bool = True, allow: Any = None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...


@dataclass(frozen=True)
class EvaluationResult(TabularDisplay):
    """One model on one split: mean metrics and the protocol that produced them.

    In a notebook it displays as a one-row HTML table (the protocol folded away);
    :meth:`to_pandas` gives that row (index ``model``; columns ``split``, ``n_users``,
    ``fit_seconds`` and every metric, values exactly as stored). Several results side by side:
    :func:`format_table`.

    Attributes:
        model: model name.
        split: the split's name.
        protocol: a one-line statement of split, filtering, candidates and K.
        metrics: ``{"ndcg@10": ..., "recall@10": ..., "coverage@10": ..., ...}``.
        n_users: evaluated users.
        fit_seconds: training time when known.
        per_user: per-user accuracy values (``{metric: (n_users,) array}``).
    """

    model: str
    split: str
    protocol: str
    metrics: dict[str, float]
    n_users: int
    fit_seconds: float | None = None
    per_user: dict[str, npt.NDArray[np.float64]] = field(default_factory=dict, repr=False)

    _pandas_extra = PANDAS_EXTRA

    def _display_table(self) -> DisplayTable:
        return DisplayTable(
            f"{self.model} on {self.split}: {self.n_users} users",
            ("model", "split", "n_users", "fit_seconds", *self.metrics),
            ((self.model, self.split, self.n_users, self.fit_seconds, *self.metrics.values()),),
            index="model",
            details=(("protocol", self.protocol),),
        )

    def __repr__(self) -> str:
        shown = list(self.metrics.items())[:4]
        more = f", ... ({len(self.metrics) - len(shown)} more)" if len(self.metrics) > len(shown) else ""
        means = "".join(f", {k}={format_value(float(v))}" for k, v in shown)
        return f"EvaluationResult({self.model!r}, split={self.split!r}, n_users={self.n_users}{means}{more})"


def split_qrels(split: Split) -> tuple[npt.NDArray[np.int64], Qrels]:
    """Evaluated users (test users that also have training events) and their binary qrels, row-aligned."""
    train_users = np.unique(split.train.users)
    test = split.test
    keep = np.isin(test.users, train_users)
    if split.candidate_items is not None:
        keep &= np.isin(test.items, split.candidate_items)
    users, items = test.users[keep], test.items[keep]
    if users.size == 0:
        raise EmptyIndexError(
            f"split {split.name!r} has no test user with training events; nothing to evaluate"
        )
    order = np.lexsort((items, users))
    users, items = users[order], items[order]
    uniq_pairs = np.ones(users.shape[0], dtype=bool)
    uniq_pairs[1:] = (users[1:] != users[:-1]) | (items[1:] != items[:-1])
    users, items = users[uniq_pairs], items[uniq_pairs]
    eval_users, starts = np.unique(users, return_index=True)
    groups = np.split(items, starts[1:])
    return eval_users, Qrels.from_lists(groups, query_ids=[str(u) for u in eval_users])


def evaluate_recommender(
    model: SupportsRecommend,
    split: Split,
    *,
    catalogue: npt.ArrayLike | None = None,
    ks: Sequence[int] = (10, 20),
    name: str | None = None,
    fit_seconds: float | None = None,
    batch_size: int = 2048,
) -> EvaluationResult:
    """Run the protocol (module docs) for a fitted ``model`` on ``split``.

    Args:
        model: a fitted recommender (baseline, :class:`~mlsys.recsys.TwoTowerRetriever`,
            :class:`~mlsys.recsys.FallbackChain`).
        split: the split it was trained on.
        catalogue: item ids ranked (default: ``split.candidate_items`` or the model's catalogue);
            used for coverage.
        ks: cutoffs.
        name: model name in the result (default: ``model.name``).
        fit_seconds: recorded as is.
    """
    cut = [check_k(k) for k in ks]
    batch_size = check_k(batch_size, name="batch_size", limit="max_batch")
    if not cut:
        raise InvalidInputError("ks is empty; expected at least one cutoff such as (10, 20)")
    kmax = max(cut)
    users, qrels = split_qrels(split)
    if split.candidate_items is not None:
        cand = split.candidate_items
    elif catalogue is not None:
        cand = np.unique(as_ids(catalogue, name="catalogue"))
    elif hasattr(model, "item_ids_"):
        cand = np.asarray(model.item_ids_, dtype=np.int64)
    else:
        raise InvalidInputError("pass catalogue=... (the model does not expose item_ids_)")
    allow = split.candidate_items
    rows = []
    for s in range(0, users.shape[0], batch_size):
        ids, _ = model.recommend(users[s : s + batch_size], kmax, exclude_seen=True, allow=allow)
        rows.append(ids)
    ranked = np.concatenate(rows)
    names = [f"{m}@{k}" for k in cut for m in ACCURACY]
    res = evaluate_ranked(ranked, qrels, names)
    metrics = {n: float(res.mean[n]) for n in names}

    # Beyond accuracy, over catalogue positions (metrics index popularity by position).
    cand_sorted = np.sort(cand)
    pos = np.searchsorted(cand_sorted, ranked)
    pos_clip = np.minimum(pos, cand_sorted.shape[0] - 1)
    in_cat = (ranked >= 0) & (cand_sorted[pos_clip] == ranked)
    ranked_pos = np.where(in_cat, pos_clip, -1)
    train_users = np.unique(split.train.users)
    tr_items, tr_users = split.train.items, split.train.users
    pairs = np.unique(np.stack([tr_items, tr_users]), axis=1)
    counts = np.zeros(cand_sorted.shape[0], dtype=np.float64)
    p_pos = np.searchsorted(cand_sorted, pairs[0])
    ok = (p_pos < cand_sorted.shape[0]) & (
        cand_sorted[np.minimum(p_pos, cand_sorted.shape[0] - 1)] == pairs[0]
    )
    np.add.at(counts, p_pos[ok], 1.0)
    popularity = (counts + 1.0) / (train_users.shape[0] + 1.0)
    for k in cut:
        if (ranked_pos[:, :k] >= 0).any():
            metrics[f"coverage@{k}"] = catalog_coverage(ranked_pos[:, :k], cand_sorted.shape[0])
            metrics[f"novelty@{k}"] = novelty(ranked_pos[:, :k], popularity)
    ks_txt = ", ".join(str(k) for k in cut)
    where = (
        f"ranking among {cand_sorted.shape[0]} held-out items"
        if split.candidate_items is not None
        else f"full ranking over {cand_sorted.shape[0]} items"
    )
    protocol = (
        f"{split.description}; {users.shape[0]} test users (>=1 test and >=1 train event); {where}, "
        f"train items masked; binary relevance; K={ks_txt}"
    )
    model_name = name or str(getattr(model, "name", type(model).__name__))
    return EvaluationResult(
        model=model_name,
        split=split.name,
        protocol=protocol,
        metrics=metrics,
        n_users=int(users.shape[0]),
        fit_seconds=fit_seconds,
        per_user={n: np.asarray(res.per_query[n]) for n in names},
    )


def format_table(
    results: Sequence[EvaluationResult], *, columns: Sequence[str] | None = None
) -> EvaluationTable:
    """A Markdown table of results, preceded by each distinct protocol line.

    The table is a ``str`` (an :class:`EvaluationTable`) that also displays as an HTML table in a
    notebook and converts with ``to_pandas()``.

    Example:
        >>> r = EvaluationResult("pop", "s", "protocol text", {"ndcg@10": 0.2}, 3, 0.01)
        >>> print(format_table([r]))
        protocol: protocol text
        <BLANKLINE>
        | model | ndcg@10 | fit s |
        | --- | ---: | ---: |
        | pop | 0.2000 | 0.01 |
    """
    return EvaluationTable(results, columns=columns)


def _markdown(results: Sequence[EvaluationResult], cols: Sequence[str]) -> str:
    lines = []
    for p in dict.fromkeys(r.protocol for r in results):
        lines.append(f"protocol: {p}")
    lines.append("")
    lines.append("| model | " + " | ".join(cols) + " | fit s |")
    lines.append("| --- | " + " | ".join("---:" for _ in cols) + " | ---: |")
    for r in results:
        vals = []
        for c in cols:
            v = r.metrics.get(c)
            vals.append("n/a" if v is None else (f"{v:.2f}" if c.startswith("novelty") else f"{v:.4f}"))
        fit = "" if r.fit_seconds is None else f"{r.fit_seconds:.2f}"
        lines.append(f"| {r.model} | " + " | ".join(vals) + f" | {fit} |")
    return "\n".join(lines)


class EvaluationTable(str, TabularDisplay):
    """Several :class:`EvaluationResult` side by side: the Markdown text of :func:`format_table`.

    It *is* that text (``print`` it, write it to a README); it keeps :attr:`results` and
    :attr:`columns`, displays as an HTML table in a notebook (protocols folded away), and
    :meth:`to_pandas` gives one row per result (index ``model``; ``split``, ``n_users``,
    ``fit_seconds`` and the columns' metrics, exactly as stored; a metric a model lacks is NaN).

    Args:
        results: the results, in row order.
        columns: the metrics shown (default: the first result's).

    Example:
        >>> a = EvaluationResult("pop", "s", "p", {"ndcg@10": 0.2}, 3)
        >>> b = EvaluationResult("ease", "s", "p", {"ndcg@10": 0.3}, 3)
        >>> t = EvaluationTable([a, b])
        >>> t.splitlines()[-1], t.columns
        ('| ease | 0.3000 |  |', ('ndcg@10',))
    """

    results: tuple[EvaluationResult, ...]
    columns: tuple[str, ...]
    _pandas_extra = PANDAS_EXTRA

    def __new__(
        cls, results: Sequence[EvaluationResult], *, columns: Sequence[str] | None = None
    ) -> EvaluationTable:
        rs = tuple(results)
        if not rs:
            raise InvalidInputError("no results to format")
        for i, r in enumerate(rs):
            if not isinstance(r, EvaluationResult):
                raise InvalidInputError(f"results[{i}] is {type(r).__name__}, expected an EvaluationResult")
        cols = tuple(columns) if columns is not None else tuple(rs[0].metrics)
        obj = super().__new__(cls, _markdown(rs, cols))
        obj.results, obj.columns = rs, cols
        return obj

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_table, (self.results, self.columns))

    def __repr__(self) -> str:
        return str(self)

    def _display_table(self) -> DisplayTable:
        nan = float("nan")
        protocols = list(dict.fromkeys(r.protocol for r in self.results))
        return DisplayTable(
            f"{len(self.results)} results",
            ("model", "split", "n_users", "fit_seconds", *self.columns),
            tuple(
                (r.model, r.split, r.n_users, r.fit_seconds, *(r.metrics.get(c, nan) for c in self.columns))
                for r in self.results
            ),
            index="model",
            details=tuple(
                (f"protocol {i + 1}" if len(protocols) > 1 else "protocol", p)
                for i, p in enumerate(protocols)
            ),
        )


def _rebuild_table(results: tuple[EvaluationResult, ...], columns: tuple[str, ...]) -> EvaluationTable:
    return EvaluationTable(results, columns=columns)
