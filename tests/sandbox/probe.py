"""Runs INSIDE the sandbox as the agent's unprivileged user; prints one JSON result.

Standalone (system python3, no project imports). Every network attempt is bounded by a
2 second timeout so a dropped packet shows up as "timeout", not as a hang.
"""

from __future__ import annotations

import json
import os
import random
import socket
import ssl
import struct
import sys
import time
import urllib.request

TIMEOUT = 2.0  # for attempts that the sandbox is expected to drop
# For waits on answers that should come (own proxy, own resolver): generous, so a loaded CI
# machine cannot turn a working path into a false "timeout".
PATIENCE = 10.0


def result(**fields: object) -> None:
    print(json.dumps(fields))


def err(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timeout"
    return f"{type(exc).__name__}: {exc}"


def fetch(url: str, cafile: str) -> None:
    ctx = ssl.create_default_context(cafile=cafile)
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx))
    try:
        with opener.open(url, timeout=PATIENCE) as resp:
            result(ok=True, status=resp.status, body=resp.read().decode())
    except urllib.error.HTTPError as exc:
        result(ok=False, status=exc.code, error=exc.read().decode(errors="replace"))
    except Exception as exc:
        result(ok=False, error=err(exc))


def connect(host: str, port: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(TIMEOUT)
            s.connect((host, int(port)))
            s.settimeout(3.0)  # a server that speaks first does so at once
            try:
                banner = s.recv(64).decode(errors="replace")
            except OSError:
                banner = ""
            result(ok=True, banner=banner)
    except Exception as exc:
        result(ok=False, error=err(exc))


def direct(url: str, cafile: str) -> None:
    """GET ``url`` with http.client, which ignores every proxy variable: a proxy-unaware tool."""
    import http.client
    import urllib.parse

    u = urllib.parse.urlsplit(url)
    try:
        if u.scheme == "https":
            ctx = ssl.create_default_context(cafile=cafile)
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                u.hostname or "", u.port or 443, timeout=PATIENCE, context=ctx
            )
        else:
            conn = http.client.HTTPConnection(u.hostname or "", u.port or 80, timeout=PATIENCE)
        conn.request("GET", u.path or "/")
        resp = conn.getresponse()
        body = resp.read().decode(errors="replace")
        result(ok=resp.status == 200, status=resp.status, body=body)
    except Exception as exc:
        result(ok=False, error=err(exc))


def direct_at(ip: str, port: str, name: str, cafile: str = "") -> None:
    """Connect to ``ip:port`` itself and claim ``name``: as TLS server name when ``cafile`` is
    given (no server name at all when ``name`` is "-"), else as the HTTP Host header."""
    try:
        s = socket.create_connection((ip, int(port)), timeout=PATIENCE)
    except Exception as exc:
        result(ok=False, stage="connect", error=err(exc))
        return
    request = f"GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode()
    with s:
        s.settimeout(PATIENCE)
        try:
            if cafile:
                ctx = ssl.create_default_context(cafile=cafile)
                ctx.check_hostname = name != "-"
                with ctx.wrap_socket(s, server_hostname=None if name == "-" else name) as tls:
                    tls.sendall(request)
                    body = tls.recv(4096).decode(errors="replace")
            else:
                s.sendall(request)
                raw = b""
                while chunk := s.recv(4096):
                    raw += chunk
                body = raw.decode(errors="replace")
            result(ok=body.startswith("HTTP/1.") and " 200 " in body[:16], body=body)
        except Exception as exc:
            result(ok=False, stage="talk", error=err(exc))


def tunnel(proxy: str, target: str, sni: str, cafile: str) -> None:
    """CONNECT to ``target`` through ``proxy``, then TLS with ``sni``; report what happened."""
    host, port = proxy.rsplit(":", 1)
    try:
        s = socket.create_connection((host, int(port)), timeout=TIMEOUT)
    except Exception as exc:
        result(ok=False, stage="proxy", error=err(exc))
        return
    s.settimeout(PATIENCE)
    with s:
        s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        head = b""
        try:
            while b"\r\n\r\n" not in head:
                chunk = s.recv(4096)
                if not chunk:
                    break
                head += chunk
        except Exception as exc:
            result(ok=False, stage="connect", error=err(exc))
            return
        status = head.split(b" ", 2)[1].decode() if head.count(b" ") >= 1 else ""
        if status != "200":
            result(ok=False, stage="connect", status=status)
            return
        ctx = ssl.create_default_context(cafile=cafile)
        ctx.check_hostname = False
        try:
            with ctx.wrap_socket(s, server_hostname=sni) as tls:
                tls.sendall(f"GET / HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n".encode())
                body = tls.recv(4096).decode(errors="replace")
            result(ok=True, stage="tls", body=body)
        except Exception as exc:
            result(ok=False, stage="tls", error=err(exc))


