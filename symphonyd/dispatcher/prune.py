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
from symphonyd.core.worker_hosts import LOCAL_HOST
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

    def workspace_owners(self, identifier: str) -> list[str]:
        """The hosts that have a workspace for ``identifier`` (design 1100)."""
        ...

    def host_launcher(self, host: str) -> LauncherPort: ...

    def workspace_removed(self, identifier: str, host: str) -> None: ...


async def prune(orch: PruneTarget, params: PruneParams) -> PruneResult:
    if not 0 < params.older_than_s <= MAX_OLDER_THAN_S:
        raise ValidationError(
            f"older_than_s must be between 1 and {MAX_OLDER_THAN_S}", code="invalid_params"
        )
    cfg = orch.settings
    terminal: list[Issue] = await orch.tracker.fetch_by_states(list(cfg.terminal_states_raw))
    unique: dict[str, Issue] = {}  # identifier -> its first listed issue
    for issue in terminal:
        unique.setdefault(issue.identifier, issue)
    # The launchers own the workspaces (the dispatcher's user cannot even list them); each
    # host that has one for an issue is asked about its own (design 1100).
    owners = {ident: orch.workspace_owners(ident) for ident in unique}
    ages = await _ages(orch, owners)
    removed: list[PruneEntry] = []
    kept: list[PruneEntry] = []
    gone: list[Issue] = []  # terminal issues left without a workspace
    for issue in unique.values():
        left = 0  # workspaces kept on some host
        for host in owners[issue.identifier]:
            name = issue.identifier if host == LOCAL_HOST else f"{issue.identifier} on {host}"
            entry = await _judge(orch, issue, host, ages.get(host), params)
            if entry is None:
                continue  # no workspace there
            verdict, why = entry
            (removed if verdict else kept).append(PruneEntry(name, why))
            left += not verdict
        if left == 0:
            gone.append(issue)  # no workspace anywhere: only run data may be left
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


async def _ages(
    orch: PruneTarget, owners: dict[str, list[str]]
) -> dict[str, dict[str, float | None] | None]:
    """Host -> its ages of the workspaces it owns (None: a worker that did not answer)."""
    by_host: dict[str, list[str]] = {}
    for identifier, hosts in owners.items():
        for host in hosts:
            by_host.setdefault(host, []).append(identifier)
    out: dict[str, dict[str, float | None] | None] = {}
    for host, identifiers in by_host.items():
        try:
            out[host] = await orch.host_launcher(host).workspace_ages(sorted(identifiers))
        except Exception:
            if host == LOCAL_HOST:
                raise  # the local launcher's answer is the whole of prune, as before
            out[host] = None
    return out


async def _judge(
    orch: PruneTarget,
    issue: Issue,
    host: str,
    ages: dict[str, float | None] | None,
    params: PruneParams,
) -> tuple[bool, str] | None:
    """(removed, why) for the issue's workspace on ``host``; None when there is none."""
    if ages is None:
        return False, f"age unknown: host {host} did not answer"
    if issue.identifier not in ages:
        return False, "age unknown: the launcher could not judge"
    idle = ages[issue.identifier]
    if idle is None:
        orch.workspace_removed(issue.identifier, host)
        return None
    if issue.id in orch.running:
        return False, "a run is still live"
    if idle < params.older_than_s:
        return False, f"touched {_human(idle)} ago"
    if params.dry_run or await _remove(orch, issue.identifier, host):
        return True, f"terminal ({issue.state}), untouched {_human(idle)}"
    return False, "the launcher did not remove it"


async def _remove(orch: PruneTarget, identifier: str, host: str) -> bool:
    try:
        removed = await orch.host_launcher(host).remove_workspace(identifier)
    except SymphonyError as exc:
        log.warning("prune: launcher of %s refused %s: %s", host, identifier, exc.error_code)
        return False
    if removed:
        orch.workspace_removed(identifier, host)
    return removed


def _human(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{max(seconds, 0):.0f} seconds"
