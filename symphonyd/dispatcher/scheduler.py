"""Poll ticks, retry timers and reconciliation (SPEC 8.1-8.5, 16.2, 16.3, 16.6 on_retry_timer)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable

from symphonyd.core import audit_events as ae
from symphonyd.core.errors import SymphonyError
from symphonyd.core.issue import Issue, state_key
from symphonyd.core.scheduling import (
    NO_SLOTS_ERROR,
    candidate_eligible,
    issue_routable,
    sort_for_dispatch,
)
from symphonyd.dispatcher.board import Board, board_for_poll, read_board, refresh_running
from symphonyd.dispatcher.engine import Engine, brief_error, log
from symphonyd.dispatcher.journal import run_fields
from symphonyd.dispatcher.launch import RunStarter
from symphonyd.dispatcher.ports import (
    DispatchSettings,
)
from symphonyd.dispatcher.state import (
    RunningEntry,
    iso,
)
from symphonyd.runtime.logging import log_event

NO_HOST_ERROR = "no host with free capacity (every host is full, unhealthy or drained)"


class Scheduler:
    """Decides what starts, what retries and what stops, one tick or timer at a time.

    The caller (the orchestrator) holds the lock around every public method."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.starter = RunStarter(engine)

    async def tick(self) -> None:
        """SPEC 16.2: reconcile, preflight, fetch, sort, dispatch while slots remain.

        The board is read once, at reconciliation, and the poll uses that read unless
        preflight changed the active states or it has grown old (dispatcher/board.py)."""
        eng = self.engine
        await eng.retry_pending_stops()
        board = await self._reconcile()
        await self._preflight()
        if eng.cfg is not None:
            await self._poll_candidates(board_for_poll(eng, board))
        eng.persist_if_dirty(failed_save=True)

    async def _preflight(self) -> None:
        """SPEC 6.3 plus seed 001: config reload, day rollover, disk, audit recovery.

        Each failed check raises its own pause reason; the candidate poll still runs while
        paused so holds see tracker changes and a tracker outage can clear itself.
        """
        eng = self.engine
        await self.reload_config()
        now = eng.clock.now()
        eng.ledger.roll(now)
        cfg = eng.settings
        limit = cfg.tokens_per_day
        if limit is not None and eng.ledger.tokens_today >= limit:
            newly = eng.pauses.set(
                "daily_budget",
                f"{eng.ledger.tokens_today} of {limit} tokens used today",
                now,
                until=eng.ledger.resets_at(now),
            )
            if newly:
                await eng.append_audit(
                    ae.budget_hit("tokens_per_day", limit, eng.ledger.tokens_today)
                )
        else:
            eng.pauses.clear("daily_budget")
        self._check_disk(cfg)
        if eng.pauses.has("audit_unavailable"):
            await eng.probe_audit()

    def _check_disk(self, cfg: DispatchSettings) -> None:
        eng = self.engine
        if eng.disk is None or not cfg.workspace_root or cfg.min_free_disk_bytes <= 0:
            eng.pauses.clear("low_disk")
            return
        free = eng.disk.free_bytes(cfg.workspace_root)
        if free is not None and free < cfg.min_free_disk_bytes:
            eng.pauses.set(
                "low_disk",
                f"{free} bytes free under {cfg.workspace_root}, "
                f"below {cfg.min_free_disk_bytes}",
                eng.clock.now(),
            )
        else:
            eng.pauses.clear("low_disk")

    async def reload_config(self) -> None:
        """Load WORKFLOW.md again; a rejected edit pauses dispatch and keeps the last good one."""
        eng = self.engine
        try:
            new = eng.config_source.load()
        except SymphonyError as exc:
            message = str(exc)
            # The pause is raised before the audit append awaits, so a snapshot taken
            # meanwhile never shows a rejected config without its pause reason.
            eng.mark("workflow", False, message)
            eng.pauses.set(
                "invalid_config",
                f"WORKFLOW.md rejected ({message}); runs in flight keep the last good config",
                eng.clock.now(),
            )
            if message != eng.config_error:
                eng.config_error = message
                log_event(log, "config", level=logging.WARNING, outcome="rejected",
                          error=message, kept=eng.cfg.workflow.fingerprint[:12] if eng.cfg
                          else None)  # fmt: skip
                good = eng.cfg.workflow if eng.cfg else None
                await eng.append_audit(
                    ae.config_reload(
                        good.path if good else "",
                        good.fingerprint if good else "",
                        False,
                        error=message,
                    )
                )
            return
        eng.config_error = None
        eng.pauses.clear("invalid_config")
        eng.mark("workflow", True)
        if eng.cfg is None or new.workflow.fingerprint != eng.cfg.workflow.fingerprint:
            eng.cfg = new
            eng.sweep.request()  # e.g. a new workspace.cleanup.max_age_days applies now
            eng.config_loaded_at = iso(eng.clock.now())
            log_event(log, "config", outcome="loaded", path=new.workflow.path,
                      fingerprint=new.workflow.fingerprint[:12])  # fmt: skip
            await eng.append_audit(
                ae.config_reload(new.workflow.path, new.workflow.fingerprint, True)
            )

    async def _poll_candidates(self, board: Board | None) -> None:
        eng = self.engine
        cfg = eng.settings
        try:
            if board is not None:
                issues = board.answer()
            else:
                issues = await eng.tracker.fetch_by_states(list(cfg.active_states_raw))
        except Exception as exc:
            eng.mark("tracker", False, brief_error(exc))
            eng.pauses.set(
                "tracker_unavailable", f"tracker poll failed: {brief_error(exc)}", eng.clock.now()
            )
            return
        eng.mark("tracker", True)
        eng.pauses.clear("tracker_unavailable")
        for issue in issues:
            if eng.holds.observe(issue):
                log_event(log, "hold", outcome="lifted", issue_id=issue.id,
                          issue_identifier=issue.identifier, by="tracker_change")  # fmt: skip
                await eng.audit_release(
                    issue.id, f"{issue.identifier} changed in the tracker; hold lifted", None
                )
        if eng.paused:
            return
        slots = max(cfg.max_concurrent_agents - len(eng.running), 0)
        batch: list[tuple[Issue, int | None, str]] = []
        reserved: Counter[str] = Counter()
        now_ms = eng.clock.monotonic_ms()
        if eng.hosts.blind(now_ms):
            return  # a worker's runs are unknown until its lease has surely ended
        placement = eng.hosts.placement(now_ms)
        # With no slot free nothing is taken: skip sorting the whole board for nothing.
        for issue in sort_for_dispatch(issues) if slots > 0 else ():
            if slots <= 0:
                break
            if issue.id in eng.claimed or issue.id in eng.running:
                continue
            if eng.holds.get(issue.id) is not None:
                continue
            if not candidate_eligible(
                issue,
                active_states=cfg.active_states,
                terminal_states=cfg.terminal_states,
                required_labels=cfg.required_labels,
            ):
                continue
            if not eng.state_slot(state_key(issue.state), reserved):
                continue
            host = placement.take()
            if host is None:
                break  # every host is full or unhealthy: wait, never run elsewhere
            reserved[state_key(issue.state)] += 1
            batch.append((issue, None, host))
            slots -= 1
        await self.starter.launch(batch)

    async def fire_due_retries(self) -> None:
        """SPEC 16.6 on_retry_timer for every retry that is due, with one batched refresh."""
        eng = self.engine
        now_ms = eng.clock.monotonic_ms()
        due = sorted(
            (r for r in eng.retries.values() if r.due_ms <= now_ms), key=lambda r: r.due_ms
        )
        if not due:
            return
        if eng.paused or eng.cfg is None:
            codes = ", ".join(sorted(eng.pause_codes()))
            for r in due:
                stub = Issue(r.issue_id, r.identifier, r.identifier, "", True, url=r.issue_url)
                # A paused retry waits a poll interval rather than backing off further.
                eng.schedule_retry(stub, r.attempt, "requeue", f"dispatch paused ({codes})",
                                   delay_ms=eng.settings.poll_interval_ms)  # fmt: skip
            return
        try:
            refreshed = await eng.tracker.fetch_by_ids([r.issue_id for r in due])
            eng.mark("tracker", True)
        except Exception as exc:
            eng.mark("tracker", False, brief_error(exc))
            for r in due:
                stub = Issue(r.issue_id, r.identifier, r.identifier, "", True, url=r.issue_url)
                eng.schedule_retry(stub, r.attempt + 1, "failure", "retry refresh failed")
            return
        by_id = {i.id: i for i in refreshed}
        cfg = eng.settings
        slots = max(cfg.max_concurrent_agents - len(eng.running), 0)
        reserved: Counter[str] = Counter()
        blind = eng.hosts.blind(now_ms)
        placement = eng.hosts.placement(now_ms)
        batch: list[tuple[Issue, int | None, str]] = []
        for r in due:
            del eng.retries[r.issue_id]
            issue = by_id.get(r.issue_id)
            if issue is None:
                eng.claimed.discard(r.issue_id)
                _log_released(r.issue_id, r.identifier, "the tracker no longer lists it")
                continue
            key = state_key(issue.state)
            if key in cfg.terminal_states:
                eng.claimed.discard(r.issue_id)
                _log_released(issue.id, issue.identifier, f"terminal state {issue.state}")
                removed = await eng.remove_workspace(issue.identifier)
                log_event(log, "terminal_cleanup", outcome="removed" if removed else "none",
                          issue_id=issue.id, issue_identifier=issue.identifier,
                          state=issue.state)  # fmt: skip
                continue
            routable = issue_routable(issue, cfg.required_labels)
            if key not in cfg.active_states or not routable or issue.id in eng.running:
                eng.claimed.discard(r.issue_id)
                if issue.id in eng.running:
                    why = "already running"
                elif key not in cfg.active_states:
                    why = f"state {issue.state} is not active"
                else:
                    why = "no longer routable (labels or dispatchable)"
                _log_released(issue.id, issue.identifier, why)
                continue
            if slots <= 0 or not eng.state_slot(key, reserved):
                eng.schedule_retry(issue, r.attempt + 1, "requeue", NO_SLOTS_ERROR)
                continue
            host = None if blind else placement.take(r.host)
            if host is None:
                # Waiting for a host is not a failure of the issue: the attempt stays.
                eng.schedule_retry(issue, r.attempt, "requeue", NO_HOST_ERROR,
                                   delay_ms=cfg.poll_interval_ms, host=r.host)  # fmt: skip
                continue
            slots -= 1
            reserved[key] += 1
            batch.append((issue, r.attempt, host))
        await self.starter.launch(batch)

    async def _reconcile(self) -> Board | None:
        """SPEC 16.3: stalls first, then a tracker refresh of every running issue: from the
        tick's board read where it lists the issue, by id otherwise. Returns the board."""
        eng = self.engine
        await self._reconcile_stalls()
        board = await read_board(eng)
        cfg = eng.settings
        if not eng.running:
            return board
        ids = list(eng.running)
        try:
            refreshed = await refresh_running(eng, ids, board)
            eng.mark("tracker", True)
        except Exception as exc:
            eng.mark("tracker", False, brief_error(exc))
            return board
        seen: set[str] = set()
        now_ms = eng.clock.monotonic_ms()
        for issue in refreshed:
            entry = eng.running.get(issue.id)
            if entry is None:
                continue
            seen.add(issue.id)
            key = state_key(issue.state)
            active = key in cfg.active_states
            if active:
                entry.handoff_deadline_ms = None
            elif _in_handoff_grace(entry, issue.state, now_ms, cfg.handoff_grace_ms):
                continue
            if key in cfg.terminal_states:
                _log_reconcile_stop(entry, "terminal", issue.state, cleanup=True)
                await eng.terminate(entry, "terminal", cleanup=True, release=True)
            elif active and issue_routable(issue, cfg.required_labels):
                old_key = entry.state_key
                entry.issue = issue
                if old_key != key:  # the per-state count moves only with the state
                    eng.running_by_state[old_key] -= 1
                    eng.running_by_state[key] += 1
            elif active:
                _log_reconcile_stop(entry, "unroutable", issue.state, cleanup=False)
                await eng.terminate(entry, "unroutable", cleanup=False, release=True)
            else:
                _log_reconcile_stop(entry, "inactive", issue.state, cleanup=False)
                await eng.terminate(entry, "inactive", cleanup=False, release=True)
        for issue_id in set(ids) - seen:
            gone = eng.running.get(issue_id)
            if gone is not None:
                _log_reconcile_stop(gone, "inactive", None, cleanup=False)
                await eng.terminate(gone, "inactive", cleanup=False, release=True)
        for key in [k for k, v in eng.running_by_state.items() if v <= 0]:
            del eng.running_by_state[key]
        return board

    async def _reconcile_stalls(self) -> None:
        """SPEC 8.5 part A: no event for longer than stall_timeout_ms ends the run."""
        eng = self.engine
        timeout = eng.settings.stall_timeout_ms
        if timeout <= 0:
            return
        now_ms = eng.clock.monotonic_ms()
        for entry in list(eng.running.values()):
            last = entry.last_event_ms if entry.last_event_ms is not None else entry.started_ms
            if now_ms - last > timeout:
                error = f"stalled: no agent activity for {(now_ms - last) // 1000} s"
                log_event(log, "stall", level=logging.WARNING, outcome="stopped",
                          **run_fields(entry), idle_ms=now_ms - last,
                          stall_timeout_ms=timeout)  # fmt: skip
                await eng.terminate(entry, "stalled", cleanup=False)
                eng.history_of(entry.issue.id, entry.issue.identifier).last_error = error
                eng.schedule_retry(entry.issue, (entry.attempt or 0) + 1, "failure", error,
                                   session_id=entry.session_id)  # fmt: skip


