"""Runs and activity rebuilt from audit records (the durable log), for the issue and
activity pages.

A run starts at its ``dispatch`` record and ends at its first ``run_finished`` (a blocked
run has a second one from the dispatcher; the first carries the launcher's outcome). Agent
records (prompts, tool calls, file changes) name their run in ``run_id``; a record without
one belongs to the run dispatched last before it (one issue has one run at a time).
Sandbox and egress records name their run by ``agent_id``, the run id the launcher gives
the sandbox.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from symphonyd.core import audit_events as ev
from symphonyd.core.api.audit import AuditRecordView
from symphonyd.dashboard.html import parse_ts

SANDBOX_TYPES = frozenset(
    {
        ev.EGRESS_ALLOW,
        ev.EGRESS_DENY,
        ev.EGRESS_SUMMARY,
        ev.SANDBOX_READY,
        ev.SANDBOX_TEARDOWN,
        ev.SANDBOX_FAILURE,
    }
)


@dataclass
class Run:
    run_id: str
    started: str | None = None
    ended: str | None = None
    outcome: str | None = None
    reason: str | None = None
    attempt: int | None = None
    turns: int | None = None
    total_tokens: int | None = None
    first_seq: int = 0
    events: list[AuditRecordView] = field(default_factory=list)

    @property
    def duration_s(self) -> float | None:
        start, end = parse_ts(self.started), parse_ts(self.ended)
        if start is None or end is None:
            return None
        return max((end - start).total_seconds(), 0.0)


def _finish(run: Run, r: AuditRecordView) -> None:
    if run.ended is not None:
        return  # the dispatcher's second record of a blocked run adds nothing new
    p = r.payload
    run.ended = r.ts
    run.outcome = str(p.get("outcome") or p.get("status") or "unknown")
    code = p.get("error_code")
    run.reason = None if code is None else str(code)
    run.turns = p.get("turns") if isinstance(p.get("turns"), int) else None
    tokens = p.get("total_tokens")
    run.total_tokens = tokens if isinstance(tokens, int) else None


def runs_of(records: list[AuditRecordView]) -> tuple[list[Run], list[AuditRecordView]]:
    """The runs, newest first, each with its records in order; and the records of no run."""
    runs: dict[str, Run] = {}
    current: Run | None = None
    loose: list[AuditRecordView] = []
    for r in sorted(records, key=lambda rec: rec.seq):
        run_id = r.payload.get("run_id")
        agent = r.payload.get("agent_id") if r.type in SANDBOX_TYPES else None
        if isinstance(run_id, str) and r.type not in (ev.DISPATCH, ev.RUN_FINISHED):
            runs.setdefault(run_id, Run(run_id, first_seq=r.seq)).events.append(r)
        elif isinstance(run_id, str):
            run = runs.setdefault(run_id, Run(run_id, first_seq=r.seq))
            if r.type == ev.DISPATCH:
                run.started = r.ts
                attempt = r.payload.get("attempt")
                run.attempt = attempt if isinstance(attempt, int) else None
                current = run
            else:
                _finish(run, r)
        elif isinstance(agent, str) and agent in runs:
            runs[agent].events.append(r)
        elif current is not None and r.type not in SANDBOX_TYPES:
            current.events.append(r)
        else:
            loose.append(r)
    ordered = sorted(runs.values(), key=lambda run: run.first_seq, reverse=True)
    return ordered, loose


def hourly(
    records: list[AuditRecordView], now: datetime, *, hours: int = 24, tokens: bool = False
) -> tuple[list[str], list[int]]:
    """Counts (or ``total_tokens`` sums) per UTC hour for the last ``hours`` hours."""
    end = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    start = end - timedelta(hours=hours)
    buckets = [0] * hours
    for r in records:
        at = parse_ts(r.ts)
        if at is None or not start <= at < end:
            continue
        index = int((at - start).total_seconds() // 3600)
        if tokens:
            value = r.payload.get("total_tokens")
            buckets[index] += value if isinstance(value, int) and value > 0 else 0
        else:
            buckets[index] += 1
    labels = [(start + timedelta(hours=i)).strftime("%m-%d %H:00") for i in range(hours)]
    return labels, buckets


def failures(by_reason: dict[str, int]) -> tuple[list[str], list[int]]:
    top = Counter(by_reason).most_common(8)
    return [reason for reason, _ in top], [n for _, n in top]
