"""The dispatcher's API: the state snapshot, operator controls, prune, state events.

Served by symphony-dispatcher. Clients: symphonyctl and the dashboard (control, snapshot).
Snapshot shapes follow SPEC 13.3 / 13.7.2 plus pause, budgets, holds and daemon health.
Control errors come back as error replies: issue_not_found, not_held, invalid_params.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from symphonyd.core.api.shared import Empty, TokenTotals
from symphonyd.core.issue import Issue
from symphonyd.core.wire import event, method

# dispatcher.snapshot of a large board (thousands of running or retrying issues) exceeds
# 1 MiB: the control and dashboard sockets reply up to this size, and their clients
# (symphonyctl, the dashboard) read it (IpcClient.connect(..., max_frame=SNAPSHOT_MAX_FRAME)).
SNAPSHOT_MAX_FRAME = 16 << 20


@dataclass(frozen=True)
class PauseParams:
    reason: str


@dataclass(frozen=True)
class IssueRefParams:
    identifier: str


@dataclass(frozen=True)
class HostRow:
    """One host runs go to (design 1100): ``local`` is the control host's own launcher."""

    name: str
    remote: bool
    ok: bool  # a worker: its event stream is up and its run table resynced
    drained: bool  # takes no new runs (operator)
    running: int
    capacity: int | None  # worker.max_concurrent_agents_per_host; None: only global caps
    detail: str | None = None  # the last failure, while failing


@dataclass(frozen=True)
class HostList:
    hosts: list[HostRow]


@dataclass(frozen=True)
class HostRefParams:
    name: str


@dataclass(frozen=True)
class ControlResult:
    ok: bool
    message: str


@dataclass(frozen=True)
class RefreshResult:
    queued: bool
    coalesced: bool
    requested_at: str
    operations: list[str]


@dataclass(frozen=True)
class RunningRow:
    issue_id: str
    issue_identifier: str
    issue_url: str | None
    state: str
    run_id: str
    attempt: int | None
    session_id: str | None
    turn_count: int
    last_event: str | None
    last_message: str | None
    started_at: str
    last_event_at: str | None
    tokens: TokenTotals
    workspace_path: str | None = None
    issue_title: str | None = None  # the tracker's title, for people reading the dashboard
    host: str | None = None  # the worker host the run is bound to; None without worker hosts


@dataclass(frozen=True)
class RetryRow:
    issue_id: str
    issue_identifier: str
    issue_url: str | None
    attempt: int
    due_at: str
    error: str | None
    kind: Literal["continuation", "failure", "requeue"] = "failure"
    host: str | None = None  # the previous run's host, preferred by the retry (worker hosts)


HoldKind = Literal["stopped", "blocked", "budget"]


@dataclass(frozen=True)
class HoldRow:
    """An issue kept out of dispatch until the tracker changes it or an operator releases it."""

    issue_id: str
    issue_identifier: str
    kind: HoldKind
    reason: str
    since: str
    by_uid: int | None = None
    released_by_tracker_change: bool = True


@dataclass(frozen=True)
class CodexTotals:
    input_tokens: int
    output_tokens: int
    total_tokens: int
    seconds_running: float


PauseCode = Literal[
    "operator",
    "daily_budget",
    "low_disk",
    "audit_unavailable",
    "invalid_config",
    "tracker_unavailable",
    "state_unreadable",
]


@dataclass(frozen=True)
class PauseReasonRow:
    code: PauseCode
    message: str
    since: str
    by_uid: int | None = None  # operator pauses: the SO_PEERCRED uid of the caller
    until: str | None = None  # daily_budget: the next UTC midnight


@dataclass(frozen=True)
class PauseStatus:
    paused: bool
    reasons: list[PauseReasonRow]


@dataclass(frozen=True)
class BudgetStatus:
    tokens_per_issue: int | None
    tokens_per_day: int | None
    day: str  # UTC date the daily counter belongs to
    tokens_today: int


@dataclass(frozen=True)
class DaemonHealthRow:
    daemon: str  # tracker, launcher, audit, workflow; "host NAME" per worker host
    ok: bool
    detail: str | None
    checked_at: str | None


@dataclass(frozen=True)
class ConfigStatus:
    ok: bool
    path: str | None
    fingerprint: str | None  # of the last good WORKFLOW.md in use
    loaded_at: str | None
    error: str | None  # the rejected edit, while the last good config stays in use


@dataclass(frozen=True)
class SnapshotCounts:
    running: int
    retrying: int
    held: int


@dataclass(frozen=True)
class OrphanRow:
    """An entry under the workspace root that belongs to no issue the tracker lists."""

    name: str
    reason: str
    idle_s: float | None  # seconds since it last changed; None when not a directory


@dataclass(frozen=True)
class WorkspaceStatus:
    """The last workspace survey and age cleanup (docs/design/0655-age-cleanup.md)."""

    surveyed_at: str | None  # last complete survey; None: none yet
    workspaces: int  # workspace directories under the root
    orphan_count: int
    orphans: list[OrphanRow]  # the oldest first, at most 50
    max_age_days: int | None  # None: age cleanup is off
    removed: int  # workspaces age cleanup removed since the dispatcher started
    error: str | None  # why the last survey or cleanup pass did not complete


