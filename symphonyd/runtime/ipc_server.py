"""Async Unix-socket IPC server: peer allowlist, bounded framing, typed errors, subscriptions.

Wire format and error codes: ``symphonyd.core.wire`` and docs/design/0002-ipc.md; the
limits and the slow-subscriber policy are explained in docs/design/0200-runtime.md. The
per-connection machinery is in ``ipc_connection``, subscriptions in ``ipc_events``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TypeVar

from symphonyd.core.wire import MethodSpec, encode_error
from symphonyd.runtime.activation import activated_socket, bind_unix
from symphonyd.runtime.ipc_connection import Connection, Route, ServerLimits
from symphonyd.runtime.ipc_events import Broadcast, EventSink
from symphonyd.runtime.logging import log_event
from symphonyd.runtime.peer import Peer, peer_of

__all__ = ["Broadcast", "EventSink", "IpcServer", "ServerLimits"]

P = TypeVar("P")
R = TypeVar("R")
log = logging.getLogger("symphonyd.ipc")


class IpcServer:
    """Serves registered methods on one listening Unix stream socket."""

    def __init__(
        self,
        name: str,
        *,
        allowed_uids: Iterable[int],
        allow_root: bool = False,
        limits: ServerLimits | None = None,
    ) -> None:
        self.name = name
        self.allowed_uids = frozenset(allowed_uids)
        if 0 in self.allowed_uids and not allow_root:
            raise ValueError("uid 0 in allowed_uids needs allow_root=True")
        if allow_root:
            self.allowed_uids |= {0}
        self.limits = limits or ServerLimits()
        self._routes: dict[str, Route] = {}
        self._connections: set[Connection] = set()
        self._server: asyncio.AbstractServer | None = None
        self._owned_path: tuple[Path, int] | None = None
        # Monotonic time since when no client has been connected (None while one is): a
        # connection too short for any poll to see still counts (launcher/link_lease.py).
        self.idle_since: float | None = time.monotonic()

    # ----------------------------------------------------------------- registration

    def handle(
        self,
        spec: MethodSpec[P, R],
        fn: Callable[[P, Peer], Awaitable[R]],
        *,
        timeout: float | None = None,
    ) -> None:
        self._add(Route(spec, fn, False, timeout))

    def subscription(
        self,
        spec: MethodSpec[P, R],
        fn: Callable[[P, Peer, EventSink], Awaitable[R]],
        *,
        timeout: float | None = None,
    ) -> None:
        """``fn`` keeps the sink (e.g. in a publisher's set) and returns the response."""
        self._add(Route(spec, fn, True, timeout))

    def _add(self, route: Route) -> None:
        if route.spec.name in self._routes:
            raise ValueError(f"{route.spec.name} is already handled")
        self._routes[route.spec.name] = route

    # ----------------------------------------------------------------- lifecycle

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    async def start(self, sock: socket.socket) -> None:
        """Serve on a listening socket (activated by systemd or from ``bind_unix``)."""
        sock.setblocking(False)
        self._server = await asyncio.start_unix_server(
            self._on_connect, sock=sock, limit=self.limits.max_frame
        )

    async def start_listening(self, fdname: str, path: str | Path) -> None:
        """Production entry: the socket systemd passed as ``fdname``, else bind ``path``."""
        sock = activated_socket(fdname)
        if sock is None:
            await self.start_path(path)
        else:
            log_event(log, "ipc_listen", server=self.name, source="systemd", fdname=fdname)
            await self.start(sock)

    async def start_path(self, path: str | Path) -> None:
        """Development/tests: bind ``path`` ourselves with mode 0600, unlink it on close."""
        sock = bind_unix(path)
        self._owned_path = (Path(path), os.stat(path).st_ino)
        log_event(log, "ipc_listen", server=self.name, source="bound", path=str(path))
        await self.start(sock)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.drop("server_closing")
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
        if self._owned_path is not None:
            path, ino = self._owned_path
            with contextlib.suppress(OSError):
                if path.lstat().st_ino == ino:
                    path.unlink()
            self._owned_path = None

    async def __aenter__(self) -> IpcServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ----------------------------------------------------------------- connections

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        admitted = self._admit(writer)
        if not isinstance(admitted, Peer):
            with contextlib.suppress(Exception):
                writer.write(encode_error(None, *admitted))
                writer.close()
                await asyncio.wait_for(writer.wait_closed(), 1)
            return
        conn = Connection(self.name, self._routes, self.limits, reader, writer, admitted)
        self._connections.add(conn)
        self.idle_since = None
        try:
            await conn.run()
        finally:
            self._connections.discard(conn)
            if not self._connections:
                self.idle_since = time.monotonic()

    def _admit(self, writer: asyncio.StreamWriter) -> Peer | tuple[str, str]:
        """The peer, or the (code, message) it is refused with."""
        try:
            peer = peer_of(writer.get_extra_info("socket"))
        except (OSError, AttributeError):
            return ("peer_not_allowed", "peer credentials unavailable")
        refusal: tuple[str, str] | None = None
        if peer.uid not in self.allowed_uids:
            refusal = ("peer_not_allowed", f"uid {peer.uid} may not use {self.name}")
        elif len(self._connections) >= self.limits.max_connections:
            refusal = ("unavailable", f"{self.name} has too many connections")
        if refusal is not None:
            log_event(
                log,
                "ipc_refused",
                level=logging.WARNING,
                server=self.name,
                reason=refusal[0] if refusal[0] == "peer_not_allowed" else "too_many_connections",
                uid=peer.uid,
                pid=peer.pid,
                unit=peer.unit,
            )
            return refusal
        return peer
