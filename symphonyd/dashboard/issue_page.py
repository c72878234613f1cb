"""The issue page: what the dispatcher knows now, then every run from the audit log.

Runs are newest first, each with its absolute start and end, duration, outcome and reason,
and its transcript: prompts, the agent's messages and commands, tool calls, file changes,
tracker writes, sandbox and egress records, in the order the audit writer stored them; then
the run's journal lines (journal_lines.py).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from symphonyd.core import audit_events as ev
from symphonyd.core.api.audit import AuditRecordView
from symphonyd.core.api.dispatcher import IssueView
from symphonyd.dashboard.history import Run
from symphonyd.dashboard.html import at, duration, esc, external_link, num, parse_ts, table, when
from symphonyd.dashboard.journal_lines import MAX_LINES, JournalLine

TEXT_CHARS = 300
# A run's journal window: the dispatcher logs its decision just before the dispatch record,
# the launcher its teardown just after run_finished.
BEFORE_RUN = timedelta(seconds=5)
AFTER_RUN = timedelta(seconds=30)
_OUTCOME_CLASS = {"succeeded": "good", "failed": "bad", "timed_out": "bad", "stalled": "bad"}


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS] + "…"


def describe(r: AuditRecordView) -> tuple[str, str]:
    """A readable kind and one line of what happened, from one audit record."""
    p = r.payload
    if r.type == ev.PROMPT_SENT:
        turn = f" (turn {p['turn']})" if p.get("turn") is not None else ""
        return "prompt" + turn, f"{p.get('prompt_chars', '?')} chars: {_short(p.get('preview'))}"
    if r.type in (ev.AGENT_MESSAGE, ev.COMMAND):
        kind = "agent message" if r.type == ev.AGENT_MESSAGE else "command"
        return kind, _preview(p)
    if r.type == ev.TRANSCRIPT_SUMMARY:
        dropped = p.get("dropped")
        if not isinstance(dropped, dict):
            dropped = {}
        counts = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(dropped.items()))
        return "transcript capped", f"kept {p.get('kept')}; not recorded: {_short(counts)}"
    if r.type == ev.TOOL_CALL:
        ok = "ok" if p.get("success") else "failed"
        args = f" {_short(p['arguments'])}" if p.get("arguments") is not None else ""
        return "tool call", f"{p.get('tool')} — {ok}{args}"
    if r.type == ev.FILE_CHANGE:
        return "file change", f"{p.get('change')} {p.get('path')}"
    if r.type == ev.TRACKER_WRITE:
        return "tracker write", str(p.get("operation"))
    if r.type in (ev.EGRESS_ALLOW, ev.EGRESS_DENY):
        verdict = "allowed" if r.type == ev.EGRESS_ALLOW else "denied"
        port = f":{p['port']}" if p.get("port") is not None else ""
        why = f" ({p['reason']})" if p.get("reason") else ""
        return f"egress {verdict}", f"{p.get('host')}{port}{why}"
    if r.type == ev.EGRESS_SUMMARY:
        return "egress summary", f"{p.get('total')} repeated decisions in {p.get('seconds')}s"
    if r.type == ev.SANDBOX_READY:
        return "sandbox ready", f"{p.get('mode')} at {p.get('address')}"
    if r.type == ev.SANDBOX_TEARDOWN:
        problems = p.get("problems")
        text = _short(problems) if problems else "clean"
        return "sandbox removed", text + _denials(p)
    if r.type == ev.SANDBOX_FAILURE:
        return "sandbox failed", f"{p.get('code')}: {_short(p.get('message'))}"
    rest = {k: v for k, v in p.items() if k != "run_id"}
    return r.type.replace("_", " "), _short(rest) if rest else ""


def _preview(p: dict[str, Any]) -> str:
    """An agent message or command as the launcher kept it: a scrubbed, cut preview."""
    if p.get("preview_withheld"):
        return f"{p.get('chars', '?')} chars (preview withheld: not scrubbed)"
    cut = "…" if p.get("preview_truncated") else ""
    return _short(str(p.get("preview") or "")) + cut


def _denials(p: dict[str, Any]) -> str:
    """The run's refused names with counts and the suggested line (launcher denials.py)."""
    denied = p.get("denied")
    if not isinstance(denied, list) or not denied:
        return ""
    names = ", ".join(
        f"{d.get('host')} x{d.get('count')} ({d.get('reason')})"
        for d in denied
        if isinstance(d, dict)
    )
    suggest = p.get("suggest")
    return f"; refused: {_short(names)}" + (f"; suggest: {_short(suggest)}" if suggest else "")


def transcript(records: list[AuditRecordView], empty: str) -> str:
    rows = []
    for r in records:
        kind, text = describe(r)
        css = " class=bad" if r.type in (ev.EGRESS_DENY, ev.SANDBOX_FAILURE) else ""
        rows.append(
            f"<tr><td>{at(r.ts)}</td><td{css}>{esc(kind)}</td><td>{esc(text)}</td>"
            f"<td class=n>#{num(r.seq)}</td></tr>"
        )
    return table(["Time (UTC)", "What", "Detail", "Seq"], rows, empty)


def outcome_badge(outcome: str | None, *, running: bool = False) -> str:
    if outcome is None:
        label = "running" if running else "no end recorded"
        return f'<span class="badge neutral">{label}</span>'
    return f'<span class="badge {_OUTCOME_CLASS.get(outcome, "neutral")}">{esc(outcome)}</span>'


