"""``symphonyctl audit``: verify the chain, show records, print the head for checkpoints.

These read the day files directly (root can, the audit writer need not be running), so
verification works on a copy of the directory on another host just as well. ``verify`` also
compares the chain with the furthest head the writer anchored in the journal
(``symphonyd.audit.anchor``), which is what catches a cut or replaced log.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import date
from pathlib import Path
from typing import Any

from symphonyd.audit.anchor import anchor_directory
from symphonyd.audit.anchor_read import AnchorReadError, read_anchors
from symphonyd.audit.verify import BROKEN, Checkpoint, VerifyResult, iter_records, verify_dir
from symphonyd.core.audit_layout import (
    DEFAULT_AUDIT_DIR,
    DEFAULT_REPLICAS_DIR,
    day_files,
    replica_dirs,
)
from symphonyd.ctl.main import EXIT_CHECK_FAILED, EXIT_OK, EXIT_USAGE
from symphonyd.ctl.since import HELP as SINCE_HELP
from symphonyd.ctl.since import audit_timestamp

# The chain itself holds but does not reach, or does not contain, a head kept outside it
# (journal anchor or --checkpoint): newest records cut, or history rewritten.
EXIT_ANCHOR_MISMATCH = 4

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

    verify = sub.add_parser(
        "verify",
        help="check the hash chain (exit 1 at the first break) and that it still reaches the "
        "head anchored in the journal (exit 4 if truncated or rewritten)",
    )
    verify.add_argument("--dir", type=Path, default=None, help="audit directory")
    verify.add_argument("--from", dest="from_day", type=_day, help="first day (YYYY-MM-DD)")
    verify.add_argument("--to", dest="to_day", type=_day, help="last day (YYYY-MM-DD)")
    verify.add_argument(
        "--checkpoint",
        type=_checkpoint,
        help="SEQ:HASH of an earlier head kept off-host; the chain must still contain it",
    )
    anchors = verify.add_mutually_exclusive_group()
    anchors.add_argument(
        "--no-anchor", action="store_true", help="do not compare with the journal's head anchor"
    )
    anchors.add_argument(
        "--anchor-journal",
        type=Path,
        metavar="PATH",
        help="read anchors from this journal directory or file (a copy) instead of the system's",
    )
    verify.add_argument(
        "--anchor-dir",
        metavar="DIR",
        help="the directory the anchors were written for, when verifying a copy elsewhere "
        "(default: --dir)",
    )
    verify.add_argument(
        "--require-anchor",
        action="store_true",
        help="fail (exit 4) when no journal anchor could be compared",
    )
    replicas = verify.add_mutually_exclusive_group()
    replicas.add_argument(
        "--replicas",
        type=Path,
        metavar="DIR",
        default=DEFAULT_REPLICAS_DIR,
        help="also verify every worker host's replicated chain under DIR/<host>/audit "
        f"(default: {DEFAULT_REPLICAS_DIR}; nothing if it does not exist)",
    )
    replicas.add_argument("--no-replicas", action="store_true", help="verify the local chain only")
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


def _journal_anchor(directory: Path, args: argparse.Namespace) -> tuple[Checkpoint | None, str]:
    """The furthest journal anchor for ``directory`` as a checkpoint, or None and why not."""
    name = args.anchor_dir or anchor_directory(directory)
    owner = directory.stat().st_uid
    try:
        scan = read_anchors(name, owner, args.anchor_journal)
    except AnchorReadError as exc:
        return None, f"cannot read journal anchors: {exc}"
    if scan.malformed:
        print(f"warning: ignored {scan.malformed} malformed journal anchor(s)", file=sys.stderr)
    if scan.best is None:
        return None, (
            f"no journal anchor for {name} (uid {owner}) yet: the end of the chain is not "
            "confirmed. The writer anchors its head at start, every 60 s while it moves, at "
            "each new day file and at shutdown"
        )
    best = scan.best
    return Checkpoint(best.seq, best.hash, source=best.source, chain=best.chain), ""


def _anchor_status(anchor: Checkpoint, result: VerifyResult, to_day: str | None) -> str | None:
    """How the anchor was used in a passing verification, or None if it could not be."""
    if result.first_seq is not None and anchor.seq < result.first_seq:
        return None
    if to_day is not None and (result.head is None or anchor.seq > result.head.seq):
        return None
    return f"{anchor.source} (seq {anchor.seq}) matches"


def cmd_verify(args: argparse.Namespace) -> int:
    directory = _directory(args)
    if directory is None:
        return EXIT_USAGE
    codes = [_verify_local(directory, args)]
    if codes[0] == EXIT_USAGE:
        return EXIT_USAGE
    if not args.no_replicas:
        codes += [_verify_replica(host, path, args) for host, path in replica_dirs(args.replicas)]
    # A broken chain anywhere outranks a cut or rewritten one.
    for code in (EXIT_CHECK_FAILED, EXIT_ANCHOR_MISMATCH):
        if code in codes:
            return code
    return EXIT_OK


def _verify_replica(host: str, path: Path, args: argparse.Namespace) -> int:
    """One worker host's replicated chain: the same check, one line naming the host."""
    if not day_files(path):
        print(f"host {host}: nothing replicated yet")
        return EXIT_OK
    result = verify_dir(path, from_day=args.from_day, to_day=args.to_day)
    print(f"host {host}: {result.summary()}")
    return EXIT_OK if result.ok else EXIT_CHECK_FAILED


def _verify_local(directory: Path, args: argparse.Namespace) -> int:
    anchor, why = (None, "anchor check skipped (--no-anchor)")
    if not args.no_anchor:
        anchor, why = _journal_anchor(directory, args)
        if anchor is None and args.anchor_journal is not None:
            print(f"error: {why}", file=sys.stderr)
            return EXIT_USAGE
    result = verify_dir(
        directory,
        from_day=args.from_day,
        to_day=args.to_day,
        checkpoint=args.checkpoint,
        checkpoints=[anchor] if anchor is not None else [],
    )
    if not result.ok:
        print(result.summary())
        return EXIT_CHECK_FAILED if result.kind == BROKEN else EXIT_ANCHOR_MISMATCH
    status = None if anchor is None else _anchor_status(anchor, result, args.to_day)
    if anchor is not None and status is None:
        why = f"{anchor.source} (seq {anchor.seq}) lies outside the verified range"
    print(result.summary() + (f"; {status}" if status else ""))
    if status is None:
        print(f"note: {why}", file=sys.stderr)
        if args.require_anchor:
            print("no journal anchor compared (--require-anchor)")
            return EXIT_ANCHOR_MISMATCH
    return EXIT_OK


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
