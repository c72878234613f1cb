"""The launcher's API: start, stop and list runs, workspaces, and the run event stream.

Served by symphony-launcher. Client: dispatcher (runs), events pushed on subscription.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from symphonyd.core.api.shared import Empty, TokenTotals
from symphonyd.core.issue import Issue
from symphonyd.core.wire import event, method


@dataclass(frozen=True)
class WorkflowSnapshot:
    """The effective workflow a run is bound to for its whole life (SPEC 10.5)."""

    path: str
    config: dict[str, Any]  # YAML front matter as loaded (before defaults)
    prompt_template: str
    fingerprint: str  # sha256 of the file bytes


@dataclass(frozen=True)
class StartRun:
    run_id: str
    issue: Issue
    attempt: int | None
    workflow: WorkflowSnapshot


@dataclass(frozen=True)
class StartRunResult:
    run_id: str
    accepted: bool
    error: str | None = None


StopReason = Literal[
    "operator",
    "terminal",
    "inactive",
    "unroutable",
    "stalled",
    "budget",
    "shutdown",
    "orphan",
    "link_lost",  # a worker's link was gone for its lease (launcher/link_lease.py)
]


@dataclass(frozen=True)
class StopRun:
    run_id: str
    reason: StopReason
    cleanup_workspace: bool = False


@dataclass(frozen=True)
class StopRunResult:
    stopped: bool


RunStatus = Literal["succeeded", "failed", "timed_out", "stalled", "cancelled", "blocked"]


@dataclass(frozen=True)
class RunOutcome:
    status: RunStatus
    error_code: str | None = None  # e.g. turn_failed, turn_input_required, sandbox_failed
    error: str | None = None


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    issue_id: str
    issue_identifier: str
    attempt: int | None
    started_at: str
    workspace_path: str | None = None
    session_id: str | None = None
    turn_count: int = 0
    tokens: TokenTotals = field(default_factory=TokenTotals)
    last_event: str | None = None
    last_event_at: str | None = None
    last_message: str | None = None
    pid: int | None = None
    outcome: RunOutcome | None = None  # set once the run has finished


@dataclass(frozen=True)
class ListRuns:
    """One page of the launcher's runs in start order: those after the cursor ``after``."""

    after: int = 0
    limit: int = 200


@dataclass(frozen=True)
class RunList:
    runs: list[RunInfo]
    # Cursor for the next page; None when this page reached the end. Pages keep every reply
    # far below the 1 MiB frame limit however many runs the launcher holds.
    next_after: int | None = None


@dataclass(frozen=True)
class AckRuns:
    run_ids: list[str]


@dataclass(frozen=True)
class RemoveWorkspace:
    identifier: str
    # Where the workspace root and hooks come from; None: the last workflow a run used.
    workflow: WorkflowSnapshot | None = None
    # Age cleanup: remove only if the workspace is still untouched for this many seconds.
    min_idle_s: float | None = None


@dataclass(frozen=True)
class RemoveWorkspaceResult:
    removed: bool


RunEventName = Literal[
    "session_started",
    "turn_started",
    "turn_completed",
    "turn_failed",
    "turn_cancelled",
    "turn_input_required",
    "approval_auto_approved",
    "approval_declined",
    "unsupported_tool_call",
    "tool_call",
    "tokens",
    "rate_limits",
    "notification",
    "malformed",
    "run_finished",
]


@dataclass(frozen=True)
class RunEvent:
    run_id: str
    issue_id: str
    event: RunEventName
    at: str  # RFC 3339 UTC
    session_id: str | None = None
    turn_count: int | None = None
    tokens: TokenTotals | None = None  # absolute thread totals, never deltas
    rate_limits: dict[str, Any] | None = None
    message: str | None = None  # short, humanised; never a raw payload
    pid: int | None = None
    outcome: RunOutcome | None = None  # only on run_finished
    # Only on run_finished: seconds the agent process ran (start to stop), hooks excluded.
    agent_seconds: float | None = None


LAUNCHER_START_RUN = method(
    "launcher.start_run",
    StartRun,
    StartRunResult,
    "Prepare the workspace and sandbox, start a run.",
)
LAUNCHER_STOP_RUN = method("launcher.stop_run", StopRun, StopRunResult, "End one run.")
LAUNCHER_LIST_RUNS = method(
    "launcher.list_runs",
    ListRuns,
    RunList,
    "Live runs plus finished runs not yet acknowledged, one page at a time.",
)
LAUNCHER_ACK_RUNS = method(
    "launcher.ack_runs", AckRuns, Empty, "The dispatcher has recorded these finished runs."
)
LAUNCHER_REMOVE_WORKSPACE = method(
    "launcher.remove_workspace",
    RemoveWorkspace,
    RemoveWorkspaceResult,
    "Run before_remove and delete one issue's workspace.",
)


@dataclass(frozen=True)
class WorkspaceAges:
    identifiers: list[str]


@dataclass(frozen=True)
class WorkspaceAgesResult:
    # Seconds since each workspace last changed; null: no workspace. An identifier the
    # launcher cannot judge (unsafe, not a directory) is left out: its age is unknown.
    ages: dict[str, float | None]


LAUNCHER_WORKSPACE_AGES = method(
    "launcher.workspace_ages",
    WorkspaceAges,
    WorkspaceAgesResult,
    "How long ago each issue's workspace last changed (for prune).",
)


@dataclass(frozen=True)
class ListWorkspaces:
    # Where the workspace root comes from; None: the last workflow a run used.
    workflow: WorkflowSnapshot | None = None


@dataclass(frozen=True)
class RootEntry:
    name: str  # the entry's name under the workspace root
    idle_s: float | None  # seconds since it last changed; None when not a directory
    # None: a workspace (a real directory with a valid key); otherwise why it is not one.
    problem: str | None = None


@dataclass(frozen=True)
class WorkspaceListing:
    root: str
    entries: list[RootEntry]  # the oldest first
    omitted: int = 0  # younger entries left out to keep the reply small


LAUNCHER_LIST_WORKSPACES = method(
    "launcher.list_workspaces",
    ListWorkspaces,
    WorkspaceListing,
    "Every entry under the workspace root with its age (age cleanup, orphan report).",
)
LAUNCHER_SUBSCRIBE = method(
    "launcher.subscribe", Empty, Empty, "Subscribe: the server then pushes launcher.run_event."
)
LAUNCHER_RUN_EVENT = event("launcher.run_event", RunEvent, "Progress of one run.")