def _in_handoff_grace(entry: RunningEntry, state: str, now_ms: int, grace_ms: int) -> bool:
    """True while a run whose issue left the active states may still end on its own.

    An agent that hands its issue off (moves it to review or done through its tracker tool)
    finishes its turn and its worker then ends the run: stopping it at the first tick that
    sees the new state, which a change event makes immediate, would cancel every hand-off
    mid-reply. The first sighting starts the grace; the stop comes at the first tick after
    it (the scheduler wakes for it, ``handoff_due_ms``), exactly as before if the run is still
    going. ``polling.handoff_grace_ms``, 0 turns it off. docs/design/0713-handoff-grace.md.
    """
    if grace_ms <= 0:
        return False
    if entry.handoff_deadline_ms is None:
        entry.handoff_deadline_ms = now_ms + grace_ms  # when the grace ends
        log_event(log, "handoff_grace", outcome="waiting", **run_fields(entry), state=state,
                  grace_ms=grace_ms)  # fmt: skip
    return now_ms < entry.handoff_deadline_ms


def handoff_due_ms(running: Iterable[RunningEntry]) -> int | None:
    """When the earliest hand-off grace ends (a tick must look again then), if any."""
    return min(
        (e.handoff_deadline_ms for e in running if e.handoff_deadline_ms is not None), default=None
    )


def _log_reconcile_stop(
    entry: RunningEntry, reason: str, state: str | None, *, cleanup: bool
) -> None:
    """SPEC 8.5 part B: the tracker says this run should end (state None: issue not found)."""
    log_event(log, "reconcile_stop", outcome="stopped", **run_fields(entry), reason=reason,
              state=state if state is not None else "not found",
              cleanup_workspace=cleanup)  # fmt: skip


def _log_released(issue_id: str, identifier: str, why: str) -> None:
    """A due retry found the issue no longer eligible: its claim is released."""
    log_event(log, "retry", outcome="released", issue_id=issue_id,
              issue_identifier=identifier, reason=why)  # fmt: skip
