"""The orchestrator's ports over IPC: tracker, launcher and audit clients.

Each keeps one connection, opened on first use and reopened after it drops, so a daemon
restart costs the dispatcher one failed call, never a restart of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from symphonyd.core.api.audit import AUDIT_APPEND, AUDIT_HEAD, AuditAppend, AuditEventIn
from symphonyd.core.api.launcher import (
    LAUNCHER_ACK_RUNS,
    LAUNCHER_LIST_RUNS,
    LAUNCHER_LIST_WORKSPACES,
    LAUNCHER_REMOVE_WORKSPACE,
    LAUNCHER_RUN_EVENT,
    LAUNCHER_START_RUN,
    LAUNCHER_STOP_RUN,
    LAUNCHER_SUBSCRIBE,
    LAUNCHER_WORKSPACE_AGES,
    AckRuns,
    ListRuns,
    ListWorkspaces,
    RemoveWorkspace,
    RunEvent,
    RunInfo,
    StartRun,
    StartRunResult,
    StopRun,
    StopRunResult,
    WorkflowSnapshot,
    WorkspaceAges,
    WorkspaceListing,
)
from symphonyd.core.api.shared import Empty
from symphonyd.core.api.tracker import (
    TRACKER_FETCH_BY_IDS,
    TRACKER_FETCH_BY_STATES,
    FetchByIds,
    FetchByStates,
)
from symphonyd.core.issue import Issue
from symphonyd.core.wire import DEFAULT_MAX_FRAME, MethodSpec
from symphonyd.dispatcher.hosts import HostUnreachableError
from symphonyd.runtime.ipc_client import IpcClient
from symphonyd.runtime.logging import log_event

# Keep every request and reply well under the 1 MiB frame limit, however many issues or
# records one tick handles.
IDS_PER_FETCH = 100
# fetch_by_ids pages in flight at once: enough to keep the tracker daemon and the dispatcher
# busy at the same time, few enough that a provider sees a handful of concurrent reads.
PAGES_IN_FLIGHT = 4
RECORDS_PER_APPEND = 200
PROBE_AFTER = 2**53  # a list_runs cursor past any run: an empty, cheap answer
P = TypeVar("P")
R = TypeVar("R")
log = logging.getLogger("symphonyd.dispatcher")


class Link:
    """A lazily (re)connected IpcClient to one socket."""

    def __init__(
        self, path: str | Path, *, timeout: float = 30.0, max_frame: int = DEFAULT_MAX_FRAME
    ) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.max_frame = max_frame
        self._client: IpcClient | None = None
        self._connecting = asyncio.Lock()

    async def client(self) -> IpcClient:
        async with self._connecting:
            if self._client is None or self._client.closed:
                self._client = await IpcClient.connect(self.path, max_frame=self.max_frame)
            return self._client

    async def call(self, spec: MethodSpec[P, R], params: P) -> R:
        client = await self.client()
        return await client.call(spec, params, timeout=self.timeout)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


class HostLink(Link):
    """A worker host's launcher through the link: each new connection is probed with one
    harmless call before it carries a request. A connection that fails the probe has
    delivered nothing (the link's ssh could not reach the worker), which is what tells
    ``host_unreachable`` (try another host) from a request lost in flight (design 1100)."""

    async def client(self) -> IpcClient:
        async with self._connecting:
            if self._client is None or self._client.closed:
                self._client = None
                try:
                    client = await IpcClient.connect(self.path, max_frame=self.max_frame)
                except Exception as exc:
                    raise HostUnreachableError(str(exc) or type(exc).__name__) from exc
                try:
                    await client.call(
                        LAUNCHER_LIST_RUNS, ListRuns(PROBE_AFTER), timeout=self.timeout
                    )
                except Exception as exc:
                    with contextlib.suppress(Exception):
                        await client.close()
                    why = str(exc) or type(exc).__name__
                    raise HostUnreachableError(
                        f"{self.path.name}: no answer through the link ({why})"
                    ) from exc
                self._client = client
            return self._client


class PageNotSentError(Exception):
    """A fetch_by_ids page left unsent because another page had failed."""


class TrackerClient:
    def __init__(self, link: Link) -> None:
        self.link = link

    async def fetch_by_states(self, states: list[str]) -> list[Issue]:
        return (await self.link.call(TRACKER_FETCH_BY_STATES, FetchByStates(states))).issues

    async def fetch_by_ids(self, ids: list[str]) -> list[Issue]:
        """Every id's current snapshot, in pages of IDS_PER_FETCH with up to PAGES_IN_FLIGHT
        of them in flight (pipelined on the one connection). The answer is the pages'
        issues in page order, and a failed page fails the whole call with the error the
        earliest failed page raised, as when the pages went one after the other; the pages
        still in flight then are cancelled and no further page is sent (they only read)."""
        pages = [ids[i : i + IDS_PER_FETCH] for i in range(0, len(ids), IDS_PER_FETCH)]
        if len(pages) <= 1:
            return [i for page in pages for i in await self._page(page)]
        gate = asyncio.Semaphore(PAGES_IN_FLIGHT)
        failed = False

        async def gated(page: list[str]) -> list[Issue]:
            nonlocal failed
            async with gate:
                if failed:
                    raise PageNotSentError("another fetch_by_ids page failed")
                try:
                    return await self._page(page)
                except BaseException:
                    failed = True
                    raise

        tasks = [asyncio.ensure_future(gated(page)) for page in pages]
        try:
            out: list[Issue] = []
            not_sent: PageNotSentError | None = None
            for task in tasks:
                try:
                    out.extend(await task)
                except PageNotSentError as exc:
                    not_sent = exc  # the page that failed raises when its turn comes
            if not_sent is not None:
                raise not_sent
            return out
        finally:
            for task in tasks:
                task.cancel()
            # Wait for the cancelled ones so none is left running after an error.
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _page(self, ids: list[str]) -> list[Issue]:
        return (await self.link.call(TRACKER_FETCH_BY_IDS, FetchByIds(ids))).issues


class LauncherClient:
    def __init__(self, link: Link) -> None:
        self.link = link

    async def start_run(self, req: StartRun) -> StartRunResult:
        return await self.link.call(LAUNCHER_START_RUN, req)

    async def stop_run(self, req: StopRun) -> StopRunResult:
        return await self.link.call(LAUNCHER_STOP_RUN, req)

    async def list_runs(self) -> list[RunInfo]:
        """Every run the launcher lists, page by page (one reply for 10 000 runs would not
        fit in an IPC frame, and a failed list_runs leaves finished runs unprocessed)."""
        runs: list[RunInfo] = []
        after: int | None = 0
        while after is not None:
            page = await self.link.call(LAUNCHER_LIST_RUNS, ListRuns(after))
            runs.extend(page.runs)
            after = page.next_after
        return runs

    async def ack_runs(self, run_ids: list[str]) -> None:
        await self.link.call(LAUNCHER_ACK_RUNS, AckRuns(run_ids))

    async def remove_workspace(
        self,
        identifier: str,
        *,
        min_idle_s: float | None = None,
        workflow: WorkflowSnapshot | None = None,
    ) -> bool:
        req = RemoveWorkspace(identifier, workflow, min_idle_s=min_idle_s)
        return (await self.link.call(LAUNCHER_REMOVE_WORKSPACE, req)).removed

    async def list_workspaces(self, workflow: WorkflowSnapshot | None) -> WorkspaceListing:
        return await self.link.call(LAUNCHER_LIST_WORKSPACES, ListWorkspaces(workflow))

    async def workspace_ages(self, identifiers: list[str]) -> dict[str, float | None]:
        res = await self.link.call(LAUNCHER_WORKSPACE_AGES, WorkspaceAges(identifiers))
        return res.ages


class AuditClient:
    def __init__(self, link: Link) -> None:
        self.link = link

    async def append(self, records: list[AuditEventIn]) -> None:
        for i in range(0, len(records), RECORDS_PER_APPEND):
            await self.link.call(AUDIT_APPEND, AuditAppend(records[i : i + RECORDS_PER_APPEND]))

    async def probe(self) -> None:
        await self.link.call(AUDIT_HEAD, Empty())


async def follow_run_events(
    path: str | Path,
    on_event: Callable[[RunEvent], Awaitable[None]],
    on_connected: Callable[[], Awaitable[None]],
    *,
    retry_s: float = 1.0,
    on_lost: Callable[[str], Awaitable[None]] | None = None,
) -> None:
    """Subscribe to launcher.run_event forever, resubscribing after every drop.

    ``on_connected`` runs after each (re)subscription so the caller can resynchronise with
    ``launcher.list_runs``: events sent while we were away are not replayed. A loss is
    logged once, not once per reconnect attempt; the reconnect says how many attempts failed.
    ``on_lost`` runs once per loss (the first failure after a subscription, or at start).
    """
    failed_attempts = 0
    while True:
        client: IpcClient | None = None
        try:
            client = await IpcClient.connect(path)
            await client.call(LAUNCHER_SUBSCRIBE, Empty())
            log_event(log, "launcher_events", outcome="subscribed",
                      failed_attempts=failed_attempts or None)  # fmt: skip
            failed_attempts = 0
            await on_connected()
            async for item in client.events():
                if item.name == LAUNCHER_RUN_EVENT.name and isinstance(item.data, RunEvent):
                    await on_event(item.data)
            raise ConnectionError("the launcher closed the event stream")  # noqa: TRY301
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if failed_attempts == 0:
                log_event(log, "launcher_events", level=logging.WARNING, outcome="lost",
                          path=str(path), error=str(exc) or type(exc).__name__)  # fmt: skip
                if on_lost is not None:
                    await on_lost(str(exc) or type(exc).__name__)
            failed_attempts += 1
        finally:
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.close()
        await asyncio.sleep(retry_s)
