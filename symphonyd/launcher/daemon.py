"""symphony-launcher: serves ``launcher.*`` to the dispatcher and runs the agents.

The tracker (tool calls, issue refresh) and the audit writer are reached over their
launcher-owned sockets. Audit records are queued and delivered in batches by one task so a
slow or restarting audit writer never blocks a running agent; records are never dropped
silently (an overflow is logged with its count).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from pathlib import Path

from symphonyd import __version__
from symphonyd.core.errors import SymphonyError
from symphonyd.core.issue import Issue
from symphonyd.core.messages import (
    AUDIT_APPEND,
    HEALTH,
    LAUNCHER_ACK_RUNS,
    LAUNCHER_LIST_RUNS,
    LAUNCHER_REMOVE_WORKSPACE,
    LAUNCHER_START_RUN,
    LAUNCHER_STOP_RUN,
    LAUNCHER_SUBSCRIBE,
    LAUNCHER_WORKSPACE_AGES,
    TRACKER_FETCH_BY_IDS,
    TRACKER_PROFILE,
    TRACKER_REDACT,
    TRACKER_TOOL_CALL,
    TRACKER_TOOL_SPECS,
    AckRuns,
    AuditAppend,
    AuditEventIn,
    Empty,
    FetchByIds,
    Health,
    ListRuns,
    RedactText,
    RemoveWorkspace,
    RemoveWorkspaceResult,
    RunList,
    StartRun,
    StartRunResult,
    StopRun,
    StopRunResult,
    ToolCall,
    ToolResult,
    ToolSpecList,
    TrackerProfile,
    WorkspaceAges,
    WorkspaceAgesResult,
)
from symphonyd.launcher.service import LauncherService
from symphonyd.runtime.ipc_client import ReconnectingClient
from symphonyd.runtime.ipc_server import EventSink, IpcServer
from symphonyd.runtime.logging import log_event
from symphonyd.runtime.peer import Peer

log = logging.getLogger("symphonyd.launcher")
AUDIT_QUEUE_MAX = 10_000
# The writer refused the content itself; sending it again cannot succeed.
REJECTED = frozenset({"invalid_params", "invalid_input", "record_too_large"})
AUDIT_BATCH_MAX = 256


class TrackerClient:
    """``TrackerLink`` over the tracker daemon's launcher socket."""

    def __init__(self, path: str | Path) -> None:
        self._client = ReconnectingClient(path)

    async def fetch_by_ids(self, ids: list[str]) -> list[Issue]:
        return (await self._client.call(TRACKER_FETCH_BY_IDS, FetchByIds(ids))).issues

    async def tool_specs(self) -> ToolSpecList:
        return await self._client.call(TRACKER_TOOL_SPECS, Empty())

    async def tool_call(self, call: ToolCall) -> ToolResult:
        return await self._client.call(TRACKER_TOOL_CALL, call, timeout=300.0)

    async def profile(self) -> TrackerProfile:
        return await self._client.call(TRACKER_PROFILE, Empty())

    async def redact(self, text: str) -> str:
        return (await self._client.call(TRACKER_REDACT, RedactText(text))).text

    async def close(self) -> None:
        await self._client.close()


class AuditQueue:
    """Queues records and delivers them to the audit writer in order, retrying forever."""

    def __init__(self, path: str | Path) -> None:
        self._client = ReconnectingClient(path)
        self._queue: asyncio.Queue[AuditEventIn] = asyncio.Queue(AUDIT_QUEUE_MAX)
        self.dropped = 0
        self.delivered = 0
        self.rejected = 0

    def put(self, record: AuditEventIn) -> None:
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            self.dropped += 1
            log_event(
                log,
                "audit_queue",
                level=logging.ERROR,
                outcome="overflow",
                dropped=self.dropped,
                type=record.type,
            )

    async def run(self) -> None:
        backoff = 0.2
        while True:
            batch = [await self._queue.get()]
            while len(batch) < AUDIT_BATCH_MAX and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            while True:
                try:
                    await self._client.call(AUDIT_APPEND, AuditAppend(batch), timeout=30.0)
                except SymphonyError as exc:
                    if exc.error_code in REJECTED:
                        # Retrying a record the writer refuses would stall every later one.
                        await self._deliver_one_by_one(batch)
                        break
                    log_event(
                        log,
                        "audit_deliver",
                        level=logging.WARNING,
                        outcome="retrying",
                        error=exc.error_code,
                        pending=len(batch) + self._queue.qsize(),
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 10.0)
                    continue
                self.delivered += len(batch)
                for _ in batch:
                    self._queue.task_done()
                backoff = 0.2
                break

    async def _deliver_one_by_one(self, batch: list[AuditEventIn]) -> None:
        """After a rejected batch: each record alone, so only the refused ones are lost.

        Transport errors are retried (the record is not given up); a record the writer
        refuses is logged at error level with its type, never silently dropped.
        """
        for record in batch:
            while True:
                try:
                    await self._client.call(AUDIT_APPEND, AuditAppend([record]), timeout=30.0)
                    self.delivered += 1
                    break
                except SymphonyError as exc:
                    if exc.error_code in REJECTED:
                        self.rejected += 1
                        log_event(
                            log,
                            "audit_rejected",
                            level=logging.ERROR,
                            type=record.type,
                            error=exc.error_code,
                            message=exc.message,
                            issue_id=record.issue_id,
                        )
                        break
                    await asyncio.sleep(1.0)
            self._queue.task_done()

    async def drain(self, timeout: float) -> None:  # noqa: ASYNC109
        """Wait (bounded) until every queued record is acknowledged by the writer."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)

    async def close(self) -> None:
        await self._client.close()


def launcher_server(service: LauncherService, uids: Iterable[int]) -> IpcServer:
    allowed = frozenset(uids)
    server = IpcServer("launcher-dispatcher", allowed_uids=allowed, allow_root=0 in allowed)

    async def health(_: Empty, peer: Peer) -> Health:
        return Health("launcher", __version__, True, {"live_runs": service.live_count})

    async def start_run(req: StartRun, peer: Peer) -> StartRunResult:
        return await service.start_run(req)

    async def stop_run(req: StopRun, peer: Peer) -> StopRunResult:
        return await service.stop_run(req)

    async def list_runs(req: ListRuns, peer: Peer) -> RunList:
        return service.list_runs(req.after, req.limit)

    async def ack_runs(req: AckRuns, peer: Peer) -> Empty:
        service.ack_runs(req.run_ids)
        return Empty()

    async def remove_workspace(req: RemoveWorkspace, peer: Peer) -> RemoveWorkspaceResult:
        return await service.remove_workspace(req.identifier, req.workflow)

    async def workspace_ages(req: WorkspaceAges, peer: Peer) -> WorkspaceAgesResult:
        return WorkspaceAgesResult(service.workspace_ages(req.identifiers))

    async def subscribe(_: Empty, peer: Peer, sink: EventSink) -> Empty:
        service.subscribe(sink)
        return Empty()

    server.handle(HEALTH, health)
    server.handle(LAUNCHER_START_RUN, start_run)
    server.handle(LAUNCHER_STOP_RUN, stop_run, timeout=120.0)
    server.handle(LAUNCHER_LIST_RUNS, list_runs)
    server.handle(LAUNCHER_ACK_RUNS, ack_runs)
    server.handle(LAUNCHER_REMOVE_WORKSPACE, remove_workspace, timeout=120.0)
    server.handle(LAUNCHER_WORKSPACE_AGES, workspace_ages)
    server.subscription(LAUNCHER_SUBSCRIBE, subscribe)
    return server
