"""``symphonyctl audit``: verify the chain, show records, print the head for checkpoints.

These read the day files directly (root can, the audit writer need not be running), so
verification works on a copy of the directory on another host just as well.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import date
from pathlib import Path
from typing import Any

from symphonyd.audit.layout import DEFAULT_AUDIT_DIR, day_files
from symphonyd.audit.verify import Checkpoint, iter_records, verify_dir
from symphonyd.ctl.main import EXIT_CHECK_FAILED, EXIT_OK, EXIT_USAGE
from symphonyd.ctl.since import HELP as SINCE_HELP
from symphonyd.ctl.since import audit_timestamp

_PAYLOAD_PREVIEW = 160


def _default_dir() -> Path:
    return Path(os.environ.get("SYMPHONY_AUDIT_DIR", str(DEFAULT_AUDIT_DIR)))


def _day(text: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def register(subparsers: Any) -> None:
    audit = subparsers.add_parser("audit", help="verify and read the audit log")
    sub = audit.add_subparsers(dest="audit_command", metavar="SUBCOMMAND", required=True)

    verify = sub.add_parser("verify", help="check the hash chain; exit 1 at the first break")
    verify.add_argument("--dir", type=Path, default=None, help="audit directory")
    verify.add_argument("--from", dest="from_day", type=_day, help="first day (YYYY-MM-DD)")
    verify.add_argument("--to", dest="to_day", type=_day, help="last day (YYYY-MM-DD)")
    verify.add_argument(
        "--checkpoint",
        type=_checkpoint,
        help="SEQ:HASH of an earlier head kept off-host; the chain must still contain it",
    )
    verify.set_defaults(func=cmd_verify)

    show = sub.add_parser("show", help="print records, oldest first")
    show.add_argument("--dir", type=Path, default=None, help="audit directory")
    show.add_argument("--issue", help="issue id or identifier")
    show.add_argument("--type", dest="types", action="append", help="event type (repeatable)")
    show.add_argument("--since", type=audit_timestamp, metavar="TIME", help=SINCE_HELP)
    show.add_argument("--json", action="store_true", help="one JSON record per line")
    show.set_defaults(func=cmd_show)

    head = sub.add_parser("head", help="print SEQ:HASH of the newest record (for checkpoints)")
    head.add_argument("--dir", type=Path, default=None, help="audit directory")
    head.set_defaults(func=cmd_head)


def _checkpoint(text: str) -> Checkpoint:
    try:
        return Checkpoint.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _directory(args: argparse.Namespace) -> Path | None:
    directory: Path = args.dir or _default_dir()
    if not directory.is_dir():
        print(f"error: no audit directory at {directory}", file=sys.stderr)
        return None
    return directory


def cmd_verify(args: argparse.Namespace) -> int:
    directory = _directory(args)
    if directory is None:
        return EXIT_USAGE
    result = verify_dir(
        directory, from_day=args.from_day, to_day=args.to_day, checkpoint=args.checkpoint
    )
    print(result.summary())
    return EXIT_OK if result.ok else EXIT_CHECK_FAILED


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def _human(record: dict[str, Any]) -> str:
    sender = record["sender"]
    who = f"uid={sender['uid']} pid={sender['pid']}"
    if sender.get("unit"):
        who += f" {sender['unit']}"
    issue = record["issue_identifier"] or record["issue_id"] or "-"
    payload = json.dumps(record["payload"], sort_keys=True, separators=(",", ":"))
    if len(payload) > _PAYLOAD_PREVIEW:
        payload = payload[:_PAYLOAD_PREVIEW] + "…"
    return _printable(
        f"{record['ts']}  #{record['seq']}  {record['type']}  [{who}]  {issue}  {payload}"
    )


def _matches(record: dict[str, Any], args: argparse.Namespace) -> bool:
    if args.types and record["type"] not in args.types:
        return False
    if args.issue and args.issue not in (record["issue_id"], record["issue_identifier"]):
        return False
    return not (args.since and record["ts"] < args.since)


def cmd_show(args: argparse.Namespace) -> int:
    directory = _directory(args)
    if directory is None:
        return EXIT_USAGE
    # `audit show | head` closing the pipe is handled for every command in ctl/main.py.
    damaged = _print_matching(directory, args)
    if damaged:
        print(
            f"warning: {damaged} damaged line(s); see `symphonyctl audit verify`", file=sys.stderr
        )
    return EXIT_OK


def _print_matching(directory: Path, args: argparse.Namespace) -> int:
    damaged = 0
    from_day = args.since[:10] if args.since else None
    for item in iter_records(directory, from_day=from_day):
        if item.record is None:
            damaged += 1
            print(f"warning: {item.file}:{item.line}: {item.error}", file=sys.stderr)
            continue
        if _matches(item.record, args):
            if args.json:
                print(json.dumps(item.record, sort_keys=True, separators=(",", ":")))
            else:
                print(_human(item.record))
    return damaged


def cmd_head(args: argparse.Namespace) -> int:
    directory = _directory(args)
    if directory is None:
        return EXIT_USAGE
    for _day, path in reversed(day_files(directory)):
        last = None
        for item in iter_records(directory, from_day=path.name[:10], to_day=path.name[:10]):
            if item.record is not None:
                last = item.record
        if last is not None:
            print(f"{last['seq']}:{last['record_hash']}")
            return EXIT_OK
    print("error: no audit records", file=sys.stderr)
    return EXIT_CHECK_FAILED
