"""symphony-dispatcher wiring: control sockets, the scheduling loop, watches and pushes.

The orchestrator decides; this module decides when to ask it (poll ticks, retry timers,
WORKFLOW.md changes, refresh requests, launcher events) and serves the control API that
symphonyctl and the dashboard use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

from symphonyd.core.api.dispatcher import (
    DISPATCHER_DRAIN,
    DISPATCHER_HOSTS,
    DISPATCHER_ISSUE,
    DISPATCHER_PAUSE,
    DISPATCHER_PRUNE,
    DISPATCHER_REFRESH,
    DISPATCHER_RELEASE,
    DISPATCHER_RESUME,
    DISPATCHER_SNAPSHOT,
    DISPATCHER_STATE_CHANGED,
    DISPATCHER_STOP,
    DISPATCHER_SUBSCRIBE,
    DISPATCHER_UNDRAIN,
    ControlResult,
    HostList,
    HostRefParams,
    IssueRefParams,
    IssueView,
    PauseParams,
    PruneParams,
    PruneResult,
    RefreshResult,
    StateChanged,
    StateSnapshot,
)
from symphonyd.core.api.shared import HEALTH, Empty, Health
from symphonyd.core.errors import SymphonyError
from symphonyd.dispatcher.orchestrator import Orchestrator
from symphonyd.dispatcher.prune import prune
from symphonyd.dispatcher.snapshot import build_issue_view, build_snapshot, host_rows
from symphonyd.dispatcher.state import iso
from symphonyd.dispatcher.tracker_events import EventStreamState
from symphonyd.dispatcher.workspace_sweep import SWEEP_INTERVAL_S
from symphonyd.runtime.ipc_server import EventSink, IpcServer
from symphonyd.runtime.peer import Peer

log = logging.getLogger("symphonyd.dispatcher")
PUSH_DEBOUNCE_S = 0.2
SWEEP_POLL_S = 0.5  # how often the sweep loop looks for a request


class DispatcherService:
    def __init__(
        self,
        orch: Orchestrator,
        *,
        config_changed: Callable[[], bool] | None = None,
        watch_interval_s: float = 1.0,
        version: str = "0",
        sweep_interval_s: float = SWEEP_INTERVAL_S,
    ) -> None:
        self.orch = orch
        self.config_changed = config_changed
        self.watch_interval_s = watch_interval_s
        self.sweep_interval_s = sweep_interval_s
        self.version = version
        self._refresh = asyncio.Event()
        self._wake = asyncio.Event()
        self._sinks: set[EventSink] = set()
        self._push_task: asyncio.Task[None] | None = None
        # The tracker's change events as the follower (daemon.loops) sees them.
        self.tracker_events = EventStreamState()
        orch.add_listener(self._state_changed)

    # ------------------------------------------------------------------ control API

    def register(self, server: IpcServer) -> None:
        server.handle(HEALTH, self._health)
        server.handle(DISPATCHER_SNAPSHOT, self._snapshot)
        server.handle(DISPATCHER_ISSUE, self._issue)
        server.handle(DISPATCHER_PAUSE, self._pause)
        server.handle(DISPATCHER_RESUME, self._resume)
        server.handle(DISPATCHER_STOP, self._stop)
        server.handle(DISPATCHER_RELEASE, self._release)
        server.handle(DISPATCHER_REFRESH, self._request_refresh)
        server.handle(DISPATCHER_PRUNE, self._prune)
        server.handle(DISPATCHER_HOSTS, self._hosts)
        server.handle(DISPATCHER_DRAIN, self._drain)
        server.handle(DISPATCHER_UNDRAIN, self._undrain)
        server.subscription(DISPATCHER_SUBSCRIBE, self._subscribe)

    async def _health(self, _: Empty, __: Peer) -> Health:
        snap = self.snapshot()
        detail = {d.daemon: d.ok for d in snap.daemons}
        return Health("dispatcher", self.version, True, {"paused": snap.pause.paused, **detail})

    async def _snapshot(self, _: Empty, __: Peer) -> StateSnapshot:
        return self.snapshot()

    def snapshot(self) -> StateSnapshot:
        return replace(build_snapshot(self.orch), tracker_events=self.tracker_events.view())

    async def _issue(self, p: IssueRefParams, _: Peer) -> IssueView:
        return build_issue_view(self.orch, p.identifier)

    async def _pause(self, p: PauseParams, peer: Peer) -> ControlResult:
        return ControlResult(True, await self.orch.pause(p.reason, peer.uid))

    async def _resume(self, _: Empty, peer: Peer) -> ControlResult:
        message = await self.orch.resume(peer.uid)
        self.request_refresh()  # what changed while paused is dispatched now, not next poll
        return ControlResult(True, message)

    async def _stop(self, p: IssueRefParams, peer: Peer) -> ControlResult:
        return ControlResult(True, await self.orch.stop(p.identifier, peer.uid))

    async def _release(self, p: IssueRefParams, peer: Peer) -> ControlResult:
        message = await self.orch.release(p.identifier, peer.uid)
        self.request_refresh()
        return ControlResult(True, message)

    async def _hosts(self, _: Empty, __: Peer) -> HostList:
        return HostList(host_rows(self.orch.engine))

    async def _drain(self, p: HostRefParams, peer: Peer) -> ControlResult:
        return ControlResult(True, await self.orch.drain(p.name, True, peer.uid))

    async def _undrain(self, p: HostRefParams, peer: Peer) -> ControlResult:
        message = await self.orch.drain(p.name, False, peer.uid)
        self.request_refresh()
        return ControlResult(True, message)

    async def _prune(self, p: PruneParams, peer: Peer) -> PruneResult:
        # Both control sockets share these methods; deleting workspaces stays root's.
        if peer.uid != 0:
            raise SymphonyError("prune is for root (symphonyctl)", code="peer_not_allowed")
        return await prune(self.orch, p)

    async def _request_refresh(self, _: Empty, __: Peer) -> RefreshResult:
        coalesced = self.request_refresh()
        return RefreshResult(True, coalesced, iso(self.orch.clock.now()), ["poll", "reconcile"])

    def request_refresh(self) -> bool:
        """Queue an immediate tick; True when one was already queued (coalesced)."""
        coalesced = self._refresh.is_set()
        self._refresh.set()
        self._wake.set()
        return coalesced

    async def _subscribe(self, _: Empty, __: Peer, sink: EventSink) -> Empty:
        self._sinks.add(sink)
        self._state_changed()
        return Empty()

    def _state_changed(self) -> None:
        if self._sinks and (self._push_task is None or self._push_task.done()):
            self._push_task = asyncio.get_running_loop().create_task(self._push())

    async def _push(self) -> None:
        # One snapshot per burst: a tick that changes 1 000 runs pushes once, not 1 000 times.
        await asyncio.sleep(PUSH_DEBOUNCE_S)
        data = StateChanged(self.snapshot())
        for sink in list(self._sinks):
            if not sink.send(DISPATCHER_STATE_CHANGED, data):
                self._sinks.discard(sink)

    # ------------------------------------------------------------------ loops

    async def run_scheduler(self) -> None:
        """Ticks every polling.interval_ms (or on refresh), retry timers when due; the
        workspace sweep runs beside it so a slow tracker listing never delays a tick."""
        sweeper = asyncio.get_running_loop().create_task(self.run_workspace_sweep())
        try:
            await self._schedule()
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper

    async def run_workspace_sweep(self) -> None:
        """Survey and age cleanup when asked (launcher start, WORKFLOW.md change) or hourly."""
        clock = self.orch.clock
        last = clock.monotonic_ms()
        while True:
            due = clock.monotonic_ms() - last >= self.sweep_interval_s * 1000
            if self.orch.sweep.due or due:
                last = clock.monotonic_ms()
                await _guard("workspace sweep", self.orch.sweep_workspaces)
            await asyncio.sleep(SWEEP_POLL_S)

    async def _schedule(self) -> None:
        clock = self.orch.clock
        next_tick = last_tick = clock.monotonic_ms()
        while True:
            self._wake.clear()
            now = clock.monotonic_ms()
            if self._refresh.is_set() or now >= next_tick:
                self._refresh.clear()
                last_tick = now
                await _guard("tick", self.orch.tick)
                next_tick = clock.monotonic_ms() + max(self.orch.settings.poll_interval_ms, 100)
            handoff = self.orch.handoff_due_ms()
            if handoff is not None and handoff <= last_tick:
                handoff = None  # a tick already looked after this grace ended
            if handoff is not None and handoff <= clock.monotonic_ms():
                self._refresh.set()  # a hand-off grace ended: reconcile now, not at the poll
                continue
            due = self.orch.next_retry_due_ms()
            if due is not None and due <= clock.monotonic_ms():
                await _guard("retry", self.orch.fire_due_retries)
                continue
            wake_at = min(d for d in (next_tick, due, handoff) if d is not None)
            delay = max(wake_at - clock.monotonic_ms(), 0) / 1000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def run_watch(self) -> None:
        """WORKFLOW.md changes apply without waiting for the next tick (SPEC 6.2)."""
        if self.config_changed is None:
            return
        while True:
            await asyncio.sleep(self.watch_interval_s)
            try:
                changed = self.config_changed()
            except SymphonyError as exc:
                log.warning("workflow watch failed: %s", exc)
                continue
            if changed:
                await _guard("reload", self.orch.reload_config)
                self._wake.set()


async def _guard(what: str, fn: Callable[[], Awaitable[None]]) -> None:
    """A bug in one step is logged and the loop goes on: the daemon must not die of it."""
    try:
        await fn()
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("dispatcher %s failed", what)