def tunnel_raw(proxy: str, target: str, send: str) -> None:
    """CONNECT, then read what the server says first, then send ``send``."""
    host, port = proxy.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=TIMEOUT) as s:
            s.settimeout(PATIENCE)
            s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            if b" 200 " not in head:
                result(ok=False, stage="connect", status=head.split(b" ")[1].decode())
                return
            banner = rest or s.recv(64)
            s.sendall(send.encode())
            result(ok=True, banner=banner.decode(errors="replace"))
    except Exception as exc:
        result(ok=False, stage="tunnel", error=err(exc))


def dns(server: str, name: str, qtype: str = "1", proto: str = "udp") -> None:
    ident = random.randrange(65536)
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    msg = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + labels + b"\0"
    msg += struct.pack("!HH", int(qtype), 1)
    try:
        if proto == "tcp":
            with socket.create_connection((server, 53), timeout=TIMEOUT) as s:
                s.settimeout(PATIENCE)
                s.sendall(len(msg).to_bytes(2, "big") + msg)
                data = s.recv(4096)[2:]
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                # Unanswered UDP looks the same whether dropped or slow; 4 s covers the
                # resolver's own 2 s upstream timeout.
                s.settimeout(4.0)
                s.sendto(msg, (server, 53))
                data = s.recv(4096)
    except Exception as exc:
        result(ok=False, error=err(exc))
        return
    _id, flags, _qd, an, _ns, _ar = struct.unpack_from("!HHHHHH", data)
    ips = [
        socket.inet_ntoa(data[i + 12 : i + 16])
        for i in range(len(data) - 16 + 1)
        if data[i : i + 4] == b"\xc0\x0c\x00\x01" and i > 12
    ]
    result(ok=True, rcode=flags & 0xF, answers=an, ips=ips)


def flood_tcp(seconds: str, count: str, *targets: str) -> None:
    """Keep ``count`` connections open to each ``host:port`` for ``seconds``, replacing
    every one the server closes; count refusals (a 503 or a reset) and plain closes."""
    import select

    print(json.dumps({"started": True}), flush=True)
    end = time.monotonic() + float(seconds)
    opened = refused = closed = failed = 0
    live: dict[socket.socket, str] = {}
    while time.monotonic() < end:
        for target in targets:
            host, port = target.rsplit(":", 1)
            for _ in range(int(count) - sum(t == target for t in live.values())):
                try:
                    conn = socket.create_connection((host, int(port)), timeout=TIMEOUT)
                except OSError:
                    failed += 1
                    continue
                live[conn] = target
                opened += 1
        ready, _, _ = select.select(list(live), [], [], 0.05)
        for conn in ready:
            try:
                data = conn.recv(64)
            except ConnectionResetError:
                data = b"reset"
            except OSError:
                data = b""
            if data in (b"reset",) or data.startswith(b"HTTP/1.1 503"):
                refused += 1
            elif not data:
                closed += 1
            else:
                continue
            conn.close()
            del live[conn]
    for conn in live:
        conn.close()
    result(ok=True, opened=opened, refused=refused, closed=closed, failed=failed)


def udp_flood(server: str, count: str) -> None:
    """``count`` queries for denied names (half of them the same name) as fast as possible."""
    sent = answered = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        for n in range(int(count)):
            name = "denied.test" if n % 2 else f"x{n}.denied.test"
            labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
            msg = struct.pack("!HHHHHH", n & 0xFFFF, 0x0100, 1, 0, 0, 0) + labels + b"\0"
            try:
                s.sendto(msg + struct.pack("!HH", 1, 1), (server, 53))
                sent += 1
            except BlockingIOError:
                time.sleep(0.001)
            while True:
                try:
                    s.recv(4096)
                    answered += 1
                except BlockingIOError:
                    break
        s.settimeout(2.0)
        try:
            while True:
                s.recv(4096)
                answered += 1
        except OSError:
            pass
    result(ok=True, sent=sent, answered=answered)


