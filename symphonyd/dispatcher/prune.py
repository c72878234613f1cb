"""``dispatcher.prune``: remove old workspaces of terminal issues (symphonyctl prune).

The dispatcher decides, the launcher deletes: the tracker says which issues are terminal,
the orchestrator knows which have a live run, and ``launcher.remove_workspace`` runs the
before_remove hook and applies path containment (docs/design/1001-prune.md). The age of a
workspace is the mtime of its directory; when the dispatcher cannot see it the workspace is
kept, never guessed about. The same pass forgets the run data the dispatcher keeps per
issue (its persisted token total) once the issue's workspace is gone too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from symphonyd.core.api.dispatcher import PruneEntry, PruneParams, PruneResult
from symphonyd.core.errors import SymphonyError, ValidationError
from symphonyd.core.issue import Issue
from symphonyd.dispatcher.budget import TokenLedger
from symphonyd.dispatcher.holds import HoldBook
from symphonyd.dispatcher.ports import Clock, DispatchSettings, LauncherPort, TrackerPort

log = logging.getLogger(__name__)
MAX_OLDER_THAN_S = 10 * 365 * 86400


class PruneTarget(Protocol):
    """The orchestrator as prune sees it."""

    @property
    def tracker(self) -> TrackerPort: ...

    @property
    def launcher(self) -> LauncherPort: ...

    @property
    def running(self) -> Mapping[str, object]: ...

    @property
    def settings(self) -> DispatchSettings: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def ledger(self) -> TokenLedger: ...

    @property
    def holds(self) -> HoldBook: ...

    async def forget_tokens(self, issue_ids: list[str]) -> list[str]: ...


async def prune(orch: PruneTarget, params: PruneParams) -> PruneResult:
    if not 0 < params.older_than_s <= MAX_OLDER_THAN_S:
        raise ValidationError(
            f"older_than_s must be between 1 and {MAX_OLDER_THAN_S}", code="invalid_params"
        )
    cfg = orch.settings
    terminal: list[Issue] = await orch.tracker.fetch_by_states(list(cfg.terminal_states_raw))
    # The launcher owns the workspaces (the dispatcher's user cannot even list them).
    ages = await orch.launcher.workspace_ages(sorted({i.identifier for i in terminal}))
    removed: list[PruneEntry] = []
    kept: list[PruneEntry] = []
    gone: list[Issue] = []  # terminal issues left without a workspace
    seen: set[str] = set()
    for issue in terminal:
        if issue.identifier in seen:
            continue
        seen.add(issue.identifier)
        if issue.identifier not in ages:
            kept.append(PruneEntry(issue.identifier, "age unknown: the launcher could not judge"))
            continue
        idle = ages[issue.identifier]
        if idle is None:
            gone.append(issue)  # no workspace: only run data may be left
            continue
        why = f"terminal ({issue.state}), untouched {_human(idle)}"
        if issue.id in orch.running:
            kept.append(PruneEntry(issue.identifier, "a run is still live"))
        elif idle < params.older_than_s:
            kept.append(PruneEntry(issue.identifier, f"touched {_human(idle)} ago"))
        elif params.dry_run or await _remove(orch, issue.identifier):
            removed.append(PruneEntry(issue.identifier, why))
            gone.append(issue)
        else:
            kept.append(PruneEntry(issue.identifier, "the launcher did not remove it"))
    forgotten = await _forget_run_data(orch, gone, params)
    return PruneResult(removed=removed, kept=kept, forgotten=forgotten)


async def _forget_run_data(
    orch: PruneTarget, gone: list[Issue], params: PruneParams
) -> list[PruneEntry]:
    """Token totals of terminal issues with no workspace, unused for the whole duration.

    Held issues keep theirs (a budget hold is judged on it); an issue the tracker moves back
    to an active state later starts a fresh per-issue budget, which is what forgetting means.
    """
    now = orch.clock.now()
    chosen: dict[str, PruneEntry] = {}
    for issue in gone:
        last = orch.ledger.last_used(issue.id)
        if last is None or issue.id in orch.running or orch.holds.get(issue.id) is not None:
            continue
        idle = (now - last).total_seconds()
        if idle >= params.older_than_s:
            total = orch.ledger.issue_total(issue.id)
            why = f"token total {total}, last used {_human(idle)} ago ({_when(last)})"
            chosen[issue.id] = PruneEntry(issue.identifier, why)
    if params.dry_run or not chosen:
        return list(chosen.values())
    dropped = await orch.forget_tokens(list(chosen))
    return [chosen[i] for i in dropped]


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d")


async def _remove(orch: PruneTarget, identifier: str) -> bool:
    try:
        return await orch.launcher.remove_workspace(identifier)
    except SymphonyError as exc:
        log.warning("prune: launcher refused %s: %s", identifier, exc.error_code)
        return False


def _human(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{max(seconds, 0):.0f} seconds"
