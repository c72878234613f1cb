"""The activity page: runs and tokens per hour, failures by reason, the latest runs.

Built from the audit log (durable across restarts): the newest ``dispatch`` and
``run_finished`` records for the hourly charts and the run list, and the audit writer's
whole-log totals for failures by reason (the same numbers as ``/metrics``).
"""

from __future__ import annotations

from datetime import datetime

from symphonyd.core.api.audit import AuditCounts, AuditRecordView
from symphonyd.dashboard.charts import Series, bar_chart, column_chart
from symphonyd.dashboard.history import failures, hourly, runs_of
from symphonyd.dashboard.html import at, duration, esc, issue_cell, num, table
from symphonyd.dashboard.issue_page import outcome_badge
from symphonyd.dashboard.names import IssueNames

RECENT_RUNS = 50


def _recent_runs(
    dispatches: list[AuditRecordView], finished: list[AuditRecordView], names: IssueNames
) -> str:
    runs, _ = runs_of(dispatches + finished)
    issue_of = {str(r.payload.get("run_id")): r.issue_identifier for r in dispatches + finished}
    rows = []
    for run in runs[:RECENT_RUNS]:
        ident = issue_of.get(run.run_id) or ""
        reason = esc(run.reason) if run.reason else ""
        rows.append(
            f"<tr><td>{issue_cell(ident, *names.get(ident)) if ident else ''}</td>"
            f"<td>{at(run.started)}</td><td>{at(run.ended)}</td>"
            f"<td class=n>{duration(run.duration_s)}</td>"
            f"<td>{outcome_badge(run.outcome)}</td><td>{reason}</td>"
            f"<td class=n>{num(run.total_tokens)}</td></tr>"
        )
    return table(
        ["Issue", "Started (UTC)", "Ended (UTC)", "Duration", "Outcome", "Reason", "Tokens"],
        rows,
        "No runs recorded yet.",
    )


def activity_body(
    dispatches: list[AuditRecordView] | None,
    finished: list[AuditRecordView] | None,
    counts: AuditCounts | None,
    names: IssueNames,
    now: datetime,
    error: str | None,
) -> str:
    if dispatches is None or finished is None:
        return f'<h1>Activity</h1><p class="banner down">Audit log unavailable: {esc(error)}</p>'
    labels, started = hourly(dispatches, now)
    _, tokens = hourly(finished, now, tokens=True)
    reasons, fails = failures(counts.failures_by_reason if counts else {})
    charts = (
        column_chart(Series("runs-chart", "Runs started per hour, last 24 hours", "runs",
                            labels, started))
        + column_chart(Series("tokens-chart", "Tokens used per hour, last 24 hours (by run end)",
                              "tokens", labels, tokens))
        + bar_chart(Series("failures-chart", "Failed runs by reason, whole audit log",
                           "failed runs", reasons, fails, label_header="Reason"))
    )  # fmt: skip
    return (
        "<h1>Activity</h1>"
        f'<section class="charts">{charts}</section>'
        f"<section><h2>Latest runs</h2>{_recent_runs(dispatches, finished, names)}</section>"
    )
