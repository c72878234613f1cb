"""``GET /api/v1/state`` under steady load with 100 running sessions in the snapshot.

    .venv/bin/python bench/dashboard_load.py [--seconds 10] [--clients 16] [--running 100]

A dispatcher double (the real IPC server, tests/dashboard/double.py) serves a snapshot with
``--running`` sessions; the real dashboard runs as its own socket-activated process, as in
the tests. ``--clients`` keep-alive connections send requests back to back for ``--seconds``
(closed-loop load); every latency is recorded. A second phase measures the same while the
dispatcher pushes a state change every 100 ms to 20 open event streams. Last line:
RESULT {json}.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp

from symphonyd.core.api.dispatcher import StateSnapshot
from tests.dashboard.double import DispatcherDouble, snapshot
from tests.dashboard.harness import DashboardProcess, short_dir


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _load(base: str, seconds: float, clients: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            async with session.get(base + "/api/v1/state") as resp:
                await resp.read()
                if resp.status != 200:
                    errors += 1
            latencies.append(time.perf_counter() - t0)

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(_pct(latencies, 0.99) * 1000, 2),
        "max_ms": round(max(latencies) * 1000, 2),
    }


async def _streams(base: str, count: int, stop: asyncio.Event) -> int:
    received = 0

    async def one(session: aiohttp.ClientSession) -> None:
        nonlocal received
        async with session.get(base + "/events") as resp:
            async for _line in resp.content:
                if stop.is_set():
                    return
                received += 1

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
        tasks = [asyncio.create_task(one(session)) for _ in range(count)]
        await stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return received


def _stamped(snap: StateSnapshot, *, tick: int) -> StateSnapshot:
    return dataclasses.replace(snap, generated_at=f"tick-{tick}")


async def _with_churn(
    base: str, seconds: float, clients: int, double: DispatcherDouble
) -> dict[str, Any]:
    stop = asyncio.Event()
    streams = asyncio.create_task(_streams(base, 20, stop))
    halt = threading.Event()

    def churn() -> None:
        n = 0
        while not halt.wait(0.1):
            n += 1
            double.update(functools.partial(_stamped, tick=n))

    pusher = threading.Thread(target=churn, daemon=True)
    pusher.start()
    try:
        result = await _load(base, seconds, clients)
    finally:
        halt.set()
        pusher.join(5)
        stop.set()
    result["sse_lines_received"] = await streams
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--running", type=int, default=100)
    args = parser.parse_args()
    args.seconds = min(args.seconds, 60.0)
    with short_dir() as d:
        double = DispatcherDouble(d / "disp.sock", snapshot(running=args.running))
        with double, DashboardProcess(d / "disp.sock", None, d / "dash.log") as dash:
            body = asyncio.run(_fetch_size(dash.base))
            steady = asyncio.run(_load(dash.base, args.seconds, args.clients))
            churn = asyncio.run(_with_churn(dash.base, args.seconds, args.clients, double))
    result = {
        "bench": "dashboard_load",
        "running_sessions": args.running,
        "state_bytes": body,
        "clients": args.clients,
        "seconds": args.seconds,
        "steady": steady,
        "with_sse_churn": churn,
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version()},
    }
    print(f"steady:     {steady}")
    print(f"with churn: {churn}")
    print("RESULT " + json.dumps(result))
    return 0


async def _fetch_size(base: str) -> int:
    """Wait until the dashboard has the dispatcher's snapshot; return the body size."""
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            async with session.get(base + "/api/v1/state") as resp:
                data = await resp.read()
                if resp.status == 200:
                    return len(data)
            await asyncio.sleep(0.1)
    raise RuntimeError("dashboard never got a snapshot from the dispatcher double")


if __name__ == "__main__":
    sys.exit(main())
