"""The proxy's CPU per connection: CONNECT vs. intercepted plain HTTP vs. intercepted TLS (root).

One real agent sandbox (netns + veth + nftables + the launcher's resolver, proxy and
interception listener, in this process, as the launcher runs them). A client in the agent's
network namespace resolves ``api.bench.test`` through the agent's resolver once, then opens
``--connections`` connections one after another in each way:

- ``connect``: ``CONNECT api.bench.test:80`` through the proxy, one line echoed back;
- ``intercept_http``: straight to the server's address on port 80 (nftables redirects it to
  the interception listener), a request with ``Host: api.bench.test``, echoed back;
- ``intercept_tls``: straight to the server's address on port 443, a real ClientHello naming
  ``api.bench.test`` (made by the ssl module), echoed back.

The server (an echo server on 198.18.98.1, on ``lo``, and the upstream DNS) runs in a child
process, the client in another; so this process's CPU time (user + system, getrusage) over a
batch is the launcher's cost: accept, decide, pinned connect, one decision record, relay.
Reported: microseconds of launcher CPU per connection for each way (user + system, and user
alone: the Python work; system time includes the kernel's TCP work for both legs).

Run: .venv/bin/python bench/intercept_cpu.py [--connections 500]    (last line: RESULT {json})
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from symphonyd.launcher.sandbox.addresses import AddressPool
from symphonyd.launcher.sandbox.dns import UpstreamResolver
from symphonyd.launcher.sandbox.egress_policy import build_policy
from symphonyd.launcher.sandbox.manager import SandboxHandle, SandboxManager

SERVER_IP = "198.18.98.1"
POOL = "100.127.92.0/22"
NAME = "api.bench.test"
WAYS = ("connect", "intercept_http", "intercept_tls")


# --- the outside world (child process) ------------------------------------------------------


class Upstream(asyncio.DatagramProtocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        end = data.index(b"\0", 12) + 5
        answer = struct.pack("!HHHIH", 0xC00C, 1, 1, 300, 4) + socket.inet_aton(SERVER_IP)
        head = struct.pack("!HHHHHH", int.from_bytes(data[:2], "big"), 0x8180, 1, 1, 0, 0)
        self.transport.sendto(head + data[12:end] + answer, addr)


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        data = await reader.read(65536)
        writer.write(data)
        await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def serve(port_file: str) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Upstream, local_addr=("127.0.0.1", 0))
    servers = [await asyncio.start_server(echo, SERVER_IP, p, backlog=1024) for p in (80, 443)]
    Path(port_file).write_text(str(transport.get_extra_info("sockname")[1]))
    await asyncio.gather(*(s.serve_forever() for s in servers))


# --- the client, inside the agent's network namespace ---------------------------------------


def client_hello(name: str) -> bytes:
    """A real ClientHello naming ``name``, from the ssl module, without a server."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=name)
    with contextlib.suppress(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def one(way: str, proxy: tuple[str, int], hello: bytes) -> bool:
    if way == "connect":
        with socket.create_connection(proxy, timeout=5) as c:
            c.sendall(f"CONNECT {NAME}:80 HTTP/1.1\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = c.recv(256)
                if not chunk:
                    return False
                head += chunk
            c.sendall(b"ping\n")
            return bool(c.recv(64))
    port = 80 if way == "intercept_http" else 443
    send = f"GET / HTTP/1.1\r\nHost: {NAME}\r\n\r\n".encode() if port == 80 else hello
    with socket.create_connection((SERVER_IP, port), timeout=5) as c:
        c.sendall(send)
        return bool(c.recv(64))


def lookup(resolver: str) -> None:
    """Ask the agent's resolver for NAME (which binds it to its address for interception)."""
    labels = b"".join(bytes([len(p)]) + p.encode() for p in NAME.split("."))
    query = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + labels + b"\0\x00\x01\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(query, (resolver, 53))
        s.recv(512)


def run_client(way: str, proxy: str, count: int) -> None:
    host, port = proxy.rsplit(":", 1)
    lookup(host)
    hello = client_hello(NAME)
    ok = sum(one(way, (host, int(port)), hello) for _ in range(count))
    print(json.dumps({"ok": ok}))


# --- the launcher side ---------------------------------------------------------------------


async def batch(handle: SandboxHandle, way: str, count: int) -> dict[str, Any]:
    proxy = f"{handle.lease.host_ip}:{handle.proxy.port}"
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        "nsenter",
        f"--net={handle.netns_path}",
        sys.executable,
        __file__,
        "--client",
        way,
        proxy,
        str(count),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    if proc.returncode != 0:
        raise RuntimeError(f"client failed: {err.decode()[-500:]}")
    ok = json.loads(out.decode().strip().splitlines()[-1])["ok"]
    user = cpu1.ru_utime - cpu0.ru_utime
    busy = user + cpu1.ru_stime - cpu0.ru_stime
    return {
        "ok": ok,
        "launcher_cpu_us_per_conn": round(busy / count * 1e6),
        "launcher_user_us_per_conn": round(user / count * 1e6),
        "wall_ms_per_conn": round(wall / count * 1000, 2),
    }


async def main(count: int) -> dict[str, Any]:
    address = ["ip", "addr", "{}", f"{SERVER_IP}/32", "dev", "lo"]
    await asyncio.to_thread(subprocess.run, [a.format("add") for a in address], check=True)
    port_file = Path(tempfile.gettempdir()) / f"intercept-cpu-{os.getpid()}.port"
    server: asyncio.subprocess.Process | None = None
    manager: SandboxManager | None = None
    try:
        server = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--serve", str(port_file)
        )
        deadline = time.monotonic() + 20
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline or server.returncode is not None:
                raise RuntimeError("upstream/echo server did not start")
            await asyncio.sleep(0.05)
        manager = SandboxManager(
            upstream=UpstreamResolver([("127.0.0.1", int(port_file.read_text()))]),
            audit=lambda _record: None,
            pool=AddressPool(POOL),
        )
        await manager.start()
        policy = build_policy(allowed_domains=[NAME], permitted_networks=["198.18.98.0/24"])
        handle = await manager.setup("bench-intercept", policy)
        out: dict[str, Any] = {"connections": count}
        for way in WAYS:
            await batch(handle, way, 20)  # warm up: caches, first connections
            out[way] = await batch(handle, way, count)
            if out[way]["ok"] != count:
                raise RuntimeError(f"{way}: only {out[way]['ok']} of {count} connections worked")
        return out
    finally:
        if manager is not None:
            await manager.close()
            manager.firewall.remove_table()
        if server is not None:
            server.send_signal(signal.SIGTERM)
            await asyncio.wait_for(server.wait(), 10)
        port_file.unlink(missing_ok=True)
        await asyncio.to_thread(subprocess.run, [a.format("del") for a in address], check=False)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--serve")
    parser.add_argument("--client", nargs=3)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
    elif args.client:
        way, proxy, count = args.client
        run_client(way, proxy, int(count))
    else:
        if os.geteuid() != 0:
            sys.exit("needs root (network namespaces, nftables)")
        result = asyncio.run(asyncio.wait_for(main(args.connections), 600))
        for key, value in result.items():
            print(f"{key}: {value}")
        print("RESULT " + json.dumps(result, sort_keys=True))
