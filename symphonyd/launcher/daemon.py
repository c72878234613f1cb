"""symphony-launcher: serves ``launcher.*`` to the dispatcher and runs the agents.

The tracker (tool calls, issue refresh) and the audit writer are reached over their
launcher-owned sockets. Audit records are queued and delivered in batches by one task so a
slow or restarting audit writer never blocks a running agent; records are never dropped
silently (an overflow is logged with its count). ``startup`` is the wiring
``python -m symphonyd.launcher`` runs under the shared run loop: under systemd the
dispatcher's socket comes from socket activation (FileDescriptorName ``dispatcher``); for
development ``--socket PATH`` is bound here (mode 0600).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import pwd
import socket
from collections.abc import Callable, Iterable
from pathlib import Path

from symphonyd import __version__
from symphonyd.core.api.audit import AUDIT_APPEND, AuditAppend, AuditEventIn
from symphonyd.core.api.launcher import (
    LAUNCHER_ACK_RUNS,
    LAUNCHER_LIST_RUNS,
    LAUNCHER_LIST_WORKSPACES,
    LAUNCHER_REMOVE_WORKSPACE,
    LAUNCHER_START_RUN,
    LAUNCHER_STOP_RUN,
    LAUNCHER_SUBSCRIBE,
    LAUNCHER_WORKSPACE_AGES,
    AckRuns,
    ListRuns,
    ListWorkspaces,
    RemoveWorkspace,
    RemoveWorkspaceResult,
    RunList,
    StartRun,
    StartRunResult,
    StopRun,
    StopRunResult,
    WorkspaceAges,
    WorkspaceAgesResult,
    WorkspaceListing,
)
from symphonyd.core.api.shared import HEALTH, Empty, Health
from symphonyd.core.api.tracker import (
    TRACKER_FETCH_BY_IDS,
    TRACKER_PROFILE,
    TRACKER_REDACT,
    TRACKER_TOOL_CALL,
    TRACKER_TOOL_SPECS,
    FetchByIds,
    RedactText,
    ToolCall,
    ToolResult,
    ToolSpecList,
    TrackerProfile,
)
from symphonyd.core.egress_presets import check_operator_dir, preset_dirs
from symphonyd.core.errors import ConfigError, SymphonyError
from symphonyd.core.hostconfig import HostConfig
from symphonyd.core.issue import Issue
from symphonyd.core.sockets import (
    AUDIT_LAUNCHER,
    LAUNCHER_DISPATCHER,
    TRACKER_LAUNCHER,
    WORKER_TRACKER_SOCKET,
)
from symphonyd.launcher.child_watch import use_pidfd_child_watcher
from symphonyd.launcher.hooks import RunAs
from symphonyd.launcher.limits import raise_nofile_limit
from symphonyd.launcher.link_lease import LinkLease
from symphonyd.launcher.sandbox.addresses import AddressPool
from symphonyd.launcher.sandbox.agent_sandbox import AgentSandboxes
from symphonyd.launcher.sandbox.dns import UpstreamResolver, system_upstreams
from symphonyd.launcher.sandbox.egress_limits import EgressLimits
from symphonyd.launcher.sandbox.instance import load_or_create
from symphonyd.launcher.sandbox.manager import SandboxManager, audit_event
from symphonyd.launcher.service import LauncherDeps, LauncherService
from symphonyd.runtime.activation import listen_fds
from symphonyd.runtime.daemon import Daemon, system_uid
from symphonyd.runtime.ipc_client import ReconnectingClient
from symphonyd.runtime.ipc_server import EventSink, IpcServer
from symphonyd.runtime.logging import log_event
from symphonyd.runtime.peer import Peer

log = logging.getLogger("symphonyd.launcher")
DISPATCHER_USER = "symphony-dispatch"
LINK_USER = "symphony-link"  # on a worker host: the user the control host's key logs in as
AGENT_USER = "symphony-agent"
AUDIT_QUEUE_MAX = 10_000
# The writer refused the content itself; sending it again cannot succeed.
REJECTED = frozenset({"invalid_params", "invalid_input", "record_too_large"})
AUDIT_BATCH_MAX = 256


class IpcTrackerLink:
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


def launcher_server(
    service: LauncherService,
    uids: Iterable[int],
    *,
    name: str = LAUNCHER_DISPATCHER.stem,
    on_started: Callable[[str], None] | None = None,
) -> IpcServer:
    """The launcher protocol for one client: the local dispatcher, or the link on a worker
    (``on_started`` learns the runs the link started, for the lease)."""
    allowed = frozenset(uids)
    server = IpcServer(name, allowed_uids=allowed, allow_root=0 in allowed)

    async def health(_: Empty, peer: Peer) -> Health:
        return Health("launcher", __version__, True, {"live_runs": service.live_count})

    async def start_run(req: StartRun, peer: Peer) -> StartRunResult:
        result = await service.start_run(req)
        if result.accepted and on_started is not None:
            on_started(req.run_id)
        return result

    async def stop_run(req: StopRun, peer: Peer) -> StopRunResult:
        return await service.stop_run(req)

    async def list_runs(req: ListRuns, peer: Peer) -> RunList:
        return service.list_runs(req.after, req.limit)

    async def ack_runs(req: AckRuns, peer: Peer) -> Empty:
        service.ack_runs(req.run_ids)
        return Empty()

    async def remove_workspace(req: RemoveWorkspace, peer: Peer) -> RemoveWorkspaceResult:
        return await service.remove_workspace(req.identifier, req.workflow, req.min_idle_s)

    async def workspace_ages(req: WorkspaceAges, peer: Peer) -> WorkspaceAgesResult:
        return WorkspaceAgesResult(service.workspace_ages(req.identifiers))

    async def list_workspaces(req: ListWorkspaces, peer: Peer) -> WorkspaceListing:
        return await asyncio.to_thread(service.list_workspaces, req.workflow)

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
    server.handle(LAUNCHER_LIST_WORKSPACES, list_workspaces)
    server.subscription(LAUNCHER_SUBSCRIBE, subscribe)
    return server


async def _link_server(
    service: LauncherService,
    host: HostConfig,
    args: argparse.Namespace,
    activated_fds: dict[str, list[socket.socket]],
) -> tuple[IpcServer, LinkLease] | None:
    """On a worker host, the launcher protocol for the control host's link, with its lease.

    Present only where the link's socket exists: ``--link-socket`` in development, or the
    activated socket named ``link`` (symphony-launcher-link.socket) on a worker.
    """
    activated = [] if args.link_socket else activated_fds.get("link", [])
    if not args.link_socket and not activated:
        return None
    lease: LinkLease | None = None

    def started(run_id: str) -> None:
        if lease is not None:
            lease.started(run_id)

    uids = args.link_uid or [system_uid(LINK_USER)]
    server = launcher_server(service, uids, name="launcher-link", on_started=started)

    async def stop_run(run_id: str) -> bool:
        return (await service.stop_run(StopRun(run_id, "link_lost"))).stopped

    lease = LinkLease(
        host.worker.lease_seconds,
        idle_since=lambda: server.idle_since,
        live=service.is_live,
        stop=stop_run,
    )
    if args.link_socket:
        await server.start_path(args.link_socket)
    else:
        await server.start(activated[0])
    return server, lease


def agent_identity() -> RunAs | None:
    """Agents and hooks run as symphony-agent when the launcher is root and the user exists."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(AGENT_USER)
    except KeyError:
        return None
    return RunAs(entry.pw_uid, entry.pw_gid)


