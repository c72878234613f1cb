"""``symphonyctl status|pause|resume|stop|release|refresh``: the dispatcher's control API.

Talks to ``dispatcher-ctl.sock`` (root only). Exit codes: 0 done, 1 the dispatcher refused
(unknown issue, nothing to release), 2 bad arguments, 3 the dispatcher is not reachable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any, TypeVar

from symphonyd.core.api.dispatcher import (
    DISPATCHER_ISSUE,
    DISPATCHER_PAUSE,
    DISPATCHER_REFRESH,
    DISPATCHER_RELEASE,
    DISPATCHER_RESUME,
    DISPATCHER_SNAPSHOT,
    DISPATCHER_STOP,
    SNAPSHOT_MAX_FRAME,
    ControlResult,
    DaemonHealthRow,
    IssueRefParams,
    IssueView,
    PauseParams,
    StateSnapshot,
    WorkspaceStatus,
)
from symphonyd.core.api.shared import Empty
from symphonyd.core.codec import encode
from symphonyd.core.errors import SymphonyError
from symphonyd.core.sockets import DISPATCHER_CTL
from symphonyd.core.wire import MethodSpec
from symphonyd.ctl.main import EXIT_CHECK_FAILED, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE
from symphonyd.runtime.hostconfig_file import load_host_config
from symphonyd.runtime.ipc_client import IpcClient

P = TypeVar("P")
R = TypeVar("R")
SOCKET_ENV = "SYMPHONY_DISPATCHER_SOCKET"
TRANSPORT_CODES = ("unavailable", "timeout", "peer_not_allowed", "frame_too_large")


def register(subparsers: Any) -> None:
    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = subparsers.add_parser(name, help=help_text)
        parser.add_argument(
            "--socket", help=f"dispatcher control socket (default ${SOCKET_ENV} or host config)"
        )
        return parser

    status = add("status", "show what the dispatcher is doing (or one issue)")
    status.add_argument("identifier", nargs="?", help="show one issue in detail")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=run_status)

    pause = add("pause", "start no new runs (runs in flight continue)")
    pause.add_argument("--reason", required=True, help="why; shown in status and audited")
    pause.set_defaults(func=lambda a: _control(a, DISPATCHER_PAUSE, PauseParams(a.reason)))

    resume = add("resume", "lift the operator pause")
    resume.set_defaults(func=lambda a: _control(a, DISPATCHER_RESUME, Empty()))

    stop = add("stop", "end one issue's run (or hold one not yet dispatched) and keep it out")
    stop.add_argument("identifier", help="the issue's identifier (MT-7) or its tracker id")
    stop.set_defaults(func=lambda a: _control(a, DISPATCHER_STOP, IssueRefParams(a.identifier)))

    release = add("release", "let a stopped, blocked or over-budget issue be dispatched again")
    release.add_argument("identifier", help="the issue's identifier (MT-7) or its tracker id")
    release.set_defaults(
        func=lambda a: _control(a, DISPATCHER_RELEASE, IssueRefParams(a.identifier))
    )

    refresh = add("refresh", "poll the tracker and reconcile now")
    refresh.set_defaults(func=run_refresh)


def socket_path(args: argparse.Namespace) -> Path:
    if args.socket:
        return Path(args.socket)
    if os.environ.get(SOCKET_ENV):
        return Path(os.environ[SOCKET_ENV])
    try:
        runtime = load_host_config().config.runtime_dir
    except SymphonyError:
        runtime = "/run/symphony"
    return DISPATCHER_CTL.path(runtime)


def call(path: Path, spec: MethodSpec[P, R], params: P, timeout: float = 30.0) -> R:
    async def go() -> R:
        connecting = IpcClient.connect(path, timeout=timeout, max_frame=SNAPSHOT_MAX_FRAME)
        async with await connecting as client:
            return await client.call(spec, params, timeout=timeout)

    return asyncio.run(go())


def _failed(exc: SymphonyError, path: Path) -> int:
    if exc.error_code in TRANSPORT_CODES:
        print(
            f"symphonyctl: the dispatcher is not reachable at {path} ({exc.message}).\n"
            "Is it running? Check: systemctl status symphony-dispatcher",
            file=sys.stderr,
        )
        return EXIT_UNAVAILABLE
    print(f"symphonyctl: {exc.error_code}: {_safe(exc.message)}", file=sys.stderr)
    return EXIT_USAGE if exc.error_code == "invalid_params" else EXIT_CHECK_FAILED


def _control(args: argparse.Namespace, spec: MethodSpec[P, ControlResult], params: P) -> int:
    path = socket_path(args)
    try:
        result = call(path, spec, params)
    except SymphonyError as exc:
        return _failed(exc, path)
    print(_safe(result.message))
    return EXIT_OK


def run_refresh(args: argparse.Namespace) -> int:
    path = socket_path(args)
    try:
        result = call(path, DISPATCHER_REFRESH, Empty())
    except SymphonyError as exc:
        return _failed(exc, path)
    print("refresh queued" + (" (joined one already queued)" if result.coalesced else ""))
    return EXIT_OK


def run_status(args: argparse.Namespace) -> int:
    path = socket_path(args)
    try:
        if args.identifier:
            view = call(path, DISPATCHER_ISSUE, IssueRefParams(args.identifier))
        else:
            snap = call(path, DISPATCHER_SNAPSHOT, Empty())
    except SymphonyError as exc:
        return _failed(exc, path)
    data: Any = view if args.identifier else snap
    if args.json:
        print(json.dumps(encode(data), indent=2, sort_keys=True))
    elif args.identifier:
        print(render_issue(view))
    else:
        print(render_status(snap))
    return EXIT_OK


def _safe(text: object) -> str:
    """Tracker and agent text may hold terminal escapes; never print them raw."""
    return "".join(c if c.isprintable() else "?" for c in str(text))


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    cells = [headers, *[[_safe(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in cells]  # fmt: skip


def _daemon_health(d: DaemonHealthRow) -> str:
    """One daemon as the dispatcher last saw it; an error says when it was seen, so an old
    one never reads as current, and a daemon not contacted yet is not called down."""
    if d.checked_at is None:
        return f"{d.daemon} not checked yet"
    if d.ok:
        return f"{d.daemon} ok"
    detail = f"{_safe(d.detail)}; " if d.detail else ""
    return f"{d.daemon} DOWN ({detail}as of {d.checked_at})"


def render_status(s: StateSnapshot) -> str:
    out = [f"dispatch: {'PAUSED' if s.pause.paused else 'active'}"]
    for r in s.pause.reasons:
        who = f" by uid {r.by_uid}" if r.by_uid is not None else ""
        until = f", until {r.until}" if r.until else ""
        out.append(f"  {r.code}: {_safe(r.message)} (since {r.since}{who}{until})")
    c = s.config
    if c.ok:
        out.append(f"config: ok {c.path} ({(c.fingerprint or '')[:12]}, loaded {c.loaded_at})")
    else:
        out.append(f"config: REJECTED {_safe(c.error)}")
        out.append(f"  still using {(c.fingerprint or 'nothing')[:12]} loaded {c.loaded_at}")
    out.append("daemons: " + ", ".join(_daemon_health(d) for d in s.daemons))
    b = s.budgets
    out.append(
        f"budgets: {b.tokens_today} tokens today ({b.day}) of {b.tokens_per_day or 'unlimited'}"
        f"; per issue {b.tokens_per_issue or 'unlimited'}"
    )
    t = s.codex_totals
    out.append(
        f"totals: {t.input_tokens} in, {t.output_tokens} out, {t.total_tokens} tokens, "
        f"{t.seconds_running:.0f} s of agent time"
    )
    # A HOST column only when worker hosts are configured (rows then name their host).
    hosts = any(r.host for r in s.running) or any(r.host for r in s.retrying)
    host_col = ["HOST"] if hosts else []
    out.append(f"running ({s.counts.running}/{s.max_concurrent_agents}):")
    if s.running:
        out += _table(
            ["ISSUE", *host_col, "STATE", "ATTEMPT", "TURNS", "TOKENS", "LAST EVENT", "STARTED"],
            [
                [
                    r.issue_identifier,
                    *([r.host or "-"] if hosts else []),
                    r.state,
                    str(r.attempt or "-"),
                    str(r.turn_count),
                    str(r.tokens.total_tokens),
                    r.last_event or "-",
                    r.started_at,
                ]  # fmt: skip
                for r in s.running
            ],
        )
    out.append(f"retrying ({s.counts.retrying}):")
    if s.retrying:
        out += _table(
            ["ISSUE", *host_col, "ATTEMPT", "DUE", "ERROR"],
            [
                [
                    r.issue_identifier,
                    *([r.host or "-"] if hosts else []),
                    str(r.attempt),
                    r.due_at,
                    r.error or "-",
                ]  # fmt: skip
                for r in s.retrying
            ],
        )
    out.append(f"held ({s.counts.held}):")
    if s.held:
        out += _table(
            ["ISSUE", "KIND", "SINCE", "REASON"],
            [[h.issue_identifier, h.kind, h.since, h.reason] for h in s.held],
        )
    if s.workspaces is not None:
        out += render_workspaces(s.workspaces)
    return "\n".join(out)


def render_workspaces(w: WorkspaceStatus) -> list[str]:
    """The last workspace survey: orphans and age cleanup (docs/workspaces.md)."""
    age = f"after {w.max_age_days} days" if w.max_age_days else "off"
    seen = f"surveyed {w.surveyed_at}" if w.surveyed_at else "not surveyed yet"
    out = [f"workspaces: {w.workspaces} ({seen}); age cleanup {age}, {w.removed} removed"]
    if w.error:
        out.append(f"  last sweep incomplete: {_safe(w.error)}")
    out.append(f"orphans ({w.orphan_count}):")
    if w.orphans:
        out += _table(
            ["NAME", "IDLE", "WHY"],
            [[o.name, _days(o.idle_s), o.reason] for o in w.orphans],
        )
        if w.orphan_count > len(w.orphans):
            out.append(f"  ... and {w.orphan_count - len(w.orphans)} more")
    return out


def _days(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 86400:.1f}d"


def render_issue(v: IssueView) -> str:
    out = [f"{_safe(v.issue_identifier)} ({_safe(v.issue_id)}): {v.status}"]
    if v.running:
        r = v.running
        out.append(
            f"  run {r.run_id} attempt {r.attempt or '-'}, {r.turn_count} turns, "
            f"{r.tokens.total_tokens} tokens, last event {r.last_event or '-'}"
        )
    if v.retry:
        out.append(f"  retry attempt {v.retry.attempt} due {v.retry.due_at}")
    if v.hold:
        out.append(f"  held ({v.hold.kind}) since {v.hold.since}: {_safe(v.hold.reason)}")
    out.append(f"  restarts {v.attempts.restart_count}, tokens used {v.tokens_used}")
    if v.workspace_path:
        out.append(f"  workspace {_safe(v.workspace_path)}")
    if v.last_error:
        out.append(f"  last error: {_safe(v.last_error)}")
    for e in v.recent_events[-10:]:
        out.append(f"  {e.at} {e.event} {_safe(e.message or '')}".rstrip())
    return "\n".join(out)
