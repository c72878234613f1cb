"""symphony-dispatcher wiring: the state lock, the object graph, loops and control sockets.

``startup`` runs under the shared run loop (``python -m symphonyd.dispatcher``). The first
thing it does after reading the host config is take the exclusive lock on the state
directory: a second dispatcher on the same state stops there (exit 75) before it has talked
to the tracker, the launcher or the audit writer. Under systemd the control sockets arrive by
socket activation (``ctl`` for root's symphonyctl, ``dashboard`` for the dashboard user);
``--ctl-socket`` binds one by hand for development. Client sockets default to
``<runtime_dir>/<server>-dispatcher.sock``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import shutil
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import Any

from symphonyd import __version__
from symphonyd.core.api.dispatcher import SNAPSHOT_MAX_FRAME
from symphonyd.core.api.tracker import TRACKER_MAX_FRAME
from symphonyd.core.errors import ConfigError, SymphonyError
from symphonyd.core.sockets import (
    AUDIT_DISPATCHER,
    DISPATCHER_CTL,
    DISPATCHER_DASHBOARD,
    DISPATCHER_LINK,
    LAUNCHER_DISPATCHER,
    TRACKER_DISPATCHER,
)
from symphonyd.core.worker_hosts import LOCAL_HOST, WorkerHosts
from symphonyd.dispatcher.clients import (
    AuditClient,
    HostLink,
    LauncherClient,
    Link,
    TrackerClient,
    follow_run_events,
)
from symphonyd.dispatcher.config_source import WorkflowConfigSource
from symphonyd.dispatcher.engine import Engine
from symphonyd.dispatcher.hosts import Host, HostPool
from symphonyd.dispatcher.link_api import LINK_USER, link_server
from symphonyd.dispatcher.orchestrator import Orchestrator
from symphonyd.dispatcher.ports import SystemClock
from symphonyd.dispatcher.service import DispatcherService
from symphonyd.dispatcher.store import StateStore
from symphonyd.dispatcher.tracker_events import follow_tracker_changes
from symphonyd.runtime import instance_lock
from symphonyd.runtime.activation import listen_fds
from symphonyd.runtime.daemon import Daemon, system_uid
from symphonyd.runtime.ipc_connection import ServerLimits
from symphonyd.runtime.ipc_server import IpcServer

log = logging.getLogger("symphonyd.dispatcher")
DASHBOARD_USER = "symphony-dashboard"
STARTUP_RETRY_S = 2.0


class StatvfsDisk:
    def free_bytes(self, path: str) -> int | None:
        try:
            return shutil.disk_usage(path).free
        except OSError:
            return None  # not visible to this user: unknown, not "full"


def _dashboard_uid() -> list[int]:
    # Optional: a host without the dashboard user serves symphonyctl only.
    try:
        return [system_uid(DASHBOARD_USER)]
    except ConfigError:
        return []


def host_pool(runtime: Path, worker: WorkerHosts) -> HostPool:
    """The local launcher (when it takes runs) and one client per worker's link socket."""
    local = LauncherClient(Link(runtime / "launcher-dispatcher.sock"))
    if not worker.hosts:
        return HostPool.local_only(local)
    hosts = [
        Host(h.name, LauncherClient(HostLink(host_socket(runtime, h.name))), remote=True)
        for h in worker.hosts
    ]
    if worker.runs_local:
        hosts.insert(0, Host(LOCAL_HOST, local, remote=False, connected=True))
    return HostPool(
        hosts, per_host=worker.max_concurrent_agents_per_host, lease_seconds=worker.lease_seconds
    )


def host_socket(runtime: Path, name: str) -> Path:
    """Where the link daemon serves a worker's launcher (symphonyd/link)."""
    return runtime / "hosts" / f"{name}.sock"


def assemble(
    runtime: Path,
    state_dir: Path,
    source: WorkflowConfigSource,
    worker: WorkerHosts | None = None,
) -> tuple[Orchestrator, DispatcherService]:
    """The production object graph; tests build it the same way against their sockets."""
    pool = host_pool(runtime, worker or WorkerHosts())
    orch = Orchestrator(
        Engine(
            # A board's issues come back in one frame; a page walk may take minutes.
            tracker=TrackerClient(
                Link(TRACKER_DISPATCHER.path(runtime), timeout=300.0, max_frame=TRACKER_MAX_FRAME)
            ),
            # Prune and the workspace survey ask this one (the first host when none is local).
            launcher=next(iter(pool.hosts.values())).launcher,
            hosts=pool,
            audit=AuditClient(Link(AUDIT_DISPATCHER.path(runtime))),
            config=source,
            store=StateStore(state_dir),
            clock=SystemClock(),
            disk=StatvfsDisk(),
        )
    )
    return orch, DispatcherService(orch, config_changed=source.changed, version=__version__)