def journal_of(
    runs: list[Run], lines: list[JournalLine]
) -> tuple[dict[str, list[JournalLine]], list[JournalLine]]:
    """Each line in the window of the newest run it falls in; and the lines of no run."""
    windows = []
    for run in runs:  # newest first
        start, end = parse_ts(run.started), parse_ts(run.ended)
        if start is not None:
            windows.append(
                (run.run_id, start - BEFORE_RUN, None if end is None else end + AFTER_RUN)
            )
    by_run: dict[str, list[JournalLine]] = {}
    rest: list[JournalLine] = []
    for line in lines:
        run_id = next(
            (r for r, lo, hi in windows if lo <= line.at and (hi is None or line.at <= hi)), None
        )
        (rest if run_id is None else by_run.setdefault(run_id, [])).append(line)
    return by_run, rest


def journal_table(lines: list[JournalLine], empty: str) -> str:
    rows = [
        f"<tr><td>{at(line.at.isoformat())}</td><td>{esc(line.unit)}</td>"
        f"<td{' class=bad' if line.priority is not None and line.priority <= 3 else ''}>"
        f"{esc(line.message)}</td></tr>"
        for line in lines
    ]
    return table(["Time (UTC)", "Unit", "Journal line"], rows, empty)


def _run_section(
    run: Run, number: int, live_run: str | None, lines: list[JournalLine] | None
) -> str:
    reason = f" — {esc(run.reason)}" if run.reason else ""
    facts = (
        f"<dl class='facts run-facts'><dt>Started</dt><dd>{at(run.started)}</dd>"
        f"<dt>Ended</dt><dd>{at(run.ended)}</dd>"
        f"<dt>Duration</dt><dd>{duration(run.duration_s)}</dd>"
        f"<dt>Attempt</dt><dd>{num(run.attempt)}</dd>"
        f"<dt>Turns</dt><dd>{num(run.turns)}</dd>"
        f"<dt>Tokens</dt><dd>{num(run.total_tokens)}</dd></dl>"
    )
    return (
        f'<section class="run" aria-labelledby="run-{number}">'
        f'<h3 id="run-{number}">Run {number} '
        f"{outcome_badge(run.outcome, running=run.run_id == live_run)}{reason} "
        f'<code class="muted">{esc(run.run_id)}</code></h3>{facts}'
        + transcript(run.events, "No agent or sandbox records for this run.")
        + (
            ""
            if lines is None
            else f'<h4 id="run-{number}-journal">Journal lines</h4>'
            + journal_table(lines, "No journal lines in this run's time window.")
        )
        + "</section>"
    )


NO_JOURNAL = (
    "Journal lines are not shown: the dashboard cannot read a journal here (it is not "
    "running under systemd, or has no journal access). <code>symphonyctl logs</code> shows them."
)


def history(
    runs: list[Run] | None,
    loose: list[AuditRecordView],
    live_run: str | None,
    journal: list[JournalLine] | None = None,
) -> str:
    if runs is None:
        return '<section><h2>Runs</h2><p class="empty">Audit log unavailable.</p></section>'
    by_run, rest = journal_of(runs, journal) if journal is not None else ({}, [])
    sections = [
        _run_section(
            run, len(runs) - i, live_run, None if journal is None else by_run.get(run.run_id, [])
        )
        for i, run in enumerate(runs)
    ]
    body = "".join(sections) or '<p class="empty">No runs recorded for this issue.</p>'
    other = (
        "<section><h2>Other records</h2>" + transcript(loose, "") + "</section>" if loose else ""
    )
    if journal is None:
        note = f'<section><p class="banner neutral" id="journal-note">{NO_JOURNAL}</p></section>'
    elif rest:
        note = (
            "<section><h2>Journal lines outside the runs</h2>"
            + journal_table(rest, "")
            + f'<p class="muted">At most the newest {MAX_LINES} lines of the issue.</p></section>'
        )
    else:
        note = ""
    return f"<section><h2>Runs ({len(runs)})</h2>{body}</section>{other}{note}"


def head(
    v: IssueView | None, identifier: str, title: str | None, url: str | None, note: str
) -> str:
    name = f'<span class="title">{esc(title)}</span>' if title else ""
    link = external_link(url, "open in tracker")
    h1 = f"<h1>{esc(identifier)} {name}</h1>" + (f"<p>{link}</p>" if link else "")
    if v is None:
        return h1 + f"<p class='banner neutral'>{esc(note)}</p>"
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
            ("Started", f"{at(r.started_at)} ({when(r.started_at, now=now)})"),
            ("Last event", f"{esc(r.last_event or '—')} {when(r.last_event_at, now=now)}"),
        ]
    if v.retry is not None:
        facts.append(("Next retry", f"{at(v.retry.due_at)} ({esc(v.retry.error)})"))
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
        f"<tr><td>{at(e.at)}</td><td>{esc(e.event)}</td><td>{esc(e.message)}</td></tr>"
        for e in reversed(v.recent_events)
    ]
    return (
        f"{h1}{actions}<section><dl class='facts'>{dl}</dl></section>"
        "<section><h2>Timeline</h2>"
        + table(["Time (UTC)", "Event", "Message"], events, "No events recorded yet.")
        + "</section>"
    )
