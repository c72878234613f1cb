"""``python -m symphonyd.dispatcher`` (ExecStart of symphony-dispatcher.service).

Exit status: 0 after SIGTERM, 78 on invalid configuration (host config, WORKFLOW.md,
arguments), 75 when another dispatcher holds the state directory, 1 on a runtime failure.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence

from symphonyd.dispatcher.daemon import startup
from symphonyd.runtime.daemon import DaemonArgumentParser, run_daemon


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = DaemonArgumentParser(prog="symphony-dispatcher", description=__doc__)
    p.add_argument("--host-config", help="host config TOML (default /etc/symphony/symphonyd.toml)")
    p.add_argument("--workflow", help="WORKFLOW.md path (overrides the host config)")
    p.add_argument("--state-dir", help="where durable dispatcher state lives")
    p.add_argument("--runtime-dir", help="directory of the daemons' sockets")
    p.add_argument("--ctl-socket", help="bind this control socket instead of socket activation")
    p.add_argument(
        "--link-socket", help="worker hosts: bind the link's socket here instead of activation"
    )
    p.add_argument(
        "--link-uid",
        type=int,
        action="append",
        help="uid of the link daemon on --link-socket or the activated link socket "
        "(default: symphony-link)",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_daemon("dispatcher", functools.partial(startup, args=args))


if __name__ == "__main__":
    sys.exit(main())
