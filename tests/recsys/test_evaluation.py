"""The evaluation protocol against an independent numpy computation of NDCG/Recall/HR/MRR."""

from __future__ import annotations

import numpy as np
import pytest

from mlsys.common.errors import EmptyIndexError, InvalidInputError
from mlsys.recsys import EASE, Interactions, Popularity, evaluate_recommender, format_table, random_holdout


def _reference(model, split, k: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    train_items: dict[int, set[int]] = {}
    for u, i in zip(split.train.users.tolist(), split.train.items.tolist()):
        train_items.setdefault(u, set()).add(i)
    test_items: dict[int, set[int]] = {}
    for u, i in zip(split.test.users.tolist(), split.test.items.tolist()):
        if u in train_items:
            test_items.setdefault(u, set()).add(i)
    users = sorted(test_items)
    scores = model.score(users)
    cat = model.item_ids_.tolist()
    out: dict[str, list[float]] = {"ndcg": [], "recall": [], "hit_rate": [], "mrr": []}
    for row, u in zip(scores, users):
        ranked = [cat[j] for j in np.argsort(-row, kind="stable") if cat[j] not in train_items[u]][:k]
        hits = np.array([i in test_items[u] for i in ranked], dtype=float)
        disc = 1.0 / np.log2(np.arange(2, k + 2))
        idcg = disc[: min(len(test_items[u]), k)].sum()
        out["ndcg"].append(float((hits * disc[: len(hits)]).sum() / idcg))
        out["recall"].append(hits.sum() / len(test_items[u]))
        out["hit_rate"].append(float(hits.any()))
        first = np.flatnonzero(hits)
        out["mrr"].append(1.0 / (first[0] + 1) if first.size else 0.0)
    return {m: float(np.mean(v)) for m, v in out.items()}


@pytest.mark.parametrize("model_cls", [Popularity, EASE])
def test_metrics_match_independent_numpy(model_cls, synth) -> None:  # type: ignore[no-untyped-def]
    split = random_holdout(synth.interactions, seed=0)
    model = model_cls().fit(split.train, catalogue=synth.items.ids)
    res = evaluate_recommender(model, split, ks=(5, 10))
    for k in (5, 10):
        ref = _reference(model, split, k)
        for m, v in ref.items():
            assert res.metrics[f"{m}@{k}"] == pytest.approx(v, abs=1e-9), (m, k)
    assert 0 < res.metrics["coverage@10"] <= 1 and res.metrics["novelty@10"] > 0
    assert res.n_users == len(np.unique(split.test.users))
    assert res.per_user["ndcg@10"].shape == (res.n_users,)


def test_protocol_states_split_filtering_and_k(synth) -> None:  # type: ignore[no-untyped-def]
    split = random_holdout(synth.interactions, seed=0)
    res = evaluate_recommender(Popularity().fit(split.train, catalogue=synth.items.ids), split, ks=(10,))
    for needle in ("80/20", "default_rng(0)", "train items masked", "K=10", "full ranking over 60 items"):
        assert needle in res.protocol
    table = format_table([res])
    assert table.startswith("protocol: ") and "| popularity |" in table


def test_bad_evaluation_input() -> None:
    x = Interactions(users=[1, 1, 1, 1, 1], items=[1, 2, 3, 4, 5])
    split = random_holdout(x)
    with pytest.raises(InvalidInputError):
        evaluate_recommender(Popularity().fit(split.train), split, ks=())
    empty = random_holdout(Interactions(users=[1], items=[1]))  # one event: nothing to test
    with pytest.raises(EmptyIndexError):
        evaluate_recommender(Popularity().fit(empty.train), empty)
