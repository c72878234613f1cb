"""Async IPC client: pipelined calls with typed results, typed errors and event streams.

Every failure surfaces as ``SymphonyError``: the server's own code for an error reply,
``unavailable`` when the socket is missing, refuses or drops the connection, ``timeout``
when a reply does not arrive in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from symphonyd.core.errors import SymphonyError
from symphonyd.core.wire import (
    DEFAULT_MAX_FRAME,
    EVENTS,
    ErrorReply,
    Event,
    EventSpec,
    MethodSpec,
    ProtocolError,
    Response,
    decode_event,
    decode_result,
    encode_request,
    parse_frame,
)
from symphonyd.runtime.logging import log_event

P = TypeVar("P")
R = TypeVar("R")
log = logging.getLogger("symphonyd.ipc")


@dataclass(frozen=True)
class ReceivedEvent:
    name: str
    data: Any  # the EventSpec's dataclass when the name is registered, else the raw dict


def unavailable(message: str) -> SymphonyError:
    return SymphonyError(message, code="unavailable")


class IpcClient:
    """One connection to one daemon. Use ``await IpcClient.connect(path)``."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        path: str,
        max_events: int = 4096,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        self.path = path
        self._reader = reader
        self._writer = writer
        self._max_frame = max_frame
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[MethodSpec[Any, Any], asyncio.Future[Any]]] = {}
        self._events: asyncio.Queue[ReceivedEvent | None] = asyncio.Queue(max_events)
        self._error: SymphonyError | None = None
        self._closing = False
        self._high_water = writer.transport.get_write_buffer_limits()[1]
        self._read_task = asyncio.create_task(self._read_loop())

    @classmethod
    async def connect(
        cls,
        path: str | Path,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - the documented per-call API
        max_frame: int = DEFAULT_MAX_FRAME,
        max_events: int = 4096,
    ) -> IpcClient:
        try:
            # Not wait_for: on 3.11 it loses a cancellation that arrives as the connection
            # completes, and a subscriber loop cancelled at that moment would run on.
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(str(path), limit=max_frame)
        except TimeoutError:
            raise SymphonyError(f"connecting to {path} timed out", code="timeout") from None
        except OSError as exc:
            raise unavailable(f"cannot connect to {path}: {exc.strerror or exc}") from None
        return cls(reader, writer, path=str(path), max_events=max_events, max_frame=max_frame)

    @property
    def closed(self) -> bool:
        return self._error is not None or self._closing

    async def call(self, spec: MethodSpec[P, R], params: P, *, timeout: float = 30.0) -> R:  # noqa: ASYNC109
        """Send one request and wait for its typed result; calls may run concurrently."""
        if self._error is not None:
            raise self._fresh_error()
        if self._closing:
            raise unavailable(f"client for {self.path} is closed")
        req_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = (spec, future)
        try:
            self._writer.write(encode_request(req_id, spec, params))
            async with asyncio.timeout(timeout):
                if self._writer.transport.get_write_buffer_size() > self._high_water:
                    await self._writer.drain()  # the server is behind: wait, bounded
                result: R = await future
            return result
        except TimeoutError:
            raise SymphonyError(
                f"{spec.name} got no reply within {timeout}s", code="timeout"
            ) from None
        except (ConnectionError, OSError):
            self._fail(unavailable(f"connection to {self.path} lost"))
            raise self._fresh_error() from None
        finally:
            self._pending.pop(req_id, None)
            if future.done() and not future.cancelled():
                # Mark it retrieved: an unretrieved exception is logged from a GC finaliser.
                future.exception()

    async def events(self) -> AsyncIterator[ReceivedEvent]:
        """Events pushed on this connection; raises ``unavailable`` if the connection drops."""
        while True:
            # When the queue was full as the connection failed, no end marker fit in it.
            ended = self._events.empty() and (self._error is not None or self._closing)
            item = None if ended else await self._events.get()
            if item is None:
                self._events.put_nowait(None)  # let any other iterator see the end too
                if self._error is not None and not self._closing:
                    raise self._fresh_error()
                return
            yield item

    async def close(self) -> None:
        self._closing = True
        self._writer.close()
        # Neither wait may swallow a cancellation of the caller: a subscriber loop closing
        # its client as the daemon stops would otherwise run on (3.11's wait_for can lose
        # one; ``suppress(CancelledError)`` around the reader task always did).
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await self._writer.wait_closed()
        self._read_task.cancel()
        await asyncio.wait({self._read_task})
        self._fail(unavailable(f"client for {self.path} is closed"))

    async def __aenter__(self) -> IpcClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ----------------------------------------------------------------- internals

    def _fresh_error(self) -> SymphonyError:
        # A new instance per raise: re-raising one object keeps growing its traceback.
        error = self._error or unavailable(f"client for {self.path} is closed")
        return SymphonyError(error.message, code=error.error_code)

    def _fail(self, error: SymphonyError) -> None:
        if self._error is None:
            self._error = error
        for _spec, future in self._pending.values():
            if not future.done():
                future.set_exception(self._fresh_error())
        with contextlib.suppress(asyncio.QueueFull):
            self._events.put_nowait(None)

    async def _read_loop(self) -> None:
        try:
            while True:
                line = await self._reader.readuntil(b"\n")
                self._on_frame(line[:-1])
        except asyncio.IncompleteReadError:
            self._fail(unavailable(f"{self.path} closed the connection"))
        except asyncio.LimitOverrunError:
            self._fail(ProtocolError("reply exceeds max_frame", code="frame_too_large"))
        except (ConnectionError, OSError):
            self._fail(unavailable(f"connection to {self.path} lost"))
        except SymphonyError as exc:
            self._fail(exc)
        except Exception:  # never leave callers waiting on a reader that died
            log.exception("event=ipc_client_read outcome=failed path=%s", self.path)
            self._fail(ProtocolError("unreadable reply from server"))
        finally:
            if self._error is not None:
                self._writer.transport.abort()

    def _on_frame(self, line: bytes) -> None:
        frame = parse_frame(line, max_frame=self._max_frame)
        if isinstance(frame, Response):
            entry = self._pending.get(frame.id)
            if entry is not None and not entry[1].done():
                spec, future = entry
                try:
                    future.set_result(decode_result(spec, frame.result))
                except ProtocolError as exc:
                    future.set_exception(exc)
        elif isinstance(frame, ErrorReply):
            error = SymphonyError(frame.message, code=frame.code)
            entry = self._pending.get(frame.id) if frame.id is not None else None
            if entry is not None:
                if not entry[1].done():
                    entry[1].set_exception(error)
            elif frame.id is None:
                # Not tied to a request: refusal, oversized frame, overload. The server closes.
                raise error
        elif isinstance(frame, Event):
            self._on_event(frame)
        else:
            raise ProtocolError("server sent a request frame")

    def _on_event(self, frame: Event) -> None:
        spec: EventSpec[Any] | None = EVENTS.get(frame.event)
        data: Any = frame.data
        if spec is not None:
            try:
                data = decode_event(spec, frame.data)
            except ProtocolError as exc:
                log_event(log, "ipc_event", outcome="dropped", name=frame.event, error=exc.message)
                return
        try:
            self._events.put_nowait(ReceivedEvent(frame.event, data))
        except asyncio.QueueFull:
            # Same policy as the server: never buffer without bound. The consumer sees
            # ``unavailable`` and, like after any disconnect, re-subscribes and re-snapshots.
            raise unavailable(f"events from {self.path} overflowed: consumer too slow") from None


class ReconnectingClient:
    """For long-lived callers: connects lazily and again after the connection was lost.

    A call that was already sent is never re-sent (it may have had effects); only the next
    call opens a new connection.
    """

    def __init__(self, path: str | Path, *, connect_timeout: float = 5.0) -> None:
        self.path = path
        self.connect_timeout = connect_timeout
        self._client: IpcClient | None = None
        self._lock = asyncio.Lock()

    async def client(self) -> IpcClient:
        async with self._lock:
            if self._client is None or self._client.closed:
                if self._client is not None:
                    await self._client.close()
                self._client = await IpcClient.connect(self.path, timeout=self.connect_timeout)
            return self._client

    async def call(self, spec: MethodSpec[P, R], params: P, *, timeout: float = 30.0) -> R:  # noqa: ASYNC109
        client = await self.client()
        return await client.call(spec, params, timeout=timeout)

    async def close(self) -> None:
        async with self._lock:
            if self._client is not None:
                await self._client.close()
                self._client = None
