"""What every agent runtime offers the worker: one session, many turns, events out.

``AgentSession`` is the common interface of the Codex app-server client and the Claude Code
client. Events are ``AgentEvent`` values that become ``RunEvent`` IPC messages once the
launcher stamps the run and issue ids on them. Failures carry the SPEC 10.6 error names.
"""

from __future__ import annotations

import abc
import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal

from symphonyd.core.api.launcher import RunEvent, RunEventName, RunOutcome
from symphonyd.core.api.shared import TokenTotals
from symphonyd.core.api.tracker import ToolResult
from symphonyd.core.errors import SymphonyError

# SPEC 10.6 normalised categories (the Claude client reuses them; see docs/agents.md).
AGENT_ERROR_CODES = (
    "codex_not_found",
    "claude_not_found",
    "invalid_workspace_cwd",
    "response_timeout",
    "turn_timeout",
    "port_exit",
    "response_error",
    "turn_failed",
    "turn_cancelled",
    "turn_input_required",
)

MESSAGE_LIMIT = 240  # characters of agent text an event may carry
# Characters of an agent message or command a transcript item may carry before redaction;
# above the largest audit preview so the preview is cut after the secrets are scrubbed.
ITEM_LIMIT = 16_000


def bounded_item(kind: str, text: str) -> tuple[str, str]:
    return kind, text[:ITEM_LIMIT]


class AgentError(SymphonyError):
    """The session cannot continue; ``error_code`` is one of AGENT_ERROR_CODES."""

    code = "turn_failed"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def short(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """One line of at most ``limit`` characters: events carry summaries, never payloads."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True)
class AgentEvent:
    event: RunEventName
    at: str = field(default_factory=utc_now)
    session_id: str | None = None
    turn_count: int | None = None
    tokens: TokenTotals | None = None
    rate_limits: dict[str, Any] | None = None
    message: str | None = None
    pid: int | None = None
    # A transcript entry for the audit log, ("agent_message" | "command", text of at most
    # ITEM_LIMIT characters): never sent over IPC, the worker records it (launcher/transcript.py).
    item: tuple[str, str] | None = None

    def to_run_event(self, run_id: str, issue_id: str) -> RunEvent:
        """The IPC event: every field of this one, by name, plus the run and issue ids."""
        return RunEvent(run_id, issue_id, **{name: getattr(self, name) for name in _FIELDS})


# All of them but ``item`` are RunEvent fields too.
_FIELDS = tuple(f.name for f in fields(AgentEvent) if f.name != "item")


TurnStatus = Literal["completed", "failed", "cancelled", "input_required", "timed_out"]

# How a turn status becomes a run outcome when the worker stops on it.
_RUN_STATUS: dict[
    TurnStatus, Literal["succeeded", "failed", "cancelled", "blocked", "timed_out"]
] = {
    "completed": "succeeded",
    "failed": "failed",
    "cancelled": "cancelled",
    "input_required": "blocked",
    "timed_out": "timed_out",
}


_TURN_EVENT: dict[TurnStatus, RunEventName] = {
    "completed": "turn_completed",
    "failed": "turn_failed",
    "cancelled": "turn_cancelled",
    "input_required": "turn_input_required",
    "timed_out": "turn_failed",
}


@dataclass(frozen=True)
class TurnResult:
    status: TurnStatus
    session_id: str | None = None
    error_code: str | None = None  # one of AGENT_ERROR_CODES when status != completed
    error: str | None = None
    last_message: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    @property
    def event_name(self) -> RunEventName:
        """The run event that reports this turn's end."""
        return _TURN_EVENT[self.status]

    def outcome(self) -> RunOutcome:
        return RunOutcome(
            status=_RUN_STATUS[self.status], error_code=self.error_code, error=self.error
        )


Decision = Literal["accept", "decline"]


@dataclass(frozen=True)
class ApprovalPolicy:
    """How the client answers the agent's own approval prompts (docs/agents.md).

    The kernel sandbox built by the launcher is the real boundary, so the default accepts
    commands and file changes; an operator who wants the agent's own sandbox to be final sets
    ``decline``. User-input requests always end the turn as ``turn_input_required``.
    """

    command: Decision = "accept"
    file_change: Decision = "accept"


@dataclass(frozen=True)
class ToolInvocation:
    tool: str
    arguments: Any
    call_id: str | None
    session_id: str | None


ToolExecutor = Callable[[ToolInvocation], Awaitable[ToolResult]]
EventSink = Callable[[AgentEvent], None]


def result_text(result: ToolResult) -> str:
    """A tool result as the text the model reads (JSON unless it already is text)."""
    if isinstance(result.output, str):
        return result.output
    try:
        return json.dumps(result.output, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        return "null"


async def execute_tool(
    executor: ToolExecutor, invocation: ToolInvocation, limit_s: float
) -> ToolResult:
    """One host-side tool call, bounded; a timeout or an executor failure is a failed result
    the agent reads, never an exception that ends its session."""
    try:
        return await asyncio.wait_for(executor(invocation), limit_s)
    except TimeoutError:
        return ToolResult(False, {"error": {"code": "tool_timeout", "message": "tool timed out"}})
    except Exception as exc:  # the executor is outside this module; its failure is data
        return ToolResult(
            False, {"error": {"code": "tool_error", "message": exc.__class__.__name__}}
        )


@dataclass(frozen=True)
class Timeouts:
    """SPEC 5.3.6 / 10.6, in seconds. ``stall`` <= 0 disables stall detection."""

    read: float = 5.0
    turn: float = 3600.0
    stall: float = 300.0
    tool: float = 120.0  # bound on one host-side tool call so the agent never waits forever

    @classmethod
    def from_ms(cls, read_ms: int, turn_ms: int, stall_ms: int, tool_ms: int = 120_000) -> Timeouts:
        return cls(read_ms / 1000, turn_ms / 1000, stall_ms / 1000, tool_ms / 1000)


class AgentSession(abc.ABC):
    """One live agent process bound to one workspace."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Launch and handshake; raises AgentError (startup_failed is emitted by the caller)."""

    @abc.abstractmethod
    async def run_turn(self, prompt: str, *, title: str | None = None) -> TurnResult:
        """Send one turn and wait for its end; never raises for agent-side failures."""

    @abc.abstractmethod
    async def interrupt(self) -> None:
        """Ask the agent to end the current turn (it then ends as cancelled)."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """End the process; idempotent."""

    @property
    @abc.abstractmethod
    def pid(self) -> int | None: ...

    @property
    @abc.abstractmethod
    def tokens(self) -> TokenTotals: ...

    @abc.abstractmethod
    def seconds_since_activity(self) -> float:
        """Time since the agent last wrote anything: the orchestrator's stall signal."""

    def is_stalled(self, stall_timeout: float) -> bool:
        return stall_timeout > 0 and self.seconds_since_activity() > stall_timeout
