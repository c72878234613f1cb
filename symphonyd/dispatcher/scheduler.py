"""Poll ticks, retry timers and reconciliation (SPEC 8.1-8.5, 16.2, 16.3, 16.6 on_retry_timer)."""

from __future__ import annotations

import logging
from collections import Counter

from symphonyd.core import audit_events as ae
from symphonyd.core.errors import SymphonyError
from symphonyd.core.issue import Issue, state_key
from symphonyd.core.scheduling import (
    NO_SLOTS_ERROR,
    candidate_eligible,
    issue_routable,
    sort_for_dispatch,
)
from symphonyd.dispatcher.engine import Engine, brief_error, log
from symphonyd.dispatcher.journal import run_fields
from symphonyd.dispatcher.ports import (
    DispatchSettings,
)
from symphonyd.dispatcher.state import (
    RunningEntry,
    iso,
)
from symphonyd.runtime.logging import log_event


class Scheduler(Engine):
    """Decides what starts, what retries and what stops, one tick or timer at a time."""

    async def tick(self) -> None:
        """SPEC 16.2: reconcile, preflight, fetch, sort, dispatch while slots remain."""
        async with self.lock:
            await self._resync_if_due()
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
            # The pause is raised before the audit append awaits, so a snapshot taken
            # meanwhile never shows a rejected config without its pause reason.
            self._mark("workflow", False, message)
            self.pauses.set(
                "invalid_config",
                f"WORKFLOW.md rejected ({message}); runs in flight keep the last good config",
                self.clock.now(),
            )
            if message != self.config_error:
                self.config_error = message
                log_event(log, "config", level=logging.WARNING, outcome="rejected",
                          error=message, kept=self.cfg.workflow.fingerprint[:12] if self.cfg
                          else None)  # fmt: skip
                good = self.cfg.workflow if self.cfg else None
                await self._audit(
                    ae.config_reload(
                        good.path if good else "",
                        good.fingerprint if good else "",
                        False,
                        error=message,
                    )
                )
            return
        self.config_error = None
        self.pauses.clear("invalid_config")
        self._mark("workflow", True)
        if self.cfg is None or new.workflow.fingerprint != self.cfg.workflow.fingerprint:
            self.cfg = new
            self.sweep.request()  # e.g. a new workspace.cleanup.max_age_days applies now
            self.config_loaded_at = iso(self.clock.now())
            log_event(log, "config", outcome="loaded", path=new.workflow.path,
                      fingerprint=new.workflow.fingerprint[:12])  # fmt: skip
            await self._audit(ae.config_reload(new.workflow.path, new.workflow.fingerprint, True))

    async def _poll_candidates(self) -> None:
        cfg = self.settings
        try:
            issues = await self.tracker.fetch_by_states(list(cfg.active_states_raw))
        except Exception as exc:
            self._mark("tracker", False, brief_error(exc))
            self.pauses.set(
                "tracker_unavailable", f"tracker poll failed: {brief_error(exc)}", self.clock.now()
            )
            return
        self._mark("tracker", True)
        self.pauses.clear("tracker_unavailable")
        for issue in issues:
            if self.holds.observe(issue):
                log_event(log, "hold", outcome="lifted", issue_id=issue.id,
                          issue_identifier=issue.identifier, by="tracker_change")  # fmt: skip
                await self._audit_release(
                    issue.id, f"{issue.identifier} changed in the tracker; hold lifted", None
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
                # A paused retry waits a poll interval rather than backing off further.
                self._schedule_retry(stub, r.attempt, "requeue", f"dispatch paused ({codes})",
                                     delay_ms=self.settings.poll_interval_ms)  # fmt: skip
            return
        try:
            refreshed = await self.tracker.fetch_by_ids([r.issue_id for r in due])
            self._mark("tracker", True)
        except Exception as exc:
            self._mark("tracker", False, brief_error(exc))
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
                _log_released(r.issue_id, r.identifier, "the tracker no longer lists it")
                continue
            key = state_key(issue.state)
            if key in cfg.terminal_states:
                self.claimed.discard(r.issue_id)
                _log_released(issue.id, issue.identifier, f"terminal state {issue.state}")
                removed = await self._remove_workspace(issue.identifier)
                log_event(log, "terminal_cleanup", outcome="removed" if removed else "none",
                          issue_id=issue.id, issue_identifier=issue.identifier,
                          state=issue.state)  # fmt: skip
                continue
            routable = issue_routable(issue, cfg.required_labels)
            if key not in cfg.active_states or not routable or issue.id in self.running:
                self.claimed.discard(r.issue_id)
                if issue.id in self.running:
                    why = "already running"
                elif key not in cfg.active_states:
                    why = f"state {issue.state} is not active"
                else:
                    why = "no longer routable (labels or dispatchable)"
                _log_released(issue.id, issue.identifier, why)
                continue
            if slots <= 0 or not self._state_slot(key, reserved):
                self._schedule_retry(issue, r.attempt + 1, "requeue", NO_SLOTS_ERROR)
                continue
            slots -= 1
            reserved[key] += 1
            batch.append((issue, r.attempt))
        await self._launch(batch)

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
            self._mark("tracker", False, brief_error(exc))
            return
        seen: set[str] = set()
        for issue in refreshed:
            entry = self.running.get(issue.id)
            if entry is None:
                continue
            seen.add(issue.id)
            key = state_key(issue.state)
            if key in cfg.terminal_states:
                _log_reconcile_stop(entry, "terminal", issue.state, cleanup=True)
                await self._terminate(entry, "terminal", cleanup=True, release=True)
            elif key in cfg.active_states and issue_routable(issue, cfg.required_labels):
                self.running_by_state[entry.state_key] -= 1
                entry.issue = issue
                self.running_by_state[entry.state_key] += 1
            elif key in cfg.active_states:
                _log_reconcile_stop(entry, "unroutable", issue.state, cleanup=False)
                await self._terminate(entry, "unroutable", cleanup=False, release=True)
            else:
                _log_reconcile_stop(entry, "inactive", issue.state, cleanup=False)
                await self._terminate(entry, "inactive", cleanup=False, release=True)
        for issue_id in set(ids) - seen:
            gone = self.running.get(issue_id)
            if gone is not None:
                _log_reconcile_stop(gone, "inactive", None, cleanup=False)
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
                log_event(log, "stall", level=logging.WARNING, outcome="stopped",
                          **run_fields(entry), idle_ms=now_ms - last,
                          stall_timeout_ms=timeout)  # fmt: skip
                await self._terminate(entry, "stalled", cleanup=False)
                self._history(entry.issue.id, entry.issue.identifier).last_error = error
                self._schedule_retry(entry.issue, (entry.attempt or 0) + 1, "failure", error,
                                     session_id=entry.session_id)  # fmt: skip


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
