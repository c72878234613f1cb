"""Follow the tracker's ``tracker.changed`` events and ask for a tick on each.

An event is only a hint that a tick now would find something: the tick that follows is the
ordinary one (eligibility, claims, concurrency, budgets, pause), so events can make dispatch
sooner but never different, and an event that arrives while paused is not lost, because the
next tick reads the tracker's state itself. Ticks asked for this way are paced: at most one
per ``MIN_GAP_S``, the events in between folded into it. With the stream down, the poll tick
alone still dispatches (docs/design/0410-tracker-change-events.md).

Shutdown must always finish: the connection is closed in ``finally`` on every path, a
cancellation is never swallowed, and the retry loop checks whether its task was asked to
stop before it sleeps, so no reconnect attempt outlives the daemon's stop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from symphonyd.core.api.dispatcher import TrackerEventsStatus
from symphonyd.core.api.shared import Empty
from symphonyd.core.api.tracker import TRACKER_MAX_FRAME, TRACKER_SUBSCRIBE, TrackerChanged
from symphonyd.core.errors import SymphonyError
from symphonyd.runtime.ipc_client import IpcClient
from symphonyd.runtime.logging import log_event

log = logging.getLogger("symphonyd.dispatcher")
MIN_GAP_S = 0.25
RETRY_S = 1.0
MAX_RETRY_S = 10.0


class EventStreamState:
    """What the follower has seen, for the snapshot (``symphonyctl status``, /metrics)."""

    def __init__(self) -> None:
        self.subscribed = False
        self.received: dict[str, int] = {}
        self.ticks_requested = 0
        self.last_event_at: str | None = None

    def event(self, source: str) -> None:
        self.received[source] = self.received.get(source, 0) + 1
        self.last_event_at = datetime.now(UTC).isoformat(timespec="milliseconds")

    def view(self) -> TrackerEventsStatus:
        return TrackerEventsStatus(
            self.subscribed, dict(self.received), self.ticks_requested, self.last_event_at
        )


class TickPacer:
    """Calls ``request_tick`` at once, or once ``gap_s`` after the previous call."""

    def __init__(self, request_tick: Callable[[], object], gap_s: float = MIN_GAP_S) -> None:
        self._request = request_tick
        self._gap_s = gap_s
        self._last = float("-inf")
        self._timer: asyncio.TimerHandle | None = None

    def poke(self) -> None:
        if self._timer is not None:
            return  # one is already queued: this event folds into it
        wait = self._last + self._gap_s - time.monotonic()
        if wait <= 0:
            self._fire()
        else:
            self._timer = asyncio.get_running_loop().call_later(wait, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._last = time.monotonic()
        self._request()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


async def follow_tracker_changes(
    path: str | Path,
    request_tick: Callable[[], object],
    *,
    retry_s: float = RETRY_S,
    max_retry_s: float = MAX_RETRY_S,
    gap_s: float = MIN_GAP_S,
    state: EventStreamState | None = None,
) -> None:
    """Subscribe to ``tracker.changed`` until cancelled, resubscribing after every drop.

    Each (re)subscription also asks for a tick: changes made while the stream was down were
    not replayed. A loss is logged once, not once per attempt. ``state`` is kept current.
    """
    seen = state or EventStreamState()

    def tick() -> None:
        seen.ticks_requested += 1
        request_tick()

    pacer = TickPacer(tick, gap_s)
    failed, delay = 0, retry_s
    try:
        while True:
            client: IpcClient | None = None
            try:
                client = await IpcClient.connect(path, max_frame=TRACKER_MAX_FRAME)
                _stop_if_cancelling()
                await client.call(TRACKER_SUBSCRIBE, Empty(), timeout=10.0)
                log_event(log, "tracker_events", outcome="subscribed",
                          failed_attempts=failed or None)  # fmt: skip
                failed, delay, seen.subscribed = 0, retry_s, True
                pacer.poke()
                async for item in client.events():
                    if isinstance(item.data, TrackerChanged):
                        seen.event(item.data.source)
                        pacer.poke()
                error = "the tracker closed the event stream"
            except SymphonyError as exc:
                error = exc.message
            except Exception as exc:  # a bug here must not end event following for good
                error = f"{type(exc).__name__}: {exc}"
            finally:
                seen.subscribed = False
                if client is not None:
                    await client.close()
                _stop_if_cancelling()
            if failed == 0:
                log_event(log, "tracker_events", level=logging.WARNING, outcome="lost",
                          error=error, fallback="poll")  # fmt: skip
            failed += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_retry_s)
    finally:
        pacer.close()


def _stop_if_cancelling() -> None:
    """Re-raise a cancellation that something below swallowed (Python 3.11's ``wait_for``
    loses one that races its inner future, as ``IpcClient.connect`` once did); without this
    the loop would reconnect forever after the daemon asked it to stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
