"""The symphony-dispatcher process: object graph, startup, loops, control sockets.

Under systemd the control sockets arrive by socket activation (``ctl`` for root's
symphonyctl, ``dashboard`` for the dashboard user); ``--ctl-socket`` binds one by hand for
development. Client sockets default to ``<runtime_dir>/<server>-dispatcher.sock``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import pwd
import shutil
import signal
from collections.abc import Iterable, Sequence
from pathlib import Path

from symphonyd import __version__
from symphonyd.core.errors import SymphonyError
from symphonyd.core.messages import SNAPSHOT_MAX_FRAME, TRACKER_MAX_FRAME
from symphonyd.dispatcher.clients import (
    AuditClient,
    LauncherClient,
    Link,
    TrackerClient,
    follow_run_events,
)
from symphonyd.dispatcher.config_source import WorkflowConfigSource
from symphonyd.dispatcher.service import DispatcherService
from symphonyd.dispatcher.orchestrator import Orchestrator
from symphonyd.dispatcher.ports import SystemClock
from symphonyd.dispatcher.store import StateStore
from symphonyd.runtime.activation import listen_fds
from symphonyd.runtime.hostconfig_file import load_host_config
from symphonyd.runtime.ipc_connection import ServerLimits
from symphonyd.runtime.ipc_server import IpcServer
from symphonyd.runtime.logging import setup_logging
from symphonyd.runtime.notify import Notifier

log = logging.getLogger("symphonyd.dispatcher")
DASHBOARD_USER = "symphony-dashboard"
STARTUP_RETRY_S = 2.0


class StatvfsDisk:
    def free_bytes(self, path: str) -> int | None:
        try:
            return shutil.disk_usage(path).free
        except OSError:
            return None  # not visible to this user: unknown, not "full"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="symphony-dispatcher")
    p.add_argument("--host-config", help="host config TOML (default /etc/symphony/symphonyd.toml)")
    p.add_argument("--workflow", help="WORKFLOW.md path (overrides the host config)")
    p.add_argument("--state-dir", help="where durable dispatcher state lives")
    p.add_argument("--runtime-dir", help="directory of the daemons' sockets")
    p.add_argument("--ctl-socket", help="bind this control socket instead of socket activation")
    return p.parse_args(argv)


def _dashboard_uid() -> list[int]:
    try:
        return [pwd.getpwnam(DASHBOARD_USER).pw_uid]
    except KeyError:
        return []


def assemble(
    runtime: Path, state_dir: Path, source: WorkflowConfigSource
) -> tuple[Orchestrator, DispatcherService]:
    """The production object graph; tests build it the same way against their sockets."""
    orch = Orchestrator(
        # A board's issues come back in one frame; a page walk may take minutes.
        tracker=TrackerClient(
            Link(runtime / "tracker-dispatcher.sock", timeout=300.0, max_frame=TRACKER_MAX_FRAME)
        ),
        launcher=LauncherClient(Link(runtime / "launcher-dispatcher.sock")),
        audit=AuditClient(Link(runtime / "audit-dispatcher.sock")),
        config=source,
        store=StateStore(state_dir),
        clock=SystemClock(),
        disk=StatvfsDisk(),
    )
    return orch, DispatcherService(orch, config_changed=source.changed, version=__version__)


async def start_orchestrator(orch: Orchestrator, notifier: Notifier) -> None:
    while True:
        try:
            await orch.start()
            return
        except SymphonyError as exc:
            if exc.error_code not in ("unavailable", "timeout"):
                raise
            # Until the launcher can say what is running, starting could run an issue twice.
            notifier.status(f"waiting for the launcher: {exc.message}")
            await asyncio.sleep(STARTUP_RETRY_S)


async def run_until(
    stop: asyncio.Event, service: DispatcherService, runtime: Path, notifier: Notifier
) -> None:
    """Scheduler, workflow watch, launcher event stream and watchdog until ``stop``."""
    orch = service.orch
    launcher_sock = runtime / "launcher-dispatcher.sock"
    tasks = [
        asyncio.create_task(service.run_scheduler()),
        asyncio.create_task(service.run_watch()),
        asyncio.create_task(
            follow_run_events(launcher_sock, orch.handle_run_event, orch.resync_runs)
        ),
        asyncio.create_task(notifier.watchdog_loop()),
    ]
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def serve(args: argparse.Namespace) -> int:
    host = load_host_config(args.host_config).config
    runtime = Path(args.runtime_dir or host.runtime_dir)
    state_dir = Path(args.state_dir or Path(host.state_dir) / "dispatcher")
    source = WorkflowConfigSource(args.workflow or host.workflow_path, host=host)
    orch, service = assemble(runtime, state_dir, source)
    notifier = Notifier.from_env()
    await start_orchestrator(orch, notifier)
    # Served only once state is loaded: systemd queues early connections on the sockets.
    servers = await _start_servers(service, args)
    notifier.ready("dispatching")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await run_until(stop, service, runtime, notifier)
    finally:
        notifier.stopping("stopping; runs in flight keep running under the launcher")
        for server in servers:
            await server.close()
    return 0


def control_server(
    name: str, *, allowed_uids: Iterable[int], allow_root: bool = False
) -> IpcServer:
    """A server for symphonyctl or the dashboard: its snapshot replies may exceed 1 MiB."""
    limits = ServerLimits(max_reply=SNAPSHOT_MAX_FRAME)
    return IpcServer(name, allowed_uids=allowed_uids, allow_root=allow_root, limits=limits)


async def _start_servers(service: DispatcherService, args: argparse.Namespace) -> list[IpcServer]:
    servers: list[IpcServer] = []
    if args.ctl_socket:
        ctl = control_server("dispatcher-ctl", allowed_uids={os.getuid()}, allow_root=True)
        service.register(ctl)
        await ctl.start_path(args.ctl_socket)
        return [ctl]
    fds = listen_fds()
    for name, socks in fds.items():
        if name == "ctl":
            server = control_server("dispatcher-ctl", allowed_uids=(), allow_root=True)
        elif name == "dashboard":
            server = control_server("dispatcher-dashboard", allowed_uids=_dashboard_uid())
        else:
            log.warning("ignoring activated socket %r", name)
            continue
        service.register(server)
        for sock in socks:
            await server.start(sock)
        servers.append(server)
    if not servers:
        raise SymphonyError("no control socket: use socket activation or --ctl-socket")
    return servers


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging("dispatcher")
    args = parse_args(argv)
    try:
        return asyncio.run(serve(args))
    except SymphonyError as exc:
        log.error("dispatcher cannot start: %s", exc)  # noqa: TRY400 - the message says it all
        return 1
