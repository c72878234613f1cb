"""One IPC connection: framing, dispatch, handler timeouts, replies and backpressure.

The limits and the write/backpressure policy are explained in docs/design/0200-runtime.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from symphonyd.core.errors import SymphonyError
from symphonyd.core.wire import (
    DEFAULT_MAX_FRAME,
    MethodSpec,
    ProtocolError,
    Request,
    decode_params,
    encode_error,
    encode_response,
    parse_frame,
)
from symphonyd.runtime.ipc_events import EventSink
from symphonyd.runtime.logging import log_event
from symphonyd.runtime.peer import Peer

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
    # Replies may be larger than requests (a tracker board); None: same as max_frame. The
    # client must connect with a max_frame at least this large.
    max_reply: int | None = None

    @property
    def reply_limit(self) -> int:
        return self.max_frame if self.max_reply is None else self.max_reply


@dataclass(frozen=True)
class Route:
    spec: MethodSpec[Any, Any]
    fn: Callable[..., Awaitable[Any]]
    subscription: bool
    timeout: float | None


class Connection:
    """One accepted, admitted peer: reads frames, runs handlers, writes replies and events."""

    def __init__(
        self,
        name: str,
        routes: Mapping[str, Route],
        limits: ServerLimits,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: Peer,
    ) -> None:
        self.name = name
        self.routes = routes
        self.limits = limits
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
                server=self.name,
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
        transport = self.writer.transport
        if transport.is_closing():
            self.drop("peer_closed")  # writing on would only log asyncio's send warnings
            return True
        if self.queue.empty() and transport.get_write_buffer_size() < self._high_water:
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
            log.exception("event=ipc_parse outcome=failed server=%s", self.name)
            return self._reply_error(None, "malformed_message", "frame could not be parsed")
        if not isinstance(frame, Request):
            return self._reply_error(None, "malformed_message", "expected a request frame")
        route = self.routes.get(frame.method)
        if route is None:
            return self._reply_error(frame.id, "unknown_method", "unknown method")
        try:
            params = decode_params(route.spec, frame.params)
        except ProtocolError as exc:
            return self._reply_error(frame.id, exc.error_code, exc.message)
        except Exception:  # a from_dict that raised something untyped: still the peer's input
            log.exception("event=ipc_decode outcome=failed server=%s", self.name)
            return self._reply_error(frame.id, "invalid_params", "params could not be decoded")
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

    async def _run(self, route: Route, req_id: int, params: Any) -> None:
        sink = EventSink(self) if route.subscription else None
        timeout = route.timeout if route.timeout is not None else self.limits.request_timeout
        try:
            args = (params, self.peer) if sink is None else (params, self.peer, sink)
            async with asyncio.timeout(timeout):
                result = await route.fn(*args)
            frame = _encode_result(route.spec, req_id, result, self.limits.reply_limit)
        except TimeoutError:
            frame = encode_error(req_id, "timeout", f"{route.spec.name} took over {timeout}s")
        except SymphonyError as exc:
            frame = encode_error(req_id, exc.error_code, exc.message)
        except Exception:
            log.exception(
                "event=ipc_handler outcome=failed server=%s method=%s",
                self.name,
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


def _encode_result(spec: MethodSpec[Any, Any], req_id: int, result: Any, max_frame: int) -> bytes:
    # A handler bug (wrong type, NaN, unencodable value) is an internal error, not a bad reply.
    if not isinstance(result, spec.result):
        raise TypeError(f"{spec.name} returned {type(result).__name__}")
    frame = encode_response(req_id, result)
    if len(frame) - 1 > max_frame:
        # The peer's reader has the same limit and would drop the whole connection.
        raise ProtocolError(
            f"{spec.name} reply of {len(frame) - 1} bytes exceeds {max_frame}",
            code="frame_too_large",
        )
    return frame
