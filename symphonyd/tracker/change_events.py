"""``tracker.changed``: tell the dispatcher within milliseconds that issues changed.

``ChangeFeed`` holds the dispatcher's subscriptions and each source's counters (shown by
``tracker`` health). ``LocalFileEvents`` watches the local adapter's issue directory with
inotify, waits for an editor's burst of writes to settle (``QUIET_S`` without a new event,
at most ``MAX_DELAY_S`` after the first), re-reads only the files named, and publishes their
ids. An event only makes the dispatcher tick sooner: what it dispatches still comes from the
tick's own fetch (docs/design/0410-tracker-change-events.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from symphonyd.core.api.shared import Empty
from symphonyd.core.api.tracker import TRACKER_CHANGED, FetchByIds, TrackerChanged
from symphonyd.core.errors import SymphonyError
from symphonyd.runtime.ipc_events import Broadcast, EventSink
from symphonyd.runtime.logging import log_event
from symphonyd.runtime.peer import Peer
from symphonyd.tracker.inotify import Changes, DirectoryWatch
from symphonyd.tracker.local_store import identifier_of
from symphonyd.tracker.service import TrackerService

log = logging.getLogger(__name__)
LOCAL_FILES = "local_files"
QUIET_S = 0.05  # an editor's writes and rename come within this of each other
MAX_DELAY_S = 0.3  # a file written continuously still gets reported this often
FOLLOW_S = 1.0  # how often the watch checks that it follows the adapter's directory


@dataclass
class SourceStats:
    live: bool = False
    detail: str | None = None  # why it is not live
    published: int = 0
    failures: int = 0
    last_delivery: str | None = None


class ChangeFeed:
    """Subscribers of ``tracker.changed`` and what each event source has done."""

    def __init__(self) -> None:
        self.broadcast: Broadcast[TrackerChanged] = Broadcast(TRACKER_CHANGED)
        self.sources: dict[str, SourceStats] = {}
        self._sinks: set[EventSink] = set()  # to count the live ones for health

    async def subscribe(self, _: Empty, __: Peer, sink: EventSink) -> Empty:
        self.broadcast.add(sink)
        self._sinks = {s for s in self._sinks if not s.closed} | {sink}
        return Empty()

    def stats(self, source: str) -> SourceStats:
        return self.sources.setdefault(source, SourceStats())

    def publish(self, source: str, issue_ids: list[str]) -> int:
        stats = self.stats(source)
        stats.published += 1
        stats.last_delivery = datetime.now(UTC).isoformat(timespec="milliseconds")
        return self.broadcast.publish(TrackerChanged(source, sorted(issue_ids)))

    def health(self) -> dict[str, Any]:
        """Per source: live, detail, published, failures, last_delivery; and how many
        subscribers (the dispatcher) are connected."""
        sources = {name: vars(s).copy() for name, s in sorted(self.sources.items())}
        return {"sources": sources, "subscribers": sum(not s.closed for s in self._sinks)}


class LocalFileEvents:
    """Follows the current adapter's issue directory (none for remote trackers)."""

    def __init__(
        self,
        service: TrackerService,
        feed: ChangeFeed,
        *,
        quiet_s: float = QUIET_S,
        max_delay_s: float = MAX_DELAY_S,
        follow_s: float = FOLLOW_S,
    ) -> None:
        self.service = service
        self.feed = feed
        self.quiet_s, self.max_delay_s, self.follow_s = quiet_s, max_delay_s, follow_s
        self._watch: DirectoryWatch | None = None
        self._pending = Changes()
        self._first = self._last = 0.0
        self._ready = asyncio.Event()

    async def run(self) -> None:
        try:
            while True:
                self._follow()
                if not (self._pending.names or self._pending.overflow):
                    await self._wait(self.follow_s)
                    continue
                await self._settle()
                # ``gone`` stays pending until _follow re-arms the watch.
                changes, self._pending = self._pending, Changes(gone=self._pending.gone)
                await self._report(changes)
        finally:
            self._disarm()

    async def _wait(self, seconds: float) -> None:
        self._ready.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._ready.wait()

    async def _settle(self) -> None:
        while True:
            now = time.monotonic()
            until = min(self._last + self.quiet_s, self._first + self.max_delay_s)
            if until <= now:
                return
            await self._wait(until - now)

    def _follow(self) -> None:
        adapter = self.service.adapter
        directory = adapter.watch_directory() if adapter is not None else None
        current = self._watch.directory if self._watch is not None else None
        if directory == current and not self._pending.gone:
            return
        self._disarm()
        self._pending.gone = False
        if directory is not None:
            self._arm(directory)

    def _arm(self, directory: Path) -> None:
        stats = self.feed.stats(LOCAL_FILES)
        try:
            watch = DirectoryWatch(directory)
        except OSError as exc:
            # E.g. the directory does not exist yet: polling still sees it; retried each FOLLOW_S.
            if stats.live or stats.detail != exc.strerror:
                log_event(log, "tracker_events", level=logging.WARNING, source=LOCAL_FILES,
                          outcome="unavailable", directory=str(directory),
                          error=exc.strerror)  # fmt: skip
            stats.live, stats.detail = False, exc.strerror
            return
        asyncio.get_running_loop().add_reader(watch.fileno(), self._readable)
        self._watch = watch
        stats.live, stats.detail = True, None
        log_event(log, "tracker_events", source=LOCAL_FILES, outcome="watching",
                  directory=str(directory))  # fmt: skip

    def _disarm(self) -> None:
        if self._watch is not None:
            asyncio.get_running_loop().remove_reader(self._watch.fileno())
            self._watch.close()
            self._watch = None
            self.feed.stats(LOCAL_FILES).live = False

    def _readable(self) -> None:
        if self._watch is None:
            return
        try:
            changes = self._watch.read()
        except OSError as exc:
            self.feed.stats(LOCAL_FILES).failures += 1
            log_event(log, "tracker_events", level=logging.WARNING, source=LOCAL_FILES,
                      outcome="read_failed", error=exc.strerror)  # fmt: skip
            changes = Changes(overflow=True, gone=True)
        wanted = {i for i in map(identifier_of, changes.names) if i is not None}
        if not (wanted or changes.overflow or changes.gone):
            return  # comments, editor swap files: nothing the dispatcher reads
        now = time.monotonic()
        if not (self._pending.names or self._pending.overflow):
            self._first = now
        self._last = now
        self._pending.names |= wanted
        self._pending.overflow |= changes.overflow or changes.gone
        self._pending.gone |= changes.gone
        self._ready.set()

    async def _report(self, changes: Changes) -> None:
        """The targeted refresh: re-read only the named files, then tell the dispatcher."""
        identifiers = sorted(changes.names)
        ids = set(identifiers)
        if identifiers:
            try:
                refreshed = await self.service.fetch_by_ids(FetchByIds(identifiers))
                ids |= {issue.id for issue in refreshed.issues}
            except SymphonyError as exc:
                # A half-written or malformed file: the tick that follows omits it and says so.
                self.feed.stats(LOCAL_FILES).failures += 1
                log_event(log, "tracker_events", level=logging.INFO, source=LOCAL_FILES,
                          outcome="refresh_failed", error_code=exc.error_code)  # fmt: skip
        delivered = self.feed.publish(LOCAL_FILES, [] if changes.overflow else sorted(ids))
        log_event(log, "tracker_events", level=logging.DEBUG, source=LOCAL_FILES,
                  outcome="published", issues=len(ids), subscribers=delivered)  # fmt: skip
