"""The orchestrator's state and the primitives every part of it uses (SPEC 4.1.8, 16.4, 16.6).

Holds running entries, claims, retry entries, pause reasons, holds and budgets; adds and
removes runs, schedules retries, stops runs, audits, persists, and turns launcher run events
into state changes. :mod:`scheduler`, :mod:`recovery` and :mod:`controls` build on it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter, OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta

from symphonyd.core import audit_events as ae
from symphonyd.core.issue import Issue, parse_timestamp
from symphonyd.core.messages import (
    AuditEventIn,
    DaemonHealthRow,
    RunEvent,
    RunOutcome,
    StartRun,
    StartRunResult,
    StopReason,
    StopRun,
    TokenTotals,
)
from symphonyd.core.scheduling import (
    CONTINUATION_DELAY_MS,
    failure_backoff_ms,
)
from symphonyd.dispatcher.budget import TokenLedger
from symphonyd.dispatcher.holds import HoldBook
from symphonyd.dispatcher.journal import FailureEpisodes, run_fields
from symphonyd.dispatcher.ports import (
    AuditPort,
    Clock,
    ConfigSource,
    DiskProbe,
    DispatchSettings,
    LauncherPort,
    LoadedConfig,
    TrackerPort,
)
from symphonyd.dispatcher.state import (
    IssueHistory,
    PauseBook,
    RetryEntry,
    RetryKind,
    RunningEntry,
    SweepBook,
    agent_seconds,
    iso,
)
from symphonyd.dispatcher.store import PersistedState, StateStore
from symphonyd.runtime.logging import log_event

log = logging.getLogger("symphonyd.dispatcher")

# Error codes an agent run ends with when it needs a human: shown as a blocked hold, never
# retried into the same dead end (SPEC 10.5 leaves the policy to the implementation).
BLOCKED_ERROR_CODES = frozenset(
    {"turn_input_required", "approval_required", "approval_declined", "input_required"}
)
MAX_PENDING_AUDIT = 10_000
START_WINDOW = 64
MAX_HISTORY = 5_000


class Engine:
    """Shared state and primitives; see :class:`symphonyd.dispatcher.orchestrator.Orchestrator`."""

    def __init__(
        self,
        *,
        tracker: TrackerPort,
        launcher: LauncherPort,
        audit: AuditPort,
        config: ConfigSource,
        store: StateStore,
        clock: Clock,
        disk: DiskProbe | None = None,
        run_prefix: str | None = None,
    ) -> None:
        self.tracker, self.launcher, self.audit = tracker, launcher, audit
        self.config_source, self.store, self.clock, self.disk = config, store, clock, disk
        self.lock = asyncio.Lock()
        self.cfg: LoadedConfig | None = None
        self.config_error: str | None = None
        self.config_loaded_at: str | None = None
        self.running: dict[str, RunningEntry] = {}
        self.by_run: dict[str, str] = {}
        self.claimed: set[str] = set()
        self.retries: dict[str, RetryEntry] = {}
        self.completed: set[str] = set()
        self.running_by_state: Counter[str] = Counter()
        self.history: OrderedDict[str, IssueHistory] = OrderedDict()
        self.ended_seconds = 0.0
        self.rate_limits: dict[str, object] | None = None
        self.pauses = PauseBook()
        self.persisted = PersistedState()
        self.holds = HoldBook(self.persisted)
        self.ledger = TokenLedger(self.persisted)
        self.sweep = SweepBook()  # workspace survey and age cleanup (workspace_sweep)
        # daemon -> (ok, detail, when); rows are built only when a snapshot asks.
        self.health: dict[str, tuple[bool, str | None, datetime]] = {}
        self.episodes = FailureEpisodes()
        self._acks: list[str] = []
        self._ack_task: asyncio.Task[None] | None = None
        self.pending_stops: dict[str, StopRun] = {}
        self.resync_due = False  # a resync with the launcher's run table failed (0750)
        self._pending_audit: list[AuditEventIn] = []
        self._dirty = False
        self._listeners: list[Callable[[], None]] = []
        self._run_prefix = run_prefix or os.urandom(4).hex()
        self._run_seq = 0
        self.starts = 0  # runs the launcher accepted, for tests and the bench

    @property
    def settings(self) -> DispatchSettings:
        return self.cfg.settings if self.cfg else DispatchSettings()

    def add_listener(self, fn: Callable[[], None]) -> None:
        self._listeners.append(fn)

    def _changed(self) -> None:
        for fn in self._listeners:
            fn()

    def _mark(self, daemon: str, ok: bool, detail: str | None = None) -> None:
        self.health[daemon] = (ok, detail, self.clock.now())
        if daemon == "workflow":
            return  # a rejected edit is logged once by the reload itself
        if ok:
            self.episodes.ok(daemon, self.clock.monotonic_ms())
        else:
            self.episodes.failed(daemon, detail or "failed", self.clock.monotonic_ms())

    def health_row(self, daemon: str) -> DaemonHealthRow:
        entry = self.health.get(daemon)
        if entry is None:
            return DaemonHealthRow(daemon, False, "not contacted yet", None)
        return DaemonHealthRow(daemon, entry[0], entry[1], iso(entry[2]))

    @property
    def paused(self) -> bool:
        return bool(self.pauses) or self.persisted.operator_pause is not None

    def _persist(self) -> None:
        try:
            self.store.save(self.persisted)
            self._dirty = False
        except OSError as exc:
            # The decision stands in memory; we keep trying on every tick.
            self._dirty = True
            log.error("cannot save dispatcher state: %s", exc.strerror)  # noqa: TRY400

    async def _audit(self, *records: AuditEventIn, queue: bool = True) -> bool:
        """Append now; on failure pause with audit_unavailable and (optionally) keep them."""
        try:
            await self.audit.append([*self._pending_audit, *records])
        except Exception as exc:
            self._mark("audit", False, brief_error(exc))
            self.pauses.set(
                "audit_unavailable",
                f"audit writer unreachable ({brief_error(exc)}); no run starts unaudited",
                self.clock.now(),
            )
            if queue:
                room = MAX_PENDING_AUDIT - len(self._pending_audit)
                self._pending_audit.extend(records[: max(room, 0)])
            return False
        self._pending_audit.clear()
        self._mark("audit", True)
        self.pauses.clear("audit_unavailable")
        return True

    async def _audit_release(self, issue_id: str, reason: str, uid: int | None) -> None:
        # No operator uid means a change of the issue in the tracker lifted it.
        await self._audit(
            ae.operator_action(ae.RELEASE, operator_uid=uid, reason=reason, issue_id=issue_id)
        )

    async def _probe_audit(self) -> None:
        """While audit is down: flush what waits, or at least check the writer answers."""
        if self._pending_audit:
            await self._audit()
            return
        try:
            await self.audit.probe()
        except Exception as exc:
            self._mark("audit", False, brief_error(exc))
            self.pauses.set(
                "audit_unavailable",
                f"audit writer unreachable ({brief_error(exc)}); no run starts unaudited",
                self.clock.now(),
            )
            return
        self._mark("audit", True)
        self.pauses.clear("audit_unavailable")

    def _history(self, issue_id: str, identifier: str) -> IssueHistory:
        hist = self.history.get(issue_id)
        if hist is None:
            hist = self.history[issue_id] = IssueHistory(identifier)
            if len(self.history) > MAX_HISTORY:
                self.history.popitem(last=False)
        else:
            self.history.move_to_end(issue_id)
        return hist

    def _state_slot(self, key: str, reserved: Counter[str]) -> bool:
        cfg = self.settings
        limit = cfg.max_concurrent_agents_by_state.get(key, cfg.max_concurrent_agents)
        return self.running_by_state[key] + reserved[key] < limit

    def _new_run_id(self) -> str:
        self._run_seq += 1
        return f"r-{self._run_prefix}-{self._run_seq}"

    def _add_running(self, entry: RunningEntry) -> None:
        issue_id = entry.issue.id
        self.running[issue_id] = entry
        self.by_run[entry.run_id] = issue_id
        self.running_by_state[entry.state_key] += 1
        self.claimed.add(issue_id)
        self.retries.pop(issue_id, None)

    def _remove_running(self, entry: RunningEntry) -> None:
        issue_id = entry.issue.id
        if self.running.get(issue_id) is not entry:
            return
        del self.running[issue_id]
        self.by_run.pop(entry.run_id, None)
        self.running_by_state[entry.state_key] -= 1
        if self.running_by_state[entry.state_key] <= 0:
            del self.running_by_state[entry.state_key]
        self.ended_seconds += agent_seconds(entry, self.clock.monotonic_ms())

    async def _launch(self, batch: list[tuple[Issue, int | None]]) -> None:
        """Audit first (fail closed), then start every run of the batch concurrently."""
        if not batch or self.cfg is None:
            return
        workflow = self.cfg.workflow
        now, now_ms = self.clock.now(), self.clock.monotonic_ms()
        entries = [
            RunningEntry(self._new_run_id(), issue, attempt, now, now_ms)
            for issue, attempt in batch
        ]
        records = [
            ae.dispatch(e.issue.id, e.issue.identifier, e.run_id, e.attempt) for e in entries
        ]
        if not await self._audit(*records, queue=False):
            log_event(log, "dispatch", level=logging.WARNING, outcome="not_started",
                      runs=len(entries), error="audit writer unreachable")  # fmt: skip
            for e in entries:
                if e.attempt is not None:
                    self._schedule_retry(e.issue, e.attempt, "requeue", "audit writer unreachable")
            return
        for e in entries:
            self._add_running(e)
        results = await self._start_all(
            [StartRun(e.run_id, e.issue, e.attempt, workflow) for e in entries]
        )
        if not all(isinstance(r, BaseException) for r in results):
            self._mark("launcher", True)
        for e, res in zip(entries, results, strict=True):
            if isinstance(res, BaseException):
                self._mark("launcher", False, brief_error(res))
                # The launcher may have started it before failing to answer: make sure.
                self.pending_stops[e.run_id] = StopRun(e.run_id, "orphan")
                error = f"failed to spawn agent: {brief_error(res)}"
            elif not res.accepted:
                error = f"failed to spawn agent: {res.error or 'rejected'}"
            else:
                self.starts += 1
                log_event(log, "dispatch", outcome="started", **run_fields(e),
                          state=e.issue.state)  # fmt: skip
                continue
            log_event(log, "dispatch", level=logging.WARNING, outcome="failed", **run_fields(e),
                      error=error)  # fmt: skip
            self._remove_running(e)
            self._history(e.issue.id, e.issue.identifier).last_error = error
            self._schedule_retry(e.issue, (e.attempt or 0) + 1, "failure", error)

    async def _start_all(self, reqs: list[StartRun]) -> list[StartRunResult | BaseException]:
        """start_run for each request with at most START_WINDOW in flight.

        A small pool of workers instead of a task per run: the IPC connection pipelines
        requests anyway, and 10 000 tasks would cost more than the calls themselves.
        """
        results: list[StartRunResult | BaseException] = [RuntimeError("not started")] * len(reqs)
        position = iter(range(len(reqs)))

        async def worker() -> None:
            for i in position:
                try:
                    results[i] = await self.launcher.start_run(reqs[i])
                except Exception as exc:
                    results[i] = exc

        await asyncio.gather(*(worker() for _ in range(min(START_WINDOW, len(reqs)))))
        return results

    def _schedule_retry(
        self,
        issue: Issue,
        attempt: int,
        kind: RetryKind,
        error: str | None,
        *,
        delay_ms: int | None = None,
        session_id: str | None = None,
    ) -> None:
        """SPEC 8.4: replace any existing retry; continuation 1 s, failures back off.

        Logged with why and when it is due, except a requeue for the reason the previous
        entry already gave (a paused board re-queues its retries every poll interval)."""
        if delay_ms is not None:
            delay = delay_ms
        elif kind == "continuation":
            delay = CONTINUATION_DELAY_MS
        else:
            delay = failure_backoff_ms(attempt, self.settings.max_retry_backoff_ms)
        old = self.retries.get(issue.id)
        self.retries[issue.id] = entry = RetryEntry(
            issue_id=issue.id,
            identifier=issue.identifier,
            attempt=attempt,
            due_ms=self.clock.monotonic_ms() + delay,
            due_at=self.clock.now() + timedelta(milliseconds=delay),
            error=error,
            kind=kind,
            issue_url=issue.url,
        )
        self.claimed.add(issue.id)
        if kind != "requeue" or old is None or old.error != error:
            log_event(log, "retry", outcome="scheduled", issue_id=issue.id,
                      issue_identifier=issue.identifier, session_id=session_id, kind=kind,
                      attempt=attempt, due_in_ms=delay, due_at=iso(entry.due_at),
                      reason=error or "the run succeeded; checking for more work")  # fmt: skip

    def next_retry_due_ms(self) -> int | None:
        return min((r.due_ms for r in self.retries.values()), default=None)

    async def _terminate(
        self, entry: RunningEntry, reason: StopReason, *, cleanup: bool, release: bool = False
    ) -> None:
        self._remove_running(entry)
        if release:
            self.claimed.discard(entry.issue.id)
        hist = self._history(entry.issue.id, entry.issue.identifier)
        hist.workspace_path = entry.workspace_path or hist.workspace_path
        await self._send_stop(StopRun(entry.run_id, reason, cleanup_workspace=cleanup))

    async def _send_stop(self, req: StopRun) -> None:
        try:
            await self.launcher.stop_run(req)
            self._mark("launcher", True)
            self.pending_stops.pop(req.run_id, None)
        except Exception as exc:
            self._mark("launcher", False, brief_error(exc))
            self.pending_stops[req.run_id] = req

    async def _resync_if_due(self) -> None:
        """Retry a failed resync with the launcher (recovery overrides this)."""

    async def _retry_pending_stops(self) -> None:
        for req in list(self.pending_stops.values()):
            await self._send_stop(req)

    async def _remove_workspace(self, identifier: str) -> bool:
        """True when the launcher removed a workspace (False: none, or it failed)."""
        try:
            # With the workflow: a launcher that has started no run yet (fresh after a
            # restart) would not know the workspace root and hooks otherwise.
            workflow = self.cfg.workflow if self.cfg else None
            removed = await self.launcher.remove_workspace(identifier, workflow=workflow)
            self._mark("launcher", True)
        except Exception as exc:
            self._mark("launcher", False, brief_error(exc))
            return False
        return removed

    async def _ack(self, run_id: str) -> None:
        """Queue an acknowledgement; one background call sends all queued ones.

        Not awaited under the lock: a lost ack only means the launcher lists that finished
        run again after a restart, where it is recognised and acknowledged then.
        """
        self._acks.append(run_id)
        if self._ack_task is None or self._ack_task.done():
            self._ack_task = asyncio.get_running_loop().create_task(self._flush_acks())

    async def settle(self) -> None:
        """Wait for queued acknowledgements to be sent (tests, shutdown)."""
        while self._ack_task is not None and not self._ack_task.done():
            await self._ack_task

    async def _flush_acks(self) -> None:
        while self._acks:
            batch, self._acks = self._acks[:500], self._acks[500:]
            await self._send_acks(batch)

    async def _send_acks(self, run_ids: list[str]) -> None:
        try:
            await self.launcher.ack_runs(run_ids)
        except Exception as exc:
            self._mark("launcher", False, brief_error(exc))

    async def handle_run_event(self, ev: RunEvent) -> None:
        async with self.lock:
            await self._handle_run_event(ev)
        self._changed()

    async def _handle_run_event(self, ev: RunEvent) -> None:
        issue_id = self.by_run.get(ev.run_id)
        entry = self.running.get(issue_id) if issue_id else None
        if entry is None:
            if ev.event == "run_finished":
                self.pending_stops.pop(ev.run_id, None)
                await self._ack(ev.run_id)
            return
        now = self.clock.now()
        entry.last_event = ev.event
        entry.last_event_at = parse_timestamp(ev.at) or now
        entry.last_event_ms = self.clock.monotonic_ms()
        if ev.event != "run_finished" and entry.agent_started_ms is None:
            entry.agent_started_ms = entry.last_event_ms  # only the agent sends other events
        if ev.agent_seconds is not None:
            entry.agent_seconds = ev.agent_seconds
        entry.last_message = ev.message if ev.message is not None else entry.last_message
        entry.session_id = ev.session_id or entry.session_id
        entry.turn_count = ev.turn_count if ev.turn_count is not None else entry.turn_count
        entry.pid = ev.pid or entry.pid
        if ev.rate_limits is not None:
            self.rate_limits = dict(ev.rate_limits)
        hist = self._history(entry.issue.id, entry.issue.identifier)
        hist.recent.append((entry.last_event_at, ev.event, ev.message))
        if ev.tokens is not None:
            self._count_tokens(entry, ev.tokens)
        if ev.event == "run_finished":
            await self._worker_exit(entry, ev.outcome or RunOutcome("failed", error="no outcome"))
            return
        limit = self.settings.tokens_per_issue
        if limit is not None and self.ledger.issue_total(entry.issue.id) >= limit:
            await self._budget_stop(entry, limit)

    def _count_tokens(self, entry: RunningEntry, totals: TokenTotals) -> None:
        old = entry.tokens
        delta = TokenTotals(
            max(totals.input_tokens - old.input_tokens, 0),
            max(totals.output_tokens - old.output_tokens, 0),
            max(totals.total_tokens - old.total_tokens, 0),
        )
        entry.tokens = TokenTotals(
            max(totals.input_tokens, old.input_tokens),
            max(totals.output_tokens, old.output_tokens),
            max(totals.total_tokens, old.total_tokens),
        )
        self.ledger.add(entry.issue.id, delta, self.clock.now())

    async def _budget_stop(self, entry: RunningEntry, limit: int) -> None:
        used = self.ledger.issue_total(entry.issue.id)
        await self._terminate(entry, "budget", cleanup=False, release=True)
        reason = f"used {used} tokens, over tokens_per_issue {limit}"
        log_event(log, "hold", level=logging.WARNING, outcome="placed", kind="budget",
                  **run_fields(entry), reason=reason)  # fmt: skip
        self.holds.place(entry.issue, "budget", reason, self.clock.now())
        self._history(entry.issue.id, entry.issue.identifier).last_error = reason
        self._persist()
        await self._audit(
            ae.budget_hit("tokens_per_issue", limit, used, issue_id=entry.issue.id)  # fmt: skip
        )

    async def _worker_exit(self, entry: RunningEntry, outcome: RunOutcome) -> None:
        """SPEC 16.6: continuation after a normal exit, backoff after a failure, or a hold."""
        self._remove_running(entry)
        issue = entry.issue
        hist = self._history(issue.id, issue.identifier)
        hist.workspace_path = entry.workspace_path or hist.workspace_path
        if outcome.status == "blocked" or outcome.error_code in BLOCKED_ERROR_CODES:
            reason = outcome.error_code or "blocked"
            if outcome.error:
                reason = f"{reason}: {outcome.error}"
            self.claimed.discard(issue.id)
            self.holds.place(issue, "blocked", reason, self.clock.now())
            log_event(log, "hold", level=logging.WARNING, outcome="placed", kind="blocked",
                      **run_fields(entry), reason=reason)  # fmt: skip
            hist.last_error = reason
            self._persist()
            await self._audit(
                ae.run_finished(
                    issue.id,
                    issue.identifier,
                    entry.run_id,
                    "blocked",
                    error_code=outcome.error_code or "blocked",
                    session_id=entry.session_id,
                    turns=entry.turn_count,
                    total_tokens=entry.tokens.total_tokens,
                )  # fmt: skip
            )
        elif outcome.status == "succeeded":
            self.completed.add(issue.id)
            self._schedule_retry(issue, 1, "continuation", None, session_id=entry.session_id)
        else:
            hist.restart_count += 1
            error = f"worker exited: {outcome.status}"
            if outcome.error_code or outcome.error:
                error += f" ({outcome.error_code or ''}{': ' if outcome.error else ''}"
                error += f"{outcome.error or ''})"
            hist.last_error = error
            self._schedule_retry(
                issue, (entry.attempt or 0) + 1, "failure", error, session_id=entry.session_id
            )
        if self.ledger.dirty:
            self.ledger.dirty = False
            self._persist()
        await self._ack(entry.run_id)

    def _pause_codes(self) -> list[str]:
        codes: list[str] = [r.code for r in self.pauses.rows()]
        if self.persisted.operator_pause is not None:
            codes.insert(0, "operator")
        return codes


def brief_error(exc: BaseException) -> str:
    text = str(exc) or exc.__class__.__name__
    return text if len(text) <= 200 else text[:197] + "..."