def sandboxes_for(
    host: HostConfig, run_as: RunAs | None, agent_home: Path, audit: AuditQueue
) -> AgentSandboxes | None:
    """The kernel sandbox, or None when the host config turns it off; never half of one."""
    if not host.sandbox.enabled:
        return None
    # A preset file the launcher could not use would refuse every run naming it: refuse to
    # start instead (exit 78), naming the file and line.
    check_operator_dir(preset_dirs(host.sandbox.egress_presets_dir))
    if run_as is None:
        raise ConfigError(
            f"the agent sandbox needs root and the {AGENT_USER} user; set [sandbox] "
            "enabled = false in the host config only where agents may run unconfined",
            code="invalid_config",
        )
    upstream = [(s, 53) for s in host.sandbox.upstream_dns] or system_upstreams()
    state = Path(host.state_dir)
    manager = SandboxManager(
        upstream=UpstreamResolver(upstream),
        audit=lambda record: audit.put(audit_event(record)),
        pool=AddressPool(host.sandbox.address_pool),
        limits=EgressLimits.from_host(host.sandbox),
        # Persisted: a restarted launcher finds its crashed predecessor's agents by it, and
        # another symphonyd on this host (its own state directory) has another.
        instance=load_or_create(state / "launcher"),
    )
    # Everything of symphonyd an agent must not see; the shipped deny list adds the host's
    # credential stores (policy/fs-deny.txt).
    hidden = [
        Path(host.audit_dir),
        Path(host.runtime_dir),
        Path("/etc/symphony"),
        *(state / name for name in ("dispatcher", "tracker", "issues", "launcher")),
    ]
    return AgentSandboxes(
        manager, host.sandbox, run_as=run_as, template_home=agent_home, hidden=hidden
    )


