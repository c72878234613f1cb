"""``python -m symphonyd.dashboard`` (ExecStart of symphony-dashboard.service).

Exit status: 0 after SIGTERM, 78 on invalid configuration (host config, a refused bind
address, arguments), 1 on a runtime failure.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence

from symphonyd.core.sockets import AUDIT_DASHBOARD, DISPATCHER_DASHBOARD
from symphonyd.dashboard.daemon import startup
from symphonyd.runtime.daemon import DaemonArgumentParser, run_daemon


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = DaemonArgumentParser(prog="symphony-dashboard", description=__doc__)
    p.add_argument("--host-config", help="host config TOML (default /etc/symphony/symphonyd.toml)")
    p.add_argument("--workflow", help="WORKFLOW.md for server.port (default: the host config's)")
    p.add_argument("--host", help="bind this address instead of dashboard.host (development)")
    p.add_argument(
        "--port",
        type=int,
        help="bind this port instead of socket activation (over server.port and dashboard.port)",
    )
    p.add_argument("--dispatcher-socket", help=f"default <runtime_dir>/{DISPATCHER_DASHBOARD.name}")
    p.add_argument(
        "--audit-socket", help=f"default <runtime_dir>/{AUDIT_DASHBOARD.name}; 'none' disables"
    )
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        help="extra Host header name accepted (e.g. the name a proxy forwards); repeatable",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_daemon("dashboard", functools.partial(startup, args=args), stop_timeout=10.0)


if __name__ == "__main__":
    sys.exit(main())
