"""``python -m symphonyd.tracker``: the symphony-tracker service entry point.

Under systemd the two listening sockets come from socket activation (FileDescriptorName
``dispatcher`` and ``launcher``); for development pass ``--dispatcher-socket`` and
``--launcher-socket`` paths and the daemon binds them itself (mode 0600).
Exit status: 0 after SIGTERM, 78 on invalid configuration, 1 on a runtime failure.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence

from symphonyd.core.sockets import AUDIT_TRACKER
from symphonyd.runtime.daemon import DaemonArgumentParser, run_daemon
from symphonyd.tracker.daemon import DISPATCHER_USER, LINK_USER, WEBHOOK_USER, startup


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = DaemonArgumentParser(prog="symphony-tracker", description=__doc__)
    p.add_argument("--host-config", help="host config file (default /etc/symphony/symphonyd.toml)")
    p.add_argument("--workflow", help="WORKFLOW.md path (default: the host config's)")
    p.add_argument("--dispatcher-socket", help="bind this path instead of socket activation")
    p.add_argument("--launcher-socket", help="bind this path instead of socket activation")
    p.add_argument(
        "--webhook-socket", help="bind this path for symphony-webhook's tracker.hint (optional)"
    )
    p.add_argument(
        "--link-socket", help="worker hosts: bind this path for the link daemon (optional)"
    )
    p.add_argument(
        "--audit-socket",
        help=f"audit writer socket (default <runtime_dir>/{AUDIT_TRACKER.name}); "
        "'none' only logs tracker writes",
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
    p.add_argument(
        "--webhook-uid",
        type=int,
        action="append",
        help=f"uid allowed on the webhook socket (default: {WEBHOOK_USER})",
    )
    p.add_argument(
        "--link-uid",
        type=int,
        action="append",
        help=f"uid allowed on the link socket (default: {LINK_USER})",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_daemon("tracker", functools.partial(startup, args=args))


if __name__ == "__main__":
    sys.exit(main())
