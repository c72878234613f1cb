"""Read-only views of the orchestrator for symphonyctl and the dashboard (SPEC 13.3, 13.7.2)."""

from __future__ import annotations

from symphonyd.core.api.dispatcher import (
    BudgetStatus,
    CodexTotals,
    ConfigStatus,
    HostRow,
    IssueAttempts,
    IssueStatus,
    IssueView,
    PauseReasonRow,
    PauseStatus,
    RecentEvent,
    RetryRow,
    RunningRow,
    SnapshotCounts,
    StateSnapshot,
)
from symphonyd.core.errors import SymphonyError
from symphonyd.core.worker_hosts import LOCAL_HOST
from symphonyd.dispatcher.engine import Engine
from symphonyd.dispatcher.orchestrator import Orchestrator
from symphonyd.dispatcher.state import RetryEntry, RunningEntry, agent_seconds, iso

DAEMONS = ("tracker", "launcher", "audit", "workflow")


def running_row(e: RunningEntry, hosts: bool = False) -> RunningRow:
    """``hosts``: worker hosts are configured, so the row names the run's host."""
    return RunningRow(
        host=e.host if hosts else None,
        issue_id=e.issue.id,
        issue_identifier=e.issue.identifier,
        issue_url=e.issue.url,
        state=e.issue.state,
        run_id=e.run_id,
        attempt=e.attempt,
        started_at=iso(e.started_at),
        issue_title=e.issue.title,
        **e.progress.fields_for(RunningRow),
    )


def retry_row(r: RetryEntry, hosts: bool = False) -> RetryRow:
    return RetryRow(
        host=r.host if hosts else None,
        issue_id=r.issue_id,
        issue_identifier=r.identifier,
        issue_url=r.issue_url,
        attempt=r.attempt,
        due_at=iso(r.due_at),
        error=r.error,
        kind=r.kind,
    )


def daemon_names(eng: Engine) -> list[str]:
    """The health rows: the daemons, ``launcher`` only when the local one takes runs, and one
    ``host NAME`` row per worker host (its event stream and its last call)."""
    pool = eng.hosts
    names = [n for n in DAEMONS if n != "launcher" or LOCAL_HOST in pool.hosts]
    return names + [pool.label(n) for n, h in pool.hosts.items() if h.remote]


def host_rows(eng: Engine) -> list[HostRow]:
    pool = eng.hosts
    now_ms = eng.clock.monotonic_ms()
    rows = []
    for name, host in pool.hosts.items():
        health = eng.health.get(pool.label(name))
        ok = host.connected and now_ms >= host.down_until_ms
        detail = health[1] if health is not None and not health[0] else None
        rows.append(HostRow(name, host.remote, ok, host.drained, pool.load[name],
                            pool.per_host, None if ok else detail))  # fmt: skip
    return rows


def pause_status(eng: Engine) -> PauseStatus:
    rows: list[PauseReasonRow] = []
    op = eng.persisted.operator_pause
    if op is not None:
        rows.append(PauseReasonRow("operator", op.reason, op.since, by_uid=op.by_uid))
    rows.extend(eng.pauses.rows())
    return PauseStatus(paused=bool(rows), reasons=rows)


def build_snapshot(orch: Orchestrator) -> StateSnapshot:
    eng = orch.engine
    now_ms = eng.clock.monotonic_ms()
    live = sum(agent_seconds(e, now_ms) for e in eng.running.values())
    cfg = eng.settings
    ledger = eng.ledger
    wf = eng.cfg.workflow if eng.cfg else None
    retrying = sorted(eng.retries.values(), key=lambda r: r.due_ms)
    held = eng.holds.rows()
    return StateSnapshot(
        generated_at=iso(eng.clock.now()),
        counts=SnapshotCounts(len(eng.running), len(retrying), len(held)),
        running=[running_row(e, eng.hosts.remote) for e in eng.running.values()],
        retrying=[retry_row(r, eng.hosts.remote) for r in retrying],
        held=held,
        codex_totals=CodexTotals(
            ledger.input_tokens,
            ledger.output_tokens,
            ledger.total_tokens,
            round(eng.ended_seconds + live, 3),
        ),
        rate_limits=dict(eng.rate_limits) if eng.rate_limits is not None else None,
        pause=pause_status(eng),
        budgets=BudgetStatus(
            cfg.tokens_per_issue, cfg.tokens_per_day, ledger.day, ledger.tokens_today
        ),
        daemons=[eng.health_row(name) for name in daemon_names(eng)],
        config=ConfigStatus(
            ok=eng.config_error is None and eng.cfg is not None,
            path=wf.path if wf else None,
            fingerprint=wf.fingerprint if wf else None,
            loaded_at=eng.config_loaded_at,
            error=eng.config_error,
        ),
        poll_interval_ms=cfg.poll_interval_ms,
        max_concurrent_agents=cfg.max_concurrent_agents,
        workspaces=eng.sweep.status(cfg.max_age_days),
    )


def build_issue_view(orch: Orchestrator, identifier: str) -> IssueView:
    """SPEC 13.7.2 per-issue view; issue_not_found when nothing is known about it."""
    eng = orch.engine
    entry = next((e for e in eng.running.values() if e.issue.identifier == identifier), None)
    retry = next((r for r in eng.retries.values() if r.identifier == identifier), None)
    hold = next((h for h in eng.holds.rows() if h.issue_identifier == identifier), None)
    issue_id: str | None = None
    if entry is not None:
        issue_id = entry.issue.id
    elif retry is not None:
        issue_id = retry.issue_id
    elif hold is not None:
        issue_id = hold.issue_id
    else:
        issue_id = next((k for k, h in eng.history.items() if h.identifier == identifier), None)
    if issue_id is None:
        raise SymphonyError(f"{identifier} is unknown to the dispatcher", code="issue_not_found")
    hist = eng.history.get(issue_id)
    status_value: IssueStatus
    if entry is not None:
        status_value = "running"
    elif retry is not None:
        status_value = "retrying"
    elif hold is not None:
        status_value = hold.kind
    else:
        status_value = "idle"
    return IssueView(
        issue_identifier=identifier,
        issue_id=issue_id,
        status=status_value,
        workspace_path=(entry.workspace_path if entry else None)
        or (hist.workspace_path if hist else None),
        attempts=IssueAttempts(
            restart_count=hist.restart_count if hist else 0,
            current_retry_attempt=retry.attempt if retry else (entry.attempt if entry else None),
        ),
        running=running_row(entry, eng.hosts.remote) if entry else None,
        retry=retry_row(retry, eng.hosts.remote) if retry else None,
        hold=hold,
        recent_events=[RecentEvent(iso(at), ev, msg) for at, ev, msg in hist.recent]
        if hist
        else [],
        last_error=(hist.last_error if hist else None) or (retry.error if retry else None),
        tokens_used=eng.ledger.issue_total(issue_id),
    )
