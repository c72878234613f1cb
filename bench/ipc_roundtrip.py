"""IPC round trips over a real Unix socket: requests per second and p50/p99 latency.

    .venv/bin/python bench/ipc_roundtrip.py [--seconds 3] [--clients 8]

The server runs in its own process (IpcServer, as a daemon would); clients run here. Phases:
one sequential client; N clients each on its own connection; one connection pipelining N
calls. Each phase is bounded by --seconds. Last line: RESULT {json}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from symphonyd.core.api.shared import HEALTH, Empty, Health
from symphonyd.core.api.tracker import TRACKER_FETCH_BY_IDS, FetchByIds, IssueList
from symphonyd.runtime.ipc_client import IpcClient
from symphonyd.runtime.ipc_server import IpcServer
from symphonyd.runtime.peer import Peer

PAYLOAD_IDS = [f"issue-{i:04d}" for i in range(100)]  # ~1.4 KiB request


async def serve(path: str) -> None:
    server = IpcServer("bench", allowed_uids={os.getuid()}, allow_root=os.getuid() == 0)

    async def health(_: Empty, _peer: Peer) -> Health:
        return Health("bench", "0", True)

    async def fetch(params: FetchByIds, _peer: Peer) -> IssueList:
        return IssueList([])

    server.handle(HEALTH, health)
    server.handle(TRACKER_FETCH_BY_IDS, fetch)
    await server.start_path(path)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until EOF
    await server.close()


def cpu_seconds(pid: int) -> float:
    """user+system CPU of a process, from /proc/<pid>/stat (fields 14 and 15)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def one_client(client: IpcClient, deadline: float, payload: bool, lat: list[float]) -> None:
    params = FetchByIds(PAYLOAD_IDS)
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        if payload:
            await client.call(TRACKER_FETCH_BY_IDS, params)
        else:
            await client.call(HEALTH, Empty())
        lat.append(time.perf_counter() - start)


async def phase(
    server: int, path: str, seconds: float, conns: int, per_conn: int, payload: bool
) -> dict[str, Any]:
    clients = [await IpcClient.connect(path) for _ in range(conns)]
    lat: list[float] = []
    server_cpu0 = cpu_seconds(server)
    client_cpu0 = time.process_time()
    start = time.perf_counter()
    deadline = start + seconds
    await asyncio.gather(
        *(one_client(c, deadline, payload, lat) for c in clients for _ in range(per_conn))
    )
    elapsed = time.perf_counter() - start
    client_cpu = time.process_time() - client_cpu0
    server_cpu = cpu_seconds(server) - server_cpu0
    for c in clients:
        await c.close()
    lat.sort()
    return {
        "connections": conns,
        "in_flight_per_connection": per_conn,
        "payload_bytes": len(json.dumps(PAYLOAD_IDS)) if payload else 0,
        "requests": len(lat),
        "rps": round(len(lat) / elapsed),
        "p50_us": round(statistics.median(lat) * 1e6, 1),
        "p99_us": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e6, 1),
        # CPU per call barely depends on what else runs on the machine; wall numbers do.
        "server_cpu_us_per_call": round(server_cpu / len(lat) * 1e6, 1),
        "client_cpu_us_per_call": round(client_cpu / len(lat) * 1e6, 1),
    }


async def run_phases(pid: int, path: str, seconds: float, clients: int) -> dict[str, Any]:
    server = pid
    return {
        "sequential": await phase(server, path, seconds, 1, 1, False),
        "sequential_1k_payload": await phase(server, path, seconds, 1, 1, True),
        "concurrent_clients": await phase(server, path, seconds, clients, 1, False),
        "pipelined_one_connection": await phase(server, path, seconds, 1, clients, False),
    }


def bench(seconds: float, clients: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="syb") as d:
        path = str(Path(d) / "bench.sock")
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            return asyncio.run(run_phases(server.pid, path, seconds, clients))
        finally:
            if server.stdin:
                server.stdin.close()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return
    results = bench(min(args.seconds, 30.0), args.clients)
    for name, r in results.items():
        print(
            f"{name:26s} {r['rps']:>6} req/s  p50 {r['p50_us']:>8} us  p99 {r['p99_us']:>8} us"
            f"  cpu/call server {r['server_cpu_us_per_call']} us"
            f" client {r['client_cpu_us_per_call']} us"
        )
    machine = {
        "python": platform.python_version(),
        "nproc": os.cpu_count(),
        "loadavg_1m": round(os.getloadavg()[0], 2),  # other work on the box skews numbers
    }
    print("RESULT " + json.dumps({"bench": "ipc_roundtrip", "machine": machine, **results}))


if __name__ == "__main__":
    main()
