"""A dispatcher double: the real IPC server serving the dispatcher's control API.

The dashboard is the code under test; the dispatcher is its outside world here, so this
double answers ``dispatcher.*`` over a real Unix socket from a background event loop with a
snapshot the test controls, and pushes ``dispatcher.state_changed`` to subscribers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from symphonyd.core.api.dispatcher import (
    DISPATCHER_ISSUE,
    DISPATCHER_PAUSE,
    DISPATCHER_REFRESH,
    DISPATCHER_RELEASE,
    DISPATCHER_RESUME,
    DISPATCHER_SNAPSHOT,
    DISPATCHER_STATE_CHANGED,
    DISPATCHER_STOP,
    DISPATCHER_SUBSCRIBE,
    BudgetStatus,
    CodexTotals,
    ConfigStatus,
    ControlResult,
    DaemonHealthRow,
    HoldRow,
    IssueAttempts,
    IssueRefParams,
    IssueView,
    PauseParams,
    PauseReasonRow,
    PauseStatus,
    RecentEvent,
    RefreshResult,
    RetryRow,
    RunningRow,
    SnapshotCounts,
    StateChanged,
    StateSnapshot,
)
from symphonyd.core.api.shared import Empty, TokenTotals
from symphonyd.core.errors import SymphonyError
from symphonyd.dispatcher.controls import clean_reason
from symphonyd.runtime.ipc_server import EventSink, IpcServer
from symphonyd.runtime.peer import Peer

T = TypeVar("T")
TS = "2026-11-22T06:00:00Z"
TITLES = [
    "Retry webhook deliveries with backoff",
    "Parser drops the last line of CRLF files",
    "Add a --json flag to the export command",
    "Flaky test: test_reconnect_after_timeout",
    "Document the upgrade path from 1.x",
    "Crash when the config file is empty",
    "Speed up the cold start of the worker",
]


def running_row(
    i: int, *, message: str = "working on tests", ident: str | None = None
) -> RunningRow:
    return RunningRow(
        issue_id=f"id-{i}",
        issue_identifier=ident or f"MT-{i}",
        issue_url=f"https://tracker.invalid/issues/MT-{i}",
        state="In Progress",
        run_id=f"run-{i}",
        attempt=None,
        session_id=f"thread-{i}-turn-3",
        turn_count=3 + i % 7,
        last_event="turn_completed",
        last_message=message,
        started_at=TS,
        last_event_at=TS,
        tokens=TokenTotals(1200 + i, 800 + i, 2000 + 2 * i),
        workspace_path=f"/var/lib/symphony/workspaces/MT-{i}",
        issue_title=TITLES[i % len(TITLES)],
        host=f"w{i % 2 + 1}",  # worker hosts configured: rows name their host
    )


def snapshot(running: int = 2, *, message: str = "working on tests") -> StateSnapshot:
    rows = [running_row(i, message=message) for i in range(1, running + 1)]
    retry = RetryRow(
        "id-900", "MT-900", None, 3, "2026-11-22T06:05:00Z", "turn_failed: tests red", host="w2"
    )
    hold = HoldRow("id-901", "MT-901", "blocked", "turn_input_required", TS)
    return StateSnapshot(
        generated_at=TS,
        counts=SnapshotCounts(len(rows), 1, 1),
        running=rows,
        retrying=[retry],
        held=[hold],
        codex_totals=CodexTotals(5000, 2400, 7400, 1834.2),
        rate_limits=None,
        pause=PauseStatus(False, []),
        budgets=BudgetStatus(100000, 2000000, "2026-11-22", 7400),
        daemons=[
            DaemonHealthRow("tracker", True, None, TS),
            DaemonHealthRow("launcher", True, None, TS),
            DaemonHealthRow("audit", True, None, TS),
        ],
        config=ConfigStatus(True, "/etc/symphony/WORKFLOW.md", "abc", TS, None),
        poll_interval_ms=30000,
        max_concurrent_agents=10,
    )


class DispatcherDouble:
    def __init__(self, path: Path, snap: StateSnapshot | None = None) -> None:
        self.path = path
        self.snap = snap or snapshot()
        self.calls: list[tuple[str, Any, int]] = []
        self._sinks: set[EventSink] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        uid = os.getuid()
        self._server = IpcServer("dispatcher-double", allowed_uids={uid}, allow_root=uid == 0)
        self._register()

    # ------------------------------------------------------------------ control from tests

    def start(self) -> DispatcherDouble:
        self._thread.start()
        self._run(self._server.start_path(self.path))
        return self

    def stop(self) -> None:
        self._run(self._server.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> DispatcherDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def update(self, change: Callable[[StateSnapshot], StateSnapshot]) -> None:
        """Replace the snapshot and push it, as the dispatcher does after a state change."""

        async def apply() -> None:
            self.snap = change(self.snap)
            self._push()

        self._run(apply())

    def subscribers(self) -> int:
        async def count() -> int:
            return sum(1 for s in self._sinks if not s.closed)

        result: int = self._run(count())
        return result

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    # ------------------------------------------------------------------ served methods

    def _push(self) -> None:
        for sink in list(self._sinks):
            if not sink.send(DISPATCHER_STATE_CHANGED, StateChanged(self.snap)):
                self._sinks.discard(sink)

    def _register(self) -> None:
        s = self._server

        async def snap(_: Empty, __: Peer) -> StateSnapshot:
            return self.snap

        async def subscribe(_: Empty, __: Peer, sink: EventSink) -> Empty:
            self._sinks.add(sink)
            return Empty()

        async def pause(p: PauseParams, peer: Peer) -> ControlResult:
            clean_reason(p.reason)  # refuses what the real dispatcher refuses (a blank reason)
            self.calls.append(("pause", p.reason, peer.uid))
            reason = PauseReasonRow("operator", p.reason, TS, peer.uid)
            self.snap = dataclasses.replace(self.snap, pause=PauseStatus(True, [reason]))
            self._push()
            return ControlResult(True, "paused")

        async def resume(_: Empty, peer: Peer) -> ControlResult:
            self.calls.append(("resume", None, peer.uid))
            self.snap = dataclasses.replace(self.snap, pause=PauseStatus(False, []))
            self._push()
            return ControlResult(True, "resumed")

        async def stop(p: IssueRefParams, peer: Peer) -> ControlResult:
            self.calls.append(("stop", p.identifier, peer.uid))
            self._find(p.identifier)
            return ControlResult(True, f"stopping {p.identifier}")

        async def release(p: IssueRefParams, peer: Peer) -> ControlResult:
            self.calls.append(("release", p.identifier, peer.uid))
            if not any(h.issue_identifier == p.identifier for h in self.snap.held):
                raise SymphonyError(f"{p.identifier} is not held", code="not_held")
            return ControlResult(True, f"released {p.identifier}")

        async def refresh(_: Empty, __: Peer) -> RefreshResult:
            self.calls.append(("refresh", None, 0))
            return RefreshResult(True, False, TS, ["poll", "reconcile"])

        async def issue(p: IssueRefParams, _: Peer) -> IssueView:
            row = self._find(p.identifier)
            return IssueView(
                issue_identifier=row.issue_identifier,
                issue_id=row.issue_id,
                status="running",
                workspace_path=row.workspace_path,
                attempts=IssueAttempts(1, None),
                running=row,
                retry=None,
                hold=None,
                recent_events=[RecentEvent(TS, "turn_completed", row.last_message)],
                last_error=None,
                tokens_used=row.tokens.total_tokens,
            )

        s.handle(DISPATCHER_SNAPSHOT, snap)
        s.subscription(DISPATCHER_SUBSCRIBE, subscribe)
        s.handle(DISPATCHER_PAUSE, pause)
        s.handle(DISPATCHER_RESUME, resume)
        s.handle(DISPATCHER_STOP, stop)
        s.handle(DISPATCHER_RELEASE, release)
        s.handle(DISPATCHER_REFRESH, refresh)
        s.handle(DISPATCHER_ISSUE, issue)

    def _find(self, identifier: str) -> RunningRow:
        for row in self.snap.running:
            if row.issue_identifier == identifier:
                return row
        raise SymphonyError(f"no issue {identifier}", code="issue_not_found")
