"""In-memory orchestrator records (SPEC 4.1.5 - 4.1.8) and the pause book.

Only the orchestrator mutates these; the snapshot module reads them.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from symphonyd.core.api.dispatcher import OrphanRow, PauseCode, PauseReasonRow, WorkspaceStatus
from symphonyd.core.api.shared import TokenTotals
from symphonyd.core.issue import Issue, format_timestamp
from symphonyd.core.run_progress import RunProgress
from symphonyd.core.worker_hosts import LOCAL_HOST
from symphonyd.runtime.logging import log_event

log = logging.getLogger("symphonyd.dispatcher")

RECENT_EVENTS = 20
MAX_ORPHAN_ROWS = 50  # orphans in the snapshot and in one journal line
RetryKind = Literal["continuation", "failure", "requeue"]


def iso(value: datetime) -> str:
    text = format_timestamp(value)
    assert text is not None
    return text


def next_utc_midnight(now: datetime) -> datetime:
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return day + timedelta(days=1)


@dataclass
class RunningEntry:
    run_id: str
    issue: Issue
    attempt: int | None
    started_at: datetime
    started_ms: int
    # What the run has done, folded from its events as the launcher folds them (one rule).
    progress: RunProgress = field(default_factory=RunProgress)
    last_event_ms: int | None = None  # this dispatcher's monotonic clock, for stalls
    # Agent time (hooks excluded): from the first agent event; the launcher's own measure
    # (``progress.agent_seconds``) once the run has finished.
    agent_started_ms: int | None = None
    # Set when reconciliation first saw the issue out of the active states: the monotonic ms
    # at which its hand-off grace ends and the run is stopped if still going (design 0713).
    handoff_deadline_ms: int | None = None
    host: str = LOCAL_HOST  # the host the run is bound to (design 1100)

    @property
    def state_key(self) -> str:
        return self.issue.state.strip().lower()

    @property
    def session_id(self) -> str | None:
        return self.progress.session_id

    @property
    def turn_count(self) -> int:
        return self.progress.turn_count

    @property
    def tokens(self) -> TokenTotals:
        return self.progress.tokens

    @property
    def last_message(self) -> str | None:
        return self.progress.last_message

    @property
    def workspace_path(self) -> str | None:
        return self.progress.workspace_path


@dataclass
class RetryEntry:
    issue_id: str
    identifier: str
    attempt: int
    due_ms: int
    due_at: datetime
    error: str | None
    kind: RetryKind
    issue_url: str | None = None
    host: str | None = None  # the previous run's host, preferred while healthy with room


@dataclass
class IssueHistory:
    """What the issue view shows about an issue beyond its current run (SPEC 13.7.2)."""

    identifier: str
    restart_count: int = 0
    last_error: str | None = None
    workspace_path: str | None = None
    # (at, event, message): formatted only when someone looks at the issue.
    recent: deque[tuple[datetime, str, str | None]] = field(
        default_factory=lambda: deque(maxlen=RECENT_EVENTS)
    )


class PauseBook:
    """Automatic pause reasons, each raised and cleared by the condition that owns it.

    The operator pause lives in the persisted state instead, because it must survive a
    restart; automatic reasons are re-derived from the world after a restart. Raising and
    lifting a reason are journal lines; an update of a raised reason's message is not.
    """

    def __init__(self) -> None:
        self._reasons: dict[PauseCode, PauseReasonRow] = {}
        self._quiet: set[PauseCode] = set()

    def set(
        self,
        code: PauseCode,
        message: str,
        since: datetime,
        until: str | None = None,
        *,
        quiet: bool = False,
    ) -> bool:
        """Raise or update a reason; True when it was not raised before.

        ``quiet``: a precaution, not news (the audit check at start), so neither its raising
        nor its lifting is logged."""
        existing = self._reasons.get(code)
        if existing is not None and existing.message == message and existing.until == until:
            return False
        if quiet and existing is None:
            self._quiet.add(code)
        elif not quiet and (existing is None or code in self._quiet):
            # A precaution that turned out true (the audit writer does not answer) is news.
            self._quiet.discard(code)
            log_event(log, "pause", level=logging.WARNING, outcome="raised", reason=code,
                      detail=message, until=until)  # fmt: skip
        self._reasons[code] = PauseReasonRow(
            code=code,
            message=message,
            since=existing.since if existing else iso(since),
            until=until,
        )
        return existing is None

    def clear(self, code: PauseCode) -> bool:
        if self._reasons.pop(code, None) is None:
            return False
        if code in self._quiet:
            self._quiet.discard(code)
        else:
            log_event(log, "resume", outcome="lifted", reason=code)
        return True

    def has(self, code: PauseCode) -> bool:
        return code in self._reasons

    def rows(self) -> list[PauseReasonRow]:
        return list(self._reasons.values())

    def __bool__(self) -> bool:
        return bool(self._reasons)


@dataclass
class SweepBook:
    """What the last survey found, for the snapshot; ``due`` asks for the next one."""

    due: bool = False  # set when the launcher (re)connects, on a WORKFLOW.md change
    report_next: bool = True  # log the orphan report even if it did not change
    surveyed_at: str | None = None
    workspaces: int = 0
    orphans: list[OrphanRow] = field(default_factory=list)
    orphan_count: int = 0
    removed: int = 0
    error: str | None = None
    reported: frozenset[str] | None = None

    def request(self, *, report: bool = False) -> None:
        self.due = True
        self.report_next = self.report_next or report

    def status(self, max_age_days: int | None) -> WorkspaceStatus:
        return WorkspaceStatus(
            surveyed_at=self.surveyed_at,
            workspaces=self.workspaces,
            orphan_count=self.orphan_count,
            orphans=self.orphans[:MAX_ORPHAN_ROWS],
            max_age_days=max_age_days,
            removed=self.removed,
            error=self.error,
        )


def agent_seconds(entry: RunningEntry, now_ms: int) -> float:
    """The entry's agent time so far: hooks (before the agent's first event, after it
    stopped) are not agent time."""
    if entry.progress.agent_seconds is not None:
        return max(entry.progress.agent_seconds, 0.0)
    if entry.agent_started_ms is None:
        return 0.0
    return max((now_ms - entry.agent_started_ms) / 1000, 0.0)
