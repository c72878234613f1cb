"""In-memory stand-ins for the tracker, launcher and audit daemons, plus a manual clock.

They model the outside world the way the real daemons behave at their IPC contract: the
launcher keeps runs until they finish and are acknowledged, stop_run ends a run and emits a
cancelled run_finished, and every call can be made to fail.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import shutil
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from symphonyd.core.api.audit import AuditEventIn
from symphonyd.core.api.launcher import (
    RootEntry,
    RunEvent,
    RunInfo,
    RunOutcome,
    StartRun,
    StartRunResult,
    StopRun,
    StopRunResult,
    WorkflowSnapshot,
    WorkspaceListing,
)
from symphonyd.core.api.shared import TokenTotals
from symphonyd.core.audit_events import CLIENT_TYPES
from symphonyd.core.errors import SymphonyError, TrackerError, WorkflowError
from symphonyd.core.issue import Issue, state_key
from symphonyd.core.workspace_paths import workspace_key
from symphonyd.dispatcher.ports import DispatchSettings, LoadedConfig
from symphonyd.launcher.workspace import WorkspaceManager

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def run_async(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        # The bound only turns a hang into a failure with a traceback; it asserts nothing.
        asyncio.run(asyncio.wait_for(fn(*args, **kwargs), 180))

    return wrapper


class FakeClock:
    def __init__(self, start: datetime = T0) -> None:
        self._now = start
        self._ms = 1_000_000

    def monotonic_ms(self) -> int:
        return self._ms

    def now(self) -> datetime:
        return self._now

    def advance(self, ms: int) -> None:
        self._ms += ms
        self._now += timedelta(milliseconds=ms)


def issue(
    n: int,
    state: str = "Todo",
    *,
    priority: int | None = None,
    created: datetime | None = None,
    labels: tuple[str, ...] = (),
    dispatchable: bool = True,
    updated: datetime | None = None,
) -> Issue:
    return Issue(
        id=f"id-{n}",
        identifier=f"MT-{n}",
        title=f"Issue {n}",
        state=state,
        dispatchable=dispatchable,
        priority=priority,
        created_at=created or T0 - timedelta(days=1, minutes=n),
        updated_at=updated,
        labels=labels,
        url=f"https://tracker.test/MT-{n}",
    )


class MemoryTracker:
    def __init__(self, issues: list[Issue] | None = None) -> None:
        self.issues: dict[str, Issue] = {i.id: i for i in issues or []}
        self.fail = False
        self.calls: list[tuple[str, list[str]]] = []

    def put(self, *issues: Issue) -> None:
        for i in issues:
            self.issues[i.id] = i

    def move(self, issue_id: str, state: str, updated: datetime | None = None) -> None:
        self.issues[issue_id] = replace(self.issues[issue_id], state=state, updated_at=updated)

    async def fetch_by_states(self, states: list[str]) -> list[Issue]:
        self.calls.append(("states", states))
        if self.fail:
            raise TrackerError("tracker down", code="tracker_transport")
        keys = {state_key(s) for s in states}
        return [i for i in self.issues.values() if state_key(i.state) in keys]

    async def fetch_by_ids(self, ids: list[str]) -> list[Issue]:
        self.calls.append(("ids", ids))
        if self.fail:
            raise TrackerError("tracker down", code="tracker_transport")
        return [self.issues[i] for i in ids if i in self.issues]


@dataclass
class FakeRun:
    info: RunInfo
    request: StartRun | None = None
    stop: StopRun | None = None


class MemoryLauncher:
    def __init__(self, now: Callable[[], datetime] | None = None) -> None:
        self.now = now or (lambda: datetime.now(UTC))
        self.runs: dict[str, FakeRun] = {}
        self.started: list[StartRun] = []
        self.stopped: list[StopRun] = []
        self.removed: list[str] = []
        self.acked: list[str] = []
        self.events: list[RunEvent] = []  # pending, delivered by the test
        self.fail = False
        self.workspace_root: Path | None = None  # real directories whose ages it reports
        self.unjudgeable: set[str] = set()  # identifiers whose age it will not report
        self.reject = False

    def live(self) -> list[FakeRun]:
        return [r for r in self.runs.values() if r.info.outcome is None]

    def live_for(self, issue_id: str) -> list[FakeRun]:
        return [r for r in self.live() if r.info.issue_id == issue_id]

    async def start_run(self, req: StartRun) -> StartRunResult:
        if self.fail:
            raise SymphonyError("launcher down", code="unavailable")
        if self.reject:
            return StartRunResult(req.run_id, False, "sandbox_failed")
        self.started.append(req)
        info = RunInfo(
            req.run_id, req.issue.id, req.issue.identifier, req.attempt, self.now().isoformat()
        )
        self.runs[req.run_id] = FakeRun(info, request=req)
        return StartRunResult(req.run_id, True)

    def finish(
        self, run_id: str, outcome: RunOutcome, at: str = "2026-03-01T12:00:00Z"
    ) -> RunEvent:
        run = self.runs[run_id]
        run.info = replace(run.info, outcome=outcome)
        ev = RunEvent(run_id, run.info.issue_id, "run_finished", at, outcome=outcome)
        self.events.append(ev)
        return ev

    def record(self, ev: RunEvent) -> None:
        run = self.runs.get(ev.run_id)
        if run is None:
            return
        info = run.info
        run.info = replace(
            info,
            tokens=ev.tokens or info.tokens,
            session_id=ev.session_id or info.session_id,
            turn_count=ev.turn_count if ev.turn_count is not None else info.turn_count,
            last_event=ev.event,
            last_event_at=ev.at,
        )

    async def stop_run(self, req: StopRun) -> StopRunResult:
        if self.fail:
            raise SymphonyError("launcher down", code="unavailable")
        self.stopped.append(req)
        run = self.runs.get(req.run_id)
        if run is None or run.info.outcome is not None:
            return StopRunResult(False)
        run.stop = req
        if req.cleanup_workspace:
            self.removed.append(run.info.issue_identifier)
        self.finish(req.run_id, RunOutcome("cancelled", error=req.reason))
        return StopRunResult(True)

    async def list_runs(self) -> list[RunInfo]:
        if self.fail:
            raise SymphonyError("launcher down", code="unavailable")
        return [r.info for r in self.runs.values()]

    async def ack_runs(self, run_ids: list[str]) -> None:
        if self.fail:
            raise SymphonyError("launcher down", code="unavailable")
        for rid in run_ids:
            run = self.runs.get(rid)
            if run is not None and run.info.outcome is not None:
                del self.runs[rid]
                self.acked.append(rid)

    async def remove_workspace(
        self,
        identifier: str,
        *,
        min_idle_s: float | None = None,
        workflow: WorkflowSnapshot | None = None,
    ) -> bool:
        if self.fail:
            raise SymphonyError("launcher down", code="unavailable")
        path = (self.workspace_root or Path("/nonexistent")) / workspace_key(identifier)
        # Like the launcher: a workspace used since the age cleanup decision is kept.
        fresh = not path.is_dir() or time.time() - path.stat().st_mtime < (min_idle_s or 0)
        if min_idle_s is not None and self.workspace_root is not None and fresh:
            return False
        self.removed.append(identifier)
        if self.workspace_root is not None and path.is_dir():
            shutil.rmtree(path)
        return True

    async def list_workspaces(self, workflow: WorkflowSnapshot | None) -> WorkspaceListing:
        """The real directories under ``workspace_root``, as the launcher lists them."""
        if self.fail:
            raise SymphonyError("launcher down", code="unavailable")
        root = self.workspace_root or Path("/nonexistent")
        entries = []
        for e in WorkspaceManager(root).survey():
            idle = None if e.last_used is None else time.time() - e.last_used
            entries.append(RootEntry(e.name, idle, e.problem))
        return WorkspaceListing(str(root), entries)

    async def workspace_ages(self, identifiers: list[str]) -> dict[str, float | None]:
        ages: dict[str, float | None] = {}
        for identifier in identifiers:
            if identifier in self.unjudgeable:
                continue
            path = (self.workspace_root or Path("/nonexistent")) / workspace_key(identifier)
            ages[identifier] = time.time() - path.stat().st_mtime if path.is_dir() else None
        return ages


class MemoryAudit:
    def __init__(self) -> None:
        self.records: list[AuditEventIn] = []
        self.fail = False

    async def append(self, records: list[AuditEventIn]) -> None:
        if self.fail:
            raise ConnectionRefusedError("audit socket refused")
        for r in records:
            # The real writer refuses types outside the shared vocabulary.
            assert r.type in CLIENT_TYPES, r.type
        self.records.extend(records)

    async def probe(self) -> None:
        if self.fail:
            raise ConnectionRefusedError("audit socket refused")

    def types(self) -> list[str]:
        return [r.type for r in self.records]


def settings(**overrides: Any) -> DispatchSettings:
    base: dict[str, Any] = {"stall_timeout_ms": 300_000, "max_concurrent_agents": 10}
    base.update(overrides)
    return DispatchSettings(**base)


@dataclass
class MutableConfig:
    """A ConfigSource whose file the test edits; ``broken`` simulates a bad edit."""

    settings: DispatchSettings = field(default_factory=settings)
    prompt: str = "Work on {{ issue.identifier }}"
    broken: str | None = None

    def load(self) -> LoadedConfig:
        if self.broken is not None:
            raise WorkflowError(self.broken, code="workflow_parse_error")
        text = f"{self.settings!r}\n{self.prompt}"
        fp = hashlib.sha256(text.encode()).hexdigest()
        return LoadedConfig(
            self.settings, WorkflowSnapshot("/etc/symphony/WORKFLOW.md", {}, self.prompt, fp)
        )


class FakeDisk:
    def __init__(self, free: int | None = 10**12) -> None:
        self.free = free

    def free_bytes(self, path: str) -> int | None:
        return self.free


def tokens(total: int) -> TokenTotals:
    return TokenTotals(
        input_tokens=total // 2, output_tokens=total - total // 2, total_tokens=total
    )
