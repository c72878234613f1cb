"""One orchestrator wired to the in-memory doubles, with helpers to drive it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from symphonyd.core.api.launcher import RunEvent, RunOutcome
from symphonyd.dispatcher.engine import Engine
from symphonyd.dispatcher.orchestrator import Orchestrator
from symphonyd.dispatcher.store import StateStore
from tests.dispatcher.doubles import (
    FakeClock,
    FakeDisk,
    MemoryAudit,
    MemoryLauncher,
    MemoryTracker,
    MutableConfig,
    settings,
)


class Harness:
    def __init__(self, state_dir: Path, **cfg: Any) -> None:
        self.state_dir = state_dir
        self.clock = FakeClock()
        self.tracker = MemoryTracker()
        self.launcher = MemoryLauncher(self.clock.now)
        self.audit = MemoryAudit()
        self.config = MutableConfig(settings(**cfg))
        self.disk = FakeDisk()
        self.orch = self.new_orchestrator()

    def new_orchestrator(self) -> Orchestrator:
        return Orchestrator(
            Engine(
                tracker=self.tracker,
                launcher=self.launcher,
                audit=self.audit,
                config=self.config,
                store=StateStore(self.state_dir),
                clock=self.clock,
                disk=self.disk,
            )
        )

    async def restart(self) -> Orchestrator:
        """A crashed dispatcher comes back: fresh memory, same launcher, tracker and disk."""
        self.orch = self.new_orchestrator()
        await self.orch.start()
        return self.orch

    async def deliver(self) -> None:
        """Hand every pending launcher event to the dispatcher, in order."""
        while self.launcher.events:
            await self.orch.handle_run_event(self.launcher.events.pop(0))
        await self.orch.settle()

    def run_id(self, issue_id: str) -> str:
        return self.orch.running[issue_id].run_id

    async def finish(self, issue_id: str, status: str = "succeeded", **kw: Any) -> None:
        self.launcher.finish(self.run_id(issue_id), RunOutcome(status, **kw))  # type: ignore[arg-type]
        await self.deliver()

    async def send(self, issue_id: str, event: str, **kw: Any) -> None:
        """An agent event: the launcher records it on the run, then pushes it to us."""
        rid = self.run_id(issue_id)
        ev = RunEvent(rid, issue_id, event, self.clock.now().isoformat(), **kw)  # type: ignore[arg-type]
        self.launcher.record(ev)
        await self.orch.handle_run_event(ev)
