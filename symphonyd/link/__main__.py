"""``python -m symphonyd.link``: the link to worker hosts (docs/design/1100-worker-hosts.md).

Exit status: 0 after SIGTERM, 78 on invalid configuration (no hosts, no key, no pinned host
keys, bad arguments), 1 on a runtime failure.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence

from symphonyd.core.sockets import DISPATCHER_LINK, TRACKER_LINK
from symphonyd.link.daemon import DISPATCHER_USER, WORKER_TRACKER_SOCKET, startup
from symphonyd.runtime.daemon import DaemonArgumentParser, run_daemon


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = DaemonArgumentParser(prog="symphony-link", description=__doc__)
    p.add_argument("--host-config", help="host config file (default /etc/symphony/symphonyd.toml)")
    p.add_argument("--hosts-dir", help="where the per-worker sockets go (default <runtime>/hosts)")
    p.add_argument("--key", help="private key file instead of the systemd credential")
    p.add_argument("--ssh", default="ssh", help="the OpenSSH client (default: ssh on PATH)")
    p.add_argument("--state-dir", help="where worker audit replicas go (default: paths.state_dir)")
    p.add_argument(
        "--replicate-interval",
        type=float,
        default=2.0,
        help="seconds between audit polls of a worker that is caught up (default: 2)",
    )
    p.add_argument(
        "--tracker-socket",
        help=f"the tracker's link socket (default <runtime>/{TRACKER_LINK.name})",
    )
    p.add_argument(
        "--dispatcher-socket",
        help=f"the dispatcher's link socket (default <runtime>/{DISPATCHER_LINK.name})",
    )
    p.add_argument(
        "--relay-dir", help="where the workers' tracker relays listen (default <runtime>/link)"
    )
    p.add_argument(
        "--worker-tracker-socket",
        default=WORKER_TRACKER_SOCKET,
        help="the socket sshd creates on each worker for its launcher's tracker client "
        f"(default {WORKER_TRACKER_SOCKET})",
    )
    p.add_argument(
        "--dispatcher-uid",
        type=int,
        action="append",
        help=f"uid allowed to connect (default: {DISPATCHER_USER})",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return run_daemon("link", functools.partial(startup, args=parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
