"""``symphonyctl issue new|list|move|comment``: manage the local tracker's issue files.

``issue show`` (``issue_show.py``) also asks the dispatcher about the issue.

Works on the directory directly (no daemon needed): ``--dir``, else ``$SYMPHONY_ISSUES_DIR``,
else the ``local`` tracker directory of the workflow the host config names, else the packaged
default ``/var/lib/symphony/issues``. Writes are atomic, so the tracker daemon picks edits up
on its next poll without any coordination.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from symphonyd.core.errors import SymphonyError
from symphonyd.core.issue import state_key
from symphonyd.core.tracker_kinds import effective_states
from symphonyd.ctl.issue_show import add_show
from symphonyd.runtime.hostconfig_file import load_host_config
from symphonyd.runtime.workflow_file import load_workflow
from symphonyd.tracker.local import DEFAULT_DIRECTORY, LocalAdapter
from symphonyd.tracker.local_store import LocalStore, check_identifier
from symphonyd.tracker.provider_config import TrackerSettings

EXIT_OK = 0
EXIT_USAGE = 2


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("issue", help="manage local tracker issues (Markdown files)")
    parser.add_argument(
        "--dir",
        help="issue directory (default: $SYMPHONY_ISSUES_DIR, else the local tracker directory "
        f"of the host's WORKFLOW.md, else {DEFAULT_DIRECTORY})",
    )
    sub = parser.add_subparsers(dest="issue_command", metavar="ACTION", required=True)

    new = sub.add_parser(
        "new",
        help="create an issue file",
        description="Create <dir>/IDENTIFIER.md; the tracker daemon sees it on its next poll.",
    )
    new.add_argument("identifier", help="issue key and file name, e.g. DEMO-7")
    new.add_argument("--title", required=True, help="one-line title (required)")
    new.add_argument(
        "--state", default="Todo", help="initial state (default %(default)s; must be active to run)"
    )
    new.add_argument("--priority", type=int, help="integer, lower dispatches first")
    new.add_argument(
        "--label", action="append", default=[], help="label (repeatable; matched lowercase)"
    )
    new.add_argument(
        "--blocked-by",
        action="append",
        default=[],
        metavar="IDENTIFIER",
        help="an issue that must reach a terminal state first (repeatable)",
    )
    new.add_argument("--description", default="", help="Markdown body; '-' reads stdin")
    new.set_defaults(func=_new)

    lst = sub.add_parser("list", help="list issues")
    lst.add_argument("--state", action="append", default=[], help="only these states")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=_list)

    move = sub.add_parser("move", help="change an issue's state")
    move.add_argument("identifier")
    move.add_argument("state")
    move.set_defaults(func=_move)

    comment = sub.add_parser("comment", help="append a comment ('-' reads stdin)")
    comment.add_argument("identifier")
    comment.add_argument("body")
    comment.add_argument("--author", default=os.environ.get("USER", "operator"))
    comment.set_defaults(func=_comment)

    add_show(sub, _store)


def _store(args: argparse.Namespace) -> LocalStore:
    return LocalStore(args.dir or os.environ.get("SYMPHONY_ISSUES_DIR") or configured_directory())


def configured_directory() -> str:
    """The directory the tracker daemon uses, when the host's workflow is a local tracker."""
    try:
        workflow = load_workflow(load_host_config().config.workflow_path)
    except SymphonyError:
        return DEFAULT_DIRECTORY
    tracker = workflow.definition.config.get("tracker")
    provider = tracker.get("provider") if isinstance(tracker, dict) else None
    if not isinstance(tracker, dict) or tracker.get("kind") != "local":
        return DEFAULT_DIRECTORY
    directory = provider.get("directory") if isinstance(provider, dict) else None
    if not isinstance(directory, str) or not directory.strip():
        return DEFAULT_DIRECTORY
    return str(workflow.directory / directory.strip())  # an absolute path stays as it is


def _text(value: str) -> str:
    return sys.stdin.read() if value == "-" else value


def _fail(exc: SymphonyError) -> int:
    print(f"symphonyctl issue: {exc}", file=sys.stderr)
    return EXIT_USAGE


def _new(args: argparse.Namespace) -> int:
    try:
        record = _store(args).create(
            args.identifier,
            title=args.title,
            state=args.state,
            description=_text(args.description),
            priority=args.priority,
            labels=args.label,
            blocked_by=args.blocked_by,
        )
    except SymphonyError as exc:
        return _fail(exc)
    print(f"created {record.identifier}")
    return EXIT_OK


def _list(args: argparse.Namespace) -> int:
    store = _store(args)
    active, terminal = effective_states("local", None, None)
    adapter = LocalAdapter(
        TrackerSettings("local", {"directory": str(store.directory.absolute())}, active, terminal)
    )
    try:
        issues, problems = adapter.scan()
    except SymphonyError as exc:
        return _fail(exc)
    wanted = {state_key(s) for s in args.state}
    issues = [i for i in issues if not wanted or state_key(i.state) in wanted]
    if args.json:
        print(json.dumps([i.to_dict() for i in issues], indent=2))
    else:
        for i in issues:
            flag = "" if i.dispatchable else "  (blocked)"
            print(
                f"{i.identifier:<16} {i.state:<14} {i.priority if i.priority else '-':<3} "
                f"{i.title}{flag}"
            )
    for identifier, reason in sorted(problems.items()):
        print(f"warning: skipped malformed {identifier}.md: {reason}", file=sys.stderr)
    return EXIT_OK


def _move(args: argparse.Namespace) -> int:
    if not args.state.strip():
        print("symphonyctl issue: state must not be empty", file=sys.stderr)
        return EXIT_USAGE
    try:
        record = _store(args).update(check_identifier(args.identifier), state=args.state.strip())
    except SymphonyError as exc:
        return _fail(exc)
    print(f"{record.identifier} -> {record.meta['state']}")
    return EXIT_OK


def _comment(args: argparse.Namespace) -> int:
    body = _text(args.body)
    if not body.strip():
        print("symphonyctl issue: comment must not be empty", file=sys.stderr)
        return EXIT_USAGE
    try:
        _store(args).add_comment(check_identifier(args.identifier), body, args.author)
    except SymphonyError as exc:
        return _fail(exc)
    print(f"commented on {args.identifier}")
    return EXIT_OK
