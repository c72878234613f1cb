"""The dispatcher's state and the primitives every part of it uses (SPEC 4.1.8, 16.4, 16.6).

Holds running entries, claims, retry entries, pause reasons, holds and budgets; adds and
removes runs, schedules retries, stops runs, audits and persists. It takes no lock and
decides nothing on its own: the collaborators (:mod:`scheduler`, :mod:`run_events`,
:mod:`recovery`, :mod:`controls`, :mod:`workspace_sweep`) each get this engine in their
constructor, and :class:`~symphonyd.dispatcher.orchestrator.Orchestrator` holds the one
lock around every call into them (docs/design/0711-dispatcher-composition.md).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter, OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta

from symphonyd.core import audit_events as ae
from symphonyd.core.api.audit import AuditEventIn
from symphonyd.core.api.dispatcher import DaemonHealthRow
from symphonyd.core.api.launcher import StopReason, StopRun
from symphonyd.core.issue import Issue
from symphonyd.core.scheduling import CONTINUATION_DELAY_MS, failure_backoff_ms
from symphonyd.core.worker_hosts import LOCAL_HOST
from symphonyd.dispatcher.budget import TokenLedger
from symphonyd.dispatcher.holds import HoldBook
from symphonyd.dispatcher.hosts import HostPool
from symphonyd.dispatcher.journal import FailureEpisodes
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
from symphonyd.dispatcher.workspace_owners import WorkspaceOwners
from symphonyd.runtime.logging import log_event

log = logging.getLogger("symphonyd.dispatcher")

MAX_PENDING_AUDIT = 10_000
MAX_HISTORY = 5_000


class Engine:
    """Shared state and primitives; the collaborators and the front object build on it."""

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
        hosts: HostPool | None = None,
    ) -> None:
        """``launcher``: the one prune and the workspace survey use; ``hosts``: where runs
        go (default: that launcher alone, as the local host)."""
        self.tracker, self.launcher, self.audit = tracker, launcher, audit
        self.hosts = hosts or HostPool.local_only(launcher)
        self.config_source, self.store, self.clock, self.disk = config, store, clock, disk
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
        self.owners = WorkspaceOwners(self.persisted, remote=self.hosts.remote)
        self.sweep = SweepBook()  # workspace survey and age cleanup (workspace_sweep)
        # daemon -> (ok, detail, when); rows are built only when a snapshot asks.
        self.health: dict[str, tuple[bool, str | None, datetime]] = {}
        self.episodes = FailureEpisodes()
        self._acks: dict[str, list[str]] = {}  # host -> run ids to acknowledge
        self._ack_task: asyncio.Task[None] | None = None
        self.pending_stops: dict[str, StopRun] = {}
        self.stop_hosts: dict[str, str] = {}  # run id of a pending stop -> its host
        self.resync_hosts: set[str] = set()  # hosts whose run-table resync failed (0750)
        self._pending_audit: list[AuditEventIn] = []
        self._dirty = False
        self._listeners: list[Callable[[], None]] = []
        self._run_prefix = run_prefix or os.urandom(4).hex()
        self._run_seq = 0
        self.starts = 0  # runs the launcher accepted, for tests and the bench

    @property
    def resync_due(self) -> bool:
        return bool(self.resync_hosts)

    @property
    def settings(self) -> DispatchSettings:
        return self.cfg.settings if self.cfg else DispatchSettings()

    def add_listener(self, fn: Callable[[], None]) -> None:
        self._listeners.append(fn)

    def changed(self) -> None:
        for fn in self._listeners:
            fn()

    def mark(self, daemon: str, ok: bool, detail: str | None = None) -> None:
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

    def pause_codes(self) -> list[str]:
        codes: list[str] = [r.code for r in self.pauses.rows()]
        if self.persisted.operator_pause is not None:
            codes.insert(0, "operator")
        return codes

    def persist(self) -> None:
        try:
            self.store.save(self.persisted)
            self._dirty = False
        except OSError as exc:
            # The decision stands in memory; we keep trying on every tick.
            self._dirty = True
            log.error("cannot save dispatcher state: %s", exc.strerror)  # noqa: TRY400

    def persist_if_dirty(self, *, failed_save: bool = False) -> None:
        """Save when the token ledger or the workspace owners changed (or, with
        ``failed_save``, a save failed)."""
        if (failed_save and self._dirty) or self.ledger.dirty or self.owners.dirty:
            self.ledger.dirty = self.owners.dirty = False
            self.persist()

    async def append_audit(self, *records: AuditEventIn, queue: bool = True) -> bool:
        """Append now; on failure pause with audit_unavailable and (optionally) keep them."""
        try:
            await self.audit.append([*self._pending_audit, *records])
        except Exception as exc:
            self._audit_down(exc)
            if queue:
                room = MAX_PENDING_AUDIT - len(self._pending_audit)
                self._pending_audit.extend(records[: max(room, 0)])
            return False
        self._pending_audit.clear()
        self._audit_up()
        return True

    async def audit_release(self, issue_id: str, reason: str, uid: int | None) -> None:
        # No operator uid means a change of the issue in the tracker lifted it.
        await self.append_audit(
            ae.operator_action(ae.RELEASE, operator_uid=uid, reason=reason, issue_id=issue_id)
        )

    async def probe_audit(self) -> None:
        """While audit is down: flush what waits, or at least check the writer answers."""
        if self._pending_audit:
            await self.append_audit()
            return
        try:
            await self.audit.probe()
        except Exception as exc:
            self._audit_down(exc)
            return
        self._audit_up()

    def _audit_down(self, exc: BaseException) -> None:
        self.mark("audit", False, brief_error(exc))
        self.pauses.set(
            "audit_unavailable",
            f"audit writer unreachable ({brief_error(exc)}); no run starts unaudited",
            self.clock.now(),
        )

    def _audit_up(self) -> None:
        self.mark("audit", True)
        self.pauses.clear("audit_unavailable")

    def history_of(self, issue_id: str, identifier: str) -> IssueHistory:
        hist = self.history.get(issue_id)
        if hist is None:
            hist = self.history[issue_id] = IssueHistory(identifier)
            if len(self.history) > MAX_HISTORY:
                self.history.popitem(last=False)
        else:
            self.history.move_to_end(issue_id)
        return hist

    def state_slot(self, key: str, reserved: Counter[str]) -> bool:
        cfg = self.settings
        limit = cfg.max_concurrent_agents_by_state.get(key, cfg.max_concurrent_agents)
        return self.running_by_state[key] + reserved[key] < limit

    def new_run_id(self) -> str:
        self._run_seq += 1
        return f"r-{self._run_prefix}-{self._run_seq}"

    def add_running(self, entry: RunningEntry) -> None:
        issue_id = entry.issue.id
        self.running[issue_id] = entry
        self.by_run[entry.run_id] = issue_id
        self.running_by_state[entry.state_key] += 1
        self.hosts.load[entry.host] += 1
        self.claimed.add(issue_id)
        self.retries.pop(issue_id, None)

    def remove_running(self, entry: RunningEntry) -> None:
        issue_id = entry.issue.id
        if self.running.get(issue_id) is not entry:
            return
        del self.running[issue_id]
        self.by_run.pop(entry.run_id, None)
        self.running_by_state[entry.state_key] -= 1
        if self.running_by_state[entry.state_key] <= 0:
            del self.running_by_state[entry.state_key]
        self.hosts.load[entry.host] -= 1
        self.ended_seconds += agent_seconds(entry, self.clock.monotonic_ms())

    def entry_for_run(self, run_id: str) -> RunningEntry | None:
        issue_id = self.by_run.get(run_id)
        return self.running.get(issue_id) if issue_id else None

    def schedule_retry(
        self,
        issue: Issue,
        attempt: int,
        kind: RetryKind,
        error: str | None,
        *,
        delay_ms: int | None = None,
        session_id: str | None = None,
        host: str | None = None,
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
            host=host if host is not None else (old.host if old else None),
        )
        self.claimed.add(issue.id)
        if kind != "requeue" or old is None or old.error != error:
            log_event(log, "retry", outcome="scheduled", issue_id=issue.id,
                      issue_identifier=issue.identifier, session_id=session_id, kind=kind,
                      attempt=attempt, due_in_ms=delay, due_at=iso(entry.due_at),
                      reason=error or "the run succeeded; checking for more work")  # fmt: skip

    def next_retry_due_ms(self) -> int | None:
        return min((r.due_ms for r in self.retries.values()), default=None)

    async def terminate(
        self, entry: RunningEntry, reason: StopReason, *, cleanup: bool, release: bool = False
    ) -> None:
        self.remove_running(entry)
        if release:
            self.claimed.discard(entry.issue.id)
        self.keep_workspace_path(entry)
        await self.send_stop(StopRun(entry.run_id, reason, cleanup_workspace=cleanup), entry.host)

    def keep_workspace_path(self, entry: RunningEntry) -> IssueHistory:
        """The issue's history, remembering where the ended run's workspace was."""
        hist = self.history_of(entry.issue.id, entry.issue.identifier)
        hist.workspace_path = entry.workspace_path or hist.workspace_path
        return hist

    async def send_stop(self, req: StopRun, host: str = LOCAL_HOST) -> None:
        """Stop a run on the host it is bound to; kept pending (and retried) on failure."""
        self.pending_stops[req.run_id] = req
        self.stop_hosts[req.run_id] = host
        try:
            await self.hosts.launcher(host).stop_run(req)
            self.mark(self.hosts.label(host), True)
            self.forget_stop(req.run_id)
        except Exception as exc:
            self.mark(self.hosts.label(host), False, brief_error(exc))

    def forget_stop(self, run_id: str) -> None:
        self.pending_stops.pop(run_id, None)
        self.stop_hosts.pop(run_id, None)

    async def retry_pending_stops(self) -> None:
        for req in list(self.pending_stops.values()):
            host = self.stop_hosts.get(req.run_id, LOCAL_HOST)
            # A lost worker gets its stops when its event stream resyncs (Recovery); a
            # drained one still gets them.
            if self.hosts.hosts[host].reachable:
                await self.send_stop(req, host)

    async def remove_workspace(self, identifier: str) -> bool:
        """Remove the issue's workspace on every host that has one (never a guessed host);
        True when one was removed (False: none, or it failed)."""
        removed = False
        for host in self.owners.hosts_of(identifier):
            try:
                # With the workflow: a launcher that has started no run yet (fresh after a
                # restart) would not know the workspace root and hooks otherwise.
                workflow = self.cfg.workflow if self.cfg else None
                launcher = self.hosts.launcher(host)
                removed |= await launcher.remove_workspace(identifier, workflow=workflow)
                self.mark(self.hosts.label(host), True)
            except Exception as exc:
                self.mark(self.hosts.label(host), False, brief_error(exc))
                continue
            self.owners.disown(identifier, host)
        return removed

    async def ack(self, run_id: str, host: str = LOCAL_HOST) -> None:
        """Queue an acknowledgement; one background call sends all queued ones.

        Not awaited under the lock: a lost ack only means the launcher lists that finished
        run again after a restart, where it is recognised and acknowledged then.
        """
        self._acks.setdefault(host, []).append(run_id)
        if self._ack_task is None or self._ack_task.done():
            self._ack_task = asyncio.get_running_loop().create_task(self._flush_acks())

    async def settle(self) -> None:
        """Wait for queued acknowledgements to be sent (tests, shutdown)."""
        while self._ack_task is not None and not self._ack_task.done():
            await self._ack_task

    async def _flush_acks(self) -> None:
        while self._acks:
            host = next(iter(self._acks))
            queued = self._acks[host]
            batch, rest = queued[:500], queued[500:]
            if rest:
                self._acks[host] = rest
            else:
                del self._acks[host]
            await self._send_acks(batch, host)

    async def _send_acks(self, run_ids: list[str], host: str) -> None:
        try:
            await self.hosts.launcher(host).ack_runs(run_ids)
        except Exception as exc:
            self.mark(self.hosts.label(host), False, brief_error(exc))


def brief_error(exc: BaseException) -> str:
    text = str(exc) or exc.__class__.__name__
    return text if len(text) <= 200 else text[:197] + "..."
