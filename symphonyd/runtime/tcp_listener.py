"""A TCP listener an HTTP daemon serves on: systemd's activated socket or one it bound.

Shared by the dashboard (dashboard/bind.py) and the webhook receiver (webhook/listen.py);
each applies its own address policy on top.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from symphonyd.runtime.activation import SocketSetupError


@dataclass(frozen=True)
class Listener:
    sock: socket.socket
    host: str
    port: int
    activated: bool


def tcp_address(sock: socket.socket, fdname: str) -> tuple[str, int]:
    name = sock.getsockname()
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or not isinstance(name, tuple):
        raise SocketSetupError(f"activated socket {fdname!r} is not a TCP socket")
    return str(name[0]), int(name[1])


def listening(sock: socket.socket, fdname: str, *, activated: bool) -> Listener:
    """``sock`` as a Listener, after checking it is a listening TCP stream socket."""
    host, port = tcp_address(sock, fdname)
    if sock.type != socket.SOCK_STREAM or not sock.getsockopt(
        socket.SOL_SOCKET, socket.SO_ACCEPTCONN
    ):
        raise SocketSetupError(f"activated socket {fdname!r} is not a listening stream socket")
    return Listener(sock, host, port, activated)
