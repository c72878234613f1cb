"""symphony-dashboard wiring: the HTTP listener, the dispatcher link, the audit reader client.

Under systemd the TCP socket arrives by activation (``FileDescriptorName=http``) and its
address is the socket unit's ``ListenStream=``. When the dashboard binds itself (``--port``
or ``--host`` given, or no activated socket), the port is chosen as SPEC 13.7 says: ``--port``
over WORKFLOW.md's ``server.port`` over the host config's ``dashboard.port``. Under
activation a ``server.port`` that differs from the activated socket cannot be honoured; the
dashboard says so at startup (a warning and its status line) and serves the socket it got.
Either way a non-loopback address needs ``dashboard.allow_remote_bind`` (bind.py).
"""

from __future__ import annotations

import argparse
import logging

from aiohttp import web

from symphonyd.core.errors import SymphonyError
from symphonyd.core.hostconfig import HostConfig
from symphonyd.core.sockets import AUDIT_DASHBOARD, DISPATCHER_DASHBOARD
from symphonyd.dashboard.bind import Listener, bind_tcp, from_activation, workflow_port
from symphonyd.dashboard.guard import Guard, allowed_hosts
from symphonyd.dashboard.link import DispatcherLink
from symphonyd.dashboard.service import Dashboard
from symphonyd.runtime.activation import listen_fds
from symphonyd.runtime.daemon import Daemon
from symphonyd.runtime.ipc_client import ReconnectingClient
from symphonyd.runtime.logging import log_event

log = logging.getLogger("symphonyd.dashboard")
PRECEDENCE = "--port over WORKFLOW.md server.port over host config dashboard.port"
ACTIVATED_PORT_WINS = (
    "the listening socket comes from symphony-dashboard.socket (ListenStream=), so "
    "server.port cannot move it; change the port there (systemctl edit "
    "symphony-dashboard.socket) or run the dashboard with --port. Precedence when the "
    "dashboard binds itself: " + PRECEDENCE
)


def _server_port(path: str) -> int | None:
    # The dispatcher is the judge of WORKFLOW.md; a file it would reject does not take the
    # dashboard down, it only cannot choose the port.
    try:
        return workflow_port(path)
    except SymphonyError as exc:
        log_event(
            log,
            "http_listen",
            level=logging.WARNING,
            outcome="server_port_unread",
            workflow=path,
            error_code=exc.error_code,
            error=exc.message,
        )
        return None


def listener(args: argparse.Namespace, host: HostConfig) -> tuple[Listener, str]:
    """The listener and what chose its port (for the log and the status line)."""
    allow = host.dashboard.allow_remote_bind
    wanted = None if args.port is not None else _server_port(args.workflow or host.workflow_path)
    if args.port is None and args.host is None:
        activated = from_activation(listen_fds(), allow_remote=allow)
        if activated is not None:
            if wanted is not None and wanted != activated.port:
                log_event(
                    log,
                    "http_listen",
                    level=logging.WARNING,
                    outcome="server_port_ignored",
                    server_port=wanted,
                    port=activated.port,
                    reason=ACTIVATED_PORT_WINS,
                )
                return activated, f"symphony-dashboard.socket; server.port {wanted} ignored"
            return activated, "symphony-dashboard.socket"
    if args.port is not None:
        port, chosen_by = args.port, "--port"
    elif wanted is not None:
        port, chosen_by = wanted, "server.port"
    else:
        port, chosen_by = host.dashboard.port, "dashboard.port"
    return bind_tcp(args.host or host.dashboard.host, port, allow_remote=allow), chosen_by


FIRST_STATE_WAIT_S = 5.0


async def startup(daemon: Daemon, *, args: argparse.Namespace) -> None:
    host = daemon.load_host_config(args.host_config)
    listen, chosen_by = listener(args, host)
    runtime = host.runtime_dir
    link = DispatcherLink(args.dispatcher_socket or DISPATCHER_DASHBOARD.path(runtime))
    audit_path = args.audit_socket or AUDIT_DASHBOARD.path(runtime)
    audit = None if audit_path == "none" else ReconnectingClient(audit_path)
    guard = Guard(allowed_hosts(listen.port, listen.host, args.allow_host))
    dashboard = Dashboard(link, audit, guard)
    runner = web.AppRunner(dashboard.app(), access_log=None, handle_signals=False)
    await runner.setup()
    daemon.spawn(link.run(), "dispatcher-link")
    # Socket activation starts us on a browser's first request: give the dispatcher a moment
    # so that request sees the state instead of "unavailable" (it queues in the backlog).
    if not await link.wait_connected(FIRST_STATE_WAIT_S):
        log_event(
            log,
            "dispatcher_link",
            level=logging.WARNING,
            outcome="not_yet",
            waited_s=FIRST_STATE_WAIT_S,
        )
    await web.SockSite(runner, listen.sock, shutdown_timeout=5.0).start()

    async def close() -> None:
        await runner.cleanup()
        if audit is not None:
            await audit.close()

    daemon.on_shutdown("http", close)
    source = "systemd" if listen.activated else "bound"
    log_event(
        log, "http_listen", host=listen.host, port=listen.port, source=source, port_from=chosen_by
    )
    daemon.status(f"serving http://{listen.host}:{listen.port}/ ({chosen_by})")
