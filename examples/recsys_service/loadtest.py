"""Load test of the reference service with a hot swap in the middle, on loopback; stops by itself.

    python examples/recsys_service/loadtest.py                   # starts serve.py on a free port
    python examples/recsys_service/loadtest.py --requests 400 --concurrency 8
    python examples/recsys_service/loadtest.py --url http://127.0.0.1:8000   # an already running server

What it does:

1. waits for ``/health``, draws a fixed set of request batches (1-4 users each, ``k`` items) and
   records the serving version's answer to every batch, one request at a time (the reference);
2. runs ``--concurrency`` clients that send those batches at random until ``--requests`` are sent
   and at least ``--min-after-swap`` of them were sent after the swap finished; hard stops:
   ``--max-seconds`` and ``--max-requests`` (default 10x ``--requests``);
3. once a third of the requests are done, calls ``POST /admin/swap`` (retrain + re-index, new
   embedding space) while the clients keep going;
4. records the new version's reference answers, then checks every response:

   - errors: any non-200 or transport error;
   - mixing: a response's items must equal the reference answer *of the version it reports*, and
     its digest the digest of that version: a response computed partly with the old and partly with
     the new bundle (or labelled with the wrong version) would (all but surely) match neither. The
     number of batches whose two references differ is printed (at least half must differ, else
     the check could not tell the versions apart and the run fails);
   - order: a response finished before the swap was sent is old; one sent after the swap returned
     is new; no client sees the old version again after it saw the new one.

Prints a table and exits 1 when any check fails. Load is bounded: a few hundred requests, a
couple of seconds of load on a small machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent


@dataclass
class Sample:
    client: int
    seq: int
    batch: int
    start: float
    end: float
    status: int  # HTTP status, or -1 for a transport error
    version: str | None = None
    digest: str | None = None
    items: list[list[int]] | None = None
    error: str | None = None


@dataclass
class LoadResult:
    requests: int
    concurrency: int
    wall_s: float
    samples: list[Sample]
    version_before: str
    version_after: str
    digests: dict[str, str]
    references: dict[str, list[list[list[int]]]]
    swap_status: int
    swap_response: dict[str, Any]
    swap_start: float
    swap_end: float
    metrics: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> dict[str, Any]:
    """Poll ``/health`` until it answers 200 (raise after ``timeout_s`` or if ``proc`` exits)."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} before it was ready")
        try:
            r = httpx.get(f"{url}/health", timeout=2.0)
            if r.status_code == 200:
                return dict(r.json())
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"{url}/health not ready after {timeout_s} s (last error: {last})")


async def _references(
    client: httpx.AsyncClient, batches: list[list[int]], k: int
) -> tuple[str, str, list[list[list[int]]]]:
    """Each batch's answer, one request at a time, and the (single) version that gave them all."""
    out: list[list[list[int]]] = []
    versions = set()
    digest = ""
    for b in batches:
        r = await client.post("/recommend", json={"user_ids": b, "k": k})
        r.raise_for_status()
        body = r.json()
        versions.add(body["version"])
        digest = body["digest"]
        out.append(body["items"])
    if len(versions) != 1:
        raise RuntimeError(f"the version changed while taking references: {sorted(versions)}")
    return versions.pop(), digest, out


