"""``symphonyctl logs IDENTIFIER``: one issue's journal entries across the symphony units.

The daemons log ``issue_identifier=...`` through ``runtime/logging.py``, which the journal
stores as the structured field ``ISSUE_IDENTIFIER``; this command is a ``journalctl`` match
on that field, limited to the suite's units so no other program can inject entries by
writing the same field. The identifier reaches journalctl as one argv element after ``--``
and is validated first, so it can never be read as an option.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any

from symphonyd.core.sockets import SERVICES, service_unit
from symphonyd.ctl.main import EXIT_UNAVAILABLE, EXIT_USAGE
from symphonyd.ctl.since import HELP as SINCE_HELP
from symphonyd.ctl.since import journal_timestamp
from symphonyd.runtime.logging import journal_field_name

JOURNAL_FIELD = journal_field_name("issue_identifier") or "ISSUE_IDENTIFIER"
MAX_IDENTIFIER = 256
# Printable, no whitespace; a leading '-' is refused separately with a clearer message.
_IDENTIFIER = re.compile(r"[^\s\x00-\x1f\x7f]+")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("logs", help="show one issue's journal entries")
    parser.add_argument("identifier", help="issue identifier, e.g. ABC-123")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new entries")
    parser.add_argument("--since", type=journal_timestamp, metavar="TIME", help=SINCE_HELP)
    parser.add_argument("-n", "--lines", type=_lines, metavar="N", help="only the last N entries")
    parser.add_argument("--json", action="store_true", help="one journal JSON object per line")
    # journalctl's own flag: accepted so habits carry over; output is never paged anyway.
    parser.add_argument("--no-pager", action="store_true", help="accepted; output is never paged")
    parser.set_defaults(func=run_logs)


def check_identifier(text: str) -> str:
    """Return ``text`` if it is safe to hand to journalctl; raises ValueError otherwise."""
    if not text:
        raise ValueError("identifier is empty")
    if text.startswith("-"):
        raise ValueError("identifier must not start with '-'")
    if len(text) > MAX_IDENTIFIER:
        raise ValueError(f"identifier is longer than {MAX_IDENTIFIER} characters")
    if not _IDENTIFIER.fullmatch(text):
        raise ValueError("identifier holds whitespace or control characters")
    return text


def journalctl_argv(
    identifier: str,
    *,
    follow: bool = False,
    since: str | None = None,
    lines: int | None = None,
    json_output: bool = False,
) -> list[str]:
    argv = ["journalctl", "--no-pager", "--output", "json" if json_output else "short-iso"]
    for daemon in SERVICES:
        argv += ["--unit", service_unit(daemon)]
    if since is not None:
        # Already resolved by ctl/since.py; one element with '=' so it is never an option.
        argv.append(f"--since={since}")
    if lines is not None:
        argv.append(f"--lines={lines}")
    if follow:
        argv.append("--follow")
    argv += ["--", f"{JOURNAL_FIELD}={check_identifier(identifier)}"]
    return argv


def run_logs(args: argparse.Namespace) -> int:
    try:
        check_identifier(args.identifier)
    except ValueError as exc:
        print(f"error: invalid_identifier: {exc}", file=sys.stderr)
        return EXIT_USAGE
    argv = journalctl_argv(
        args.identifier,
        follow=args.follow,
        since=args.since,
        lines=args.lines,
        json_output=args.json,
    )
    sys.stdout.flush()
    try:
        # exec: journalctl owns the terminal (pager-less, Ctrl-C ends it) and its exit code.
        os.execvp(argv[0], argv)  # noqa: S606 (fixed program, validated argv)
    except OSError as exc:
        print(
            f"symphonyctl: cannot run journalctl ({exc.strerror}); install systemd",
            file=sys.stderr,
        )
    return EXIT_UNAVAILABLE


def _lines(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 1 <= value <= 1_000_000:
        raise argparse.ArgumentTypeError("must be between 1 and 1000000")
    return value
