"""Async Unix-socket IPC server: peer allowlist, bounded framing, typed errors, subscriptions.

Wire format and error codes: ``symphonyd.core.messages`` and docs/design/0002-ipc.md; the
limits and the slow-subscriber policy are explained in docs/design/0200-runtime.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from symphonyd.core.errors import SymphonyError
from symphonyd.core.messages import (
    DEFAULT_MAX_FRAME,
    EventSpec,
    MethodSpec,
    ProtocolError,
    Request,
    decode_params,
    encode_error,
    encode_event,
    encode_response,
    parse_frame,
)
from symphonyd.runtime.activation import activated_socket, bind_unix
from symphonyd.runtime.logging import log_event
from symphonyd.runtime.peer import Peer, peer_of

P = TypeVar("P")
R = TypeVar("R")
log = logging.getLogger("symphonyd.ipc")


@dataclass(frozen=True)
class ServerLimits:
    max_frame: int = DEFAULT_MAX_FRAME
    max_connections: int = 64
    max_in_flight: int = 32  # per connection; further requests wait unread (backpressure)
    send_queue: int = 1024  # frames queued for one connection; events beyond it drop the peer
    request_timeout: float = 30.0
    idle_timeout: float = 300.0  # no frame and nothing pending for this long closes it
    write_timeout: float = 10.0  # a peer that does not read for this long is dropped


class EventSink:
    """Where a subscription handler pushes events; valid until the connection closes."""

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn
        self._active = False
        self._pending: list[bytes] = []

    @property
    def closed(self) -> bool:
        return self._conn.closed.is_set()

    @property
    def peer(self) -> Peer:
        return self._conn.peer

    async def wait_closed(self) -> None:
        await self._conn.closed.wait()

    def send(self, spec: EventSpec[P], data: P) -> bool:
        """Queue one event without blocking; False once the subscriber is gone.

        A subscriber whose queue is full is disconnected: one slow reader must not stall
        the publisher or grow the server's memory.
        """
        if self.closed:
            return False
        frame = _encode_event(spec, data)
        return frame is None or self.send_frame(frame)

    def send_frame(self, frame: bytes) -> bool:
        """Queue an already encoded event frame (see Broadcast)."""
        if self.closed:
            return False
        if not self._active:
            # The subscribe response goes out first; hold early events until it is queued.
            if len(self._pending) >= self._conn.limits.send_queue:
                self._conn.drop("subscriber_too_slow")
                return False
            self._pending.append(frame)
            return True
        return self._conn.push_event(frame)

    def _activate(self) -> None:
        self._active = True
        pending, self._pending = self._pending, []
        for frame in pending:
            if not self._conn.push_event(frame):
                return


class Broadcast(Generic[P]):
    """The subscribers of one event: encodes each event once and prunes gone sinks."""

    def __init__(self, spec: EventSpec[P]) -> None:
        self.spec = spec
        self._sinks: set[EventSink] = set()

    def add(self, sink: EventSink) -> None:
        self._sinks.add(sink)

    def __len__(self) -> int:
        return len(self._sinks)

    def publish(self, data: P) -> int:
        """Push ``data`` to every live subscriber; returns how many took it."""
        frame = _encode_event(self.spec, data)
        if frame is None:
            return 0
        delivered = 0
        for sink in list(self._sinks):
            if sink.send_frame(frame):
                delivered += 1
            else:
                self._sinks.discard(sink)
        return delivered


def _encode_event(spec: EventSpec[P], data: P) -> bytes | None:
    try:
        return encode_event(spec, data)
    except (TypeError, ValueError) as exc:
        # E.g. NaN in an agent's rate-limit payload: drop this event, keep the subscribers.
        log_event(
            log,
            "ipc_event",
            level=logging.WARNING,
            outcome="dropped",
            name=spec.name,
            reason="unencodable",
            error=type(exc).__name__,
        )
        return None


@dataclass(frozen=True)
class _Route:
    spec: MethodSpec[Any, Any]
    fn: Callable[..., Awaitable[Any]]
    subscription: bool
    timeout: float | None


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
        self._routes: dict[str, _Route] = {}
        self._connections: set[_Connection] = set()
        self._server: asyncio.AbstractServer | None = None
        self._owned_path: tuple[Path, int] | None = None

    # ----------------------------------------------------------------- registration

    def handle(
        self,
        spec: MethodSpec[P, R],
        fn: Callable[[P, Peer], Awaitable[R]],
        *,
        timeout: float | None = None,
    ) -> None:
        self._add(_Route(spec, fn, False, timeout))

    def subscription(
        self,
        spec: MethodSpec[P, R],
        fn: Callable[[P, Peer, EventSink], Awaitable[R]],
        *,
        timeout: float | None = None,
    ) -> None:
        """``fn`` keeps the sink (e.g. in a publisher's set) and returns the response."""
        self._add(_Route(spec, fn, True, timeout))

    def _add(self, route: _Route) -> None:
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
        conn = _Connection(self, reader, writer, admitted)
        self._connections.add(conn)
        try:
            await conn.run()
        finally:
            self._connections.discard(conn)

    def _admit(self, writer: asyncio.StreamWriter) -> Peer | tuple[str, str]:
        """The peer, or the (code, message) it is refused with."""
        try:
            peer = peer_of(writer.get_extra_info("socket"))
        except (OSError, AttributeError):
            return ("peer_not_allowed", "peer credentials unavailable")
        if peer.uid not in self.allowed_uids:
            log_event(
                log,
                "ipc_refused",
                level=logging.WARNING,
                server=self.name,
                reason="peer_not_allowed",
                uid=peer.uid,
                pid=peer.pid,
                unit=peer.unit,
            )
            return ("peer_not_allowed", f"uid {peer.uid} may not use {self.name}")
        if len(self._connections) >= self.limits.max_connections:
            log_event(
                log,
                "ipc_refused",
                level=logging.WARNING,
                server=self.name,
                reason="too_many_connections",
                uid=peer.uid,
                pid=peer.pid,
            )
            return ("unavailable", f"{self.name} has too many connections")
        return peer


class _Connection:
    def __init__(
        self,
        server: IpcServer,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: Peer,
    ) -> None:
        self.server = server
        self.limits = server.limits
        self.reader = reader
        self.writer = writer
        self.peer = peer
        self.closed = asyncio.Event()
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(self.limits.send_queue)
        self.slots = asyncio.Semaphore(self.limits.max_in_flight)
        self.tasks: set[asyncio.Task[None]] = set()
        self.subscriptions = 0
        self._read_task: asyncio.Task[bytes | None] | None = None
        self._loop = asyncio.get_running_loop()
        self._last_active = self._loop.time()
        self._idle_timer = self._loop.call_later(self.limits.idle_timeout, self._idle_check)
        self._high_water = writer.transport.get_write_buffer_limits()[1]

    async def run(self) -> None:
        write_task = asyncio.create_task(self._write_loop())
        self._read_task = asyncio.create_task(self._read_loop())
        try:
            try:
                last = await self._read_task
            except asyncio.CancelledError:
                if not self.closed.is_set():
                    raise
                last = None
            if last is None and self.tasks and not self.closed.is_set():
                # Half-closed by the peer (e.g. socat after its last line): answer it first.
                await asyncio.wait(set(self.tasks))
            for task in self.tasks:
                task.cancel()
            if not self.closed.is_set():
                try:
                    if last is not None:
                        self.queue.put_nowait(last)
                    self.queue.put_nowait(None)
                except asyncio.QueueFull:
                    self.drop("peer_not_reading")
                await asyncio.wait({write_task}, timeout=self.limits.write_timeout)
            if not self.closed.is_set():
                # Graceful: flush what is buffered, then close (abort() would discard it).
                self.writer.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.writer.wait_closed(), self.limits.write_timeout)
        finally:
            self.drop("closed")
            for task in self.tasks:
                task.cancel()
            write_task.cancel()
            await asyncio.gather(write_task, *self.tasks, return_exceptions=True)

    def drop(self, reason: str) -> None:
        """Close now without flushing: done, or the peer is gone, hostile or too slow."""
        if self.closed.is_set():
            return
        if reason not in ("closed", "eof"):
            # Peers leaving or idling out is routine; being cut off for misbehaving is not.
            routine = reason in ("peer_closed", "idle_timeout", "server_closing")
            log_event(
                log,
                "ipc_disconnect",
                level=logging.INFO if routine else logging.WARNING,
                server=self.server.name,
                reason=reason,
                uid=self.peer.uid,
                pid=self.peer.pid,
            )
        self.closed.set()
        self._idle_timer.cancel()
        self.writer.transport.abort()
        if self._read_task is not None and self._read_task is not asyncio.current_task():
            self._read_task.cancel()

    def _idle_check(self) -> None:
        if self.closed.is_set():
            return
        now = self._loop.time()
        due = self._last_active + self.limits.idle_timeout
        if now >= due and not self._busy():
            self.drop("idle_timeout")
            return
        # Waiting for our own replies or pushing events is not idling: look again later.
        delay = due - now if due > now else self.limits.idle_timeout
        self._idle_timer = self._loop.call_later(delay, self._idle_check)

    def _write_now(self, frame: bytes) -> bool:
        """Write straight to the transport when nothing is queued and the peer keeps up.

        Skips a task switch per reply; anything else goes through the bounded queue, so the
        transport buffer never holds more than its high-water mark plus one frame.
        """
        if self.queue.empty() and self.writer.transport.get_write_buffer_size() < self._high_water:
            self.writer.write(frame)
            return True
        return False

    def push_event(self, frame: bytes) -> bool:
        if self.closed.is_set():
            return False
        if self._write_now(frame):
            return True
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.drop("subscriber_too_slow")
            return False
        return True

    async def _send(self, frame: bytes) -> None:
        if not self.closed.is_set() and not self._write_now(frame):
            await self.queue.put(frame)

    async def _write_loop(self) -> None:
        try:
            while (frame := await self.queue.get()) is not None:
                self.writer.write(frame)
                async with asyncio.timeout(self.limits.write_timeout):
                    await self.writer.drain()
        except TimeoutError:
            self.drop("peer_not_reading")
        except (ConnectionError, OSError):
            self.drop("peer_closed")

    def _busy(self) -> bool:
        return bool(self.tasks) or self.subscriptions > 0

    async def _read_loop(self) -> bytes | None:
        """Read and dispatch frames; returns a last frame to send before closing, if any."""
        while True:
            await self.slots.acquire()
            try:
                line = await self.reader.readuntil(b"\n")
            except asyncio.IncompleteReadError:
                return None
            except asyncio.LimitOverrunError:
                # The rest of the oversized line cannot be skipped cheaply: reply and close.
                limit = self.limits.max_frame
                return encode_error(None, "frame_too_large", f"frame exceeds {limit} bytes")
            except (ConnectionError, OSError):
                self.drop("peer_closed")
                return None
            self._last_active = self._loop.time()
            if self._dispatch(line[:-1]) is None:
                self.slots.release()

    def _dispatch(self, line: bytes) -> asyncio.Task[None] | None:
        if not line.strip():
            return None
        try:
            frame = parse_frame(line, max_frame=self.limits.max_frame)
        except ProtocolError as exc:
            return self._reply_error(None, exc.error_code, exc.message)
        except Exception:  # parse_frame must never take the server down
            log.exception("event=ipc_parse outcome=failed server=%s", self.server.name)
            return self._reply_error(None, "malformed_message", "frame could not be parsed")
        if not isinstance(frame, Request):
            return self._reply_error(None, "malformed_message", "expected a request frame")
        route = self.server._routes.get(frame.method)
        if route is None:
            return self._reply_error(frame.id, "unknown_method", "unknown method")
        try:
            params = decode_params(route.spec, frame.params)
        except ProtocolError as exc:
            return self._reply_error(frame.id, exc.error_code, exc.message)
        return self._track(self._run(route, frame.id, params))

    def _track(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.slots.release()

    def _reply_error(self, req_id: int | None, code: str, message: str) -> asyncio.Task[None]:
        # Through a task holding a slot, so a peer flooding garbage meets the same backpressure.
        return self._track(self._send(encode_error(req_id, code, message)))

    async def _run(self, route: _Route, req_id: int, params: Any) -> None:
        sink = EventSink(self) if route.subscription else None
        timeout = route.timeout if route.timeout is not None else self.limits.request_timeout
        try:
            args = (params, self.peer) if sink is None else (params, self.peer, sink)
            async with asyncio.timeout(timeout):
                result = await route.fn(*args)
            frame = _encode_result(route.spec, req_id, result)
        except TimeoutError:
            frame = encode_error(req_id, "timeout", f"{route.spec.name} took over {timeout}s")
        except SymphonyError as exc:
            frame = encode_error(req_id, exc.error_code, exc.message)
        except Exception:
            log.exception(
                "event=ipc_handler outcome=failed server=%s method=%s",
                self.server.name,
                route.spec.name,
            )
            frame = encode_error(req_id, "internal_error", "internal error")
        else:
            if sink is not None:
                await self._send(frame)
                self.subscriptions += 1
                sink._activate()
                return
        await self._send(frame)


def _encode_result(spec: MethodSpec[Any, Any], req_id: int, result: Any) -> bytes:
    # A handler bug (wrong type, NaN, unencodable value) is an internal error, not a bad reply.
    if not isinstance(result, spec.result):
        raise TypeError(f"{spec.name} returned {type(result).__name__}")
    return encode_response(req_id, result)
