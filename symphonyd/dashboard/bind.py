"""The dashboard's TCP listener: systemd's ``http`` socket, or one bound here for development.

Either way the address is checked: a listener outside loopback is refused unless the host
config sets ``dashboard.allow_remote_bind``, because the dashboard has no authentication of
its own (ARCHITECTURE.md invariant 6, docs/dashboard.md).
"""

from __future__ import annotations

import socket

from symphonyd.core.config_extensions import parse_server
from symphonyd.core.errors import ConfigError
from symphonyd.core.hostconfig import is_loopback_host
from symphonyd.runtime.activation import SocketSetupError
from symphonyd.runtime.tcp_listener import Listener, listening, tcp_address
from symphonyd.runtime.workflow_file import load_workflow

FDNAME = "http"
REMOTE_BIND_REFUSED = (
    "the dashboard has no login of its own; refusing to listen on {addr}, which is not a "
    "loopback address. Keep dashboard.host = 127.0.0.1 and put an authenticating reverse "
    "proxy (nginx with auth, Tailscale, Cloudflare Access, ...) in front of it, or, if such a "
    "proxy already guards this address, set dashboard.allow_remote_bind = true in "
    "/etc/symphony/symphonyd.toml"
)


__all__ = ["Listener", "bind_tcp", "check_address", "from_activation", "workflow_port"]


def check_address(host: str, *, allow_remote: bool) -> None:
    if not allow_remote and not is_loopback_host(host):
        raise ConfigError(REMOTE_BIND_REFUSED.format(addr=host), code="remote_bind_refused")


def from_activation(fds: dict[str, list[socket.socket]], *, allow_remote: bool) -> Listener | None:
    socks = fds.get(FDNAME, [])
    if not socks:
        return None
    if len(socks) != 1:
        raise SocketSetupError(f"expected one activated socket named {FDNAME!r}")
    listener = listening(socks[0], FDNAME, activated=True)
    check_address(listener.host, allow_remote=allow_remote)
    return listener


def bind_tcp(host: str, port: int, *, allow_remote: bool, backlog: int = 128) -> Listener:
    """Development: bind ``host:port`` (port 0 picks a free one) after the loopback check."""
    check_address(host, allow_remote=allow_remote)
    bare = host.strip("[]")
    try:
        infos = socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"dashboard.host {host!r} does not resolve: {exc}") from None
    family, kind, proto, _, addr = infos[0]
    if not allow_remote and not is_loopback_host(str(addr[0])):
        raise ConfigError(REMOTE_BIND_REFUSED.format(addr=addr[0]), code="remote_bind_refused")
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise SocketSetupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    bound_host, bound_port = tcp_address(sock, FDNAME)
    return Listener(sock, bound_host, bound_port, activated=False)


def workflow_port(path: str) -> int | None:
    """WORKFLOW.md's ``server.port`` (SPEC 13.7), None when unset; WorkflowError/ConfigError."""
    return parse_server(load_workflow(path).definition.config).port
