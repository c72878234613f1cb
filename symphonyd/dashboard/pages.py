"""Server-rendered pages: overview (live), issue detail, audit view.

The overview's live part is one fragment (``overview_fragment``) that the event stream
re-sends whole on every change; the page script swaps it in. Rendering stays in one place,
in Python, where every tracker-provided string is escaped.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from symphonyd.core.api.audit import AuditRecordView
from symphonyd.core.api.dispatcher import (
    HoldRow,
    PauseStatus,
    RetryRow,
    RunningRow,
    StateSnapshot,
    WorkspaceStatus,
)
from symphonyd.dashboard.html import esc, issue_cell, issue_link, num, table, when
from symphonyd.dashboard.names import IssueNames

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
    workspace = (
        f'<div class="msg"><code>{esc(r.workspace_path)}</code></div>' if r.workspace_path else ""
    )
    return (
        f"<tr><td>{issue_cell(r.issue_identifier, r.issue_title, r.issue_url)}{workspace}</td>"
        f"<td>{esc(r.state)}{_on_host(r.host)}</td><td class=n>{num(r.turn_count)}</td>"
        f"<td class=n>{num(r.tokens.total_tokens)}</td>"
        f"<td>{esc(r.last_event or '—')}{message}</td>"
        f"<td>{when(r.last_event_at, now=now)}</td><td>{when(r.started_at, now=now)}</td>"
        f'<td><button class="danger" data-action="stop" '
        f'data-identifier="{esc(r.issue_identifier)}">Stop</button></td></tr>'
    )


def _on_host(host: str | None) -> str:
    """The worker host a run is bound to (a retry: the one it prefers); nothing without."""
    return f'<div class="msg">on {esc(host)}</div>' if host else ""


def _retry_row(r: RetryRow, now: datetime, names: IssueNames) -> str:
    title, url = names.get(r.issue_identifier)
    return (
        f"<tr><td>{issue_cell(r.issue_identifier, title, r.issue_url or url)}</td>"
        f"<td class=n>{num(r.attempt)}</td><td>{esc(r.kind)}{_on_host(r.host)}</td>"
        f"<td>{when(r.due_at, now=now)}</td><td>{esc(r.error or '')}</td></tr>"
    )


def _held_row(h: HoldRow, now: datetime, names: IssueNames) -> str:
    by = "" if h.by_uid is None else f"uid {esc(h.by_uid)}"
    return (
        f"<tr><td>{issue_cell(h.issue_identifier, *names.get(h.issue_identifier))}</td>"
        f"<td>{esc(h.kind)}</td>"
        f"<td>{esc(h.reason)}</td><td>{when(h.since, now=now)}</td><td>{by}</td>"
        f'<td><button data-action="release" '
        f'data-identifier="{esc(h.issue_identifier)}">Release</button></td></tr>'
    )


def _status(ok: bool | None) -> str:
    """A health cell: ok, failing, or not checked yet (neutral, not an alarm)."""
    if ok is None:
        return '<span class="dot unknown"></span>not checked yet'
    return f'<span class="dot {"up" if ok else "down"}"></span>{"ok" if ok else "failing"}'


def _health(snap: StateSnapshot, now: datetime, extra: list[tuple[str, bool | None, str]]) -> str:
    rows = [
        f"<tr><td>{esc(d.daemon)}</td>"
        f"<td>{_status(d.ok if d.checked_at is not None or d.ok else None)}</td>"
        f"<td>{esc(d.detail or '')}</td><td>{when(d.checked_at, now=now)}</td></tr>"
        for d in snap.daemons
    ]
    rows += [
        f"<tr><td>{esc(name)}</td><td>{_status(ok)}</td>"
        f"<td>{esc('' if detail == 'not checked yet' else detail)}</td><td></td></tr>"
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


def _limit_value(key: str, value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return esc(value)
    if isinstance(value, int | float):
        if "percent" in key:
            return f"{value:g}&nbsp;%"
        if key.endswith(("resets_at", "reset_at")) and value > 1e9:
            stamp = datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            return when(stamp)
        return num(value)
    if isinstance(value, dict | list):
        return f"<code>{esc(json.dumps(value, ensure_ascii=False)[:200])}</code>"
    return esc(str(value)[:200])


def _label(key: str) -> str:
    return esc(key.replace("_", " "))


def rate_limits(data: dict[str, Any] | None) -> str:
    """The agent's latest rate-limit payload as a table: one row per limit (``primary``,
    ``secondary``...) with its fields as columns, or key/value rows for a flat payload."""
    if not data:
        return '<p class="empty">None reported yet.</p>'
    groups = {k: v for k, v in data.items() if isinstance(v, dict)}
    flat = {k: v for k, v in data.items() if not isinstance(v, dict)}
    html = ""
    if groups:
        columns: list[str] = []
        for fields in groups.values():
            columns += [c for c in fields if c not in columns]
        rows = [
            f"<tr><th scope=row>{_label(name)}</th>"
            + "".join(f"<td>{_limit_value(c, fields.get(c))}</td>" for c in columns[:8])
            + "</tr>"
            for name, fields in list(groups.items())[:20]
        ]
        html += table(["Limit", *(c.replace("_", " ") for c in columns[:8])], rows, "")
    if flat:
        rows = [
            f"<tr><th scope=row>{_label(k)}</th><td>{_limit_value(k, v)}</td></tr>"
            for k, v in list(flat.items())[:20]
        ]
        html += table(["Field", "Value"], rows, "")
    return html


def overview_fragment(
    snap: StateSnapshot | None,
    *,
    error: str | None,
    since: str,
    extra_health: list[tuple[str, bool | None, str]],
    names: IssueNames,
) -> str:
    if snap is None:
        return unavailable_banner(error, since)
    now = datetime.now(UTC)
    running = [_running_row(r, now) for r in snap.running]
    retrying = [_retry_row(r, now, names) for r in snap.retrying]
    held = [_held_row(h, now, names) for h in snap.held]
    limits = rate_limits(snap.rate_limits)
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


def _payload(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    if len(text) > PAYLOAD_PREVIEW_CHARS:
        text = text[:PAYLOAD_PREVIEW_CHARS] + "…"
    return f"<code>{esc(text)}</code>"


def _record_issue(r: AuditRecordView) -> str:
    if r.issue_identifier:
        return issue_link(r.issue_identifier)
    return f'<span class="muted">{esc(r.issue_id)}</span>' if r.issue_id else ""


def _audit_table(records: list[AuditRecordView], empty: str) -> str:
    rows = [
        f"<tr><td class=n>{num(r.seq)}</td><td>{esc(r.ts)}</td><td>{esc(r.type)}</td>"
        f"<td>{_record_issue(r)}</td>"
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
