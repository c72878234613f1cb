"""``GET /metrics`` in the Prometheus text exposition format (version 0.0.4).

Gauges come from the dispatcher's snapshot; totals that must survive restarts (dispatches,
failed runs by reason, egress denials) come from the audit log, which is the durable record
of them. Either source may be away: its series are then left out and ``*_up`` says why.
"""

from __future__ import annotations

from symphonyd.core import audit_events
from symphonyd.core.api.audit import AuditCounts
from symphonyd.core.api.dispatcher import StateSnapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Out:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(
        self, name: str, kind: str, help_: str, samples: list[tuple[dict[str, str], float]]
    ) -> None:
        self.lines.append(f"# HELP {name} {help_}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            text = ",".join(f'{k}="{_label(v)}"' for k, v in sorted(labels.items()))
            rendered = repr(float(value)) if isinstance(value, float) else str(value)
            self.lines.append(f"{name}{{{text}}} {rendered}" if text else f"{name} {rendered}")

    def one(self, name: str, kind: str, help_: str, value: float) -> None:
        self.metric(name, kind, help_, [({}, value)])


def render(
    snap: StateSnapshot | None,
    counts: AuditCounts | None,
    *,
    sse_clients: int,
    sse_dropped: int,
) -> str:
    out = _Out()
    out.one("symphony_dashboard_dispatcher_up", "gauge", "Dispatcher reachable.", int(bool(snap)))
    out.one("symphony_dashboard_audit_up", "gauge", "Audit reader reachable.", int(bool(counts)))
    out.one("symphony_dashboard_sse_clients", "gauge", "Open event streams.", sse_clients)
    out.one("symphony_dashboard_sse_dropped_total", "counter", "Slow streams dropped.", sse_dropped)
    if snap is not None:
        _snapshot(out, snap)
    if counts is not None:
        _audit(out, counts)
    return "\n".join(out.lines) + "\n"


def _snapshot(out: _Out, snap: StateSnapshot) -> None:
    out.one("symphony_running", "gauge", "Runs in progress.", snap.counts.running)
    out.one("symphony_retrying", "gauge", "Issues in the retry queue.", snap.counts.retrying)
    kinds = ("stopped", "blocked", "budget")
    out.metric(
        "symphony_held",
        "gauge",
        "Issues held out of dispatch, by kind.",
        [({"kind": k}, sum(1 for h in snap.held if h.kind == k)) for k in kinds],
    )
    out.one(
        "symphony_blocked", "gauge", "Blocked runs.", sum(h.kind == "blocked" for h in snap.held)
    )
    out.one("symphony_paused", "gauge", "1 while dispatch is paused.", int(snap.pause.paused))
    out.metric(
        "symphony_pause_reason",
        "gauge",
        "Active pause reasons.",
        [({"code": r.code}, 1) for r in snap.pause.reasons],
    )
    t = snap.codex_totals
    out.metric(
        "symphony_tokens_total",
        "counter",
        "Agent tokens since the dispatcher's state began.",
        [({"kind": "input"}, t.input_tokens), ({"kind": "output"}, t.output_tokens),
         ({"kind": "total"}, t.total_tokens)],
    )  # fmt: skip
    out.one(
        "symphony_tokens_today", "gauge", "Tokens counted today (UTC).", snap.budgets.tokens_today
    )
    out.one("symphony_agent_seconds_total", "counter", "Agent runtime.", float(t.seconds_running))
    out.one("symphony_max_concurrent_agents", "gauge", "Slot limit.", snap.max_concurrent_agents)
    out.metric(
        "symphony_daemon_up",
        "gauge",
        "Health of each daemon as the dispatcher sees it.",
        [({"daemon": d.daemon}, int(d.ok)) for d in snap.daemons],
    )
    ev = snap.tracker_events
    if ev is not None:  # docs/change-events.md
        out.one(
            "symphony_tracker_events_subscribed",
            "gauge",
            "1 while the dispatcher follows the tracker's change events.",
            int(ev.subscribed),
        )
        out.metric(
            "symphony_tracker_events_total",
            "counter",
            "tracker.changed events the dispatcher received, by source.",
            [({"source": k}, v) for k, v in sorted(ev.received.items())],
        )
        out.one(
            "symphony_tracker_event_ticks_total",
            "counter",
            "Ticks asked for by change events and (re)subscriptions, at most 4 per second.",
            ev.ticks_requested,
        )


def _audit(out: _Out, counts: AuditCounts) -> None:
    by_type = counts.by_type
    out.one(
        "symphony_dispatches_total",
        "counter",
        "Runs started.",
        by_type.get(audit_events.DISPATCH, 0),
    )
    out.metric(
        "symphony_runs_finished_total",
        "counter",
        "Runs that ended, by outcome (succeeded, failed, timed_out, stalled, cancelled, blocked).",
        [({"outcome": k}, v) for k, v in sorted(counts.runs_by_outcome.items())],
    )
    out.metric(
        "symphony_run_failures_total",
        "counter",
        "Runs that did not succeed, by error code (else outcome).",
        [({"reason": k}, v) for k, v in sorted(counts.failures_by_reason.items())],
    )
    out.one(
        "symphony_egress_denials_total",
        "counter",
        "Agent connections refused by the egress policy.",
        by_type.get(audit_events.EGRESS_DENY, 0) + counts.egress_denies_counted,
    )
    out.one(
        "symphony_audit_unreadable_lines",
        "gauge",
        "Audit lines that do not parse (run symphonyctl audit verify).",
        counts.unreadable_lines,
    )
    out.metric(
        "symphony_audit_records_total",
        "counter",
        "Audit records by type.",
        [({"type": k}, v) for k, v in sorted(by_type.items())],
    )
