"""Concurrent searches while one writer adds, upserts and removes, on every backend."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from ann_testlib import BACKENDS, backend_id, space, vectors  # type: ignore[import-not-found]

from mlsys.common.ann import make_index

CASES = [pytest.param(c, id=backend_id(c)) for c in BACKENDS]


@pytest.mark.parametrize("case", CASES)
def test_searches_during_writes(case: Any) -> None:
    index = make_index(case[0], space(16, "l2"), **case[1])
    stable = vectors(200, 16, seed=1)
    index.add(np.arange(200), stable)  # ids 0..199 are never touched by the writer
    errors: list[BaseException] = []
    done = threading.Event()

    def writer() -> None:
        try:
            rng = np.random.default_rng(7)
            for step in range(60):
                ids = np.arange(1000 + 10 * step, 1010 + 10 * step)
                index.add(ids, rng.standard_normal((10, 16)).astype(np.float32) + 50.0)
                index.upsert(ids[:3], rng.standard_normal((3, 16)).astype(np.float32) + 50.0)
                if step % 2:
                    index.remove(ids[5:])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done.set()

    def reader(seed: int) -> None:
        try:
            q = stable[seed * 10 : seed * 10 + 5]
            while not done.is_set():
                ids, _ = index.search(q, 5)
                # the writer's items live far away (+50): the nearest items are always stable ones
                assert (ids >= 0).all() and (ids < 200).all()
                assert (ids[:, 0] == np.arange(seed * 10, seed * 10 + 5)).mean() >= 0.6
                ids, _ = index.search(q, 3, allow=np.arange(1000, 1700))
                assert ((ids >= 1000) | (ids == -1)).all()
                assert 5 in index and len(index) >= 200
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=reader, args=(i,)) for i in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[0]
    assert not any(t.is_alive() for t in threads)
    expected = set(range(200))
    for step in range(60):
        ids = range(1000 + 10 * step, 1010 + 10 * step)
        expected |= set(ids if step % 2 == 0 else list(ids)[:5])
    assert set(index.ids().tolist()) == expected
