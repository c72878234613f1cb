"""Startup: durable state, config, re-adopting the launcher's runs, terminal cleanup (0704).

After a reconnect of the launcher's event stream, :meth:`Recovery.resync_runs` settles what
happened meanwhile, including runs a restarted launcher no longer has (0750).
"""

from __future__ import annotations

import logging

from symphonyd.core.api.launcher import RunInfo, StopRun
from symphonyd.core.issue import Issue, format_timestamp, parse_timestamp
from symphonyd.core.run_progress import RunProgress
from symphonyd.core.worker_hosts import LOCAL_HOST
from symphonyd.dispatcher.budget import TokenLedger
from symphonyd.dispatcher.engine import Engine, brief_error, log
from symphonyd.dispatcher.failover import run_failed_record
from symphonyd.dispatcher.holds import HoldBook
from symphonyd.dispatcher.journal import run_fields
from symphonyd.dispatcher.run_events import RunEvents
from symphonyd.dispatcher.state import (
    RunningEntry,
    iso,
)
from symphonyd.dispatcher.store import PersistedState, StateFileError
from symphonyd.dispatcher.workspace_owners import WorkspaceOwners
from symphonyd.runtime.logging import log_event

LOST_RUN_CODE = "run_lost"


class Recovery:
    """Brings a fresh process in line with the launcher and the tracker before dispatching.

    The caller (the orchestrator) holds the lock around every public method."""

    def __init__(self, engine: Engine, runs: RunEvents) -> None:
        self.engine, self.runs = engine, runs

    async def start(self) -> None:
        """Load durable state and config, re-adopt the launcher's runs, clean terminal ones.

        Raises when the config is invalid (SPEC 6.3) or the launcher cannot say what is
        running: starting blind could dispatch an issue twice.
        """
        eng = self.engine
        try:
            eng.persisted = eng.store.load()
        except StateFileError as exc:
            moved = eng.store.quarantine()
            eng.persisted = PersistedState()
            eng.pauses.set(
                "state_unreadable",
                f"{exc.message}; moved to {moved}; resume once you have checked it",
                eng.clock.now(),
            )
        eng.holds = HoldBook(eng.persisted)
        for name, host in eng.hosts.hosts.items():
            host.drained = name in eng.persisted.drained_hosts
        eng.ledger = TokenLedger(eng.persisted)
        eng.owners = WorkspaceOwners(eng.persisted, remote=eng.hosts.remote)
        eng.cfg = eng.config_source.load()
        eng.config_loaded_at = iso(eng.clock.now())
        eng.mark("workflow", True)
        eng.ledger.roll(eng.clock.now())
        eng.ledger.stamp_unknown(eng.clock.now())
        await self._recover_runs()
        await self._startup_terminal_cleanup()
        # Fail closed from the first tick: no run starts before the audit writer answers.
        eng.pauses.set(
            "audit_unavailable", "audit writer not checked yet", eng.clock.now(), quiet=True
        )
        await eng.probe_audit()
        eng.persist()

    async def _recover_runs(self) -> None:
        """Every host's runs. The local launcher must answer (or starting is refused); a
        worker that does not is fenced whole: nothing dispatches until its lease has ended,
        since it may still run agents for issues this fresh process does not know of."""
        eng = self.engine
        for name, host in eng.hosts.hosts.items():
            try:
                runs = await host.launcher.list_runs()
            except Exception as exc:
                if not host.remote:
                    raise
                eng.mark(eng.hosts.label(name), False, brief_error(exc))
                host.blind_until_ms = eng.clock.monotonic_ms() + eng.hosts.fence_ms
                log_event(log, "host_unknown", level=logging.WARNING, outcome="fenced",
                          host=name, retry_in_ms=eng.hosts.fence_ms,
                          error=brief_error(exc))  # fmt: skip
                continue
            eng.mark(eng.hosts.label(name), True)
            await self._recover_host_runs(name, runs)

    async def _recover_host_runs(self, host: str, runs: list[RunInfo]) -> None:
        eng = self.engine
        live = sorted((r for r in runs if r.outcome is None), key=lambda r: r.started_at)
        finished = [r for r in runs if r.outcome is not None]
        issues: dict[str, Issue] = {}
        if live:
            try:
                fetched = await eng.tracker.fetch_by_ids(sorted({r.issue_id for r in live}))
                issues = {i.id: i for i in fetched}
                eng.mark("tracker", True)
            except Exception as exc:
                eng.mark("tracker", False, brief_error(exc))
        for run in live:
            if run.issue_id in eng.running or eng.holds.get(run.issue_id) is not None:
                # A duplicate or a run the operator already stopped: end it, never adopt it.
                why = "second live run" if run.issue_id in eng.running else "issue is held"
                _log_orphan_stop(run, why, host)
                await eng.send_stop(StopRun(run.run_id, "orphan"), host)
                continue
            entry = self._adopt(run, issues.get(run.issue_id), host)
            log_event(log, "run_adopted", outcome="running", **run_fields(entry))
        for run in finished:
            assert run.outcome is not None
            free = run.issue_id not in eng.running and run.issue_id not in eng.retries
            if free and eng.holds.get(run.issue_id) is None:
                entry = self._adopt(run, issues.get(run.issue_id), host)
                await self.runs.worker_exit(entry, run.outcome)
            else:
                await eng.ack(run.run_id, host)

    async def resync_if_due(self) -> None:
        """Retry a resync with the launcher that failed (every tick starts with this)."""
        for host in sorted(self.engine.resync_hosts):
            await self.resync_runs(host)

    async def resync_runs(self, host: str = LOCAL_HOST) -> None:
        """Compare the launcher's run table with ours; runs missing from it are lost (0750).

        Runs under the one lock, as do dispatches, so no run can start between the listing
        and the comparison: a running entry whose run the launcher does not list is a run it
        no longer has (it restarted), never one it has not been told about yet.
        """
        eng = self.engine
        label = eng.hosts.label(host)
        state = eng.hosts.hosts[host]
        try:
            runs = await state.launcher.list_runs()
            eng.mark(label, True)
        except Exception as exc:
            eng.mark(label, False, brief_error(exc))
            eng.resync_hosts.add(host)  # the next tick tries again; the stream may stay up
            return
        eng.resync_hosts.discard(host)
        listed = {run.run_id for run in runs}
        for run in runs:
            entry = eng.entry_for_run(run.run_id)
            if entry is not None and entry.host != host:
                entry = None
            if run.outcome is not None:
                if entry is not None:
                    await self.runs.worker_exit(entry, run.outcome)
                else:
                    eng.forget_stop(run.run_id)
                    await eng.ack(run.run_id, host)
            elif entry is None:
                # Unknown, or fenced after the host was lost: a partitioned worker that
                # came back with its agent still running. Stopped now, never adopted.
                if run.run_id not in eng.pending_stops:
                    _log_orphan_stop(run, "a live run the dispatcher does not know", host)
                await eng.send_stop(StopRun(run.run_id, "orphan"), host)
        for entry in [e for e in eng.running.values() if e.host == host]:
            if entry.run_id not in listed:
                await self._run_lost(entry)
        for run_id in [r for r, h in eng.stop_hosts.items() if h == host and r not in listed]:
            # Nothing left to stop: the launcher has no such run (any more).
            eng.forget_stop(run_id)
        # Its run table is known again: it may take runs.
        state.connected, state.blind_until_ms = True, 0

    async def _run_lost(self, entry: RunningEntry) -> None:
        """SPEC 8.5/7.4 for a run the launcher lost: the worker is gone, so the slot is freed
        and the issue retried with backoff like any failed run, audited as a failed run.

        Its run id is forgotten, so a late ``run_finished`` for it is only acknowledged, and
        the issue stays claimed (retry-queued) so nothing dispatches it before the retry."""
        eng = self.engine
        issue = entry.issue
        error = "the launcher no longer has this run (it restarted); its agent is gone"
        if eng.hosts.remote_host(entry.host):
            error = f"host {entry.host} no longer has this run (its lease ended); agent gone"
        log_event(log, "run_lost", level=logging.WARNING, outcome="retrying", **run_fields(entry),
                  turns=entry.turn_count, error=error)  # fmt: skip
        eng.remove_running(entry)
        hist = eng.keep_workspace_path(entry)
        hist.restart_count += 1
        hist.last_error = error
        eng.schedule_retry(issue, (entry.attempt or 0) + 1, "failure", error,
                           session_id=entry.session_id)  # fmt: skip
        await eng.append_audit(run_failed_record(entry, LOST_RUN_CODE))
        eng.persist_if_dirty()

    def _adopt(self, run: RunInfo, issue: Issue | None, host: str) -> RunningEntry:
        eng = self.engine
        if issue is None:
            # Reconciliation on the first tick replaces this placeholder or ends the run.
            issue = Issue(run.issue_id, run.issue_identifier, run.issue_identifier, "", True)
        started = parse_timestamp(run.started_at) or eng.clock.now()
        elapsed_ms = max(int((eng.clock.now() - started).total_seconds() * 1000), 0)
        last_at = parse_timestamp(run.last_event_at)
        progress = RunProgress.of(run)
        progress.last_event_at = format_timestamp(last_at)  # as this dispatcher records times
        entry = RunningEntry(
            run_id=run.run_id,
            issue=issue,
            attempt=run.attempt,
            started_at=started,
            started_ms=eng.clock.monotonic_ms() - elapsed_ms,
            progress=progress,
            last_event_ms=eng.clock.monotonic_ms() if last_at else None,
            # Agent time before this dispatcher saw the run is not known here; the
            # launcher's run_finished carries the whole of it.
            agent_started_ms=eng.clock.monotonic_ms() if run.last_event else None,
            host=host,
        )
        eng.add_running(entry)
        return entry

    async def _startup_terminal_cleanup(self) -> None:
        eng = self.engine
        cfg = eng.settings
        try:
            terminal = await eng.tracker.fetch_by_states(list(cfg.terminal_states_raw))
            eng.mark("tracker", True)
        except Exception as exc:
            eng.mark("tracker", False, brief_error(exc))
            log_event(log, "terminal_cleanup", level=logging.WARNING, outcome="skipped",
                      error=brief_error(exc))  # fmt: skip
            return
        removed = 0
        for issue in terminal:
            if issue.id in eng.running:
                continue
            eng.holds.drop(issue.id)
            if await eng.remove_workspace(issue.identifier):
                removed += 1
                log_event(log, "terminal_cleanup", outcome="removed", issue_id=issue.id,
                          issue_identifier=issue.identifier, state=issue.state)  # fmt: skip
        # One summary line, not one per terminal issue: a board keeps thousands of them.
        log_event(log, "terminal_cleanup", outcome="startup", checked=len(terminal),
                  removed=removed)  # fmt: skip


def _log_orphan_stop(run: RunInfo, why: str, host: str = LOCAL_HOST) -> None:
    log_event(log, "orphan_stop", level=logging.WARNING, outcome="stopped", run_id=run.run_id,
              issue_id=run.issue_id, issue_identifier=run.issue_identifier,
              session_id=run.session_id, host=host, reason=why)  # fmt: skip
