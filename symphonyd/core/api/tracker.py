"""The tracker daemon's API: board reads, the adapter profile, agent tools, redaction.

Served by symphony-tracker on two sockets: the dispatcher's (reads, profile, health) and the
launcher's (agent tools, profile, health). Adapter failures come back as error replies whose
code is a SPEC 11.4 category (tracker_request, tracker_status, tracker_response, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from symphonyd.core.api.shared import Empty
from symphonyd.core.issue import Issue
from symphonyd.core.wire import event, method

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


# Change events (issue 21): the tracker pushes tracker.changed to the dispatcher's
# subscription on its socket when it learns that issues changed (the local tracker's
# directory watch); the dispatcher answers each with a tick, so events only make dispatch
# sooner. The poll tick stays the safety net (docs/design/0410-tracker-change-events.md).
@dataclass(frozen=True)
class TrackerChanged:
    source: str  # which event source saw it: "local_files"
    issue_ids: list[str]  # refreshed ids; empty when the source lost track of which


TRACKER_SUBSCRIBE = method(
    "tracker.subscribe", Empty, Empty, "Subscribe: the server then pushes tracker.changed."
)
TRACKER_CHANGED = event(
    "tracker.changed", TrackerChanged, "Issues changed at the tracker; a tick will see them."
)


# Webhook hints (issue 21): symphony-webhook verified a provider's signed delivery and names
# one issue; the tracker re-fetches it with its own credential and, when it is on the
# configured board, publishes tracker.changed. Nothing else of the payload crosses this
# socket (docs/design/0411-webhook-receiver.md).
HINT_MAX_REF = 128


@dataclass(frozen=True)
class TrackerHint:
    provider: str  # github, linear, gitlab, jira or asana: must be the adapter in force
    # The adapter's dispatch id: GitHub/GitLab number, Linear id, Jira numeric id, Asana gid;
    # at most HINT_MAX_REF characters.
    issue_id: str
    # GitHub "owner/name", GitLab "<project id>:<path>", Jira project key: must be the
    # configured one (none for Linear and Asana, whose fetch is scoped).
    scope: str | None = None


@dataclass(frozen=True)
class HintResult:
    refreshed: bool  # the issue is on the configured board; tracker.changed was published
    reason: str | None = None  # why not: other_provider, other_scope, not_found, bad_reference


TRACKER_HINT = method(
    "tracker.hint",
    TrackerHint,
    HintResult,
    "Re-fetch one issue a verified webhook named; publish tracker.changed if on the board.",
)
