"""``symphonyctl issue show IDENTIFIER``: the dispatcher's view of one issue plus its file.

The dispatcher's ``dispatcher.issue`` (runtime state, attempts, last error, workspace) is
merged with the issue's file when the local tracker has one. Either half may be missing:
an idle issue is unknown to the dispatcher, a Linear issue has no file. Exit 0 when at
least one half was found, 1 when neither, 3 when the dispatcher could not be asked (the
file is still shown).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from symphonyd.core.api.dispatcher import DISPATCHER_ISSUE, IssueRefParams, IssueView
from symphonyd.core.codec import encode
from symphonyd.core.errors import SymphonyError
from symphonyd.ctl.control_cmd import TRANSPORT_CODES, _safe, call, render_issue, socket_path
from symphonyd.ctl.main import EXIT_CHECK_FAILED, EXIT_OK, EXIT_UNAVAILABLE
from symphonyd.tracker.errors import INVALID_IDENTIFIER
from symphonyd.tracker.local_store import LocalRecord, LocalStore

FILE_FIELDS = ("title", "state", "priority", "labels", "blocked_by", "created_at", "updated_at")


def add_show(sub: Any, store_of: Callable[[argparse.Namespace], LocalStore]) -> None:
    show = sub.add_parser(
        "show", help="one issue: dispatcher state (runs, retries, holds) and its tracker file"
    )
    show.add_argument("identifier")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.add_argument(
        "--socket", help="dispatcher control socket (default $SYMPHONY_DISPATCHER_SOCKET)"
    )
    show.set_defaults(func=lambda args: run_show(args, store_of))


def run_show(args: argparse.Namespace, store_of: Callable[[argparse.Namespace], LocalStore]) -> int:
    ident: str = args.identifier
    view: IssueView | None = None
    notes: list[str] = []
    unreachable = False
    path = socket_path(args)
    try:
        view = call(path, DISPATCHER_ISSUE, IssueRefParams(ident))
    except SymphonyError as exc:
        if exc.error_code in TRANSPORT_CODES:
            unreachable = True
            notes.append(f"dispatcher not reachable at {path} ({exc.message})")
        elif exc.error_code != "issue_not_found":
            notes.append(f"dispatcher: {exc.error_code}: {exc.message}")
    record: LocalRecord | None = None
    store = store_of(args)
    try:
        record = store.read(ident)
    except SymphonyError as exc:
        # Not a local identifier, or a malformed file: say so, keep the dispatcher's half.
        if exc.error_code != INVALID_IDENTIFIER:
            notes.append(f"tracker file: {exc.message}")
    if args.json:
        print(
            json.dumps(
                {
                    "dispatcher": encode(view) if view else None,
                    "tracker": _record_dict(record, store) if record else None,
                    "notes": notes,
                },
                indent=2,
                sort_keys=True,
                default=str,
            )
        )
    else:
        _print_human(ident, view, record, store, notes)
    if unreachable:
        print("symphonyctl: is it running? systemctl status symphony-dispatcher", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if view is None and record is None:
        print(f"symphonyctl: {_safe(ident)}: unknown to the dispatcher and no issue file",
              file=sys.stderr)  # fmt: skip
        return EXIT_CHECK_FAILED
    return EXIT_OK


def _record_dict(record: LocalRecord, store: LocalStore) -> dict[str, Any]:
    meta = {k: record.meta.get(k) for k in FILE_FIELDS if k in record.meta}
    return {
        "identifier": record.identifier,
        "path": str(store.path_for(record.identifier)),
        **meta,
        "description": record.description,
    }


def _print_human(
    ident: str,
    view: IssueView | None,
    record: LocalRecord | None,
    store: LocalStore,
    notes: list[str],
) -> None:
    if view is not None:
        print(render_issue(view))
    else:
        print(f"{_safe(ident)}: not known to the dispatcher (never dispatched, or idle)")
    if record is not None:
        print(f"  tracker file {_safe(str(store.path_for(record.identifier)))}")
        for key in FILE_FIELDS:
            value = record.meta.get(key)
            if value not in (None, "", []):
                shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
                print(f"    {key}: {_safe(shown)}")
    for note in notes:
        print(f"  note: {_safe(note)}")
