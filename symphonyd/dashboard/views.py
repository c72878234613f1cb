"""JSON shapes of ``/api/v1/*`` (SPEC 13.7.2), mapped from the dispatcher's dataclasses.

The SPEC's suggested fields come first and keep their names; what the dispatcher tracks
beyond them (holds, pause, budgets, daemon health, config) is added alongside, never in
place of a SPEC field.
"""

from __future__ import annotations

from typing import Any

from symphonyd.core.api.dispatcher import IssueView, RetryRow, RunningRow, StateSnapshot
from symphonyd.core.codec import encode


def _running(row: RunningRow) -> dict[str, Any]:
    return {
        "issue_id": row.issue_id,
        "issue_identifier": row.issue_identifier,
        "issue_url": row.issue_url,
        "state": row.state,
        "session_id": row.session_id,
        "turn_count": row.turn_count,
        "last_event": row.last_event,
        "last_message": row.last_message or "",
        "started_at": row.started_at,
        "last_event_at": row.last_event_at,
        "tokens": encode(row.tokens),
        "attempt": row.attempt,
        "run_id": row.run_id,
        "workspace_path": row.workspace_path,
        "issue_title": row.issue_title,
        "host": row.host,  # the worker host the run is bound to; null without worker hosts
    }


def _retry(row: RetryRow) -> dict[str, Any]:
    return {
        "issue_id": row.issue_id,
        "issue_identifier": row.issue_identifier,
        "issue_url": row.issue_url,
        "attempt": row.attempt,
        "due_at": row.due_at,
        "error": row.error,
        "kind": row.kind,
        "host": row.host,  # the previous run's host, which the retry prefers
    }


def state_json(snap: StateSnapshot) -> dict[str, Any]:
    blocked = sum(1 for h in snap.held if h.kind == "blocked")
    return {
        "generated_at": snap.generated_at,
        "counts": {
            "running": snap.counts.running,
            "retrying": snap.counts.retrying,
            "held": snap.counts.held,
            "blocked": blocked,
        },
        "running": [_running(r) for r in snap.running],
        "retrying": [_retry(r) for r in snap.retrying],
        "codex_totals": encode(snap.codex_totals),
        "rate_limits": snap.rate_limits,
        "held": encode(snap.held),
        "pause": encode(snap.pause),
        "budgets": encode(snap.budgets),
        "daemons": encode(snap.daemons),
        "config": encode(snap.config),
        "poll_interval_ms": snap.poll_interval_ms,
        "max_concurrent_agents": snap.max_concurrent_agents,
    }


def issue_json(view: IssueView) -> dict[str, Any]:
    running = None
    if view.running is not None:
        r = view.running
        running = {
            "session_id": r.session_id,
            "turn_count": r.turn_count,
            "state": r.state,
            "started_at": r.started_at,
            "last_event": r.last_event,
            "last_message": r.last_message or "",
            "last_event_at": r.last_event_at,
            "tokens": encode(r.tokens),
            "host": r.host,
        }
    return {
        "issue_identifier": view.issue_identifier,
        "issue_id": view.issue_id,
        "status": view.status,
        "workspace": {"path": view.workspace_path},
        "attempts": encode(view.attempts),
        "running": running,
        "retry": None if view.retry is None else _retry(view.retry),
        # Agent transcripts stay inside the sandbox; the audit records are the durable log.
        "logs": {"codex_session_logs": []},
        "recent_events": encode(view.recent_events),
        "last_error": view.last_error,
        "tracked": {
            "hold": None if view.hold is None else encode(view.hold),
            "tokens_used": view.tokens_used,
        },
    }