async def run_load(
    url: str,
    *,
    requests: int = 400,
    concurrency: int = 8,
    max_seconds: float = 30.0,
    swap_after: float = 1 / 3,
    min_after_swap: int = 50,
    n_batches: int = 32,
    k: int = 10,
    seed: int = 0,
    swap_seed: int | None = None,
    admin_token: str | None = None,
    max_requests: int | None = None,
    rate: float | None = None,
) -> LoadResult:
    """Run the load with a mid-run swap against ``url`` and check it (see the module docstring).

    ``rate`` (requests/s over all clients) paces the clients (open loop); ``None``: each client
    sends its next request as soon as the previous one is answered (closed loop).
    """
    rng = np.random.default_rng(seed)
    headers = {"X-Admin-Token": admin_token} if admin_token else {}
    limits = httpx.Limits(max_connections=concurrency + 2, max_keepalive_connections=concurrency + 2)
    async with httpx.AsyncClient(base_url=url, timeout=60.0, limits=limits) as client:
        health = (await client.get("/health")).json()
        users = health["sample_user_ids"]
        batches = [
            sorted(rng.choice(users, size=int(rng.integers(1, 5)), replace=False).tolist())
            for _ in range(n_batches)
        ]
        v_before, d_before, ref_before = await _references(client, batches, k)

        samples: list[Sample] = []
        state = {"sent": 0, "done": 0, "after_swap": 0}
        swap_done = asyncio.Event()
        swap_info: dict[str, Any] = {"status": 0, "body": {}, "start": float("nan"), "end": float("nan")}
        t_start = time.perf_counter()
        deadline = t_start + max_seconds
        hard_cap = 10 * requests if max_requests is None else max_requests

        def keep_going() -> bool:
            if time.perf_counter() > deadline or state["sent"] >= hard_cap:
                return False
            if state["sent"] < requests:
                return True
            return not (swap_done.is_set() and state["after_swap"] >= min_after_swap)

        async def worker(cid: int) -> None:
            wrng = np.random.default_rng([seed, cid])
            seq = 0
            interval = concurrency / rate if rate else 0.0
            next_at = time.perf_counter() + interval * cid / concurrency
            while keep_going():
                if interval:
                    delay = next_at - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    next_at = max(next_at, time.perf_counter()) + interval  # no catch-up bursts
                state["sent"] += 1
                bi = int(wrng.integers(0, len(batches)))
                s = Sample(cid, seq, bi, time.perf_counter(), 0.0, -1)
                seq += 1
                after = swap_done.is_set()
                try:
                    r = await client.post("/recommend", json={"user_ids": batches[bi], "k": k})
                    s.status = r.status_code
                    if r.status_code == 200:
                        body = r.json()
                        s.version, s.digest, s.items = body["version"], body["digest"], body["items"]
                    else:
                        s.error = r.text[:200]
                except httpx.HTTPError as exc:
                    s.error = f"{type(exc).__name__}: {exc}"
                s.end = time.perf_counter()
                samples.append(s)
                state["done"] += 1
                if after:
                    state["after_swap"] += 1

        async def swapper() -> None:
            try:
                while state["done"] < int(requests * swap_after) and time.perf_counter() < deadline:
                    await asyncio.sleep(0.005)
                swap_info["start"] = time.perf_counter()
                try:
                    body = {} if swap_seed is None else {"seed": swap_seed}
                    r = await client.post("/admin/swap", json=body, headers=headers, timeout=300.0)
                    swap_info["status"] = r.status_code
                    swap_info["body"] = r.json() if r.status_code == 200 else {"error": r.text[:300]}
                except httpx.HTTPError as exc:
                    swap_info["status"] = -1
                    swap_info["body"] = {"error": f"{type(exc).__name__}: {exc}"}
                swap_info["end"] = time.perf_counter()
            finally:
                swap_done.set()

        await asyncio.gather(swapper(), *(worker(c) for c in range(concurrency)))
        wall = time.perf_counter() - t_start

        v_after, d_after, ref_after = await _references(client, batches, k)
        metrics = (await client.get("/metrics")).json()

    result = LoadResult(
        requests=len(samples),
        concurrency=concurrency,
        wall_s=wall,
        samples=samples,
        version_before=v_before,
        version_after=v_after,
        digests={v_before: d_before, v_after: d_after},
        references={v_before: ref_before, v_after: ref_after},
        swap_status=int(swap_info["status"]),
        swap_response=dict(swap_info["body"]),
        swap_start=float(swap_info["start"]),
        swap_end=float(swap_info["end"]),
        metrics=metrics,
    )
    result.checks = check(result)
    return result


