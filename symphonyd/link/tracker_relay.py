"""A worker's tracker calls, admitted only for issues the dispatcher bound to that worker.

The worker launcher's tracker client connects to a socket that OpenSSH forwards back to
the control host (``forward_argv``: one ``ssh -N -R`` session per worker, kept up here), so
each of its connections arrives on ``tracker-NAME.sock``, and only the link's own ``ssh``
child can connect there: which worker a call comes from is which socket it arrived on,
never anything the worker says. The relay serves the methods a run needs and forwards them
to the tracker's link socket (``tracker-link.sock``), where the credential stays:

- ``tracker.tool_specs``, ``tracker.profile``, ``tracker.redact``: no issue data (the tool
  list, the secret names a run must strip, the scrub of a prompt preview);
- ``tracker.fetch_by_ids`` (the refresh between turns) and ``tracker.tool_call``: only for
  issues the dispatcher has bound to this worker right now (``dispatcher.bound_issue``);
  a tool call carries the dispatcher's copy of the issue, not the worker's, so a forged id,
  identifier or URL in it cannot point the tool at another issue.

Everything else (the board listing, subscriptions, hints, health) is refused with a typed
error and a journal line, as is a call for an issue not bound here; when the dispatcher
cannot be asked, calls are refused (fail closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from symphonyd.core.api.dispatcher import DISPATCHER_BOUND_ISSUE, BoundIssueParams
from symphonyd.core.api.shared import HEALTH
from symphonyd.core.api.tracker import (
    TRACKER_FETCH_BY_IDS,
    TRACKER_FETCH_BY_STATES,
    TRACKER_HINT,
    TRACKER_PROFILE,
    TRACKER_REDACT,
    TRACKER_SUBSCRIBE,
    TRACKER_TOOL_CALL,
    TRACKER_TOOL_SPECS,
    FetchByIds,
    IssueList,
    ToolCall,
    ToolResult,
)
from symphonyd.core.errors import SymphonyError
from symphonyd.core.issue import Issue
from symphonyd.core.wire import MethodSpec
from symphonyd.link.redial import Redial
from symphonyd.runtime.ipc_client import ReconnectingClient
from symphonyd.runtime.ipc_server import IpcServer
from symphonyd.runtime.logging import log_event
from symphonyd.runtime.peer import Peer

log = logging.getLogger("symphonyd.link")
TOOL_TIMEOUT_S = 300.0  # the tracker's own bound on one tool call
ASK_TIMEOUT_S = 10.0
# The refresh between turns names the run's one issue; a longer list is not a run's.
MAX_IDS = 8
# Methods of the tracker a worker never gets: refused by name, with a journal line.
REFUSED: tuple[MethodSpec[Any, Any], ...] = (
    TRACKER_FETCH_BY_STATES,
    TRACKER_SUBSCRIBE,
    TRACKER_HINT,
    HEALTH,
)
_STDERR_TAIL = 2000


class TrackerRelay:
    """One tracker client and one dispatcher client, shared by every worker's server."""

    def __init__(self, tracker: str | Path, dispatcher: str | Path) -> None:
        self._tracker = ReconnectingClient(tracker)
        self._dispatcher = ReconnectingClient(dispatcher)

    def server(self, host: str) -> IpcServer:
        """The relay for ``host``: only this process's uid (its ``ssh`` child) may connect."""
        uid = os.getuid()
        server = IpcServer(f"link-tracker-{host}", allowed_uids={uid}, allow_root=uid == 0)
        for spec in (TRACKER_TOOL_SPECS, TRACKER_PROFILE, TRACKER_REDACT):
            server.handle(spec, self._passed(spec))

        async def fetch(params: FetchByIds, _: Peer) -> IssueList:
            if len(params.ids) > MAX_IDS:
                raise self._refuse(host, TRACKER_FETCH_BY_IDS.name, None, "too_many_ids")
            for issue_id in params.ids:
                await self._bound(host, TRACKER_FETCH_BY_IDS.name, issue_id)
            return await self._tracker.call(TRACKER_FETCH_BY_IDS, params, timeout=TOOL_TIMEOUT_S)

        async def tool_call(params: ToolCall, _: Peer) -> ToolResult:
            issue = await self._bound(host, TRACKER_TOOL_CALL.name, params.issue.id)
            call = replace(params, issue=issue)  # the dispatcher's copy, not the worker's
            result = await self._tracker.call(TRACKER_TOOL_CALL, call, timeout=TOOL_TIMEOUT_S)
            log_event(
                log,
                "link_tracker",
                host=host,
                method=TRACKER_TOOL_CALL.name,
                issue_id=issue.id,
                issue_identifier=issue.identifier,
                tool=params.tool[:80],
                outcome="relayed",
                success=result.success,
            )
            return result

        server.handle(TRACKER_FETCH_BY_IDS, fetch, timeout=TOOL_TIMEOUT_S)
        server.handle(TRACKER_TOOL_CALL, tool_call, timeout=TOOL_TIMEOUT_S + 10)
        for spec in REFUSED:
            server.handle(spec, self._refused(host, spec.name))
        return server

    def _passed(self, spec: MethodSpec[Any, Any]) -> Any:
        async def handler(params: Any, _: Peer) -> Any:
            return await self._tracker.call(spec, params)

        return handler

    def _refused(self, host: str, method: str) -> Any:
        async def handler(params: Any, _: Peer) -> Any:
            raise self._refuse(host, method, None, "method_not_allowed")

        return handler

    async def _bound(self, host: str, method: str, issue_id: str) -> Issue:
        try:
            reply = await self._dispatcher.call(
                DISPATCHER_BOUND_ISSUE, BoundIssueParams(host, issue_id), timeout=ASK_TIMEOUT_S
            )
        except SymphonyError as exc:
            raise self._refuse(
                host, method, issue_id, "dispatcher_unavailable", exc.error_code
            ) from None
        if reply.issue is None or reply.issue.id != issue_id:
            raise self._refuse(host, method, issue_id, "issue_not_bound")
        return reply.issue

    @staticmethod
    def _refuse(
        host: str, method: str, issue_id: str | None, reason: str, code: str | None = None
    ) -> SymphonyError:
        log_event(
            log,
            "link_tracker",
            level=logging.WARNING,
            host=host,
            method=method[:80],
            issue_id=None if issue_id is None else issue_id[:80],
            outcome="refused",
            reason=reason,
        )
        if reason == "dispatcher_unavailable":
            return SymphonyError(
                f"the dispatcher could not say which issues {host} may act on ({code})",
                code="unavailable",
            )
        if reason == "issue_not_bound":
            return SymphonyError(
                f"issue {issue_id!r} is not bound to worker host {host}", code="issue_not_bound"
            )
        return SymphonyError(f"{method} is not served to worker hosts", code=reason)

    async def close(self) -> None:
        await self._tracker.close()
        await self._dispatcher.close()


async def keep_forwarding(host: str, argv: Sequence[str], interval: float) -> None:
    """Hold the worker's tracker forward: one ``ssh -N -R`` session, reopened when it ends,
    later each time it ends quickly (``Redial``)."""
    redial = Redial(interval)
    while True:
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        log_event(log, "link_tracker", host=host, outcome="forwarding", pid=proc.pid)
        try:
            assert proc.stderr is not None
            err = await proc.stderr.read()
            code = await proc.wait()
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
                with contextlib.suppress(ProcessLookupError):
                    await asyncio.shield(proc.wait())
        delay = redial.after(time.monotonic() - started)
        log_event(
            log,
            "link_tracker",
            level=logging.WARNING,
            host=host,
            outcome="forward_ended",
            exit_code=code,
            stderr=err.decode(errors="replace").strip()[-_STDERR_TAIL:] or None,
            retry_in=delay,
        )
        await asyncio.sleep(delay)