def hold_tunnel(proxy: str, target: str, sni: str, cafile: str, every: str) -> None:
    """TLS through a CONNECT tunnel, then either silence (``every`` 0) or one byte every
    ``every`` seconds, until the proxy closes it; report how long it stayed open."""
    host, port = proxy.rsplit(":", 1)
    start = time.monotonic()
    try:
        s = socket.create_connection((host, int(port)), timeout=TIMEOUT)
        s.settimeout(PATIENCE)
        s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096) or b"\r\n\r\n"
        ctx = ssl.create_default_context(cafile=cafile)
        tls = ctx.wrap_socket(s, server_hostname=sni)
    except Exception as exc:
        result(ok=False, stage="open", error=err(exc))
        return
    start = time.monotonic()
    tls.settimeout(float(every) if float(every) > 0 else 120.0)
    try:
        while time.monotonic() - start < 120:
            try:
                if not tls.recv(1):
                    break
            except TimeoutError:
                tls.sendall(b"x")
    except (OSError, ssl.SSLError):
        pass
    result(ok=True, open_s=round(time.monotonic() - start, 1))


def resolve(name: str) -> None:
    try:
        result(ok=True, ips=sorted({a[4][0] for a in socket.getaddrinfo(name, 80, socket.AF_INET)}))
    except Exception as exc:
        result(ok=False, error=err(exc))


def read(path: str) -> None:
    try:
        if os.path.isdir(path):
            result(ok=True, entries=sorted(os.listdir(path)))
        else:
            with open(path, "rb") as f:
                result(ok=True, data=f.read(200).decode(errors="replace"))
    except Exception as exc:
        result(ok=False, error=err(exc))


def write(path: str) -> None:
    try:
        with open(path, "a") as f:
            f.write("x")
        result(ok=True)
    except Exception as exc:
        result(ok=False, error=err(exc))


def peek_procs(name: str) -> None:
    """Look through every visible process for another sandbox: its environment, and ``name``
    in its working directory (``/proc/<pid>/cwd`` crosses into that process's mount view)."""
    me = os.getpid()
    visible, environ, reached = [], [], []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        visible.append(int(entry))
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if b"SYMPHONY_SANDBOX_ID" in f.read():
                    environ.append(int(entry))
        except OSError:
            pass
        try:
            with open(f"/proc/{entry}/cwd/{name}", "rb") as f:
                reached.append(f.read(100).decode(errors="replace"))
        except OSError:
            pass
    result(ok=True, visible=visible, environ=environ, reached=reached)


def fork_many(count: str) -> None:
    """Start up to ``count`` sleeping children; report how many the kernel allowed."""
    children = []
    error = ""
    for _ in range(int(count)):
        try:
            pid = os.fork()
        except OSError as exc:
            error = err(exc)
            break
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    result(ok=not error, started=len(children), error=error)


def hog(megabytes: str) -> None:
    """Allocate and touch memory 8 MiB at a time, reporting progress after each step."""
    held = []
    for step in range(int(megabytes) // 8):
        held.append(bytearray(os.urandom(1024)) * (8 * 1024))
        print(json.dumps({"allocated": (step + 1) * 8}), flush=True)
    result(ok=True, allocated=int(megabytes))


def unix(path: str) -> None:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(TIMEOUT)
            s.connect(path)
            result(ok=True)
    except Exception as exc:
        result(ok=False, error=err(exc))


def identity() -> None:
    with open("/proc/self/status") as f:
        status = f.read()
    caps = {
        k: v.strip()
        for k, v in (ln.split(":", 1) for ln in status.splitlines() if ln.startswith("Cap"))
    }
    nnp = next(ln for ln in status.splitlines() if ln.startswith("NoNewPrivs")).split()[1]
    with open("/proc/sys/net/ipv6/conf/all/disable_ipv6") as f:
        v6 = f.read().strip()
    result(
        ok=True,
        uid=os.getuid(),
        gid=os.getgid(),
        groups=os.getgroups(),
        caps=caps,
        no_new_privs=nnp,
        ipv6_disabled=v6,
        env=dict(os.environ),
    )


if __name__ == "__main__":
    globals()[sys.argv[1]](*sys.argv[2:])
