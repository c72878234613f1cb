"""``symphonyctl prune --older-than DURATION [--dry-run]``: reclaim old workspaces.

The decision needs issue states (tracker) and live runs (launcher), and only the launcher may
delete a workspace (before_remove hooks, path containment), so this command asks the
dispatcher (``dispatcher.prune``) and prints its answer. A duration that does not parse
fails closed: exit 2 before anything is sent.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from symphonyd.core.api.dispatcher import DISPATCHER_PRUNE, PruneParams
from symphonyd.core.codec import encode
from symphonyd.core.errors import SymphonyError, ValidationError
from symphonyd.ctl.control_cmd import _failed as report_failure
from symphonyd.ctl.control_cmd import _safe, call, socket_path
from symphonyd.ctl.main import EXIT_OK, EXIT_USAGE

UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# Ten years: anything longer is a typo, and the bound keeps the value far inside int64.
MAX_DURATION_S = 10 * 365 * 86400
_DURATION = re.compile(r"([1-9][0-9]{0,9})([mhdw])")


def parse_duration(text: str) -> int:
    """``30d``, ``12h``, ``90m``, ``2w`` -> seconds; raises ValidationError otherwise."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValidationError(
            f"{_echo(text)} is not a duration like 90m, 12h, 30d or 2w "
            "(a positive whole number and one unit)",
            code="invalid_duration",
        )
    seconds = int(match.group(1)) * UNIT_SECONDS[match.group(2)]
    if seconds > MAX_DURATION_S:
        raise ValidationError(f"{_echo(text)} is longer than ten years", code="invalid_duration")
    return seconds


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "prune",
        help="remove old workspaces and run data of finished issues (through the dispatcher)",
    )
    parser.add_argument(
        "--older-than",
        required=True,
        metavar="DURATION",
        help="only what is untouched this long: 90m, 12h, 30d, 2w",
    )
    parser.add_argument("--dry-run", action="store_true", help="say what would go; delete none")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--socket", help="dispatcher control socket (default $SYMPHONY_DISPATCHER_SOCKET)"
    )
    parser.set_defaults(func=run_prune)


def run_prune(args: argparse.Namespace) -> int:
    try:
        older_than_s = parse_duration(args.older_than)
    except SymphonyError as exc:
        print(f"error: {exc.error_code}: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    path = socket_path(args)
    try:
        result = call(path, DISPATCHER_PRUNE, PruneParams(older_than_s, args.dry_run), 600.0)
    except SymphonyError as exc:
        return report_failure(exc, path)
    if args.json:
        print(json.dumps(encode(result), indent=2, sort_keys=True))
        return EXIT_OK
    verb = "would remove" if args.dry_run else "removed"
    forget = "would forget" if args.dry_run else "forgot"
    for entry in result.removed:
        print(f"{verb} {_safe(entry.identifier)}: {_safe(entry.reason)}")
    for entry in result.kept:
        print(f"kept {_safe(entry.identifier)}: {_safe(entry.reason)}")
    for entry in result.forgotten:
        print(f"{forget} the run data of {_safe(entry.identifier)}: {_safe(entry.reason)}")
    forgotten = "would be forgotten" if args.dry_run else "forgotten"
    print(
        f"{len(result.removed)} {verb}, {len(result.kept)} kept, "
        f"{len(result.forgotten)} run data {forgotten}"
    )
    return EXIT_OK


def _echo(text: str) -> str:
    shown = "".join(c if c.isprintable() else "?" for c in text[:64])
    return repr(shown + ("..." if len(text) > 64 else ""))
