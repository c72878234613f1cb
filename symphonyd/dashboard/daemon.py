"""symphony-dashboard: the HTTP listener, the dispatcher link and the audit reader client.

Under systemd the TCP socket arrives by activation (``FileDescriptorName=http``); in
development ``--port`` (or the host config's ``dashboard.host``/``port``) is bound here.
Either way a non-loopback address needs ``dashboard.allow_remote_bind`` (bind.py).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from aiohttp import web

from symphonyd.core.errors import SymphonyError
from symphonyd.core.hostconfig import HostConfig
from symphonyd.dashboard.service import Dashboard
from symphonyd.dashboard.bind import Listener, bind_tcp, from_activation
from symphonyd.dashboard.guard import Guard, allowed_hosts
from symphonyd.dashboard.link import DispatcherLink
from symphonyd.runtime.activation import listen_fds
from symphonyd.runtime.daemon import EXIT_CONFIG, Daemon, run_daemon
from symphonyd.runtime.hostconfig_file import load_host_config
from symphonyd.runtime.ipc_client import ReconnectingClient
from symphonyd.runtime.logging import log_event

log = logging.getLogger("symphonyd.dashboard")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="symphony-dashboard", description=__doc__)
    p.add_argument("--host-config", help="host config TOML (default /etc/symphony/symphonyd.toml)")
    p.add_argument("--host", help="bind this address instead of dashboard.host (development)")
    p.add_argument("--port", type=int, help="bind this port instead of socket activation")
    p.add_argument("--dispatcher-socket", help="default <runtime_dir>/dispatcher-dashboard.sock")
    p.add_argument(
        "--audit-socket", help="default <runtime_dir>/audit-dashboard.sock; 'none' disables"
    )
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        help="extra Host header name accepted (e.g. the name a proxy forwards); repeatable",
    )
    return p.parse_args(argv)


def listener(args: argparse.Namespace, host: HostConfig) -> Listener:
    allow = host.dashboard.allow_remote_bind
    if args.port is None and args.host is None:
        activated = from_activation(listen_fds(), allow_remote=allow)
        if activated is not None:
            return activated
    port = host.dashboard.port if args.port is None else args.port
    return bind_tcp(args.host or host.dashboard.host, port, allow_remote=allow)


FIRST_STATE_WAIT_S = 5.0


async def startup(daemon: Daemon, args: argparse.Namespace, host: HostConfig) -> None:
    listen = listener(args, host)
    runtime = host.runtime_dir
    link = DispatcherLink(
        args.dispatcher_socket or os.path.join(runtime, "dispatcher-dashboard.sock")
    )
    audit_path = args.audit_socket or os.path.join(runtime, "audit-dashboard.sock")
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
    log_event(log, "http_listen", host=listen.host, port=listen.port, source=source)
    daemon.status(f"serving http://{listen.host}:{listen.port}/")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        loaded = load_host_config(args.host_config)
    except SymphonyError as exc:
        print(f"symphony-dashboard: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    level = getattr(logging, loaded.config.log_level.upper())

    async def start(daemon: Daemon) -> None:
        for warning in loaded.warnings:
            log.warning("host config: %s", warning)
        await startup(daemon, args, loaded.config)

    return run_daemon("dashboard", start, stop_timeout=10.0, log_level=level)
