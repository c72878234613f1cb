"""The dashboard's view of the dispatcher: one subscribed connection, kept alive.

The dispatcher pushes ``dispatcher.state_changed`` with a whole snapshot; the latest one is
kept here and fanned out to the browsers' event streams. When the dispatcher is away the
link says so (``available`` is False, ``error`` says why) and keeps reconnecting in the
background; the dashboard never becomes something the dispatcher depends on (SPEC 13.4).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from symphonyd.core.api.dispatcher import (
    DISPATCHER_SNAPSHOT,
    DISPATCHER_STATE_CHANGED,
    DISPATCHER_SUBSCRIBE,
    SNAPSHOT_MAX_FRAME,
    StateChanged,
    StateSnapshot,
)
from symphonyd.core.api.shared import Empty
from symphonyd.core.errors import SymphonyError
from symphonyd.core.wire import MethodSpec
from symphonyd.runtime.ipc_client import IpcClient, unavailable
from symphonyd.runtime.logging import log_event

P = TypeVar("P")
R = TypeVar("R")
log = logging.getLogger("symphonyd.dashboard")


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Hub:
    """Fan-out to event-stream clients, each with a small bounded queue.

    A client that falls ``queue_size`` updates behind is dropped (its stream ends and the
    browser reconnects and gets the current state): one stalled tab must not grow memory.
    """

    def __init__(self, *, queue_size: int = 8, max_clients: int = 64) -> None:
        self.queue_size = queue_size
        self.max_clients = max_clients
        self._clients: set[asyncio.Queue[str | None]] = set()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._clients)

    def join(self) -> asyncio.Queue[str | None] | None:
        if len(self._clients) >= self.max_clients:
            return None
        queue: asyncio.Queue[str | None] = asyncio.Queue(self.queue_size)
        self._clients.add(queue)
        return queue

    def leave(self, queue: asyncio.Queue[str | None]) -> None:
        self._clients.discard(queue)

    def publish(self, message: str) -> None:
        for queue in list(self._clients):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:
                self._clients.discard(queue)
                self.dropped += 1
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()  # make room for the end marker
                queue.put_nowait(None)

    def close(self) -> None:
        for queue in list(self._clients):
            with contextlib.suppress(asyncio.QueueEmpty):
                queue.get_nowait()
            queue.put_nowait(None)
        self._clients.clear()


class DispatcherLink:
    def __init__(
        self,
        path: str | Path,
        *,
        on_change: Callable[[], None] | None = None,
        retry_min_s: float = 0.5,
        retry_max_s: float = 5.0,
    ) -> None:
        self.path = Path(path)
        self.on_change = on_change
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.snapshot: StateSnapshot | None = None
        self.error: str | None = "not connected yet"
        self.since: str = now_iso()  # when ``available`` last changed
        self.updates = 0
        self._client: IpcClient | None = None
        self._connected = asyncio.Event()

    async def wait_connected(self, timeout: float) -> bool:  # noqa: ASYNC109
        """True once a snapshot has arrived; False after ``timeout`` seconds without one."""
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError:
            return False
        return True

    @property
    def available(self) -> bool:
        return self._client is not None and not self._client.closed and self.snapshot is not None

    async def call(self, spec: MethodSpec[P, R], params: P, *, timeout: float = 10.0) -> R:  # noqa: ASYNC109
        client = self._client
        if client is None or client.closed:
            raise unavailable(f"dispatcher is unavailable: {self.error or 'not connected'}")
        return await client.call(spec, params, timeout=timeout)

    async def run(self) -> None:
        """Connect, subscribe, follow; on any failure mark unavailable and try again."""
        delay = self.retry_min_s
        while True:
            try:
                await self._follow()
            except SymphonyError as exc:
                self._down(exc.message)
            except (OSError, ValueError) as exc:  # never let one bad frame end the loop
                self._down(f"{type(exc).__name__}: {exc}")
            else:
                self._down("dispatcher closed the connection")
                delay = self.retry_min_s
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.retry_max_s)

    async def _follow(self) -> None:
        client = await IpcClient.connect(self.path, timeout=5.0, max_frame=SNAPSHOT_MAX_FRAME)
        try:
            await client.call(DISPATCHER_SUBSCRIBE, Empty(), timeout=10.0)
            snapshot = await client.call(DISPATCHER_SNAPSHOT, Empty(), timeout=10.0)
            self._client = client
            self._up(snapshot)
            async for received in client.events():
                if received.name == DISPATCHER_STATE_CHANGED.name and isinstance(
                    received.data, StateChanged
                ):
                    self._up(received.data.snapshot)
        finally:
            self._client = None
            await client.close()

    def _up(self, snapshot: StateSnapshot) -> None:
        if self.error is not None:
            log_event(log, "dispatcher_link", outcome="connected", path=str(self.path))
            self.since = now_iso()
        self.error = None
        self.snapshot = snapshot
        self.updates += 1
        self._connected.set()
        self._changed()

    def _down(self, reason: str) -> None:
        was_up = self.error is None
        self.error = reason
        self.snapshot = None
        self._connected.clear()
        if was_up:
            self.since = now_iso()
            log_event(log, "dispatcher_link", level=logging.WARNING, outcome="lost", error=reason)
            self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()
