"""The single authoritative scheduler (SPEC 7, 8, 16) as a deterministic async state machine.

Every public coroutine takes the one lock, so ticks, retry timers, run events and operator
commands are serialised exactly as SPEC 7.4 asks. Time comes from an injected clock and the
outside world from the ports, so tests drive it step by step. The daemon decides *when* to
call :meth:`tick` and :meth:`fire_due_retries`; this class decides *what* happens.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from symphonyd.core import audit_events as ae
from symphonyd.core.errors import SymphonyError
from symphonyd.core.issue import Issue, parse_timestamp, state_key
from symphonyd.core.messages import (
    AuditEventIn,
    DaemonHealthRow,
    RunEvent,
    RunInfo,
    RunOutcome,
    StartRun,
    StartRunResult,
    StopReason,
    StopRun,
    TokenTotals,
)
from symphonyd.core.scheduling import (
    CONTINUATION_DELAY_MS,
    NO_SLOTS_ERROR,
    candidate_eligible,
    failure_backoff_ms,
    issue_routable,
    sort_for_dispatch,
)
from symphonyd.dispatcher.budget import TokenLedger
from symphonyd.dispatcher.holds import HoldBook
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
    iso,
)
from symphonyd.dispatcher.store import OperatorPause, PersistedState, StateFileError, StateStore

log = logging.getLogger("symphonyd.dispatcher")

# Error codes an agent run ends with when it needs a human: shown as a blocked hold, never
# retried into the same dead end (SPEC 10.5 leaves the policy to the implementation).
BLOCKED_ERROR_CODES = frozenset(
    {"turn_input_required", "approval_required", "approval_declined", "input_required"}
)
MAX_PENDING_AUDIT = 10_000
START_WINDOW = 64
MAX_HISTORY = 5_000
MAX_REASON_CHARS = 500


class ControlError(SymphonyError):
    code = "control_error"


class Orchestrator:
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
        # daemon -> (ok, detail, when); rows are built only when a snapshot asks.
        self.health: dict[str, tuple[bool, str | None, datetime]] = {}
        self._acks: list[str] = []
        self._ack_task: asyncio.Task[None] | None = None
        self.pending_stops: dict[str, StopRun] = {}
        self._pending_audit: list[AuditEventIn] = []
        self._dirty = False
        self._listeners: list[Callable[[], None]] = []
        self._run_prefix = run_prefix or os.urandom(4).hex()
        self._run_seq = 0
        self.starts = 0  # runs the launcher accepted, for tests and the bench

    # ------------------------------------------------------------------ plumbing

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
            self._mark("audit", False, _short(exc))
            if self.pauses.set(
                "audit_unavailable",
                f"audit writer unreachable ({_short(exc)}); no run starts unaudited",
                self.clock.now(),
            ):
                log.warning("audit writer unreachable; dispatch paused")
            if queue:
                room = MAX_PENDING_AUDIT - len(self._pending_audit)
                self._pending_audit.extend(records[: max(room, 0)])
            return False
        self._pending_audit.clear()
        self._mark("audit", True)
        if self.pauses.clear("audit_unavailable"):
            log.info("audit writer reachable again; audit pause lifted")
        return True

    async def _probe_audit(self) -> None:
        """While audit is down: flush what waits, or at least check the writer answers."""
        if self._pending_audit:
            await self._audit()
            return
        try:
            await self.audit.probe()
        except Exception as exc:
            self._mark("audit", False, _short(exc))
            self.pauses.set(
                "audit_unavailable",
                f"audit writer unreachable ({_short(exc)}); no run starts unaudited",
                self.clock.now(),
            )
            return
        self._mark("audit", True)
        if self.pauses.clear("audit_unavailable"):
            log.info("audit writer reachable again; audit pause lifted")

    def _history(self, issue_id: str, identifier: str) -> IssueHistory:
        hist = self.history.get(issue_id)
        if hist is None:
            hist = self.history[issue_id] = IssueHistory(identifier)
            if len(self.history) > MAX_HISTORY:
                self.history.popitem(last=False)
        else:
            self.history.move_to_end(issue_id)
        return hist

    # ------------------------------------------------------------------ startup

    async def start(self) -> None:
        """Load durable state and config, re-adopt the launcher's runs, clean terminal ones.

        Raises when the config is invalid (SPEC 6.3) or the launcher cannot say what is
        running: starting blind could dispatch an issue twice.
        """
        async with self.lock:
            try:
                self.persisted = self.store.load()
            except StateFileError as exc:
                moved = self.store.quarantine()
                self.persisted = PersistedState()
                self.pauses.set(
                    "state_unreadable",
                    f"{exc.message}; moved to {moved}; resume once you have checked it",
                    self.clock.now(),
                )
            self.holds = HoldBook(self.persisted)
            self.ledger = TokenLedger(self.persisted)
            self.cfg = self.config_source.load()
            self.config_loaded_at = iso(self.clock.now())
            self._mark("workflow", True)
            self.ledger.roll(self.clock.now())
            await self._recover_runs()
            await self._startup_terminal_cleanup()
            # Fail closed from the first tick: no run starts before the audit writer answers.
            self.pauses.set("audit_unavailable", "audit writer not checked yet", self.clock.now())
            await self._probe_audit()
            self._persist()
        await self.settle()
        self._changed()

    async def _recover_runs(self) -> None:
        runs = await self.launcher.list_runs()
        self._mark("launcher", True)
        live = sorted((r for r in runs if r.outcome is None), key=lambda r: r.started_at)
        finished = [r for r in runs if r.outcome is not None]
        issues: dict[str, Issue] = {}
        if live:
            try:
                fetched = await self.tracker.fetch_by_ids(sorted({r.issue_id for r in live}))
                issues = {i.id: i for i in fetched}
                self._mark("tracker", True)
            except Exception as exc:
                self._mark("tracker", False, _short(exc))
        for run in live:
            if run.issue_id in self.running or self.holds.get(run.issue_id) is not None:
                # A duplicate or a run the operator already stopped: end it, never adopt it.
                await self._send_stop(StopRun(run.run_id, "orphan"))
                continue
            self._adopt(run, issues.get(run.issue_id))
        for run in finished:
            assert run.outcome is not None
            free = run.issue_id not in self.running and run.issue_id not in self.retries
            if free and self.holds.get(run.issue_id) is None:
                entry = self._adopt(run, issues.get(run.issue_id))
                await self._worker_exit(entry, run.outcome)
            else:
                await self._ack(run.run_id)

    async def resync_runs(self) -> None:
        """After (re)subscribing to run events: settle what happened while we were away."""
        async with self.lock:
            try:
                runs = await self.launcher.list_runs()
                self._mark("launcher", True)
            except Exception as exc:
                self._mark("launcher", False, _short(exc))
                return
            for run in runs:
                issue_id = self.by_run.get(run.run_id)
                entry = self.running.get(issue_id) if issue_id else None
                if run.outcome is not None:
                    if entry is not None:
                        await self._worker_exit(entry, run.outcome)
                    else:
                        self.pending_stops.pop(run.run_id, None)
                        await self._ack(run.run_id)
                elif entry is None and run.run_id not in self.pending_stops:
                    await self._send_stop(StopRun(run.run_id, "orphan"))
        self._changed()

    def _adopt(self, run: RunInfo, issue: Issue | None) -> RunningEntry:
        if issue is None:
            # Reconciliation on the first tick replaces this placeholder or ends the run.
            issue = Issue(run.issue_id, run.issue_identifier, run.issue_identifier, "", True)
        started = parse_timestamp(run.started_at) or self.clock.now()
        elapsed_ms = max(int((self.clock.now() - started).total_seconds() * 1000), 0)
        last_at = parse_timestamp(run.last_event_at)
        entry = RunningEntry(
            run_id=run.run_id,
            issue=issue,
            attempt=run.attempt,
            started_at=started,
            started_ms=self.clock.monotonic_ms() - elapsed_ms,
            session_id=run.session_id,
            turn_count=run.turn_count,
            pid=run.pid,
            last_event=run.last_event,
            last_event_at=last_at,
            last_event_ms=self.clock.monotonic_ms() if last_at else None,
            last_message=run.last_message,
            tokens=run.tokens,
            workspace_path=run.workspace_path,
        )
        self._add_running(entry)
        return entry

    async def _startup_terminal_cleanup(self) -> None:
        cfg = self.settings
        try:
            terminal = await self.tracker.fetch_by_states(list(cfg.terminal_states_raw))
            self._mark("tracker", True)
        except Exception as exc:
            self._mark("tracker", False, _short(exc))
            log.warning("startup terminal cleanup skipped: %s", _short(exc))
            return
        for issue in terminal:
            if issue.id in self.running:
                continue
            self.holds.drop(issue.id)
            await self._remove_workspace(issue.identifier)

    # ------------------------------------------------------------------ tick

    async def tick(self) -> None:
        """SPEC 16.2: reconcile, preflight, fetch, sort, dispatch while slots remain."""
        async with self.lock:
            await self._retry_pending_stops()
            await self._reconcile()
            await self._preflight()
            if self.cfg is not None:
                await self._poll_candidates()
            if self._dirty or self.ledger.dirty:
                self.ledger.dirty = False
                self._persist()
        self._changed()

    async def _preflight(self) -> None:
        """SPEC 6.3 plus seed 001: config reload, day rollover, disk, audit recovery.

        Each failed check raises its own pause reason; the candidate poll still runs while
        paused so holds see tracker changes and a tracker outage can clear itself.
        """
        await self._reload_config()
        now = self.clock.now()
        self.ledger.roll(now)
        cfg = self.settings
        limit = cfg.tokens_per_day
        if limit is not None and self.ledger.tokens_today >= limit:
            newly = self.pauses.set(
                "daily_budget",
                f"{self.ledger.tokens_today} of {limit} tokens used today",
                now,
                until=self.ledger.resets_at(now),
            )
            if newly:
                await self._audit(ae.budget_hit("tokens_per_day", limit, self.ledger.tokens_today))
        else:
            self.pauses.clear("daily_budget")
        self._check_disk(cfg)
        if self.pauses.has("audit_unavailable"):
            await self._probe_audit()

    def _check_disk(self, cfg: DispatchSettings) -> None:
        if self.disk is None or not cfg.workspace_root or cfg.min_free_disk_bytes <= 0:
            self.pauses.clear("low_disk")
            return
        free = self.disk.free_bytes(cfg.workspace_root)
        if free is not None and free < cfg.min_free_disk_bytes:
            self.pauses.set(
                "low_disk",
                f"{free} bytes free under {cfg.workspace_root}, "
                f"below {cfg.min_free_disk_bytes}",
                self.clock.now(),
            )
        else:
            self.pauses.clear("low_disk")

    async def reload_config(self) -> None:
        """Called by the WORKFLOW.md watcher; the tick also reloads defensively."""
        async with self.lock:
            await self._reload_config()
        self._changed()

    async def _reload_config(self) -> None:
        try:
            new = self.config_source.load()
        except SymphonyError as exc:
            message = str(exc)
            if message != self.config_error:
                self.config_error = message
                log.warning("WORKFLOW.md rejected, keeping the last good config: %s", message)
                good = self.cfg.workflow if self.cfg else None
                await self._audit(
                    ae.config_reload(
                        good.path if good else "",
                        good.fingerprint if good else "",
                        False,
                        error=message,
                    )
                )
            self._mark("workflow", False, message)
            self.pauses.set(
                "invalid_config",
                f"WORKFLOW.md rejected ({message}); runs in flight keep the last good config",
                self.clock.now(),
            )
            return
        self.config_error = None
        self.pauses.clear("invalid_config")
        self._mark("workflow", True)
        if self.cfg is None or new.workflow.fingerprint != self.cfg.workflow.fingerprint:
            self.cfg = new
            self.config_loaded_at = iso(self.clock.now())
            log.info("WORKFLOW.md loaded (%s)", new.workflow.fingerprint[:12])
            await self._audit(ae.config_reload(new.workflow.path, new.workflow.fingerprint, True))

    async def _poll_candidates(self) -> None:
        cfg = self.settings
        try:
            issues = await self.tracker.fetch_by_states(list(cfg.active_states_raw))
        except Exception as exc:
            self._mark("tracker", False, _short(exc))
            self.pauses.set(
                "tracker_unavailable", f"tracker poll failed: {_short(exc)}", self.clock.now()
            )
            return
        self._mark("tracker", True)
        self.pauses.clear("tracker_unavailable")
        for issue in issues:
            if self.holds.observe(issue):
                await self._audit(
                    ae.operator_action(
                        ae.RESUME,
                        operator_uid=None,
                        reason=f"{issue.identifier} changed in the tracker; hold lifted",
                        issue_id=issue.id,
                    )
                )
        if self.paused:
            return
        slots = max(cfg.max_concurrent_agents - len(self.running), 0)
        batch: list[tuple[Issue, int | None]] = []
        reserved: Counter[str] = Counter()
        for issue in sort_for_dispatch(issues):
            if slots <= 0:
                break
            if issue.id in self.claimed or issue.id in self.running:
                continue
            if self.holds.get(issue.id) is not None:
                continue
            if not candidate_eligible(
                issue,
                active_states=cfg.active_states,
                terminal_states=cfg.terminal_states,
                required_labels=cfg.required_labels,
            ):
                continue
            if not self._state_slot(state_key(issue.state), reserved):
                continue
            reserved[state_key(issue.state)] += 1
            batch.append((issue, None))
            slots -= 1
        await self._launch(batch)

    def _state_slot(self, key: str, reserved: Counter[str]) -> bool:
        cfg = self.settings
        limit = cfg.max_concurrent_agents_by_state.get(key, cfg.max_concurrent_agents)
        return self.running_by_state[key] + reserved[key] < limit

    # ------------------------------------------------------------------ dispatch

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
        self.ended_seconds += max((self.clock.monotonic_ms() - entry.started_ms) / 1000, 0.0)

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
                self._mark("launcher", False, _short(res))
                # The launcher may have started it before failing to answer: make sure.
                self.pending_stops[e.run_id] = StopRun(e.run_id, "orphan")
                error = f"failed to spawn agent: {_short(res)}"
            elif not res.accepted:
                error = f"failed to spawn agent: {res.error or 'rejected'}"
            else:
                self.starts += 1
                continue
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
        self, issue: Issue, attempt: int, kind: RetryKind, error: str | None
    ) -> None:
        """SPEC 8.4: replace any existing retry; continuation 1 s, failures back off."""
        if kind == "continuation":
            delay = CONTINUATION_DELAY_MS
        else:
            delay = failure_backoff_ms(attempt, self.settings.max_retry_backoff_ms)
        self.retries[issue.id] = RetryEntry(
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

    def next_retry_due_ms(self) -> int | None:
        return min((r.due_ms for r in self.retries.values()), default=None)

    async def fire_due_retries(self) -> None:
        """SPEC 16.6 on_retry_timer for every retry that is due, with one batched refresh."""
        async with self.lock:
            await self._fire_due_retries()
        self._changed()

    async def _fire_due_retries(self) -> None:
        now_ms = self.clock.monotonic_ms()
        due = sorted(
            (r for r in self.retries.values() if r.due_ms <= now_ms), key=lambda r: r.due_ms
        )
        if not due:
            return
        if self.paused or self.cfg is None:
            codes = ", ".join(sorted(self._pause_codes()))
            for r in due:
                stub = Issue(r.issue_id, r.identifier, r.identifier, "", True, url=r.issue_url)
                self._schedule_retry(stub, r.attempt, "requeue", f"dispatch paused ({codes})")
                # A paused retry waits a poll interval rather than backing off further.
                self.retries[r.issue_id].due_ms = now_ms + self.settings.poll_interval_ms
            return
        try:
            refreshed = await self.tracker.fetch_by_ids([r.issue_id for r in due])
            self._mark("tracker", True)
        except Exception as exc:
            self._mark("tracker", False, _short(exc))
            for r in due:
                stub = Issue(r.issue_id, r.identifier, r.identifier, "", True, url=r.issue_url)
                self._schedule_retry(stub, r.attempt + 1, "failure", "retry refresh failed")
            return
        by_id = {i.id: i for i in refreshed}
        cfg = self.settings
        slots = max(cfg.max_concurrent_agents - len(self.running), 0)
        reserved: Counter[str] = Counter()
        batch: list[tuple[Issue, int | None]] = []
        for r in due:
            del self.retries[r.issue_id]
            issue = by_id.get(r.issue_id)
            if issue is None:
                self.claimed.discard(r.issue_id)
                continue
            key = state_key(issue.state)
            if key in cfg.terminal_states:
                self.claimed.discard(r.issue_id)
                await self._remove_workspace(issue.identifier)
                continue
            routable = issue_routable(issue, cfg.required_labels)
            if key not in cfg.active_states or not routable or issue.id in self.running:
                self.claimed.discard(r.issue_id)
                continue
            if slots <= 0 or not self._state_slot(key, reserved):
                self._schedule_retry(issue, r.attempt + 1, "requeue", NO_SLOTS_ERROR)
                continue
            slots -= 1
            reserved[key] += 1
            batch.append((issue, r.attempt))
        await self._launch(batch)

    # ------------------------------------------------------------------ reconcile

    async def _reconcile(self) -> None:
        """SPEC 16.3: stalls first, then a tracker refresh of every running issue."""
        await self._reconcile_stalls()
        cfg = self.settings
        if not self.running:
            return
        ids = list(self.running)
        try:
            refreshed = await self.tracker.fetch_by_ids(ids)
            self._mark("tracker", True)
        except Exception as exc:
            self._mark("tracker", False, _short(exc))
            return
        seen: set[str] = set()
        for issue in refreshed:
            entry = self.running.get(issue.id)
            if entry is None:
                continue
            seen.add(issue.id)
            key = state_key(issue.state)
            if key in cfg.terminal_states:
                await self._terminate(entry, "terminal", cleanup=True, release=True)
            elif key in cfg.active_states and issue_routable(issue, cfg.required_labels):
                self.running_by_state[entry.state_key] -= 1
                entry.issue = issue
                self.running_by_state[entry.state_key] += 1
            elif key in cfg.active_states:
                await self._terminate(entry, "unroutable", cleanup=False, release=True)
            else:
                await self._terminate(entry, "inactive", cleanup=False, release=True)
        for issue_id in set(ids) - seen:
            gone = self.running.get(issue_id)
            if gone is not None:
                await self._terminate(gone, "inactive", cleanup=False, release=True)
        for key in [k for k, v in self.running_by_state.items() if v <= 0]:
            del self.running_by_state[key]

    async def _reconcile_stalls(self) -> None:
        """SPEC 8.5 part A: no event for longer than stall_timeout_ms ends the run."""
        timeout = self.settings.stall_timeout_ms
        if timeout <= 0:
            return
        now_ms = self.clock.monotonic_ms()
        for entry in list(self.running.values()):
            last = entry.last_event_ms if entry.last_event_ms is not None else entry.started_ms
            if now_ms - last > timeout:
                error = f"stalled: no agent activity for {(now_ms - last) // 1000} s"
                await self._terminate(entry, "stalled", cleanup=False)
                self._history(entry.issue.id, entry.issue.identifier).last_error = error
                self._schedule_retry(entry.issue, (entry.attempt or 0) + 1, "failure", error)

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
            self._mark("launcher", False, _short(exc))
            self.pending_stops[req.run_id] = req

    async def _retry_pending_stops(self) -> None:
        for req in list(self.pending_stops.values()):
            await self._send_stop(req)

    async def _remove_workspace(self, identifier: str) -> None:
        try:
            await self.launcher.remove_workspace(identifier)
            self._mark("launcher", True)
        except Exception as exc:
            self._mark("launcher", False, _short(exc))

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
            self._mark("launcher", False, _short(exc))

    # ------------------------------------------------------------------ run events

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
            self._schedule_retry(issue, 1, "continuation", None)
        else:
            hist.restart_count += 1
            error = f"worker exited: {outcome.status}"
            if outcome.error_code or outcome.error:
                error += f" ({outcome.error_code or ''}{': ' if outcome.error else ''}"
                error += f"{outcome.error or ''})"
            hist.last_error = error
            self._schedule_retry(issue, (entry.attempt or 0) + 1, "failure", error)
        if self.ledger.dirty:
            self.ledger.dirty = False
            self._persist()
        await self._ack(entry.run_id)

    # ------------------------------------------------------------------ operator controls

    def _pause_codes(self) -> list[str]:
        codes: list[str] = [r.code for r in self.pauses.rows()]
        if self.persisted.operator_pause is not None:
            codes.insert(0, "operator")
        return codes

    async def pause(self, reason: str, uid: int | None) -> str:
        reason = _clean_reason(reason)
        async with self.lock:
            now = iso(self.clock.now())
            self.persisted.operator_pause = OperatorPause(reason, now, uid)
            self._persist()
            await self._audit(ae.operator_action(ae.PAUSE, operator_uid=uid, reason=reason))
        self._changed()
        return f"dispatch paused by uid {uid}: {reason}; runs in flight continue"

    async def resume(self, uid: int | None) -> str:
        async with self.lock:
            had = self.persisted.operator_pause is not None
            had |= self.pauses.clear("state_unreadable")
            self.persisted.operator_pause = None
            self._persist()
            if had:
                await self._audit(ae.operator_action(ae.RESUME, operator_uid=uid))
            remaining = [r.code for r in self.pauses.rows()]
        self._changed()
        message = "operator pause lifted" if had else "dispatch was not paused by an operator"
        if remaining:
            message += "; still paused automatically: " + ", ".join(remaining)
        return message

    def _find_issue_id(self, identifier: str, sources: Iterable[tuple[str, str]]) -> str | None:
        for issue_id, ident in sources:
            if ident == identifier:
                return issue_id
        return None

    async def stop(self, identifier: str, uid: int | None) -> str:
        async with self.lock:
            sources = [(k, e.issue.identifier) for k, e in self.running.items()]
            sources += [(k, r.identifier) for k, r in self.retries.items()]
            issue_id = self._find_issue_id(identifier, sources)
            if issue_id is None:
                raise ControlError(
                    f"{identifier} is neither running nor waiting for a retry",
                    code="issue_not_found",
                )
            entry = self.running.get(issue_id)
            retry = self.retries.pop(issue_id, None)
            self.claimed.discard(issue_id)
            if entry is not None:
                await self._terminate(entry, "operator", cleanup=False, release=True)
                issue = entry.issue
            else:
                assert retry is not None
                issue = Issue(issue_id, retry.identifier, retry.identifier, "", True)
            self.holds.place(issue, "stopped", "stopped by operator", self.clock.now(), uid)
            self._persist()
            await self._audit(
                ae.operator_action(
                    ae.STOP, operator_uid=uid, reason=f"stop {identifier}", issue_id=issue_id
                )
            )
        self._changed()
        return f"{identifier} stopped; it stays out of dispatch until it changes or is released"

    async def release(self, identifier: str, uid: int | None) -> str:
        async with self.lock:
            hold = self.holds.find(identifier)
            if hold is None:
                raise ControlError(f"{identifier} is not held", code="not_held")
            self.holds.drop(hold.issue_id)
            if hold.kind == "budget":
                self.ledger.reset_issue(hold.issue_id)
            self._persist()
            await self._audit(
                # The audit vocabulary has no "release": it is a resume of one issue.
                ae.operator_action(
                    ae.RESUME,
                    operator_uid=uid,
                    reason=f"release {identifier} from its {hold.kind} hold",
                    issue_id=hold.issue_id,
                )
            )
        self._changed()
        return f"{identifier} released from its {hold.kind} hold"


def _short(exc: BaseException) -> str:
    text = str(exc) or exc.__class__.__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _clean_reason(reason: str) -> str:
    cleaned = "".join(ch if ch.isprintable() else " " for ch in reason).strip()
    if not cleaned:
        raise ControlError("a pause needs a reason", code="invalid_params")
    return cleaned[:MAX_REASON_CHARS]