def check(res: LoadResult) -> dict[str, Any]:
    """Errors, mixing, ordering and latency figures of a finished load."""
    ok = [s for s in res.samples if s.status == 200]
    errors = len(res.samples) - len(ok)
    new = res.version_after
    old = res.version_before
    swapped = res.swap_status == 200 and res.swap_response.get("version") == new and new != old
    unknown_version = 0
    mixed = 0
    wrong_digest = 0
    for s in ok:
        if s.version not in res.references:
            unknown_version += 1
            continue
        if s.digest != res.digests[s.version]:
            wrong_digest += 1
        if s.items != res.references[s.version][s.batch]:
            mixed += 1
    # order: finished before the swap was sent -> old; sent after it returned -> new; no flip back
    order = 0
    for s in ok:
        if s.end < res.swap_start and s.version != old:
            order += 1
        if s.start > res.swap_end and s.version != new:
            order += 1
    by_client: dict[int, list[Sample]] = {}
    for s in ok:
        by_client.setdefault(s.client, []).append(s)
    flip_back = 0
    for seq in by_client.values():
        seen_new = False
        for s in sorted(seq, key=lambda x: x.seq):
            seen_new |= s.version == new
            if seen_new and s.version == old and old != new:
                flip_back += 1
    distinguishable = sum(a != b for a, b in zip(res.references.get(old, []), res.references.get(new, [])))
    during = [s for s in ok if s.start < res.swap_end and s.end > res.swap_start]
    lat = np.array([s.end - s.start for s in ok]) * 1e3
    lat_during = np.array([s.end - s.start for s in during]) * 1e3

    def pct(a: np.ndarray, q: float) -> float:
        return float(np.percentile(a, q)) if a.size else float("nan")

    counts = {v: sum(s.version == v for s in ok) for v in sorted({old, new})}
    n_batches = len(res.references.get(old, []))
    checks = {
        "requests": len(res.samples),
        "ok": len(ok),
        "errors": errors,
        "swap_ok": swapped,
        "swap_build_s": res.swap_response.get("build_seconds"),
        "swap_window_s": res.swap_end - res.swap_start,
        "during_swap": len(during),
        "failed_during_swap": sum(
            s.status != 200 for s in res.samples if s.start < res.swap_end and s.end > res.swap_start
        ),
        "by_version": counts,
        "mixed": mixed,
        "wrong_digest": wrong_digest,
        "unknown_version": unknown_version,
        "order_violations": order,
        "flip_back": flip_back,
        "distinguishable_batches": f"{distinguishable}/{n_batches}",
        "p50_ms": pct(lat, 50),
        "p95_ms": pct(lat, 95),
        "p99_ms": pct(lat, 99),
        "max_ms": float(lat.max()) if lat.size else float("nan"),
        "p99_during_swap_ms": pct(lat_during, 99),
        "throughput_rps": len(res.samples) / res.wall_s if res.wall_s > 0 else float("nan"),
        "out_of_stock_served": res.metrics.get("all_versions", {}).get("out_of_stock_served"),
        "server_errors": res.metrics.get("service", {}).get("server_errors"),
    }
    checks["passed"] = bool(
        errors == 0
        and swapped
        and mixed == 0
        and wrong_digest == 0
        and unknown_version == 0
        and order == 0
        and flip_back == 0
        and len(during) > 0
        and counts.get(old, 0) > 0
        and counts.get(new, 0) > 0
        and 2 * distinguishable >= n_batches  # the check can tell the versions apart
    )
    return checks


