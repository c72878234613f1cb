"""symphony-tracker: serves ``tracker.*`` on sockets with disjoint method sets.

The dispatcher's socket offers reads (fetch by states / ids), the profile, health and the
``tracker.changed`` subscription (change_events.py); the launcher's socket offers the agent
tools, refresh by id, the profile and health. A compromised launcher cannot list the board
and the dispatcher cannot write to the tracker. With worker hosts, the link daemon gets the
launcher's set on ``tracker-link.sock`` and admits a worker's calls only for the issues
bound to it (symphonyd/link/tracker_relay.py); the webhook receiver gets ``tracker.hint``.
Tracker writes are sent to the audit writer (``audit.append``). ``startup`` is the wiring
``python -m symphonyd.tracker`` runs under the shared run loop.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from symphonyd.core.api.audit import AUDIT_APPEND, AuditAppend, AuditEventIn
from symphonyd.core.api.shared import HEALTH, Empty, Health
from symphonyd.core.api.tracker import (
    TRACKER_FETCH_BY_IDS,
    TRACKER_FETCH_BY_STATES,
    TRACKER_HINT,
    TRACKER_MAX_FRAME,
    TRACKER_PROFILE,
    TRACKER_REDACT,
    TRACKER_SUBSCRIBE,
    TRACKER_TOOL_CALL,
    TRACKER_TOOL_SPECS,
)
from symphonyd.core.errors import SymphonyError
from symphonyd.core.sockets import (
    AUDIT_TRACKER,
    TRACKER_DISPATCHER,
    TRACKER_LAUNCHER,
    TRACKER_LINK,
    TRACKER_WEBHOOK,
)
from symphonyd.runtime.activation import listen_fds
from symphonyd.runtime.daemon import Daemon, system_uid
from symphonyd.runtime.ipc_client import ReconnectingClient
from symphonyd.runtime.ipc_server import IpcServer, ServerLimits
from symphonyd.runtime.peer import Peer
from symphonyd.tracker import tools
from symphonyd.tracker.change_events import ChangeFeed, LocalFileEvents
from symphonyd.tracker.service import TrackerService
from symphonyd.tracker.webhook_hints import WebhookHints
from symphonyd.tracker.workflow_source import workflow_source

log = logging.getLogger(__name__)
DISPATCHER_USER = "symphony-dispatch"
WEBHOOK_USER = "symphony-webhook"
LINK_USER = "symphony-link"
# Slower than the adapters' own HTTP timeouts times retries would be pointless; a page walk
# over thousands of issues still fits.
REQUEST_TIMEOUT_S = 300.0


class AuditForwarder:
    """The audit hook: sends each tracker_write record to the audit writer and waits for its
    durable acknowledgement. A write already done at the provider cannot be undone, so a
    failure here is logged loudly rather than turned into a tool failure."""

    def __init__(self, path: str | Path) -> None:
        self._client = ReconnectingClient(path)

    async def __call__(self, event: AuditEventIn) -> None:
        try:
            await self._client.call(AUDIT_APPEND, AuditAppend([event]), timeout=10.0)
        except SymphonyError as exc:
            log.error(  # noqa: TRY400 - the code says it all; a traceback adds nothing
                "audit writer did not record a tracker write on %s: %s",
                event.issue_identifier,
                exc.error_code,
            )

    async def close(self) -> None:
        await self._client.close()


def dispatcher_server(
    service: TrackerService, uids: Iterable[int], feed: ChangeFeed | None = None
) -> IpcServer:
    allowed = frozenset(uids)
    feed = feed or ChangeFeed()
    # A whole board comes back in one reply; the dispatcher connects with the same limit.
    server = IpcServer(
        TRACKER_DISPATCHER.stem,
        allowed_uids=allowed,
        allow_root=0 in allowed,
        limits=ServerLimits(max_reply=TRACKER_MAX_FRAME),
    )
    server.handle(HEALTH, _peerless(_health_with_events(service, feed)))
    server.handle(TRACKER_PROFILE, _peerless(service.profile))
    # Change events: the dispatcher ticks on each (docs/design/0410-tracker-change-events.md).
    server.subscription(TRACKER_SUBSCRIBE, feed.subscribe)
    server.handle(
        TRACKER_FETCH_BY_STATES, _peerless(service.fetch_by_states), timeout=REQUEST_TIMEOUT_S
    )
    server.handle(TRACKER_FETCH_BY_IDS, _peerless(service.fetch_by_ids), timeout=REQUEST_TIMEOUT_S)
    return server


def launcher_server(
    service: TrackerService,
    uids: Iterable[int],
    feed: ChangeFeed | None = None,
    *,
    name: str = TRACKER_LAUNCHER.stem,
) -> IpcServer:
    """The local launcher's socket; also the link's (``tracker-link.sock``), whose daemon
    admits a worker's call only for an issue bound to that worker (symphonyd/link)."""
    allowed = frozenset(uids)
    server = IpcServer(name, allowed_uids=allowed, allow_root=0 in allowed)
    # Root's symphonyctl doctor asks here: the event sources' liveness is in the reply.
    server.handle(HEALTH, _peerless(_health_with_events(service, feed or ChangeFeed())))
    server.handle(TRACKER_PROFILE, _peerless(service.profile))
    # Between turns the launcher re-reads its run's issue to decide whether to continue
    # (SPEC 16.5); it cannot list the board.
    server.handle(TRACKER_FETCH_BY_IDS, _peerless(service.fetch_by_ids), timeout=REQUEST_TIMEOUT_S)
    server.handle(TRACKER_TOOL_SPECS, _peerless(service.tool_specs))
    server.handle(TRACKER_TOOL_CALL, _peerless(service.tool_call), timeout=REQUEST_TIMEOUT_S)
    # Prompt previews are scrubbed here, where the credential is (launcher only).
    server.handle(TRACKER_REDACT, _peerless(service.redact))
    return server


