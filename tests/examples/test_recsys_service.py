"""The reference recommendation service (examples/recsys_service), on loopback only.

Endpoints through FastAPI's TestClient; the inventory guard through the HTTP API (before and
after a swap); and a hot swap in the middle of concurrent load against a real uvicorn server in a
thread, checked by the example's own load-test checker (zero failures, no response mixing the two
versions). Skipped when the example's requirements are not installed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

_REASON = (
    "the recsys_service example needs {}; install it with "
    "`pip install -c constraints.txt -r examples/recsys_service/requirements.txt`"
)
pytest.importorskip("fastapi", reason=_REASON.format("fastapi"))
pytest.importorskip("uvicorn", reason=_REASON.format("uvicorn"))
pytest.importorskip("httpx", reason=_REASON.format("httpx"))

import uvicorn  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "recsys_service"


def _load(name: str, filename: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, EXAMPLE / filename)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses and pydantic resolve annotations through sys.modules
    spec.loader.exec_module(mod)
    return mod


app_mod = _load("_example_recsys_app", "recsys_app.py")
load_mod = _load("_example_recsys_loadtest", "loadtest.py")

TOKEN = "test-token"


@pytest.fixture(scope="module")
def cfg() -> Any:
    return app_mod.ServiceConfig(
        n_users=120, n_items=100, per_user=10, epochs=1, retrieval_cutoff=60, scoring_cutoff=30
    )


@pytest.fixture(scope="module")
def data(cfg: Any) -> Any:
    return app_mod.load_data(cfg)


@pytest.fixture(scope="module")
def client(cfg: Any, data: Any) -> Iterator[TestClient]:
    service = app_mod.RecsysService(cfg, data=data, admin_token=TOKEN)
    with TestClient(app_mod.create_app(service)) as c:
        yield c


def test_health_recommend_and_metrics(client: TestClient) -> None:
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["version"] == "v1" and len(h["digest"]) == 16
    assert h["items"] == 100 and h["max_k"] == app_mod.MAX_K and h["sample_user_ids"]
    users = h["sample_user_ids"][:3]
    r = client.post("/recommend", json={"user_ids": users, "k": 7})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["version"] == "v1" and body["digest"] == h["digest"]
    assert body["embedding_space"] == h["embedding_space"]
    assert len(body["items"]) == 3 and body["degraded_stages"] == []
    for items, scores in zip(body["items"], body["scores"]):
        assert len(items) == 7 == len(set(items)) == len(scores)
    # the same request gives the same answer (the load test's mixing check relies on it)
    assert client.post("/recommend", json={"user_ids": users, "k": 7}).json()["items"] == body["items"]

    m = client.get("/metrics").json()
    stages = m["cascade"]["stages"]
    assert set(stages) == {"retrieval", "light", "diversity"}
    assert stages["diversity"]["calls"] >= 2 and stages["diversity"]["degraded"] == 0
    assert m["cascade"]["out_of_stock_served"] == 0
    for name in ("retrieval", "light", "diversity", "end_to_end", "http_recommend"):
        lat = m["latency"][name]
        assert lat["count"] >= 2 and 0 < lat["p50_ms"] <= lat["p95_ms"] <= lat["p99_ms"] <= lat["max_ms"]
    assert m["service"]["requests"] >= 2 and m["service"]["responses_by_version"]["v1"] >= 2


def test_bad_requests_are_refused_and_counted(client: TestClient) -> None:
    before = client.get("/metrics").json()["service"]
    assert client.post("/recommend", json={"user_ids": [10**9], "k": 5}).status_code == 404
    assert client.post("/recommend", json={"user_ids": [1], "k": 0}).status_code == 422
    assert client.post("/recommend", json={"user_ids": [1], "k": app_mod.MAX_K + 1}).status_code == 422
    assert client.post("/recommend", json={"user_ids": [], "k": 5}).status_code == 422
    assert client.post("/recommend", json={"user_ids": list(range(1, 100)), "k": 5}).status_code == 422
    after = client.get("/metrics").json()["service"]
    assert after["client_errors"] == before["client_errors"] + 1  # the unknown user
    assert after["server_errors"] == 0
    # admin endpoints need the token
    assert client.post("/admin/swap", json={}).status_code == 401
    assert client.post("/admin/inventory", json={"out_of_stock": [1]}).status_code == 401
    hdr = {"X-Admin-Token": TOKEN}
    both = client.post("/admin/inventory", json={"out_of_stock": [5], "in_stock": [5]}, headers=hdr)
    assert both.status_code == 422


def test_out_of_stock_never_served_across_updates_and_swaps(client: TestClient) -> None:
    hdr = {"X-Admin-Token": TOKEN}
    users = client.get("/health").json()["sample_user_ids"][:24]
    batches = [users[i : i + 4] for i in range(0, len(users), 4)]
    first = [client.post("/recommend", json={"user_ids": b, "k": 10}).json()["items"] for b in batches]
    # the top 3 items of every slate sell out
    oos = sorted({i for slate in first for row in slate for i in row[:3]})
    r = client.post("/admin/inventory", json={"out_of_stock": oos}, headers=hdr)
    assert r.status_code == 200 and r.json()["out_of_stock_count"] == len(oos)

    def served() -> set[int]:
        out: set[int] = set()
        for b in batches:
            body = client.post("/recommend", json={"user_ids": b, "k": 10}).json()
            for row in body["items"]:
                assert len(row) == 10  # still full slates
                out |= set(row)
        return out

    assert not served() & set(oos)
    # the inventory is shared by every bundle: still filtered after a swap
    sw = client.post("/admin/swap", json={"seed": 11}, headers=hdr)
    assert sw.status_code == 200 and sw.json()["previous"] != sw.json()["version"]
    assert not served() & set(oos)
    m = client.get("/metrics").json()
    assert m["all_versions"]["out_of_stock_served"] == 0 and m["all_versions"]["out_of_stock_filtered"] > 0
    assert m["inventory"]["out_of_stock_count"] == len(oos)
    # old bundles are released after KEEP_BUNDLES swaps; their counters stay in the totals
    service = client.app.state.service  # type: ignore[attr-defined]
    service.KEEP_BUNDLES = 1
    assert client.post("/admin/swap", json={}, headers=hdr).status_code == 200
    m2 = client.get("/metrics").json()["all_versions"]
    assert m2["live_bundles"] == [service.bundle.version] and len(m2["retired_bundles"]) == 2
    assert m2["out_of_stock_filtered"] == m["all_versions"]["out_of_stock_filtered"]
    assert m2["out_of_stock_served"] == 0
    # back in stock: servable again
    back = client.post("/admin/inventory", json={"in_stock": oos}, headers=hdr).json()
    assert back["out_of_stock_count"] == 0
    assert served() & set(oos)


def test_second_swap_while_building_is_refused(client: TestClient) -> None:
    service = client.app.state.service  # type: ignore[attr-defined]
    assert service._swap_lock.acquire(blocking=False)
    try:
        r = client.post("/admin/swap", json={}, headers={"X-Admin-Token": TOKEN})
        assert r.status_code == 409
        assert client.get("/health").json()["swapping"] is True
    finally:
        service._swap_lock.release()


@pytest.fixture()
def live_server(cfg: Any, data: Any) -> Iterator[str]:
    """A real uvicorn server on a free loopback port, in a thread."""
    service = app_mod.RecsysService(cfg, data=data)
    port = load_mod.free_port()
    server = uvicorn.Server(
        uvicorn.Config(app_mod.create_app(service), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_hot_swap_under_concurrent_load_has_no_failures_and_no_mixing(live_server: str) -> None:
    # bounded: at most 15 s of load (max_seconds), a few hundred requests (~2-4 s here)
    res = asyncio.run(
        load_mod.run_load(
            live_server, requests=150, concurrency=6, max_seconds=15, min_after_swap=20, n_batches=16
        )
    )
    c = res.checks
    table = load_mod.format_table(res)
    assert c["passed"], table
    assert c["errors"] == 0 and c["failed_during_swap"] == 0 and c["swap_ok"]
    assert c["mixed"] == 0 and c["wrong_digest"] == 0 and c["order_violations"] == 0 and c["flip_back"] == 0
    assert c["during_swap"] > 0, "the swap did not overlap the load"
    assert c["by_version"][res.version_before] > 0 and c["by_version"][res.version_after] > 0
    assert res.version_before == "v1" and res.version_after == "v2"
    assert res.digests["v1"] != res.digests["v2"]
    assert c["server_errors"] == 0 and c["out_of_stock_served"] == 0
    assert "PASS" in table


@pytest.mark.slow
def test_documented_one_command_load_test_passes() -> None:
    """`python examples/recsys_service/loadtest.py` (it starts serve.py itself) exits 0."""
    out = subprocess.run(
        [sys.executable, str(EXAMPLE / "loadtest.py"), "--requests", "150", "--concurrency", "4"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "PASS" in out.stdout and "errors                     0" in out.stdout


def _fake_result(**override: Any) -> Any:
    ref = {"v1": [[[1, 2]], [[3, 4]]], "v2": [[[2, 1]], [[4, 3]]]}
    samples = [
        load_mod.Sample(0, 0, 0, 0.0, 0.1, 200, "v1", "d1", [[1, 2]]),
        load_mod.Sample(0, 1, 1, 0.2, 0.3, 200, "v1", "d1", [[3, 4]]),
        load_mod.Sample(1, 0, 1, 0.6, 0.7, 200, "v2", "d2", [[4, 3]]),
        load_mod.Sample(1, 1, 0, 1.1, 1.2, 200, "v2", "d2", [[2, 1]]),
    ]
    kw: dict[str, Any] = dict(
        requests=4,
        concurrency=2,
        wall_s=1.2,
        samples=samples,
        version_before="v1",
        version_after="v2",
        digests={"v1": "d1", "v2": "d2"},
        references=ref,
        swap_status=200,
        swap_response={"version": "v2", "build_seconds": 0.5},
        swap_start=0.5,
        swap_end=1.0,
    )
    kw.update(override)
    return load_mod.LoadResult(**kw)


def test_load_checker_catches_mixing_errors_and_order() -> None:
    ok = _fake_result()
    assert load_mod.check(ok)["passed"], load_mod.check(ok)
    # labelled v2, computed (partly) by v1
    mixed = _fake_result()
    mixed.samples[2] = load_mod.Sample(1, 0, 1, 0.6, 0.7, 200, "v2", "d2", [[3, 4]])
    c = load_mod.check(mixed)
    assert c["mixed"] == 1 and not c["passed"]
    # a failed request
    err = _fake_result()
    err.samples.append(load_mod.Sample(2, 0, 0, 0.6, 0.8, 500, error="boom"))
    c = load_mod.check(err)
    assert c["errors"] == 1 and c["failed_during_swap"] == 1 and not c["passed"]
    # old version served after the swap returned, and a client flipping back to it
    late = _fake_result()
    late.samples[3] = load_mod.Sample(1, 1, 0, 1.1, 1.2, 200, "v1", "d1", [[1, 2]])
    c = load_mod.check(late)
    assert c["order_violations"] == 1 and c["flip_back"] == 1 and not c["passed"]
    # a swap that failed
    assert not load_mod.check(_fake_result(swap_status=500, swap_response={"error": "x"}))["passed"]
    assert np.isfinite(load_mod.check(ok)["p99_ms"])