def build(
    args: argparse.Namespace, host: HostConfig, *, worker: bool = False
) -> tuple[LauncherService, AuditQueue, IpcTrackerLink]:
    """``worker``: this launcher serves a control host's link, so its tracker is that host's,
    reached through the link's forwarded socket (design 1100), not a local tracker daemon."""
    runtime = Path(host.runtime_dir)
    audit = AuditQueue(args.audit_socket or AUDIT_LAUNCHER.path(runtime))
    local_tracker = runtime / WORKER_TRACKER_SOCKET if worker else TRACKER_LAUNCHER.path(runtime)
    tracker = IpcTrackerLink(args.tracker_socket or local_tracker)
    agent_home = Path(args.agent_home or Path(host.state_dir) / "agent")
    agent_home.mkdir(mode=0o700, parents=True, exist_ok=True)
    run_as = agent_identity()
    if run_as is not None:
        os.chown(agent_home, run_as.uid, run_as.gid)
    deps = LauncherDeps(
        tracker=tracker,
        audit=audit.put,
        agent_home=agent_home,
        env=dict(os.environ),
        run_as=run_as,
        host=host,
        sandboxes=sandboxes_for(host, run_as, agent_home, audit),
    )
    return LauncherService(deps), audit, tracker


async def startup(daemon: Daemon, *, args: argparse.Namespace) -> None:
    host = daemon.load_host_config(args.host_config)
    raise_nofile_limit()
    use_pidfd_child_watcher()
    # Read once: listen_fds() consumes the environment, and the sockets it did not hand on
    # would be closed with their objects (the worker's link socket among them).
    activated = {} if args.socket and args.link_socket else listen_fds()
    worker = bool(args.link_socket or activated.get("link"))
    service, audit, tracker = build(args, host, worker=worker)
    uids = args.dispatcher_uid or [system_uid(DISPATCHER_USER)]
    server = launcher_server(service, uids)
    socks = [] if args.socket else activated.get(LAUNCHER_DISPATCHER.fdname, [])
    if not args.socket and len(socks) != 1:
        raise SymphonyError(
            "expected one activated socket named 'dispatcher' (or pass --socket)",
            code="socket_setup_failed",
        )
    daemon.spawn(audit.run(), "audit-delivery")
    # What a crashed or restarted predecessor left is cleared before the first request is
    # served: the reconcile kills every unit in this instance's slice and replaces the
    # nftables table, so a run accepted earlier lost its hook units to SIGKILL and its rules
    # (issue 22.5, tests/e2e/test_launcher_restart.py). Meanwhile the dispatcher's requests
    # wait in the activated socket's backlog; the worker-host link starts after it too.
    if service.deps.sandboxes is not None:
        await service.deps.sandboxes.start()
    if args.socket:
        await server.start_path(args.socket)
    else:
        await server.start(socks[0])
    link = await _link_server(service, host, args, activated)
    if link is not None:
        daemon.spawn(link[1].watch(), "link-lease")

    async def stop() -> None:
        if link is not None:
            await link[0].close()
        await server.close()
        await service.shutdown()
        if service.deps.sandboxes is not None:
            await service.deps.sandboxes.close()
        await audit.drain(10.0)
        await audit.close()
        await tracker.close()

    daemon.on_shutdown("launcher", stop)