@dataclass(frozen=True)
class TrackerEventsStatus:
    """The dispatcher's end of tracker.changed, in its snapshot (and so in /metrics)."""

    subscribed: bool
    received: dict[str, int]  # events by source since the dispatcher started
    ticks_requested: int  # ticks the events asked for (after pacing)
    last_event_at: str | None


@dataclass(frozen=True)
class StateSnapshot:
    generated_at: str
    counts: SnapshotCounts
    running: list[RunningRow]
    retrying: list[RetryRow]
    held: list[HoldRow]
    codex_totals: CodexTotals
    rate_limits: dict[str, Any] | None
    pause: PauseStatus
    budgets: BudgetStatus
    daemons: list[DaemonHealthRow]
    config: ConfigStatus
    poll_interval_ms: int
    max_concurrent_agents: int
    workspaces: WorkspaceStatus | None = None
    tracker_events: TrackerEventsStatus | None = None  # issue 21; None: not followed


@dataclass(frozen=True)
class RecentEvent:
    at: str
    event: str
    message: str | None


@dataclass(frozen=True)
class IssueAttempts:
    restart_count: int
    current_retry_attempt: int | None


IssueStatus = Literal["running", "retrying", "stopped", "blocked", "budget", "idle"]


@dataclass(frozen=True)
class IssueView:
    """SPEC 13.7.2 ``GET /api/v1/<identifier>`` shape."""

    issue_identifier: str
    issue_id: str
    status: IssueStatus
    workspace_path: str | None
    attempts: IssueAttempts
    running: RunningRow | None
    retry: RetryRow | None
    hold: HoldRow | None
    recent_events: list[RecentEvent]
    last_error: str | None
    tokens_used: int


@dataclass(frozen=True)
class StateChanged:
    snapshot: StateSnapshot


@dataclass(frozen=True)
class PruneParams:
    older_than_s: int  # only workspaces untouched for longer than this; > 0
    dry_run: bool


@dataclass(frozen=True)
class PruneEntry:
    identifier: str
    reason: str  # why it was (or would be) removed, or why it was kept


@dataclass(frozen=True)
class PruneResult:
    removed: list[PruneEntry]  # with dry_run: what would have been removed
    kept: list[PruneEntry]
    # Per-issue run data (the dispatcher's token totals) dropped; with dry_run: would be.
    forgotten: list[PruneEntry]


DISPATCHER_SNAPSHOT = method(
    "dispatcher.snapshot", Empty, StateSnapshot, "Current orchestrator state (SPEC 13.3)."
)
DISPATCHER_PAUSE = method(
    "dispatcher.pause", PauseParams, ControlResult, "Stop starting runs; in-flight runs go on."
)
DISPATCHER_RESUME = method(
    "dispatcher.resume", Empty, ControlResult, "Clear the operator pause (automatic ones stay)."
)
DISPATCHER_STOP = method(
    "dispatcher.stop", IssueRefParams, ControlResult, "End one issue's run and hold it."
)
DISPATCHER_RELEASE = method(
    "dispatcher.release", IssueRefParams, ControlResult, "Lift a stop, blocked or budget hold."
)
DISPATCHER_REFRESH = method(
    "dispatcher.refresh", Empty, RefreshResult, "Queue an immediate poll and reconcile."
)
DISPATCHER_ISSUE = method(
    "dispatcher.issue", IssueRefParams, IssueView, "One issue's runtime view (SPEC 13.7.2)."
)
DISPATCHER_PRUNE = method(
    "dispatcher.prune",
    PruneParams,
    PruneResult,
    "Remove old workspaces of terminal issues with no live run (via the launcher).",
)
DISPATCHER_HOSTS = method(
    "dispatcher.hosts", Empty, HostList, "The hosts runs go to, their health and load."
)
DISPATCHER_DRAIN = method(
    "dispatcher.drain", HostRefParams, ControlResult, "A host takes no new runs (durable)."
)
DISPATCHER_UNDRAIN = method(
    "dispatcher.undrain", HostRefParams, ControlResult, "A drained host takes runs again."
)
DISPATCHER_SUBSCRIBE = method(
    "dispatcher.subscribe", Empty, Empty, "Subscribe: pushes dispatcher.state_changed."
)
DISPATCHER_STATE_CHANGED = event(
    "dispatcher.state_changed", StateChanged, "The snapshot after a state change (debounced)."
)


# Worker hosts (docs/design/1100-worker-hosts.md): the link asks, for each tracker call a
# worker sends, whether the dispatcher has that issue bound to that worker right now. Served
# only on the link's socket (dispatcher-link.sock), which serves nothing else.
@dataclass(frozen=True)
class BoundIssueParams:
    host: str
    issue_id: str


@dataclass(frozen=True)
class BoundIssue:
    # The dispatcher's own copy of the issue while a run of it is bound to ``host``, else
    # None (never bound there, finished, or fenced after the host was lost).
    issue: Issue | None


DISPATCHER_BOUND_ISSUE = method(
    "dispatcher.bound_issue",
    BoundIssueParams,
    BoundIssue,
    "The issue if a running entry binds it to this worker host, else null.",
)
