"""Subscriptions: where handlers push events, and fan-out to many subscribers.

Events never wait: a subscriber whose queue is full is disconnected (see 0200-runtime.md).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Generic, TypeVar

from symphonyd.core.wire import EventSpec, encode_event
from symphonyd.runtime.logging import log_event
from symphonyd.runtime.peer import Peer

if TYPE_CHECKING:
    from symphonyd.runtime.ipc_connection import Connection

P = TypeVar("P")
log = logging.getLogger("symphonyd.ipc")


class EventSink:
    """Where a subscription handler pushes events; valid until the connection closes."""

    def __init__(self, conn: Connection) -> None:
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
        frame = encode_event_or_none(spec, data)
        return frame is None or self.send_frame(frame)

    def send_frame(self, frame: bytes) -> bool:
        """Queue an already encoded event frame (see Broadcast)."""
        if self.closed:
            return False
        if len(frame) - 1 > self._conn.limits.max_frame:
            # The subscriber could not read it; dropping one event beats dropping the peer.
            log_event(
                log,
                "ipc_event",
                level=logging.WARNING,
                outcome="dropped",
                reason="frame_too_large",
                size=len(frame) - 1,
            )
            return True
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
        frame = encode_event_or_none(self.spec, data)
        if frame is None:
            return 0
        delivered = 0
        for sink in list(self._sinks):
            if sink.send_frame(frame):
                delivered += 1
            else:
                self._sinks.discard(sink)
        return delivered


def encode_event_or_none(spec: EventSpec[P], data: P) -> bytes | None:
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
