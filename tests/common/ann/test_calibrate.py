"""calibrate: reaches the target by raising ef / nprobe, reports what it measured."""

from __future__ import annotations

import numpy as np
import pytest
from ann_testlib import space  # type: ignore[import-not-found]

from mlsys.common.ann import ExactIndex, FaissIndex, HNSWIndex, calibrate, recall_at_k, search_knob
from mlsys.common.errors import EmptyIndexError, InvalidInputError


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 24)).astype(np.float32)  # isotropic: hard for graphs at low ef
    return x, rng.standard_normal((60, 24)).astype(np.float32)


@pytest.mark.parametrize(
    ("make", "knob"),
    [
        (lambda: HNSWIndex(space(24, "l2"), M=8, ef=4), "ef"),
        (lambda: FaissIndex(space(24, "l2"), "HNSW8", ef_search=4), "ef_search"),
        (lambda: FaissIndex(space(24, "l2"), "IVF32,Flat", nprobe=1), "nprobe"),
    ],
)
def test_reaches_target_with_smallest_value(
    make: object, knob: str, data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, q = data
    index = make()  # type: ignore[operator]
    if isinstance(index, FaissIndex) and not index.is_trained:
        index.train(x)
    index.add(np.arange(3000), x)
    truth = ExactIndex(space(24, "l2"))
    truth.add(np.arange(3000), x)
    before = recall_at_k(index.search(q, 10)[0], truth.search(q, 10)[0])
    res = calibrate(index, q, target_recall=0.95, k=10)
    assert before < 0.95 <= res.recall and res.met
    assert list(res.params) == [knob] and search_knob(index)[1] == res.params[knob]  # type: ignore[index]
    after = recall_at_k(index.search(q, 10)[0], truth.search(q, 10)[0])
    assert after == pytest.approx(res.recall)
    assert res.seconds_per_query > 0 and res.qps > 0
    # the chosen value is the smallest passing one among those tried
    failing = [s.value for s in res.steps if s.recall < 0.95]
    assert all(v < res.params[knob] for v in failing)


def test_exact_index_has_no_knob(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, q = data
    index = ExactIndex(space(24))
    index.add(np.arange(100), x[:100])
    res = calibrate(index, q, target_recall=0.99)
    assert res.params == {} and res.recall == 1.0 and res.met


def test_bad_arguments(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, q = data
    with pytest.raises(EmptyIndexError):
        calibrate(HNSWIndex(space(24)), q)
    index = HNSWIndex(space(24))
    index.add(np.arange(10), x[:10])
    with pytest.raises(InvalidInputError):
        calibrate(index, q, target_recall=1.5)
    with pytest.raises(InvalidInputError):
        calibrate(index, q[:, :3])
