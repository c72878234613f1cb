"""ssh's ProxyCommand inside an agent sandbox: ``CONNECT host:port`` through the agent's proxy.

Usage (written by the launcher into the sandbox's ssh_config, ssh_config.py)::

    ProxyCommand /usr/bin/python3 .../ssh_connect.py PROXY_IP PROXY_PORT %h %p

It opens the agent's egress proxy, asks for ``CONNECT host:port`` and, once the proxy answers
200, copies stdin to the tunnel and the tunnel to stdout until either side ends. A refusal is
printed to stderr (ssh shows it) with the proxy's own reason and hint, and exits 1. The proxy
makes every decision (allowlist, denied names, address classes, its own pinned lookup, one
audit record); this program only speaks the protocol.

Standalone on purpose: it runs as the agent with the system Python, outside symphonyd's
environment, so it imports nothing but the standard library.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading

MAX_HEAD = 16 * 1024
USAGE = "usage: ssh_connect.py PROXY_IP PROXY_PORT HOST PORT"


def read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """The proxy's reply head and whatever tunnel bytes arrived with it (ssh servers speak
    first, so the banner can come in the same segment)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_HEAD:
            break
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def refusal(sock: socket.socket, head: bytes, body: bytes) -> str:
    """The status line and the body (the proxy's reason and hint) of a refused CONNECT;
    ``body`` is what already came with the head."""
    sock.settimeout(5)
    try:
        while len(body) < MAX_HEAD:
            chunk = sock.recv(4096)
            if not chunk:
                break
            body += chunk
    except OSError:
        pass
    status = head.split(b"\r\n", 1)[0].decode("latin-1") or "no answer"
    return f"{status}\n{body.decode('utf-8', 'replace').strip()}".strip()


def pump_stdin(sock: socket.socket) -> None:
    try:
        while chunk := os.read(0, 65536):
            sock.sendall(chunk)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)


def main(argv: list[str]) -> int:
    if len(argv) != 4 or not argv[1].isdigit() or not argv[3].isdigit():
        print(USAGE, file=sys.stderr)
        return 2
    proxy_ip, proxy_port, host, port = argv[0], int(argv[1]), argv[2], int(argv[3])
    if not host or any(c in host for c in " \t\r\n/@:[]"):
        print(f"symphonyd ssh: {host!r} is not a host name", file=sys.stderr)
        return 2
    try:
        sock = socket.create_connection((proxy_ip, proxy_port), timeout=30)
        sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        head, rest = read_head(sock)
    except OSError as exc:
        print(f"symphonyd ssh: the sandbox's egress proxy is unreachable: {exc}", file=sys.stderr)
        return 1
    status = head.split(b"\r\n", 1)[0].split(b" ")
    if len(status) < 2 or status[1] != b"200":
        print(
            f"symphonyd ssh: the sandbox's egress proxy refused {host}:{port}: "
            + refusal(sock, head, rest),
            file=sys.stderr,
        )
        return 1
    sock.settimeout(None)
    if rest:
        os.write(1, rest)
    threading.Thread(target=pump_stdin, args=(sock,), daemon=True).start()
    try:
        while chunk := sock.recv(65536):
            os.write(1, chunk)
    except OSError:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
