"""The single authoritative scheduler (SPEC 7, 8, 16) as a deterministic async state machine.

One front object over an :class:`~symphonyd.dispatcher.engine.Engine` (the state and its
primitives) and its collaborators, each given the engine in its constructor: the
:class:`Scheduler` (ticks, retry timers, reconciliation), :class:`RunEvents` (launcher run
events), :class:`Recovery` (startup and resync), :class:`Controls` (operator commands) and
:class:`WorkspaceSweep` (age cleanup). The orchestrator holds the one lock, so ticks, retry
timers, run events and operator commands are serialised exactly as SPEC 7.4 asks, and tells
listeners after each change. Time comes from an injected clock and the outside world from
the ports, so tests drive it step by step. The daemon decides *when* to call :meth:`tick` and
:meth:`fire_due_retries`; the collaborators decide *what* happens (docs/design/0700, 0711).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Mapping

from symphonyd.core.api.launcher import RunEvent, StopRun
from symphonyd.core.worker_hosts import LOCAL_HOST
from symphonyd.dispatcher import failover
from symphonyd.dispatcher.budget import TokenLedger
from symphonyd.dispatcher.controls import ControlError, Controls
from symphonyd.dispatcher.engine import Engine
from symphonyd.dispatcher.holds import HoldBook
from symphonyd.dispatcher.ports import Clock, DispatchSettings, LauncherPort, TrackerPort
from symphonyd.dispatcher.recovery import Recovery
from symphonyd.dispatcher.run_events import RunEvents
from symphonyd.dispatcher.scheduler import Scheduler, handoff_due_ms
from symphonyd.dispatcher.state import PauseBook, RetryEntry, RunningEntry, SweepBook
from symphonyd.dispatcher.workspace_sweep import WorkspaceSweep

__all__ = ["ControlError", "Orchestrator"]


class Orchestrator:
    """What the daemon and its service call; every state change goes through the lock."""

    def __init__(self, engine: Engine) -> None:
        self.lock = asyncio.Lock()
        self.engine = engine
        self.scheduler = Scheduler(engine)
        self.run_events = RunEvents(engine)
        self.recovery = Recovery(engine, self.run_events)
        self.controls = Controls(engine)
        self.sweeper = WorkspaceSweep(engine, self.lock)

    # ------------------------------------------------------------------ scheduling

    async def start(self) -> None:
        """Load durable state and config, re-adopt the launcher's runs (docs/design/0704)."""
        async with self.lock:
            await self.recovery.start()
        await self.engine.settle()
        self.engine.changed()

    async def tick(self) -> None:
        """SPEC 16.2, after retrying a resync with the launcher that failed (0750)."""
        async with self.lock:
            await self.recovery.resync_if_due()
            await self.scheduler.tick()
        self.engine.changed()

    async def fire_due_retries(self) -> None:
        async with self.lock:
            await self.scheduler.fire_due_retries()
        self.engine.changed()

    async def reload_config(self) -> None:
        """Called by the WORKFLOW.md watcher; the tick also reloads defensively."""
        async with self.lock:
            await self.scheduler.reload_config()
        self.engine.changed()

    async def handle_run_event(self, ev: RunEvent, host: str = LOCAL_HOST) -> None:
        async with self.lock:
            await self.run_events.handle(ev, host)
        self.engine.changed()

    async def resync_runs(self, host: str = LOCAL_HOST) -> None:
        """After (re)subscribing to a host's run events: settle what happened meanwhile."""
        # A (re)started launcher: survey its workspace root and report orphans (seed 001).
        if host == LOCAL_HOST:
            self.engine.sweep.request(report=True)
        async with self.lock:
            await self.recovery.resync_runs(host)
        self.engine.changed()

    async def host_lost(self, host: str, error: str) -> None:
        """A worker host's event stream dropped: its runs are fenced (design 1100)."""
        async with self.lock:
            await failover.host_lost(self.engine, host, error)
        self.engine.changed()

    async def sweep_workspaces(self) -> None:
        await self.sweeper.sweep_workspaces()  # takes the lock itself, piecewise

    async def settle(self) -> None:
        await self.engine.settle()

    # ------------------------------------------------------------------ operator controls

    async def pause(self, reason: str, uid: int | None) -> str:
        async with self.lock:
            message = await self.controls.pause(reason, uid)
        self.engine.changed()
        return message

    async def resume(self, uid: int | None) -> str:
        async with self.lock:
            message = await self.controls.resume(uid)
        self.engine.changed()
        return message

    async def stop(self, identifier: str, uid: int | None) -> str:
        """End the issue's run or retry, or hold it before its first dispatch (0751)."""
        async with self.lock:
            message = await self.controls.stop_claimed(identifier, uid)
        if message is None:
            # Not ours yet: ask the tracker, without holding the lock over its round trip.
            found = await self.controls.find_candidate(identifier)
            async with self.lock:
                # A tick may have dispatched it meanwhile; then the run is what gets stopped.
                message = await self.controls.stop_claimed(identifier, uid)
                if message is None:
                    message = await self.controls.hold_waiting(found, uid)
        self.engine.changed()
        return message

    async def drain(self, host: str, drained: bool, uid: int | None) -> str:
        async with self.lock:
            message = await self.controls.drain(host, drained, uid)
        self.engine.changed()
        return message

    async def release(self, identifier: str, uid: int | None) -> str:
        async with self.lock:
            message = await self.controls.release(identifier, uid)
        self.engine.changed()
        return message

    def workspace_owners(self, identifier: str) -> list[str]:
        return self.engine.owners.hosts_of(identifier)

    def host_launcher(self, host: str) -> LauncherPort:
        return self.engine.hosts.launcher(host)

    def workspace_removed(self, identifier: str, host: str) -> None:
        """Prune removed (or found no) workspace there: forget that the host has one."""
        self.engine.owners.disown(identifier, host)
        self.engine.persist_if_dirty()

    async def forget_tokens(self, issue_ids: list[str]) -> list[str]:
        """Prune's last step, re-checked under the lock (symphonyd.dispatcher.prune)."""
        async with self.lock:
            return await self.controls.forget_tokens(issue_ids)

    # ------------------------------------------------------------------ read-only views

    def add_listener(self, fn: Callable[[], None]) -> None:
        self.engine.add_listener(fn)

    def next_retry_due_ms(self) -> int | None:
        return self.engine.next_retry_due_ms()

    def handoff_due_ms(self) -> int | None:
        """When a run's hand-off grace ends and a tick must look at it again."""
        return handoff_due_ms(self.engine.running.values())

    @property
    def settings(self) -> DispatchSettings:
        return self.engine.settings

    @property
    def clock(self) -> Clock:
        return self.engine.clock

    @property
    def tracker(self) -> TrackerPort:
        return self.engine.tracker

    @property
    def launcher(self) -> LauncherPort:
        return self.engine.launcher

    @property
    def running(self) -> Mapping[str, RunningEntry]:
        return self.engine.running

    @property
    def retries(self) -> Mapping[str, RetryEntry]:
        return self.engine.retries

    @property
    def claimed(self) -> set[str]:
        return self.engine.claimed

    @property
    def completed(self) -> set[str]:
        return self.engine.completed

    @property
    def running_by_state(self) -> Counter[str]:
        return self.engine.running_by_state

    @property
    def pending_stops(self) -> Mapping[str, StopRun]:
        return self.engine.pending_stops

    @property
    def resync_due(self) -> bool:
        return self.engine.resync_due

    @property
    def holds(self) -> HoldBook:
        return self.engine.holds

    @property
    def ledger(self) -> TokenLedger:
        return self.engine.ledger

    @property
    def pauses(self) -> PauseBook:
        return self.engine.pauses

    @property
    def paused(self) -> bool:
        return self.engine.paused

    @property
    def sweep(self) -> SweepBook:
        return self.engine.sweep
