"""``python -m symphonyd.tracker``: the symphony-tracker service entry point.

Under systemd the two listening sockets come from socket activation (FileDescriptorName
``dispatcher`` and ``launcher``); for development pass ``--dispatcher-socket`` and
``--launcher-socket`` paths and the daemon binds them itself (mode 0600).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import pwd
import signal
import socket
import sys
from collections.abc import Sequence

from symphonyd.core.errors import SymphonyError
from symphonyd.core.hostconfig import HostConfig
from symphonyd.runtime.activation import listen_fds
from symphonyd.runtime.hostconfig_file import load_host_config
from symphonyd.runtime.logging import setup_logging
from symphonyd.runtime.notify import Notifier
from symphonyd.tracker import tools
from symphonyd.tracker.daemon import AuditForwarder, TrackerDaemon
from symphonyd.tracker.service import TrackerService
from symphonyd.tracker.workflow_source import workflow_source

log = logging.getLogger("symphonyd.tracker")
DISPATCHER_USER = "symphony-dispatch"


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


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="symphony-tracker", description=__doc__)
    p.add_argument("--host-config", help="host config file (default /etc/symphony/symphonyd.toml)")
    p.add_argument("--workflow", help="WORKFLOW.md path (default: the host config's)")
    p.add_argument("--dispatcher-socket", help="bind this path instead of socket activation")
    p.add_argument("--launcher-socket", help="bind this path instead of socket activation")
    p.add_argument(
        "--audit-socket",
        help="audit writer socket (default <runtime_dir>/"
        "audit-tracker.sock); 'none' only logs tracker writes",
    )
    p.add_argument(
        "--dispatcher-uid",
        type=int,
        action="append",
        help=f"uid allowed on the dispatcher socket (default: {DISPATCHER_USER})",
    )
    p.add_argument(
        "--launcher-uid",
        type=int,
        action="append",
        help="uid allowed on the launcher socket (default: root)",
    )
    return p.parse_args(argv)


async def run(args: argparse.Namespace, host: HostConfig) -> int:
    env = dict(os.environ)
    audit_path = args.audit_socket or os.path.join(host.runtime_dir, "audit-tracker.sock")
    forwarder = None if audit_path == "none" else AuditForwarder(audit_path)
    service = TrackerService(
        workflow_source(args.workflow or host.workflow_path, env),
        env,
        audit=forwarder or tools.log_only_audit,
        unit_credential=host.tracker_credential,
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter(service))
    daemon = TrackerDaemon(
        service,
        dispatcher_uids=args.dispatcher_uid or [pwd.getpwnam(DISPATCHER_USER).pw_uid],
        launcher_uids=args.launcher_uid or [0],
    )
    activated = listen_fds()
    dispatcher = args.dispatcher_socket or _one(activated, "dispatcher")
    launcher = args.launcher_socket or _one(activated, "launcher")
    await daemon.start(dispatcher, launcher)
    notifier = Notifier.from_env()
    notifier.ready("serving tracker.*")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watchdog = asyncio.create_task(notifier.watchdog_loop())
    log.info("tracker daemon ready")
    await stop.wait()
    notifier.stopping()
    watchdog.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watchdog
    await daemon.close()
    if forwarder is not None:
        await forwarder.close()
    return 0


def _one(activated: dict[str, list[socket.socket]], name: str) -> socket.socket:
    socks = activated.get(name, [])
    if len(socks) != 1:
        raise SymphonyError(
            f"expected one activated socket named {name!r}; got {len(socks)} "
            "(pass --dispatcher-socket/--launcher-socket outside systemd)",
            code="socket_setup_failed",
        )
    return socks[0]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        loaded = load_host_config(args.host_config)
    except SymphonyError as exc:
        print(f"symphony-tracker: {exc}", file=sys.stderr)
        return 1
    setup_logging("tracker", level=getattr(logging, loaded.config.log_level.upper()))
    for warning in loaded.warnings:
        log.warning("host config: %s", warning)
    try:
        return asyncio.run(run(args, loaded.config))
    except SymphonyError as exc:
        log.error("tracker daemon cannot start: %s", exc)  # noqa: TRY400 - no traceback needed
        return 1
    except KeyError as exc:
        log.error("tracker daemon cannot start: unknown user %s", exc)  # noqa: TRY400
        return 1


if __name__ == "__main__":
    sys.exit(main())
