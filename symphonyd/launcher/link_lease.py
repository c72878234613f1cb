"""A worker's side of fencing: runs started through the link stop when the link is gone.

The control host waits ``worker.lease_seconds`` plus a margin after losing a worker before it
runs that worker's issues anywhere else (docs/design/1100-worker-hosts.md). That is only
safe if the worker, on its own, stops every run the link started once no link connection
has existed for the lease: a partitioned worker cannot be told to stop, so it must stop by
itself. Runs started over the local dispatcher socket are never touched. Durations are
this host's monotonic clock: no clock agreement between hosts is assumed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from symphonyd.runtime.logging import log_event

log = logging.getLogger("symphonyd.launcher.link")


class LinkLease:
    def __init__(
        self,
        lease_s: float,
        *,
        idle_since: Callable[[], float | None],
        live: Callable[[str], bool],
        stop: Callable[[str], Awaitable[bool]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lease_s = lease_s
        self._idle_since = idle_since
        self._live = live
        self._stop = stop
        self._clock = clock
        self._runs: set[str] = set()
        self._reported = False

    def started(self, run_id: str) -> None:
        self._runs.add(run_id)

    @property
    def runs(self) -> frozenset[str]:
        return frozenset(self._runs)

    async def check(self) -> list[str]:
        """One look at the link; returns the runs it stopped because the lease ran out."""
        self._runs = {r for r in self._runs if self._live(r)}
        gone_since = self._idle_since()
        if gone_since is None:
            self._reported = False
            return []
        if self._runs and not self._reported:
            self._reported = True
            log_event(
                log, "link_lost", level=logging.WARNING, runs=len(self._runs), lease_s=self._lease_s
            )
        if not self._runs or self._clock() - gone_since < self._lease_s:
            return []
        expired = sorted(self._runs)
        self._runs.clear()
        stopped = [run_id for run_id in expired if await self._stop(run_id)]
        log_event(
            log,
            "link_lease_expired",
            level=logging.WARNING,
            stopped=len(stopped),
            run_ids=",".join(stopped),
        )
        return stopped

    async def watch(self, interval: float = 1.0) -> None:
        while True:
            await self.check()
            await asyncio.sleep(interval)
