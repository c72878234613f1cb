"""What the launcher's run events do to the dispatcher's state (SPEC 16.6 worker exit, 13.5).

Progress goes into the run's entry by the one rule both daemons share
(:meth:`symphonyd.core.run_progress.RunProgress.apply`) and into the issue's recent events;
the tokens an event adds feed the ledger and may end a run over its budget; ``run_finished``
frees the slot and schedules a continuation, a backoff retry or a hold. :mod:`recovery`
uses :meth:`RunEvents.worker_exit` for runs that finished while no dispatcher was listening.
"""

from __future__ import annotations

import logging

from symphonyd.core import audit_events as ae
from symphonyd.core.api.launcher import RunEvent, RunOutcome
from symphonyd.core.issue import parse_timestamp
from symphonyd.core.worker_hosts import LOCAL_HOST
from symphonyd.dispatcher.engine import Engine, log
from symphonyd.dispatcher.journal import run_fields
from symphonyd.dispatcher.state import RunningEntry, iso
from symphonyd.runtime.logging import log_event

# Error codes an agent run ends with when it needs a human: shown as a blocked hold, never
# retried into the same dead end (SPEC 10.5 leaves the policy to the implementation).
BLOCKED_ERROR_CODES = frozenset(
    {"turn_input_required", "approval_required", "approval_declined", "input_required"}
)


class RunEvents:
    """Folds run events into the engine's state; the caller holds the lock."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def handle(self, ev: RunEvent, host: str = LOCAL_HOST) -> None:
        """One event from ``host``'s launcher. An event of a run this dispatcher no longer
        binds to that host (superseded: lost, fenced and retried) changes nothing."""
        eng = self.engine
        entry = eng.entry_for_run(ev.run_id)
        if entry is None or entry.host != host:
            if ev.event == "run_finished":
                if eng.stop_hosts.get(ev.run_id, host) == host:
                    eng.forget_stop(ev.run_id)
                await eng.ack(ev.run_id, host)
            return
        # The launcher's clock is taken as given unless unusable; then ours.
        at = parse_timestamp(ev.at) or eng.clock.now()
        added = entry.progress.apply(ev, at=iso(at))
        entry.last_event_ms = eng.clock.monotonic_ms()
        if ev.event != "run_finished" and entry.agent_started_ms is None:
            entry.agent_started_ms = entry.last_event_ms  # only the agent sends other events
        if ev.rate_limits is not None:
            eng.rate_limits = dict(ev.rate_limits)
        hist = eng.history_of(entry.issue.id, entry.issue.identifier)
        hist.recent.append((at, ev.event, ev.message))
        if ev.tokens is not None:
            eng.ledger.add(entry.issue.id, added, eng.clock.now())
        if ev.event == "run_finished":
            await self.worker_exit(entry, ev.outcome or RunOutcome("failed", error="no outcome"))
            return
        limit = eng.settings.tokens_per_issue
        if limit is not None and eng.ledger.issue_total(entry.issue.id) >= limit:
            await self._budget_stop(entry, limit)

    async def _budget_stop(self, entry: RunningEntry, limit: int) -> None:
        eng = self.engine
        used = eng.ledger.issue_total(entry.issue.id)
        await eng.terminate(entry, "budget", cleanup=False, release=True)
        reason = f"used {used} tokens, over tokens_per_issue {limit}"
        log_event(log, "hold", level=logging.WARNING, outcome="placed", kind="budget",
                  **run_fields(entry), reason=reason)  # fmt: skip
        eng.holds.place(entry.issue, "budget", reason, eng.clock.now())
        eng.history_of(entry.issue.id, entry.issue.identifier).last_error = reason
        eng.persist()
        await eng.append_audit(
            ae.budget_hit("tokens_per_issue", limit, used, issue_id=entry.issue.id)  # fmt: skip
        )

    async def worker_exit(self, entry: RunningEntry, outcome: RunOutcome) -> None:
        """SPEC 16.6: continuation after a normal exit, backoff after a failure, or a hold."""
        eng = self.engine
        eng.remove_running(entry)
        issue = entry.issue
        hist = eng.keep_workspace_path(entry)
        if outcome.status == "blocked" or outcome.error_code in BLOCKED_ERROR_CODES:
            reason = outcome.error_code or "blocked"
            if outcome.error:
                reason = f"{reason}: {outcome.error}"
            eng.claimed.discard(issue.id)
            eng.holds.place(issue, "blocked", reason, eng.clock.now())
            log_event(log, "hold", level=logging.WARNING, outcome="placed", kind="blocked",
                      **run_fields(entry), reason=reason)  # fmt: skip
            hist.last_error = reason
            eng.persist()
            await eng.append_audit(
                ae.run_finished(
                    issue.id,
                    issue.identifier,
                    entry.run_id,
                    "blocked",
                    error_code=outcome.error_code or "blocked",
                    session_id=entry.session_id,
                    turns=entry.turn_count,
                    total_tokens=entry.progress.tokens.total_tokens,
                )  # fmt: skip
            )
        elif outcome.status == "succeeded":
            eng.completed.add(issue.id)
            eng.schedule_retry(issue, 1, "continuation", None, session_id=entry.session_id)
        else:
            hist.restart_count += 1
            error = f"worker exited: {outcome.status}"
            if outcome.error_code or outcome.error:
                error += f" ({outcome.error_code or ''}{': ' if outcome.error else ''}"
                error += f"{outcome.error or ''})"
            hist.last_error = error
            eng.schedule_retry(
                issue, (entry.attempt or 0) + 1, "failure", error, session_id=entry.session_id
            )
        eng.persist_if_dirty()
        await eng.ack(entry.run_id, entry.host)
