"""Server-rendered pages: overview (live), issue detail, audit view.

The overview's live part is one fragment (``overview_fragment``) that the event stream
re-sends whole on every change; the page script swaps it in. Rendering stays in one place,
in Python, where every tracker-provided string is escaped.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from symphonyd.core.messages import (
    AuditRecordView,
    HoldRow,
    IssueView,
    PauseStatus,
    RetryRow,
    RunningRow,
    StateSnapshot,
    WorkspaceStatus,
)
from symphonyd.dashboard.html import esc, external_link, issue_link, num, table, when

PAYLOAD_PREVIEW_CHARS = 400


def unavailable_banner(error: str | None, since: str) -> str:
    return (
        '<section class="banner down" id="unavailable"><strong>Dispatcher unavailable</strong>'
        f" since {when(since)} — {esc(error)}. The dashboard keeps trying to reconnect; "
        "orchestration does not depend on it.</section>"
    )


def _pause_banner(pause: PauseStatus) -> str:
    if not pause.paused:
        return '<section class="banner ok" id="pause-state">Dispatching new runs.</section>'
    reasons = "".join(
        f"<li><strong>{esc(r.code)}</strong>: {esc(r.message)} — since {when(r.since)}"
        + (f", by uid {esc(r.by_uid)}" if r.by_uid is not None else "")
        + (f", until {esc(r.until)}" if r.until else "")
        + "</li>"
        for r in pause.reasons
    )
    return (
        '<section class="banner paused" id="pause-state"><strong>Paused</strong>: no new runs '
        f"start; runs already going continue.<ul>{reasons}</ul></section>"
    )


def _cards(snap: StateSnapshot, now: datetime) -> str:
    t, b = snap.codex_totals, snap.budgets
    blocked = sum(1 for h in snap.held if h.kind == "blocked")
    day_budget = f" / {num(b.tokens_per_day)}" if b.tokens_per_day else ""
    cards = [
        ("Running", f"{num(snap.counts.running)} / {num(snap.max_concurrent_agents)}"),
        ("Retrying", num(snap.counts.retrying)),
        ("Held", f"{num(snap.counts.held)} ({num(blocked)} blocked)"),
        ("Tokens in / out", f"{num(t.input_tokens)} / {num(t.output_tokens)}"),
        ("Tokens today", f"{num(b.tokens_today)}{day_budget}"),
        ("Per-issue budget", num(b.tokens_per_issue)),
        ("Agent runtime", f"{num(round(t.seconds_running / 60, 1))} min"),
        ("Updated", when(snap.generated_at, now=now)),
    ]
    return (
        '<section class="cards">'
        + "".join(
            f'<div class="card"><div class="label">{esc(label)}</div>'
            f'<div class="value">{value}</div></div>'
            for label, value in cards
        )
        + "</section>"
    )


def _running_row(r: RunningRow, now: datetime) -> str:
    message = f'<div class="msg">{esc(r.last_message)}</div>' if r.last_message else ""
    return (
        f"<tr><td>{issue_link(r.issue_identifier)} {external_link(r.issue_url)}</td>"
        f"<td>{esc(r.state)}</td><td class=n>{num(r.turn_count)}</td>"
        f"<td class=n>{num(r.tokens.total_tokens)}</td>"
        f"<td>{esc(r.last_event or '—')}{message}</td>"
        f"<td>{when(r.last_event_at, now=now)}</td><td>{when(r.started_at, now=now)}</td>"
        f'<td><button class="danger" data-action="stop" '
        f'data-identifier="{esc(r.issue_identifier)}">Stop</button></td></tr>'
    )


def _retry_row(r: RetryRow, now: datetime) -> str:
    return (
        f"<tr><td>{issue_link(r.issue_identifier)} {external_link(r.issue_url)}</td>"
        f"<td class=n>{num(r.attempt)}</td><td>{esc(r.kind)}</td>"
        f"<td>{when(r.due_at, now=now)}</td><td>{esc(r.error or '')}</td></tr>"
    )


def _held_row(h: HoldRow, now: datetime) -> str:
    by = "" if h.by_uid is None else f"uid {esc(h.by_uid)}"
    return (
        f"<tr><td>{issue_link(h.issue_identifier)}</td><td>{esc(h.kind)}</td>"
        f"<td>{esc(h.reason)}</td><td>{when(h.since, now=now)}</td><td>{by}</td>"
        f'<td><button data-action="release" '
        f'data-identifier="{esc(h.issue_identifier)}">Release</button></td></tr>'
    )


def _health(snap: StateSnapshot, now: datetime, extra: list[tuple[str, bool, str]]) -> str:
    rows = [
        f'<tr><td>{esc(d.daemon)}</td><td><span class="dot {"up" if d.ok else "down"}"></span>'
        f"{'ok' if d.ok else 'failing'}</td><td>{esc(d.detail or '')}</td>"
        f"<td>{when(d.checked_at, now=now)}</td></tr>"
        for d in snap.daemons
    ]
    rows += [
        f'<tr><td>{esc(name)}</td><td><span class="dot {"up" if ok else "down"}"></span>'
        f"{'ok' if ok else 'failing'}</td><td>{esc(detail)}</td><td></td></tr>"
        for name, ok, detail in extra
    ]
    cfg = snap.config
    cfg_line = f"WORKFLOW.md {esc(cfg.path or '')} loaded {when(cfg.loaded_at, now=now)}" + (
        f' — <span class="bad">rejected edit: {esc(cfg.error)}</span>' if cfg.error else ""
    )
    return table(["Daemon", "Health", "Detail", "Checked"], rows, "no health data") + (
        f'<p class="muted">{cfg_line}</p>'
    )


def _workspaces(w: WorkspaceStatus | None, now: datetime) -> str:
    """Orphan workspaces and age cleanup, from the dispatcher's last survey."""
    if w is None:
        return ""
    age = f"after {w.max_age_days} days" if w.max_age_days else "off"
    line = (
        f"{num(w.workspaces)} workspaces, surveyed {when(w.surveyed_at, now=now)}; "
        f"age cleanup {esc(age)}, {num(w.removed)} removed"
    )
    if w.error:
        line += f' &mdash; <span class="bad">{esc(w.error)}</span>'
    rows = [
        f"<tr><td>{esc(o.name)}</td><td>{esc(o.reason)}</td>"
        f"<td>{'&mdash;' if o.idle_s is None else num(round(o.idle_s / 86400, 1))}</td></tr>"
        for o in w.orphans
    ]
    return (
        f'</section><section id="workspaces"><h2>Orphan workspaces ({num(w.orphan_count)})</h2>'
        f'<p class="muted">{line}</p>'
        + table(["Name", "Why", "Idle (days)"], rows, "No orphan workspaces.")
    )


