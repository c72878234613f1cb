"""Workspace survey, orphan report and age cleanup (``workspace.cleanup.max_age_days``).

The dispatcher decides and the launcher deletes, as for prune (docs/design/1001-prune.md):
the launcher lists the workspace root (which the dispatcher's user cannot read) and deletes
through ``launcher.remove_workspace`` (before_remove hook, path checks, no live run); the
dispatcher knows which issues the tracker lists and which it is running, has claimed, will
retry or holds. A survey runs whenever the launcher (re)connects, after every WORKFLOW.md
change, and every ``SWEEP_INTERVAL_S``. Any doubt keeps the workspace
(docs/design/0655-age-cleanup.md).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from symphonyd.core import audit_events as ae
from symphonyd.core.api.dispatcher import OrphanRow
from symphonyd.core.api.launcher import RootEntry, WorkspaceListing
from symphonyd.core.errors import SymphonyError
from symphonyd.core.issue import Issue, state_key
from symphonyd.core.workspace_paths import workspace_key
from symphonyd.dispatcher.engine import Engine, brief_error, log
from symphonyd.dispatcher.ports import DispatchSettings
from symphonyd.dispatcher.state import MAX_ORPHAN_ROWS, iso
from symphonyd.runtime.logging import log_event

SWEEP_INTERVAL_S = 3600.0
NO_ISSUE = "no issue in the workflow's active or terminal states"


class WorkspaceSweep:
    """Survey the workspace root through the launcher; remove what age cleanup may.

    Unlike the other collaborators it is called without the lock: a removal waits for the
    launcher's ``before_remove`` hook, which must not stop ticks and run events. It takes the
    orchestrator's lock (lent here, never its own) only around its checks and claims."""

    def __init__(self, engine: Engine, lock: asyncio.Lock) -> None:
        self.engine, self.lock = engine, lock

    async def sweep_workspaces(self) -> None:
        eng = self.engine
        book = eng.sweep
        book.due = False
        if eng.cfg is None:
            return
        cfg, workflow = eng.settings, eng.cfg.workflow
        # Each host lists its own workspace root; what a host lists is removed only there.
        listings: list[tuple[str, WorkspaceListing]] = []
        errors: list[str] = []
        for name, host in eng.hosts.hosts.items():
            who = "the launcher" if not host.remote else f"host {name}"
            if host.remote and not host.connected:
                errors.append(f"{who} is not connected")
                continue
            try:
                listings.append((name, await host.launcher.list_workspaces(workflow)))
            except Exception as exc:
                errors.append(f"{who} could not list the workspaces: {brief_error(exc)}")
        if not listings:
            self._sweep_failed("; ".join(errors) or "no host to survey")
            return
        try:
            listed = await eng.tracker.fetch_by_states(
                [*cfg.active_states_raw, *cfg.terminal_states_raw]
            )
        except Exception as exc:
            # Without the tracker every workspace would look orphaned: report nothing new.
            self._sweep_failed(f"tracker unreachable: {brief_error(exc)}")
            return
        owners = _owners(listed)
        entries = [e for _, listing in listings for e in listing.entries]
        self._record_survey(entries, sum(listing.omitted for _, listing in listings), owners)
        book.error = "; ".join(errors) or None
        if cfg.max_age_days:
            for name, listing in listings:
                error = await self._age_cleanup(
                    listing.entries, owners, cfg, cfg.max_age_days, name
                )
                book.error = book.error or error
        eng.changed()

    def _sweep_failed(self, error: str) -> None:
        eng = self.engine
        eng.sweep.error = error
        log_event(log, "workspace_sweep", level=logging.WARNING, outcome="skipped", error=error)
        eng.changed()

    def _record_survey(
        self, entries: list[RootEntry], omitted: int, owners: dict[str, dict[str, Issue]]
    ) -> None:
        eng = self.engine
        book = eng.sweep
        orphans = [OrphanRow(e.name, e.problem, e.idle_s) for e in entries if e.problem]
        orphans += [
            OrphanRow(e.name, NO_ISSUE, e.idle_s)
            for e in entries
            if e.problem is None and e.name not in owners
        ]
        orphans.sort(key=lambda o: (o.idle_s is None, -(o.idle_s or 0.0), o.name))
        book.surveyed_at = iso(eng.clock.now())
        book.workspaces = sum(1 for e in entries if e.problem is None)
        book.orphans, book.orphan_count = orphans[:MAX_ORPHAN_ROWS], len(orphans)
        names = frozenset(o.name for o in orphans)
        if book.report_next or names != book.reported:
            log_event(
                log,
                "workspace_orphans",
                level=logging.WARNING if orphans else logging.INFO,
                count=len(orphans),
                workspaces=book.workspaces,
                omitted=omitted or None,
                orphans=", ".join(f"{o.name} ({o.reason})" for o in orphans[:MAX_ORPHAN_ROWS])
                or None,
            )
        book.report_next, book.reported = False, names

    async def _age_cleanup(
        self,
        entries: list[RootEntry],
        owners: dict[str, dict[str, Issue]],
        cfg: DispatchSettings,
        max_age_days: int,
        host: str,
    ) -> str | None:
        """Remove the old workspaces of finished issues; the reason a pass stopped, if any."""
        eng = self.engine
        max_age_s = max_age_days * 86400.0
        candidates: list[tuple[Issue, float]] = []
        for e in entries:
            found = owners.get(e.name, {})
            # Orphans, invalid names and a key two listed issues share are doubts: kept.
            if e.problem is not None or e.idle_s is None or len(found) != 1:
                continue
            (issue,) = found.values()
            if e.idle_s >= max_age_s and state_key(issue.state) in cfg.terminal_states:
                candidates.append((issue, e.idle_s))
        if not candidates:
            return None
        if eng.pending_stops:
            return "a stop the launcher has not confirmed yet; nothing removed this pass"
        if eng.pauses.has("audit_unavailable"):
            return "audit writer unavailable; nothing is removed unaudited"
        try:
            refreshed = await eng.tracker.fetch_by_ids([i.id for i, _ in candidates])
            fresh = {i.id: i for i in refreshed}
        except Exception as exc:
            return f"tracker unreachable: {brief_error(exc)}"
        for issue, idle_s in candidates:
            now = fresh.get(issue.id)
            # Moved, renamed or gone since the listing: the decision no longer holds.
            if now is None or now.identifier != issue.identifier:
                continue
            if state_key(now.state) not in cfg.terminal_states:
                continue
            if not await self._remove_old(now, idle_s, max_age_days, host):
                return "audit writer unavailable; nothing is removed unaudited"
        return None

    def _busy(self, issue: Issue) -> bool:
        """Running, claimed, waiting for a retry or held, by id or by identifier."""
        eng = self.engine
        if issue.id in eng.running or issue.id in eng.claimed or issue.id in eng.retries:
            return True
        if eng.holds.get(issue.id) is not None or eng.holds.find(issue.identifier):
            return True
        return any(e.issue.identifier == issue.identifier for e in eng.running.values()) or any(
            r.identifier == issue.identifier for r in eng.retries.values()
        )

    async def _remove_old(self, issue: Issue, idle_s: float, max_age_days: int, host: str) -> bool:
        """Audit, then ask the launcher to remove; False when the audit record failed."""
        eng = self.engine
        detail: dict[str, Any] = {
            "idle_days": round(idle_s / 86400, 1),
            "max_age_days": max_age_days,
            "state": issue.state,
        }
        async with self.lock:
            if self._busy(issue):
                return True
            requested = ae.workspace_remove(
                issue.id, issue.identifier, "requested", reason="age", detail=detail
            )
            if not await eng.append_audit(requested, queue=False):
                return False
            # Claimed while the launcher works: no run of this issue starts meanwhile.
            eng.claimed.add(issue.id)
        error: str | None = None
        try:
            workflow = eng.cfg.workflow if eng.cfg else None
            removed = await eng.hosts.launcher(host).remove_workspace(
                issue.identifier, min_idle_s=max_age_days * 86400.0, workflow=workflow
            )
            outcome = "removed" if removed else "kept"
        except Exception as exc:  # the launcher refused (a live run) or is unreachable
            outcome, error = "failed", brief_error(exc)
        finally:
            async with self.lock:
                eng.claimed.discard(issue.id)
        async with self.lock:
            if outcome == "removed":
                eng.owners.disown(issue.identifier, host)
                eng.persist_if_dirty()
            done = ae.workspace_remove(
                issue.id, issue.identifier, outcome, reason="age", detail={"error": error}
            )
            await eng.append_audit(done)
        eng.sweep.removed += outcome == "removed"
        log_event(
            log,
            "workspace_cleanup",
            level=logging.WARNING if error else logging.INFO,
            outcome=outcome,
            reason="age",
            issue_id=issue.id,
            issue_identifier=issue.identifier,
            host=host,
            error=error,
        )
        return True


def _owners(issues: list[Issue]) -> dict[str, dict[str, Issue]]:
    """Workspace key -> the listed issues (by id) whose identifier maps to it."""
    owners: dict[str, dict[str, Issue]] = {}
    for issue in issues:
        try:
            key = workspace_key(issue.identifier)
        except SymphonyError:
            continue  # an identifier no workspace can have
        owners.setdefault(key, {})[issue.id] = issue
    return owners
