"""The dispatcher's answer to the link: which issue a worker host may act on (design 1100).

A worker's agents reach the tracker's tools through the link daemon, which asks here, for
every call, whether the dispatcher has a run of that issue bound to that worker right now.
The answer comes from the running entries (the binding the state file also holds): once a
run finishes, is stopped or its host is lost (fenced), the worker can no longer act on the
issue. The socket serves this one method to the link's user and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable

from symphonyd.core.api.dispatcher import DISPATCHER_BOUND_ISSUE, BoundIssue, BoundIssueParams
from symphonyd.core.sockets import DISPATCHER_LINK
from symphonyd.dispatcher.orchestrator import Orchestrator
from symphonyd.runtime.ipc_server import IpcServer
from symphonyd.runtime.peer import Peer

LINK_USER = "symphony-link"


def bound_issue(orch: Orchestrator, params: BoundIssueParams) -> BoundIssue:
    entry = orch.running.get(params.issue_id)
    if entry is None or entry.host != params.host:
        return BoundIssue(None)
    return BoundIssue(entry.issue)


def link_server(orch: Orchestrator, uids: Iterable[int]) -> IpcServer:
    allowed = frozenset(uids)
    server = IpcServer(DISPATCHER_LINK.stem, allowed_uids=allowed, allow_root=0 in allowed)

    async def handle(params: BoundIssueParams, _: Peer) -> BoundIssue:
        return bound_issue(orch, params)

    server.handle(DISPATCHER_BOUND_ISSUE, handle)
    return server
