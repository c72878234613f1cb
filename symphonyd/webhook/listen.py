"""The receiver's TCP listener: systemd's ``http`` socket, or ``--listen HOST:PORT``.

Unlike the dashboard's, this port is meant to be reached from outside (the tracker's servers
post to it), but through a TLS reverse proxy: the shipped socket unit listens on loopback and
docs/change-events.md shows the proxy in front. Every request is authenticated by its
provider's signature, so no address is refused here.
"""

from __future__ import annotations

import socket

from symphonyd.core.errors import ConfigError
from symphonyd.runtime.activation import SocketSetupError
from symphonyd.runtime.tcp_listener import Listener, listening

FDNAME = "http"


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"--listen wants HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def bind_listener(activated: dict[str, list[socket.socket]], listen: str | None) -> Listener:
    """``--listen`` wins (development); else exactly one activated ``http`` socket."""
    if listen is None:
        socks = activated.get(FDNAME, [])
        if len(socks) != 1:
            raise SocketSetupError(
                f"expected one activated socket named {FDNAME!r}; got {len(socks)} "
                "(pass --listen HOST:PORT outside systemd)"
            )
        return listening(socks[0], FDNAME, activated=True)
    host, port = parse_address(listen)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"--listen host {host!r} does not resolve: {exc}") from None
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise SocketSetupError(f"cannot listen on {listen}: {exc.strerror}") from None
    return listening(sock, FDNAME, activated=False)
