"""Every IPC message type of the suite, in one module.

Wire format (docs/design/0002-ipc.md): one JSON object per line, at most ``max_frame`` bytes.

    request   {"v": 1, "id": 7, "method": "tracker.fetch_by_ids", "params": {...}}
    response  {"v": 1, "id": 7, "result": {...}}
    error     {"v": 1, "id": 7, "error": {"code": "invalid_params", "message": "..."}}
    event     {"v": 1, "event": "launcher.run_event", "data": {...}}

A method is registered once with its params and result dataclasses; both ends validate with
:func:`symphonyd.core.codec.decode`. Sections below are owned by the daemon that serves them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from symphonyd.core.codec import decode, encode
from symphonyd.core.errors import SymphonyError, ValidationError
from symphonyd.core.issue import Issue

PROTOCOL_VERSION = 1
DEFAULT_MAX_FRAME = 1 << 20  # 1 MiB

P = TypeVar("P")
R = TypeVar("R")


class ProtocolError(SymphonyError):
    """A frame broke the wire contract; ``code`` is one of ERROR_CODES."""

    code = "malformed_message"


# Stable error codes of the wire layer (handlers add their own SymphonyError codes).
ERROR_CODES = (
    "frame_too_large",
    "malformed_message",
    "unsupported_version",
    "unknown_method",
    "invalid_params",
    "peer_not_allowed",
    "timeout",
    "unavailable",
    "internal_error",
)


@dataclass(frozen=True)
class MethodSpec(Generic[P, R]):
    name: str
    params: type[P]
    result: type[R]
    doc: str


@dataclass(frozen=True)
class EventSpec(Generic[P]):
    name: str
    data: type[P]
    doc: str


METHODS: dict[str, MethodSpec[Any, Any]] = {}
EVENTS: dict[str, EventSpec[Any]] = {}


def method(name: str, params: type[P], result: type[R], doc: str) -> MethodSpec[P, R]:
    if name in METHODS:
        raise RuntimeError(f"duplicate IPC method {name}")
    spec = MethodSpec(name, params, result, doc)
    METHODS[name] = spec
    return spec


def event(name: str, data: type[P], doc: str) -> EventSpec[P]:
    if name in EVENTS:
        raise RuntimeError(f"duplicate IPC event {name}")
    spec = EventSpec(name, data, doc)
    EVENTS[name] = spec
    return spec


# --------------------------------------------------------------------------- envelope


@dataclass(frozen=True)
class Request:
    id: int
    method: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Response:
    id: int
    result: Any


@dataclass(frozen=True)
class ErrorReply:
    id: int | None
    code: str
    message: str


@dataclass(frozen=True)
class Event:
    event: str
    data: dict[str, Any]


Frame = Request | Response | ErrorReply | Event


def _dump(obj: dict[str, Any]) -> bytes:
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    try:
        return text.encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        # A lone surrogate (JSON allows "\\ud800") cannot be UTF-8; escaped output round-trips.
        return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("ascii") + b"\n"


def encode_request(req_id: int, spec: MethodSpec[P, Any], params: P) -> bytes:
    return _dump(
        {"v": PROTOCOL_VERSION, "id": req_id, "method": spec.name, "params": encode(params)}
    )


def encode_response(req_id: int, result: Any) -> bytes:
    return _dump({"v": PROTOCOL_VERSION, "id": req_id, "result": encode(result)})


def encode_error(req_id: int | None, code: str, message: str) -> bytes:
    return _dump({"v": PROTOCOL_VERSION, "id": req_id, "error": {"code": code, "message": message}})


def encode_event(spec: EventSpec[P], data: P) -> bytes:
    return _dump({"v": PROTOCOL_VERSION, "event": spec.name, "data": encode(data)})


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; accepting them would make a reply unencodable later.
    raise ValueError(f"non-standard JSON constant {name}")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)  # json.loads(..., kw) rebuilds one


def parse_frame(line: bytes, *, max_frame: int = DEFAULT_MAX_FRAME) -> Frame:
    """Decode one line into a typed frame or raise ProtocolError with a stable code."""
    if len(line) > max_frame:
        raise ProtocolError(
            f"frame of {len(line)} bytes exceeds {max_frame}", code="frame_too_large"
        )
    try:
        obj = _DECODER.decode(line.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError, UnicodeDecodeError and Python's limit on the
        # digits of an integer literal, which a hostile peer reaches with a 5000-digit id.
        raise ProtocolError(f"not a JSON object: {exc.__class__.__name__}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("frame is not a JSON object")
    if obj.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(
            f"unsupported protocol version {obj.get('v')!r}", code="unsupported_version"
        )
    raw_id = obj.get("id")
    req_id = raw_id if isinstance(raw_id, int) and not isinstance(raw_id, bool) else None
    if "method" in obj:
        params = obj.get("params", {})
        if req_id is None or not isinstance(obj["method"], str) or not isinstance(params, dict):
            raise ProtocolError("request needs an integer id, a method name and object params")
        return Request(req_id, obj["method"], params)
    if "result" in obj and req_id is not None:
        return Response(req_id, obj["result"])
    if "error" in obj and isinstance(obj["error"], dict):
        err = obj["error"]
        code, message = err.get("code"), err.get("message")
        if isinstance(code, str) and isinstance(message, str):
            return ErrorReply(req_id, code, message)
    if isinstance(obj.get("event"), str) and isinstance(obj.get("data"), dict):
        return Event(obj["event"], obj["data"])
    raise ProtocolError("frame is neither request, response, error nor event")


def decode_params(spec: MethodSpec[P, Any], params: dict[str, Any]) -> P:
    try:
        return decode(spec.params, params)
    except ValidationError as exc:
        raise ProtocolError(exc.message, code="invalid_params") from None


def decode_result(spec: MethodSpec[Any, R], result: Any) -> R:
    try:
        return decode(spec.result, result)
    except ValidationError as exc:
        raise ProtocolError(f"bad result for {spec.name}: {exc.message}") from None


def decode_event(spec: EventSpec[P], data: dict[str, Any]) -> P:
    try:
        return decode(spec.data, data)
    except ValidationError as exc:
        raise ProtocolError(f"bad data for {spec.name}: {exc.message}") from None


# --------------------------------------------------------------------------- shared


@dataclass(frozen=True)
class Empty:
    pass


@dataclass(frozen=True)
class Health:
    daemon: str
    version: str
    ok: bool
    detail: dict[str, Any] = field(default_factory=dict)


HEALTH = method("health", Empty, Health, "Liveness and version of the serving daemon.")


# --------------------------------------------------------------------------- tracker
# Served by symphony-tracker on two sockets: the dispatcher's (reads, profile, health) and the
# launcher's (agent tools, profile, health). Adapter failures come back as error replies whose
# code is a SPEC 11.4 category (tracker_request, tracker_status, tracker_response, ...).


# A board of 10 000 issues is several MiB of JSON: clients of tracker.fetch_* must read
# replies up to this size (IpcClient.connect(..., max_frame=TRACKER_MAX_FRAME)).
TRACKER_MAX_FRAME = 64 << 20


@dataclass(frozen=True)
class FetchByStates:
    states: list[str]


@dataclass(frozen=True)
class FetchByIds:
    ids: list[str]


@dataclass(frozen=True)
class IssueList:
    issues: list[Issue]


@dataclass(frozen=True)
class TrackerProfile:
    """The active adapter as the tracker daemon built it from the current WORKFLOW.md."""

    kind: str | None
    active_states: list[str]  # WORKFLOW.md values, else the adapter's documented defaults
    terminal_states: list[str]
    secret_env_names: list[str]  # the launcher removes these from agent environments
    tracker_fingerprint: str | None  # changes whenever the tracker config changes
    # {"code", "message"} while the workflow on disk is unusable or refused; with an adapter
    # (kind set) the last good version keeps serving.
    config_error: dict[str, Any] | None = None
    workflow_sha256: str | None = None  # the WORKFLOW.md version the adapter was built from


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True)
class ToolSpecList:
    tools: list[ToolSpec]
    # Bind a session to this; a ToolCall carrying another value is refused (SPEC 10.5).
    tracker_fingerprint: str | None = None


@dataclass(frozen=True)
class ToolCall:
    issue: Issue  # the run's issue: tools are scoped to it and only it
    tool: str
    arguments: Any
    session_id: str | None = None
    tracker_fingerprint: str | None = None  # from the ToolSpecList the session advertised


@dataclass(frozen=True)
class ToolResult:
    success: bool
    output: Any  # JSON-safe; on failure {"error": {"code", "message"}}


TRACKER_FETCH_BY_STATES = method(
    "tracker.fetch_by_states", FetchByStates, IssueList, "Issues in the given states (SPEC 11.1)."
)
TRACKER_FETCH_BY_IDS = method(
    "tracker.fetch_by_ids", FetchByIds, IssueList, "Current snapshots of these ids (SPEC 11.1)."
)
TRACKER_PROFILE = method(
    "tracker.profile", Empty, TrackerProfile, "Kind, effective states and secret env names."
)
TRACKER_TOOL_SPECS = method(
    "tracker.tool_specs", Empty, ToolSpecList, "Agent tools the active adapter offers."
)
TRACKER_TOOL_CALL = method(
    "tracker.tool_call", ToolCall, ToolResult, "Run one agent tool host-side, scoped to one issue."
)


@dataclass(frozen=True)
class RedactText:
    text: str


@dataclass(frozen=True)
class RedactedText:
    text: str


# The launcher's prompt previews are scrubbed where the secrets live: the tracker daemon
# removes its credential and `$NAME` provider secrets (docs/design/0552-prompt-secrets-and-env.md).
TRACKER_REDACT = method(
    "tracker.redact", RedactText, RedactedText, "Text with the tracker's secrets scrubbed out."
)


# --------------------------------------------------------------------------- dispatcher
# dispatcher.snapshot of a large board (thousands of running or retrying issues) exceeds
# 1 MiB: the control and dashboard sockets reply up to this size, and their clients
# (symphonyctl, the dashboard) read it (IpcClient.connect(..., max_frame=SNAPSHOT_MAX_FRAME)).
SNAPSHOT_MAX_FRAME = 16 << 20
# Served by symphony-dispatcher. Clients: symphonyctl and the dashboard (control, snapshot).
# Snapshot shapes follow SPEC 13.3 / 13.7.2 plus pause, budgets, holds and daemon health.
# Control errors come back as error replies: issue_not_found, not_held, invalid_params.


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


# --------------------------------------------------------------------------- launcher
# Served by symphony-launcher. Client: dispatcher (runs), events pushed on subscription.


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


@dataclass(frozen=True)
class TokenTotals:
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0


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


# --------------------------------------------------------------------------- audit
# Served by symphony-audit on one socket per client daemon. The writer stamps the sender's
# identity from SO_PEERCRED and the socket it arrived on; nothing in these messages can claim
# to be someone else (AuditEventIn has no sender field and unknown fields are refused).
# Build events with symphonyd.core.audit_events. Errors: ``invalid_params`` (unknown or
# writer-only type, empty or over 1000 records; nothing of the request is written),
# ``audit_unavailable`` (the store failed; the writer is restarting). A client that gets an
# error or cannot connect must treat the event as not recorded (the dispatcher pauses with
# ``audit_unavailable``). Format and guarantees: docs/audit.md.


@dataclass(frozen=True)
class AuditEventIn:
    type: str  # one of audit_events.CLIENT_TYPES: dispatch, run_finished, prompt_sent, ...
    payload: dict[str, Any] = field(default_factory=dict)
    issue_id: str | None = None
    issue_identifier: str | None = None
    session_id: str | None = None


@dataclass(frozen=True)
class AuditAppend:
    records: list[AuditEventIn]  # contiguous in the chain; refused whole if one is invalid


@dataclass(frozen=True)
class AuditAck:
    """Sent only after every record of the request is on disk (fdatasync)."""

    seqs: list[int]
    head_hash: str  # record_hash of the request's last record


@dataclass(frozen=True)
class AuditHead:
    seq: int
    hash: str


AUDIT_APPEND = method("audit.append", AuditAppend, AuditAck, "Append records durably.")
AUDIT_HEAD = method("audit.head", Empty, AuditHead, "Sequence number and hash of the chain head.")


# Read side, served on the dashboard's socket only (symphonyd/audit/reader.py): bounded
# queries for display and an on-demand chain verification. Nothing here can write.
AUDIT_QUERY_MAX_LIMIT = 500


@dataclass(frozen=True)
class AuditQuery:
    """Newest matching records first; every filter is optional and they combine with AND."""

    issue_id: str | None = None
    issue_identifier: str | None = None
    type: str | None = None
    since: str | None = None  # RFC 3339 UTC timestamp; records at or after it
    limit: int = 100  # 1..AUDIT_QUERY_MAX_LIMIT


@dataclass(frozen=True)
class AuditRecordView:
    seq: int
    ts: str
    type: str
    sender: dict[str, Any]
    issue_id: str | None
    issue_identifier: str | None
    session_id: str | None
    payload: dict[str, Any]
    record_hash: str


@dataclass(frozen=True)
class AuditRecords:
    records: list[AuditRecordView]
    truncated: bool  # more records matched than ``limit``


@dataclass(frozen=True)
class AuditVerifyResult:
    ok: bool
    records: int
    files: int
    head_seq: int | None
    broken_at: str | None  # "<day file>:<line>" of the first record that does not fit
    reason: str | None


@dataclass(frozen=True)
class AuditCounts:
    """Totals over the whole log, for /metrics: records by type, failed runs by error code."""

    by_type: dict[str, int]
    failures_by_reason: dict[str, int]
    unreadable_lines: int
    # Finished runs by outcome (succeeded, failed, ...), each run counted once.
    runs_by_outcome: dict[str, int] = field(default_factory=dict)
    # egress_deny decisions carried as counts in egress_summary records (the launcher writes
    # an agent's repeated decisions that way, docs/audit.md)
    egress_denies_counted: int = 0


AUDIT_QUERY = method("audit.query", AuditQuery, AuditRecords, "Read records back, newest first.")
AUDIT_VERIFY = method("audit.verify", Empty, AuditVerifyResult, "Verify the whole hash chain.")
AUDIT_COUNTS = method("audit.counts", Empty, AuditCounts, "Record counts for metrics.")
