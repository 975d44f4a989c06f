"""Scaling curve of two-tower training (issue 22): ``TwoTowerModel(config).fit`` at data x1 and x10.

Generated data (``synthetic_dataset``): x1 = 500 users x 150 items x 20 interactions per user
(10,000 interactions), x10 = 5,000 users x 1,500 items (100,000); smoke: 50 and 500 users with a
small model. The config is the warm benchmark's (``mlsys.recsys.evaluate.WARM_CONFIG``) with one
epoch and one torch thread, called as a user would (public API only), so the fitted exponent reads the cost of
the whole fit (batching, negatives, towers) per interaction: 1.0 is linear in the data. There is
no outside library doing the same work to anchor it; the exponent is the figure. Table printed,
plot in ``benchmarks/recsys/scaling.png`` (not in smoke mode); the ``## Scaling`` section of
benchmarks/recsys/README.md.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from conftest import SMOKE

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scaling import Curve, measure, report

HERE = Path(__file__).resolve().parent


def test_two_tower_training_scaling() -> None:
    torch = pytest.importorskip("torch")
    from mlsys.recsys import TwoTowerModel, synthetic_dataset
    from mlsys.recsys.evaluate import WARM_CONFIG

    config = replace(WARM_CONFIG, epochs=1)
    if SMOKE:
        config = replace(config, batch_size=128, dim=16, hidden=32)
    base = 50 if SMOKE else 500

    def fit(n_users: int) -> Any:
        ds = synthetic_dataset(n_users=n_users, n_items=max(60, int(n_users * 0.3)), per_user=20, seed=0)

        def run() -> Any:
            return TwoTowerModel(config).fit(ds.interactions, items=ds.items, users=ds.users, progress=False)

        return run

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        curves: dict[str, list[Curve]] = {
            "two-tower fit (users; x1 and x10)": measure(
                "two-tower fit", {"mlsys TwoTowerModel.fit": fit}, [base, 10 * base], repeats=1
            )
        }
    finally:
        torch.set_num_threads(threads)
    report(curves, None if SMOKE else HERE / "scaling.png", "mlsys.recsys scaling", {})
    assert curves["two-tower fit (users; x1 and x10)"][0].exponent < 1.5  # not super-linear in the data
