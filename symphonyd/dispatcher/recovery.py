"""Startup: durable state, config, re-adopting the launcher's runs, terminal cleanup (0704)."""

from __future__ import annotations

from symphonyd.core.issue import Issue, parse_timestamp
from symphonyd.core.messages import (
    RunInfo,
    StopRun,
)
from symphonyd.dispatcher.budget import TokenLedger
from symphonyd.dispatcher.engine import Engine, brief_error, log
from symphonyd.dispatcher.holds import HoldBook
from symphonyd.dispatcher.state import (
    RunningEntry,
    iso,
)
from symphonyd.dispatcher.store import PersistedState, StateFileError


class Recovery(Engine):
    """Brings a fresh process in line with the launcher and the tracker before dispatching."""

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
            self.ledger.stamp_unknown(self.clock.now())
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
                self._mark("tracker", False, brief_error(exc))
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
        # A (re)started launcher: survey its workspace root and report orphans (seed 001).
        self.sweep.request(report=True)
        async with self.lock:
            try:
                runs = await self.launcher.list_runs()
                self._mark("launcher", True)
            except Exception as exc:
                self._mark("launcher", False, brief_error(exc))
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
            # Agent time before this dispatcher saw the run is not known here; the
            # launcher's run_finished carries the whole of it.
            agent_started_ms=self.clock.monotonic_ms() if run.last_event else None,
        )
        self._add_running(entry)
        return entry

    async def _startup_terminal_cleanup(self) -> None:
        cfg = self.settings
        try:
            terminal = await self.tracker.fetch_by_states(list(cfg.terminal_states_raw))
            self._mark("tracker", True)
        except Exception as exc:
            self._mark("tracker", False, brief_error(exc))
            log.warning("startup terminal cleanup skipped: %s", brief_error(exc))
            return
        for issue in terminal:
            if issue.id in self.running:
                continue
            self.holds.drop(issue.id)
            await self._remove_workspace(issue.identifier)