async def start_orchestrator(orch: Orchestrator, daemon: Daemon) -> None:
    while True:
        try:
            await orch.start()
            return
        except SymphonyError as exc:
            if exc.error_code not in ("unavailable", "timeout"):
                raise
            # Until the launcher can say what is running, starting could run an issue twice.
            daemon.status(f"waiting for the launcher: {exc.message}")
            await asyncio.sleep(STARTUP_RETRY_S)


def loops(service: DispatcherService, runtime: Path) -> dict[str, Coroutine[Any, Any, None]]:
    """The dispatcher's long-running work: scheduler, workflow watch, each host's run events,
    and the tracker's change events (each asks for a tick; docs/design/0410)."""
    orch = service.orch
    out = {"scheduler": service.run_scheduler(), "workflow-watch": service.run_watch()}
    out["tracker-events"] = follow_tracker_changes(
        TRACKER_DISPATCHER.path(runtime), service.request_refresh, state=service.tracker_events
    )
    for name, host in orch.engine.hosts.hosts.items():
        if not host.remote:
            out["launcher-events"] = follow_run_events(
                LAUNCHER_DISPATCHER.path(runtime), orch.handle_run_event, orch.resync_runs
            )
            continue
        out[f"host-events-{name}"] = follow_run_events(
            host_socket(runtime, name),
            functools.partial(orch.handle_run_event, host=name),
            functools.partial(orch.resync_runs, name),
            on_lost=functools.partial(orch.host_lost, name),
        )
    return out


async def startup(daemon: Daemon, *, args: argparse.Namespace) -> None:
    host = daemon.load_host_config(args.host_config)
    state_dir = Path(args.state_dir or Path(host.state_dir) / "dispatcher")
    # Before anything else: one dispatcher per state, or two would dispatch the same issues.
    # Held until the process exits (the kernel drops it then): never while a task still runs.
    instance_lock.acquire(state_dir, "dispatcher")
    runtime = Path(args.runtime_dir or host.runtime_dir)
    source = WorkflowConfigSource(args.workflow or host.workflow_path, host=host)
    orch, service = assemble(runtime, state_dir, source, host.worker)
    await start_orchestrator(orch, daemon)
    # Served only once state is loaded: systemd queues early connections on the sockets.
    servers = await _start_servers(service, args)

    async def close() -> None:
        daemon.status("stopping; runs in flight keep running under the launcher")
        for server in servers:
            await server.close()

    daemon.on_shutdown("control-sockets", close)
    for name, coro in loops(service, runtime).items():
        daemon.spawn(coro, name)
    daemon.status("dispatching")


def control_server(
    name: str, *, allowed_uids: Iterable[int], allow_root: bool = False
) -> IpcServer:
    """A server for symphonyctl or the dashboard: its snapshot replies may exceed 1 MiB."""
    limits = ServerLimits(max_reply=SNAPSHOT_MAX_FRAME)
    return IpcServer(name, allowed_uids=allowed_uids, allow_root=allow_root, limits=limits)


def _link_server(service: DispatcherService, args: argparse.Namespace) -> IpcServer:
    """The worker-host link's socket: which issue a worker may act on (link_api.py)."""
    return link_server(service.orch, args.link_uid or [system_uid(LINK_USER)])


async def _start_servers(service: DispatcherService, args: argparse.Namespace) -> list[IpcServer]:
    servers: list[IpcServer] = []
    if args.link_socket:  # development: the worker-host link's socket bound by hand
        link = _link_server(service, args)
        await link.start_path(args.link_socket)
        servers.append(link)
    if args.ctl_socket:
        ctl = control_server(DISPATCHER_CTL.stem, allowed_uids={os.getuid()}, allow_root=True)
        service.register(ctl)
        await ctl.start_path(args.ctl_socket)
        return [*servers, ctl]
    fds = listen_fds()
    for name, socks in fds.items():
        if name == DISPATCHER_LINK.fdname:
            # The link's one method, on a socket of its own (dispatcher/link_api.py).
            server = _link_server(service, args)
            for sock in socks:
                await server.start(sock)
            servers.append(server)
            continue
        if name == DISPATCHER_CTL.fdname:
            server = control_server(DISPATCHER_CTL.stem, allowed_uids=(), allow_root=True)
        elif name == DISPATCHER_DASHBOARD.fdname:
            server = control_server(DISPATCHER_DASHBOARD.stem, allowed_uids=_dashboard_uid())
        else:
            log.warning("ignoring activated socket %r", name)
            continue
        service.register(server)
        for sock in socks:
            await server.start(sock)
        servers.append(server)
    if not any(server.name != DISPATCHER_LINK.stem for server in servers):
        raise SymphonyError("no control socket: use socket activation or --ctl-socket")
    return servers
