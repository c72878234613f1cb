"""Tracker, launcher and audit daemons served over real Unix sockets for integration tests.

The dispatcher under test talks to them through its production IPC clients; the state
behind each socket is one of the in-memory doubles.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from symphonyd.core.api.audit import AUDIT_APPEND, AUDIT_HEAD, AuditAck, AuditAppend, AuditHead
from symphonyd.core.api.launcher import (
    LAUNCHER_ACK_RUNS,
    LAUNCHER_LIST_RUNS,
    LAUNCHER_REMOVE_WORKSPACE,
    LAUNCHER_RUN_EVENT,
    LAUNCHER_START_RUN,
    LAUNCHER_STOP_RUN,
    LAUNCHER_SUBSCRIBE,
    LAUNCHER_WORKSPACE_AGES,
    AckRuns,
    ListRuns,
    RemoveWorkspace,
    RemoveWorkspaceResult,
    RunEvent,
    RunList,
    StartRun,
    StartRunResult,
    StopRun,
    StopRunResult,
    WorkspaceAges,
    WorkspaceAgesResult,
)
from symphonyd.core.api.shared import Empty
from symphonyd.core.api.tracker import (
    TRACKER_CHANGED,
    TRACKER_FETCH_BY_IDS,
    TRACKER_FETCH_BY_STATES,
    TRACKER_SUBSCRIBE,
    FetchByIds,
    FetchByStates,
    IssueList,
    TrackerChanged,
)
from symphonyd.core.errors import SymphonyError
from symphonyd.runtime.ipc_server import EventSink, IpcServer
from symphonyd.runtime.peer import Peer
from tests.dispatcher.doubles import MemoryAudit, MemoryLauncher, MemoryTracker


def _server(name: str) -> IpcServer:
    return IpcServer(name, allowed_uids={os.getuid()}, allow_root=True)


class SocketWorld:
    """The three daemons the dispatcher is a client of, each on its own socket."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tracker = MemoryTracker()
        self.launcher = MemoryLauncher()
        self.launcher.workspace_root = root / "ws"
        self.old_launchers: list[MemoryLauncher] = []  # before restart_launcher()
        self.audit = MemoryAudit()
        self.sinks: set[EventSink] = set()
        self.servers: dict[str, IpcServer] = {}
        self.audit_at_start: list[int] = []  # audit record count seen by each start_run
        self.subscriptions = 0  # launcher event stream subscriptions so far
        # tracker.changed: refused unless a test turns it on (the dispatcher then polls only)
        self.tracker_events = False
        self.tracker_sinks: set[EventSink] = set()
        self.fetches = 0  # tracker.fetch_by_states calls: one per tick
        # tracker.fetch_by_ids: the pages asked for, the most in flight at once, a delay per
        # page (so pipelined pages overlap) and ids whose page gets an error reply
        self.id_pages: list[list[str]] = []
        self.ids_in_flight = self.ids_in_flight_max = 0
        self.ids_delay_s = 0.0
        self.refuse_ids: set[str] = set()
        self.refuse_states = False  # tracker.fetch_by_states gets an error reply

    def path(self, name: str) -> Path:
        return self.root / f"{name}-dispatcher.sock"

    async def start(self) -> None:
        self.servers = {"tracker": self._tracker_server(), "launcher": self._launcher_server()}
        for name, server in self.servers.items():
            await server.start_path(self.path(name))
        await self.start_audit()

    def _tracker_server(self) -> IpcServer:
        tracker = _server("tracker")
        tracker.handle(TRACKER_FETCH_BY_STATES, self._by_states)
        tracker.handle(TRACKER_FETCH_BY_IDS, self._by_ids)
        tracker.subscription(TRACKER_SUBSCRIBE, self._tracker_subscribe)
        return tracker

    async def restart_tracker(self) -> None:
        """The tracker process goes away (its event stream with it) and comes back."""
        await self.stop_server("tracker")
        self.tracker_sinks.clear()
        self.servers["tracker"] = self._tracker_server()
        await self.servers["tracker"].start_path(self.path("tracker"))

    def _launcher_server(self) -> IpcServer:
        launcher = _server("launcher")
        launcher.handle(LAUNCHER_START_RUN, self._start)
        launcher.handle(LAUNCHER_STOP_RUN, self._stop)
        launcher.handle(LAUNCHER_LIST_RUNS, self._list)
        launcher.handle(LAUNCHER_ACK_RUNS, self._ack)
        launcher.handle(LAUNCHER_REMOVE_WORKSPACE, self._remove)
        launcher.handle(LAUNCHER_WORKSPACE_AGES, self._ages)
        launcher.subscription(LAUNCHER_SUBSCRIBE, self._subscribe)
        return launcher

    async def start_audit(self) -> None:
        audit = _server("audit")
        audit.handle(AUDIT_APPEND, self._append)
        audit.handle(AUDIT_HEAD, self._head)
        self.servers["audit"] = audit
        await audit.start_path(self.path("audit"))

    async def restart_launcher(self, *, lose_runs: bool = True) -> None:
        """The launcher process goes away (dropping every connection, the event stream
        included) and a new one binds the same socket. A real launcher keeps its run table
        in memory, so by default the new one has none of the old runs."""
        await self.stop_server("launcher")
        self.sinks.clear()
        if lose_runs:
            fresh = MemoryLauncher()
            fresh.workspace_root = self.launcher.workspace_root
            self.old_launchers.append(self.launcher)
            self.launcher = fresh
        launcher = self._launcher_server()
        self.servers["launcher"] = launcher
        await launcher.start_path(self.path("launcher"))

    async def stop_server(self, name: str) -> None:
        await self.servers.pop(name).close()

    async def close(self) -> None:
        for server in self.servers.values():
            await server.close()

    def emit_pending(self) -> None:
        """Push the launcher double's queued run events to every subscriber."""
        while self.launcher.events:
            ev = self.launcher.events.pop(0)
            for sink in list(self.sinks):
                sink.send(LAUNCHER_RUN_EVENT, ev)

    def emit(self, ev: RunEvent) -> None:
        self.launcher.record(ev)
        for sink in list(self.sinks):
            sink.send(LAUNCHER_RUN_EVENT, ev)

    def tracker_changed(self, *issue_ids: str) -> int:
        """Push tracker.changed to every subscriber; returns how many took it."""
        sent = [s for s in list(self.tracker_sinks)
                if s.send(TRACKER_CHANGED, TrackerChanged("test", list(issue_ids)))]  # fmt: skip
        return len(sent)

    async def _tracker_subscribe(self, _: Empty, __: Peer, sink: EventSink) -> Empty:
        if not self.tracker_events:
            raise SymphonyError("this tracker pushes no events", code="unavailable")
        self.tracker_sinks.add(sink)
        return Empty()

    async def _by_states(self, p: FetchByStates, _: Peer) -> IssueList:
        self.fetches += 1
        if self.refuse_states:
            raise SymphonyError("board read refused", code="tracker_status")
        return IssueList(await self.tracker.fetch_by_states(p.states))

    async def _by_ids(self, p: FetchByIds, _: Peer) -> IssueList:
        self.id_pages.append(p.ids)
        self.ids_in_flight += 1
        self.ids_in_flight_max = max(self.ids_in_flight_max, self.ids_in_flight)
        try:
            if self.ids_delay_s:
                await asyncio.sleep(self.ids_delay_s)
            if self.refuse_ids.intersection(p.ids):
                raise SymphonyError("page refused", code="tracker_status")
            return IssueList(await self.tracker.fetch_by_ids(p.ids))
        finally:
            self.ids_in_flight -= 1

    async def _start(self, p: StartRun, _: Peer) -> StartRunResult:
        self.audit_at_start.append(len(self.audit.records))
        return await self.launcher.start_run(p)

    async def _stop(self, p: StopRun, _: Peer) -> StopRunResult:
        res = await self.launcher.stop_run(p)
        self.emit_pending()
        return res

    async def _list(self, _: ListRuns, __: Peer) -> RunList:
        return RunList(await self.launcher.list_runs())

    async def _ack(self, p: AckRuns, _: Peer) -> Empty:
        await self.launcher.ack_runs(p.run_ids)
        return Empty()

    async def _remove(self, p: RemoveWorkspace, _: Peer) -> RemoveWorkspaceResult:
        return RemoveWorkspaceResult(await self.launcher.remove_workspace(p.identifier))

    async def _ages(self, p: WorkspaceAges, _: Peer) -> WorkspaceAgesResult:
        return WorkspaceAgesResult(await self.launcher.workspace_ages(p.identifiers))

    async def _subscribe(self, _: Empty, __: Peer, sink: EventSink) -> Empty:
        self.sinks.add(sink)
        self.subscriptions += 1
        return Empty()

    async def _head(self, _: Empty, __: Peer) -> AuditHead:
        return AuditHead(len(self.audit.records), "0" * 64)

    async def _append(self, p: AuditAppend, _: Peer) -> AuditAck:
        await self.audit.append(p.records)
        n = len(self.audit.records)
        return AuditAck(list(range(n - len(p.records) + 1, n + 1)), "0" * 64)


@contextlib.asynccontextmanager
async def socket_world() -> AsyncIterator[SocketWorld]:
    # AF_UNIX paths are limited to 108 bytes; pytest's tmp_path can be longer.
    root = Path(tempfile.mkdtemp(prefix="sydisp"))
    world = SocketWorld(root)
    try:
        await world.start()
        yield world
    finally:
        await world.close()
        shutil.rmtree(root, ignore_errors=True)


async def eventually(check: object, what: str, timeout: float = 20.0) -> None:
    """Poll ``check()`` until true; the timeout only prevents a hang."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.02)