def webhook_server(hints: WebhookHints, uids: Iterable[int]) -> IpcServer:
    """symphony-webhook's socket: ``tracker.hint`` only (no reads, no tools, no health)."""
    allowed = frozenset(uids)
    server = IpcServer(TRACKER_WEBHOOK.stem, allowed_uids=allowed, allow_root=0 in allowed)
    server.handle(TRACKER_HINT, _peerless(hints.hint), timeout=REQUEST_TIMEOUT_S)
    return server


def _health_with_events(service: TrackerService, feed: ChangeFeed) -> Any:
    async def health(params: Empty) -> Health:
        reply = await service.health(params)
        reply.detail["events"] = feed.health()  # each source: live, last delivery, failures
        return reply

    return health


def _peerless(fn: Any) -> Any:
    # Authorisation is per socket (SO_PEERCRED allowlist); handlers need no peer identity.
    async def handler(params: Any, peer: Peer) -> Any:
        return await fn(params)

    return handler


class TrackerDaemon:
    def __init__(
        self,
        service: TrackerService,
        *,
        dispatcher_uids: Iterable[int],
        launcher_uids: Iterable[int],
        webhook_uids: Iterable[int] = (),
        link_uids: Iterable[int] = (),
    ) -> None:
        self.service = service
        self.feed = ChangeFeed()
        self.file_events = LocalFileEvents(service, self.feed)
        self.servers = [
            dispatcher_server(service, dispatcher_uids, self.feed),
            launcher_server(service, launcher_uids, self.feed),
        ]
        self.webhook = webhook_server(WebhookHints(service, self.feed), webhook_uids)
        self.link = launcher_server(service, link_uids, self.feed, name=TRACKER_LINK.stem)

    async def start(
        self,
        dispatcher: socket.socket | str | Path,
        launcher: socket.socket | str | Path,
        webhook: socket.socket | str | Path | None = None,
        link: socket.socket | str | Path | None = None,
    ) -> None:
        # Build the adapter first so a config error is in the log before the first request.
        self.service.refresh()
        wheres: list[socket.socket | str | Path] = [dispatcher, launcher]
        if webhook is not None:  # no receiver configured: no hint socket
            self.servers.append(self.webhook)
            wheres.append(webhook)
        if link is not None:  # no worker hosts: no link socket
            self.servers.append(self.link)
            wheres.append(link)
        for server, where in zip(self.servers, wheres, strict=True):
            if isinstance(where, socket.socket):
                await server.start(where)
            else:
                await server.start_path(where)

    async def close(self) -> None:
        for server in self.servers:
            await server.close()
        await self.service.close()


class RedactingFilter(logging.Filter):
    """Last line of defence: scrub the credential from every record this process emits."""

    def __init__(self, service: TrackerService) -> None:
        super().__init__()
        self._service = service

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self._service.redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def _one(activated: dict[str, list[socket.socket]], name: str) -> socket.socket:
    socks = activated.get(name, [])
    if len(socks) != 1:
        raise SymphonyError(
            f"expected one activated socket named {name!r}; got {len(socks)} "
            "(pass --dispatcher-socket/--launcher-socket outside systemd)",
            code="socket_setup_failed",
        )
    return socks[0]


def _optional(activated: dict[str, list[socket.socket]], name: str) -> socket.socket | None:
    return _one(activated, name) if activated.get(name) else None


def _optional_uids(user: str) -> list[int]:
    try:
        return [system_uid(user)]
    except SymphonyError:
        return []  # no such user (a development host): only the --*-uid flag may connect


async def startup(daemon: Daemon, *, args: argparse.Namespace) -> None:
    """Host config, service, both servers; a bad workflow or host config stops us with 78."""
    host = daemon.load_host_config(args.host_config)
    env = dict(os.environ)
    audit_path = args.audit_socket or AUDIT_TRACKER.path(host.runtime_dir)
    forwarder = None if audit_path == "none" else AuditForwarder(audit_path)
    service = TrackerService(
        workflow_source(args.workflow or host.workflow_path, env),
        env,
        audit=forwarder or tools.log_only_audit,
        unit_credential=host.tracker_credential,
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter(service))
    tracker = TrackerDaemon(
        service,
        dispatcher_uids=args.dispatcher_uid or [system_uid(DISPATCHER_USER)],
        launcher_uids=args.launcher_uid or [0],
        webhook_uids=args.webhook_uid or _optional_uids(WEBHOOK_USER),
        link_uids=args.link_uid or _optional_uids(LINK_USER),
    )
    activated = listen_fds()
    dispatcher = args.dispatcher_socket or _one(activated, TRACKER_DISPATCHER.fdname)
    launcher = args.launcher_socket or _one(activated, TRACKER_LAUNCHER.fdname)
    # Optional: systemd passes it with the others; by hand, only with --webhook-socket.
    webhook = args.webhook_socket or _optional(activated, TRACKER_WEBHOOK.fdname)
    link = args.link_socket or _optional(activated, TRACKER_LINK.fdname)  # worker hosts only

    async def close() -> None:
        await tracker.close()
        if forwarder is not None:
            await forwarder.close()

    daemon.on_shutdown("tracker", close)
    await tracker.start(dispatcher, launcher, webhook, link)
    daemon.spawn(tracker.file_events.run(), "local-file-events")
    daemon.status("serving tracker.*")
    log.info("tracker daemon ready")