def overview_fragment(
    snap: StateSnapshot | None,
    *,
    error: str | None,
    since: str,
    extra_health: list[tuple[str, bool, str]],
) -> str:
    if snap is None:
        return unavailable_banner(error, since)
    now = datetime.now(UTC)
    running = [_running_row(r, now) for r in snap.running]
    retrying = [_retry_row(r, now) for r in snap.retrying]
    held = [_held_row(h, now) for h in snap.held]
    limits = (
        f"<pre>{esc(json.dumps(snap.rate_limits, indent=1)[:2000])}</pre>"
        if snap.rate_limits
        else '<p class="empty">none reported</p>'
    )
    return (
        _pause_banner(snap.pause)
        + _cards(snap, now)
        + "<section><h2>Running sessions</h2>"
        + table(
            ["Issue", "State", "Turns", "Tokens", "Last event", "Event age", "Age", ""],
            running,
            "No runs in progress.",
        )
        + "</section><section><h2>Retry queue</h2>"
        + table(["Issue", "Attempt", "Kind", "Due", "Error"], retrying, "Nothing waiting.")
        + "</section><section><h2>Blocked and held runs</h2>"
        + table(["Issue", "Kind", "Reason", "Since", "By", ""], held, "Nothing held.")
        + _workspaces(snap.workspaces, now)
        + '</section><section class="split"><div><h2>Health</h2>'
        + _health(snap, now, extra_health)
        + "</div><div><h2>Rate limits</h2>"
        + limits
        + "</div></section>"
    )


def overview_body(fragment: str) -> str:
    controls = (
        '<section class="controls"><form id="pause-form" class="inline">'
        '<input name="reason" maxlength="200" placeholder="reason for pausing" '
        'aria-label="pause reason">'
        '<button type="submit" data-action="pause">Pause dispatch</button></form>'
        '<button data-action="resume">Resume</button>'
        '<button data-action="refresh">Poll now</button>'
        '<span id="action-result" class="muted" role="status"></span></section>'
    )
    return controls + f'<div id="live" data-live="overview">{fragment}</div>'


