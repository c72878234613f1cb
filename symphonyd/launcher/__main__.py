"""``python -m symphonyd.launcher``: the symphony-launcher service entry point.

Under systemd the dispatcher's socket comes from socket activation (FileDescriptorName
``dispatcher``); for development pass ``--socket PATH`` and the daemon binds it (mode 0600).
Exit status: 0 after SIGTERM, 78 on invalid configuration, 1 on a runtime failure.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence

from symphonyd.core.sockets import AUDIT_LAUNCHER, TRACKER_LAUNCHER, WORKER_TRACKER_SOCKET
from symphonyd.launcher.daemon import DISPATCHER_USER, startup
from symphonyd.runtime.daemon import DaemonArgumentParser, run_daemon


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = DaemonArgumentParser(prog="symphony-launcher", description=__doc__)
    p.add_argument("--host-config", help="host config file (default /etc/symphony/symphonyd.toml)")
    p.add_argument("--socket", help="bind this path instead of socket activation")
    p.add_argument(
        "--tracker-socket",
        help=f"default <runtime_dir>/{TRACKER_LAUNCHER.name}; on a worker host (a link socket "
        f"is served) <runtime_dir>/{WORKER_TRACKER_SOCKET}, the control host's tracker",
    )
    p.add_argument("--audit-socket", help=f"default <runtime_dir>/{AUDIT_LAUNCHER.name}")
    p.add_argument("--agent-home", help="HOME of the agents (default <state_dir>/agent)")
    p.add_argument(
        "--dispatcher-uid",
        type=int,
        action="append",
        help=f"uid allowed to connect (default: {DISPATCHER_USER})",
    )
    p.add_argument(
        "--link-socket", help="worker host: bind the link's socket here instead of activation"
    )
    p.add_argument(
        "--link-uid",
        type=int,
        action="append",
        help="worker host: uid the link may connect as (default: symphony-link)",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_daemon("launcher", functools.partial(startup, args=args), stop_timeout=60.0)


if __name__ == "__main__":
    sys.exit(main())
