"""``python -m symphonyd.webhook`` (ExecStart of symphony-webhook.service).

Under systemd the listener is the ``http`` socket of symphony-webhook.socket and the HMAC keys
are the unit's credentials; for development pass ``--listen HOST:PORT`` and ``--secret-file
NAME=PATH`` (github, linear, gitlab, gitlab_signing, jira, asana), and ``--state-dir`` for
Asana's handshake secret.
Exit status: 0 after SIGTERM, 78 on invalid configuration (no or bad secret, bad arguments),
1 on a runtime failure.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence

from symphonyd.core.sockets import AUDIT_WEBHOOK, TRACKER_WEBHOOK
from symphonyd.runtime.daemon import DaemonArgumentParser, run_daemon
from symphonyd.webhook.daemon import startup


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = DaemonArgumentParser(prog="symphony-webhook", description=__doc__)
    p.add_argument("--host-config", help="host config TOML (default /etc/symphony/symphonyd.toml)")
    p.add_argument("--listen", help="bind HOST:PORT instead of socket activation (development)")
    p.add_argument(
        "--secret-file",
        action="append",
        help="NAME=PATH: the credential NAME (github, linear, gitlab, gitlab_signing, jira, "
        "asana); repeatable",
    )
    p.add_argument("--state-dir", help="where Asana's handshake secret is kept ($STATE_DIRECTORY)")
    p.add_argument("--tracker-socket", help=f"default <runtime_dir>/{TRACKER_WEBHOOK.name}")
    p.add_argument(
        "--audit-socket",
        help=f"default <runtime_dir>/{AUDIT_WEBHOOK.name}; 'none' keeps only journal and metrics",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_daemon("webhook", functools.partial(startup, args=args), stop_timeout=10.0)


if __name__ == "__main__":
    sys.exit(main())
