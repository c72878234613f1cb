"""One agent flooding its resolver and proxy must not slow another agent down (root only).

Two real agent sandboxes (netns + veth + nftables + the launcher's resolver and proxy, in this
process, as the launcher runs them). Agent B is a normal agent: every 10 ms it looks up one of
20 names over UDP, then opens a CONNECT tunnel through its proxy to an echo server and waits for
one echoed line. B's DNS and CONNECT latencies (p50/p99, ms) are measured first alone ("idle"),
then while agent A floods at full speed ("flood"): one process sends UDP queries for new names
under an allowed wildcard (cache misses, so upstream queries) and for denied names (audit
records) as fast as the socket takes them, another keeps up to 1500 TCP connections open to
each of A's resolver and proxy, sending CONNECT on the proxy ones to hold tunnels.

The upstream DNS server (2 ms per answer) and the echo server run in a child process on a
host address on ``lo`` (198.18.99.1). Also reported: the launcher's (this process's) peak open
descriptors during the flood, A's audit records and bytes per second, and upstream queries.

Each run measures three configurations in the same run: ``control`` (A floods ports that
nftables drops, so nothing reaches the launcher: what A's load alone does to B on this
machine), ``bounded`` (the shipped
``EgressLimits`` defaults) and ``unbounded`` (caps, rate, cache and audit aggregation off:
close to the pre-issue-15 code, 256 proxy connections and 64 upstream queries per agent; the
listener still accepts at most 20 refusals a second past a cap, which the old code did not
have, so "unbounded" is if anything a little kinder than the old code).

Both agents get a cgroup with ``--cpu-quota`` (default 50%, ``sandbox.resources.cpu_quota``
as the bubblewrap path applies it) and every client runs in its agent's cgroup; with
``--cpu-quota ""`` the clients run unconfined.

Run: .venv/bin/python bench/agent_fairness.py [--seconds 10]    (last line: RESULT {json})
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from symphonyd.core.config_extensions import ResourcesConfig
from symphonyd.core.egress_policy import build_policy
from symphonyd.launcher.sandbox.addresses import AddressPool
from symphonyd.launcher.sandbox.dns import UpstreamResolver
from symphonyd.launcher.sandbox.egress_limits import EgressLimits
from symphonyd.launcher.sandbox.sandbox import SandboxHandle, SandboxManager

ECHO_IP = "198.18.99.1"
POOL = "100.127.96.0/22"
UPSTREAM_DELAY = 0.002
UNBOUNDED = EgressLimits(
    proxy_connections=256,
    tunnel_idle_s=600.0,
    dns_tcp_connections=1_000_000,
    dns_upstream_inflight=64,
    dns_pending=1_000_000,
    dns_queries_per_s=1_000_000,
    dns_cache_entries=0,
    audit_full_records=1_000_000_000,
)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


# --- the outside world: upstream DNS and an echo server (child process) --------------------


def dns_query(ident: int, name: str) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + labels + b"\0\x00\x01\x00\x01"


class Upstream(asyncio.DatagramProtocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        end = data.index(b"\0", 12) + 5
        answer = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(ECHO_IP)
        head = struct.pack("!HHHHHH", int.from_bytes(data[:2], "big"), 0x8180, 1, 1, 0, 0)
        reply = head + data[12:end] + answer
        asyncio.get_running_loop().call_later(UPSTREAM_DELAY, self.transport.sendto, reply, addr)


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while line := await reader.readline():
            writer.write(line)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def serve(port_file: str) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Upstream, local_addr=("127.0.0.1", 0))
    server = await asyncio.start_server(echo, ECHO_IP, 80, backlog=4096)
    Path(port_file).write_text(str(transport.get_extra_info("sockname")[1]))
    async with server:
        await server.serve_forever()


# --- clients, run inside an agent's network namespace --------------------------------------


def tunnel_once(host: str, port: int) -> bool:
    """CONNECT through the proxy to the echo server; True once a line came back."""
    try:
        with socket.create_connection((host, port), timeout=5) as c:
            c.sendall(b"CONNECT api.bench.test:80 HTTP/1.1\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = c.recv(256)
                if not chunk:
                    return False
                head += chunk
            if b" 200 " not in head:
                return False
            c.sendall(b"ping\n")
            return bool(c.recv(16))
    except OSError:
        return False


def client_b(resolver: str, proxy: str, seconds: float) -> dict[str, Any]:
    dns_ms: list[float] = []
    connect_ms: list[float] = []
    failures = 0
    host, port = proxy.rsplit(":", 1)
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
        t0 = time.perf_counter()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(5)
                s.sendto(dns_query(n & 0xFFFF, f"h{n % 20}.bench.test"), (resolver, 53))
                s.recv(512)
            dns_ms.append((time.perf_counter() - t0) * 1000)
        except OSError:
            failures += 1
        t0 = time.perf_counter()
        if tunnel_once(host, int(port)):
            connect_ms.append((time.perf_counter() - t0) * 1000)
        else:
            failures += 1
        time.sleep(0.01)
    return {"dns_ms": dns_ms, "connect_ms": connect_ms, "failures": failures}


def client_a_udp(target: str, seconds: float) -> dict[str, Any]:
    resolver, port = target.rsplit(":", 1)
    sent = errors = 0
    end = time.monotonic() + seconds
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        while time.monotonic() < end:
            r = random.getrandbits(32)
            name = f"r{r}.bench.test" if r & 1 else f"x{r}.denied.example"
            try:
                s.sendto(dns_query(r & 0xFFFF, name), (resolver, int(port)))
                sent += 1
            except BlockingIOError:
                select.select([], [s], [], 0.01)
            except OSError:  # the kernel's neighbour queue overflows under the flood
                errors += 1
            try:
                while s.recv(512):
                    pass
            except OSError:
                pass
    return {"sent": sent, "errors": errors}


def client_a_tcp(resolver: str, proxy: str, seconds: float, count: int) -> dict[str, Any]:
    resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
    targets = [tuple(resolver.rsplit(":", 1)), tuple(proxy.rsplit(":", 1))]
    poll = select.epoll()
    live: dict[int, tuple[socket.socket, int]] = {}
    opened = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for i, (host, port) in enumerate(targets):
            have = sum(1 for _, t in live.values() if t == i)
            for _ in range(min(count - have, 100)):
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex((host, int(port)))
                live[s.fileno()] = (s, i)
                poll.register(s.fileno(), select.EPOLLIN | select.EPOLLOUT)
                opened += 1
        for fd, events in poll.poll(0.01):
            s, i = live[fd]
            if events & select.EPOLLOUT:
                # Connected: ask the proxy for a tunnel (held open), then only wait for EOF.
                poll.modify(fd, select.EPOLLIN)
                if i == 1:
                    with contextlib.suppress(OSError):
                        s.send(b"CONNECT api.bench.test:80 HTTP/1.1\r\n\r\n")
            if events & (select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP):
                try:
                    data = s.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    poll.unregister(fd)
                    s.close()
                    del live[fd]
    for s, _ in live.values():
        s.close()
    return {"opened": opened}


def run_client(kind: str, args: list[str]) -> None:
    seconds = float(args[-1])
    if kind == "b":
        out = client_b(args[0], args[1], seconds)
    elif kind == "a-udp":
        out = client_a_udp(args[0], seconds)
    else:
        out = client_a_tcp(args[0], args[1], seconds, 1500)
    print(json.dumps(out))


# --- the launcher side ---------------------------------------------------------------------


async def in_netns(handle: SandboxHandle, kind: str, *args: str) -> asyncio.subprocess.Process:
    """A client in the agent's network namespace and, like the agent, in its cgroup."""
    join = handle.cgroup.join_prefix() if handle.cgroup is not None else []
    return await asyncio.create_subprocess_exec(
        *join,
        "nsenter",
        f"--net={handle.netns_path}",
        sys.executable,
        __file__,
        "--client",
        kind,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def result_of(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"client failed: {err.decode()[-500:]}")
    return dict(json.loads(out.decode().strip().splitlines()[-1]))


def b_figures(raw: dict[str, Any]) -> dict[str, Any]:
    return {
        "dns_p50_ms": pct(raw["dns_ms"], 0.5),
        "dns_p99_ms": pct(raw["dns_ms"], 0.99),
        "connect_p50_ms": pct(raw["connect_ms"], 0.5),
        "connect_p99_ms": pct(raw["connect_ms"], 0.99),
        "ops": len(raw["dns_ms"]) + len(raw["connect_ms"]),
        "failures": raw["failures"],
    }


async def measure(
    name: str,
    limits: EgressLimits,
    upstream_port: int,
    seconds: float,
    resources: ResourcesConfig | None,
    control: bool = False,
) -> Any:
    audit: list[tuple[float, str, int]] = []

    def sink(record: dict[str, Any]) -> None:
        size = len(json.dumps(record, separators=(",", ":")))
        audit.append((time.monotonic(), str(record.get("agent_id")), size))

    manager = SandboxManager(
        upstream=UpstreamResolver([("127.0.0.1", upstream_port)]),
        audit=sink,
        pool=AddressPool(POOL),
        limits=limits,
    )
    await manager.start()
    policy = build_policy(allowed_domains=["*.bench.test"], permitted_networks=["198.18.99.0/24"])
    result: dict[str, Any] = {}
    try:
        a = await manager.setup("bench-a", policy, resources)
        b = await manager.setup("bench-b", policy, resources)
        b_args = (str(b.lease.host_ip), f"{b.lease.host_ip}:{b.proxy.port}")
        # The control run floods ports nftables drops: A's load on the machine without any
        # of it reaching the launcher, the floor this machine sets for B's latency.
        dns_port, proxy_port = (5353, a.proxy.port + 1) if control else (53, a.proxy.port)
        a_dns, a_proxy = f"{a.lease.host_ip}:{dns_port}", f"{a.lease.host_ip}:{proxy_port}"
        result["b_idle"] = b_figures(await result_of(await in_netns(b, "b", *b_args, str(seconds))))
        base_fds = len(os.listdir("/proc/self/fd"))
        peak = [base_fds]
        lag_ms: list[float] = []
        sampling = True

        async def sample() -> None:
            # Also how late a 50 ms sleep wakes up: the launcher's event loop lag.
            while sampling:
                peak[0] = max(peak[0], len(os.listdir("/proc/self/fd")))
                t = time.perf_counter()
                await asyncio.sleep(0.05)
                lag_ms.append((time.perf_counter() - t - 0.05) * 1000)

        sampler = asyncio.ensure_future(sample())
        flood_s = seconds + 2
        t0 = time.monotonic()
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        floods = [
            await in_netns(a, "a-udp", a_dns, str(flood_s)),
            await in_netns(a, "a-tcp", a_dns, a_proxy, str(flood_s)),
        ]
        await asyncio.sleep(1)
        b_raw = await result_of(await in_netns(b, "b", *b_args, str(seconds)))
        a_raw = [await result_of(p) for p in floods]
        t1 = time.monotonic()
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        sampling = False
        await sampler
        result["b_flood"] = b_figures(b_raw)
        result["a_udp_queries_sent"] = a_raw[0]["sent"]
        result["a_tcp_connections_opened"] = a_raw[1]["opened"]
        result["launcher_fds_idle"] = base_fds
        result["launcher_fds_peak_flood"] = peak[0]
        result["launcher_loop_lag_p99_ms"] = pct(lag_ms, 0.99)
        busy = cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime
        result["launcher_cpu_pct_flood"] = round(100 * busy / (t1 - t0))
        # Another test run on this host that reloads the one `inet symphonyd` table would
        # drop these agents' traffic and spoil the figures: say so.
        present = {e[0] for e in manager.firewall.elements("agent_in")}
        result["table_intact"] = {a.lease.host_ifname, b.lease.host_ifname} <= present
        a_records = [(t, size) for t, agent, size in audit if agent == "bench-a" and t0 <= t <= t1]
        result["a_audit_records_per_s"] = round(len(a_records) / (t1 - t0), 1)
        result["a_audit_bytes_per_s"] = round(sum(s for _, s in a_records) / (t1 - t0))
        result["upstream_queries"] = a.resolver.lookup.counters.upstream + (
            b.resolver.lookup.counters.upstream
        )
        result["a_refused"] = {
            "dns_query_limit": a.resolver.counters.over_pending,
            "dns_tcp_limit": a.resolver.counters.over_tcp,
            "proxy_connection_limit": a.proxy.counters.over_limit,
        }
        for key in ("dns_p99_ms", "connect_p99_ms"):
            result[f"b_{key}_flood_over_idle"] = round(
                result["b_flood"][key] / result["b_idle"][key], 2
            )
    finally:
        await manager.close()
        manager.firewall.remove_table()
    print(f"{name}: {json.dumps(result)}", flush=True)
    return result


async def main(seconds: float, modes: list[str], cpu_quota: str) -> dict[str, Any]:
    # A host address for the echo server (no dummy interface on every kernel); the
    # bench adds it to lo and removes it again.
    address = ["ip", "addr", "{}", f"{ECHO_IP}/32", "dev", "lo"]
    await asyncio.to_thread(subprocess.run, [a.format("add") for a in address], check=True)
    port_file = Path(tempfile.gettempdir()) / f"agent-fairness-{os.getpid()}.port"
    server: asyncio.subprocess.Process | None = None
    try:
        server = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--serve", str(port_file)
        )
        deadline = time.monotonic() + 20
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline or server.returncode is not None:
                raise RuntimeError("upstream/echo server did not start")
            await asyncio.sleep(0.05)
        port = int(port_file.read_text())
        out: dict[str, Any] = {"seconds": seconds}
        resources = ResourcesConfig(cpu_quota=cpu_quota) if cpu_quota else None
        out["agent_cpu_quota"] = cpu_quota or "none"
        for mode in modes:
            limits = UNBOUNDED if mode == "unbounded" else EgressLimits()
            control = mode == "control"
            out[mode] = await measure(mode, limits, port, seconds, resources, control)
        return out
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            await asyncio.wait_for(server.wait(), 10)
        port_file.unlink(missing_ok=True)
        await asyncio.to_thread(subprocess.run, [a.format("del") for a in address], check=False)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--serve")
    parser.add_argument("--client", nargs="+")
    parser.add_argument("--modes", default="control,bounded,unbounded")
    # Each agent's sandbox.resources cpu_quota (its cgroup, as on the bubblewrap path);
    # "" runs the clients without a cgroup.
    parser.add_argument("--cpu-quota", default="50%")
    opts = parser.parse_args()
    if opts.serve:
        asyncio.run(serve(opts.serve))
    elif opts.client:
        run_client(opts.client[0], opts.client[1:])
    else:
        if os.geteuid() != 0:
            sys.exit("needs root (network namespaces, nftables)")
        modes = opts.modes.split(",")
        out = asyncio.run(asyncio.wait_for(main(opts.seconds, modes, opts.cpu_quota), 900))
        print("RESULT " + json.dumps(out, sort_keys=True))