def issue_body(
    view: IssueView | None, identifier: str, records: list[AuditRecordView] | None, note: str
) -> str:
    if view is None:
        head = f"<h1>{esc(identifier)}</h1><p class='banner down'>{esc(note)}</p>"
    else:
        head = _issue_head(view)
    audit = (
        '<p class="empty">Audit records unavailable.</p>'
        if records is None
        else _audit_table(records, "No audit records for this issue.")
    )
    return head + f"<section><h2>Audit records</h2>{audit}</section>"


def _issue_head(v: IssueView) -> str:
    now = datetime.now(UTC)
    facts = [
        ("Status", esc(v.status)),
        ("Issue id", esc(v.issue_id)),
        ("Workspace", f"<code>{esc(v.workspace_path or '—')}</code>"),
        ("Restarts", num(v.attempts.restart_count)),
        ("Retry attempt", num(v.attempts.current_retry_attempt)),
        ("Tokens used", num(v.tokens_used)),
        ("Last error", f'<span class="bad">{esc(v.last_error)}</span>' if v.last_error else "—"),
    ]
    if v.running is not None:
        r = v.running
        facts += [
            ("Session", esc(r.session_id or "—")),
            ("Turns", num(r.turn_count)),
            ("Started", when(r.started_at, now=now)),
            ("Last event", f"{esc(r.last_event or '—')} {when(r.last_event_at, now=now)}"),
        ]
    if v.retry is not None:
        facts.append(("Next retry", f"{when(v.retry.due_at, now=now)} ({esc(v.retry.error)})"))
    if v.hold is not None:
        facts.append(("Held", f"{esc(v.hold.kind)}: {esc(v.hold.reason)}"))
    dl = "".join(f"<dt>{esc(k)}</dt><dd>{val}</dd>" for k, val in facts)
    ident = esc(v.issue_identifier)
    buttons = []
    if v.running is not None:
        buttons.append(
            f'<button class="danger" data-action="stop" data-identifier="{ident}">Stop</button>'
        )
    if v.hold is not None:
        buttons.append(f'<button data-action="release" data-identifier="{ident}">Release</button>')
    actions = (
        '<section class="controls">'
        + "".join(buttons)
        + '<span id="action-result" class="muted" role="status"></span></section>'
        if buttons
        else ""
    )
    events = [
        f"<tr><td>{when(e.at, now=now)}</td><td>{esc(e.event)}</td><td>{esc(e.message)}</td></tr>"
        for e in reversed(v.recent_events)
    ]
    return (
        f"<h1>{ident}</h1>{actions}<section><dl class='facts'>{dl}</dl></section>"
        "<section><h2>Timeline</h2>"
        + table(["When", "Event", "Message"], events, "No events recorded yet.")
        + "</section>"
    )


def _payload(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    if len(text) > PAYLOAD_PREVIEW_CHARS:
        text = text[:PAYLOAD_PREVIEW_CHARS] + "…"
    return f"<code>{esc(text)}</code>"


def _audit_table(records: list[AuditRecordView], empty: str) -> str:
    rows = [
        f"<tr><td class=n>{num(r.seq)}</td><td>{esc(r.ts)}</td><td>{esc(r.type)}</td>"
        f"<td>{issue_link(r.issue_identifier) if r.issue_identifier else ''}</td>"
        f"<td>{esc(r.sender.get('unit') or r.sender.get('socket') or '')} "
        f"(uid {esc(r.sender.get('uid'))})</td><td>{_payload(r.payload)}</td></tr>"
        for r in records
    ]
    return table(["Seq", "Time (UTC)", "Type", "Issue", "Sender", "Payload"], rows, empty)


def audit_body(
    records: list[AuditRecordView] | None,
    *,
    types: list[str],
    chosen_type: str,
    issue: str,
    truncated: bool,
    error: str | None,
) -> str:
    options = '<option value="">all types</option>' + "".join(
        f'<option value="{esc(t)}"{" selected" if t == chosen_type else ""}>{esc(t)}</option>'
        for t in types
    )
    form = (
        '<section class="controls"><form method="get" action="/audit" class="inline">'
        f'<select name="type" aria-label="record type">{options}</select>'
        f'<input name="issue" value="{esc(issue)}" placeholder="issue identifier" '
        'aria-label="issue identifier"><button type="submit">Filter</button></form>'
        '<button data-action="verify">Verify chain</button>'
        '<span id="action-result" class="muted" role="status"></span></section>'
    )
    if records is None:
        listing = f'<p class="banner down">Audit log unavailable: {esc(error)}</p>'
    else:
        more = '<p class="muted">Showing the newest records only.</p>' if truncated else ""
        listing = _audit_table(records, "No matching records.") + more
    return form + f"<section><h2>Records</h2>{listing}</section>"
