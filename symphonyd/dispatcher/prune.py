"""``dispatcher.prune``: remove old workspaces of terminal issues (symphonyctl prune).

The dispatcher decides, the launcher deletes: the tracker says which issues are terminal,
the orchestrator knows which have a live run, and ``launcher.remove_workspace`` runs the
before_remove hook and applies path containment (docs/design/1001-prune.md). The age of a
workspace is the mtime of its directory; when the dispatcher cannot see it the workspace is
kept, never guessed about.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Protocol

from symphonyd.core.errors import SymphonyError, ValidationError
from symphonyd.core.issue import Issue
from symphonyd.core.messages import PruneEntry, PruneParams, PruneResult
from symphonyd.dispatcher.ports import DispatchSettings, LauncherPort, TrackerPort

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
            continue  # no workspace: nothing to do
        why = f"terminal ({issue.state}), untouched {_human(idle)}"
        if issue.id in orch.running:
            kept.append(PruneEntry(issue.identifier, "a run is still live"))
        elif idle < params.older_than_s:
            kept.append(PruneEntry(issue.identifier, f"touched {_human(idle)} ago"))
        elif params.dry_run or await _remove(orch, issue.identifier):
            removed.append(PruneEntry(issue.identifier, why))
        else:
            kept.append(PruneEntry(issue.identifier, "the launcher did not remove it"))
    return PruneResult(removed=removed, kept=kept)


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