def format_table(res: LoadResult) -> str:
    c = res.checks
    rows = [
        (
            "requests",
            f"{c['requests']} ({c['ok']} ok) in {res.wall_s:.2f} s, {c['throughput_rps']:.0f} req/s",
        ),
        ("concurrency", f"{res.concurrency} clients"),
        ("errors", f"{c['errors']}"),
        ("latency p50 / p95 / p99", f"{c['p50_ms']:.1f} / {c['p95_ms']:.1f} / {c['p99_ms']:.1f} ms"),
        ("latency max", f"{c['max_ms']:.1f} ms (p99 while swapping {c['p99_during_swap_ms']:.1f} ms)"),
        (
            "swap",
            f"{res.version_before} -> {res.version_after} "
            f"({'ok' if c['swap_ok'] else 'FAILED'}, build {c['swap_build_s']} s, "
            f"window {c['swap_window_s']:.2f} s)",
        ),
        ("requests overlapping swap", f"{c['during_swap']} ({c['failed_during_swap']} failed)"),
        ("responses per version", ", ".join(f"{v}: {n}" for v, n in c["by_version"].items())),
        (
            "mixing check",
            f"{c['mixed']} mixed, {c['wrong_digest']} wrong digest, {c['unknown_version']} unknown version "
            f"(batches distinguishable: {c['distinguishable_batches']})",
        ),
        ("order check", f"{c['order_violations']} violations, {c['flip_back']} flip-backs"),
        (
            "server counters",
            f"server_errors={c['server_errors']} out_of_stock_served={c['out_of_stock_served']}",
        ),
        ("result", "PASS" if c["passed"] else "FAIL"),
    ]
    w = max(len(r[0]) for r in rows)
    return "\n".join(f"{a:<{w}}  {b}" for a, b in rows)


def start_server(port: int, extra: list[str], log: Any) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, str(HERE / "serve.py"), "--host", "127.0.0.1", "--port", str(port), *extra]
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=None, help="an already running server (default: start one on loopback)")
    p.add_argument("--requests", type=int, default=400)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--max-seconds", type=float, default=30.0, help="hard stop of the load phase")
    p.add_argument("--max-requests", type=int, default=None, help="hard stop (default: 10x --requests)")
    p.add_argument("--rate", type=float, default=None, help="pace all clients to this many requests/s")
    p.add_argument("--min-after-swap", type=int, default=50)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--startup-timeout", type=float, default=180.0)
    p.add_argument("--admin-token", default=os.environ.get("RECSYS_ADMIN_TOKEN"))
    p.add_argument("--server-arg", action="append", default=[], help="extra serve.py argument (repeatable)")
    args = p.parse_args(argv)
    if args.requests > 5000 or args.concurrency > 64 or (args.max_requests or 0) > 50_000:
        p.error("keep the load bounded: --requests <= 5000, --max-requests <= 50000, --concurrency <= 64")

    proc = None
    log = None
    url = args.url
    try:
        if url is None:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            log = tempfile.TemporaryFile()
            extra = list(args.server_arg)
            if args.admin_token:
                extra += ["--admin-token", args.admin_token]
            proc = start_server(port, extra, log)
            print(f"starting {HERE / 'serve.py'} on {url} ...", flush=True)
        t0 = time.perf_counter()
        health = wait_ready(url, args.startup_timeout, proc)
        print(f"ready in {time.perf_counter() - t0:.1f} s: {health['version']} digest={health['digest']}")
        res = asyncio.run(
            run_load(
                url,
                requests=args.requests,
                concurrency=args.concurrency,
                max_seconds=args.max_seconds,
                min_after_swap=args.min_after_swap,
                k=args.k,
                seed=args.seed,
                admin_token=args.admin_token,
                max_requests=args.max_requests,
                rate=args.rate,
            )
        )
        print(format_table(res))
        if not res.checks["passed"]:
            bad = [s for s in res.samples if s.status != 200][:5]
            for s in bad:
                print(f"  failed request: status={s.status} {s.error}", file=sys.stderr)
            if res.swap_status != 200:
                print(f"  swap: status={res.swap_status} {res.swap_response}", file=sys.stderr)
        return 0 if res.checks["passed"] else 1
    except Exception:
        if log is not None:
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace")[-4000:])
        raise
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if log is not None:
            log.close()


if __name__ == "__main__":
    sys.exit(main())
