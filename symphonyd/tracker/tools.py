"""Host-side agent tools shared by every adapter (SPEC 10.5, 11.5).

The agent names no issue: every tool acts on the run's issue, which the launcher passes as
context. Arguments are validated here before any provider call; every failure is a
``ToolResult(success=False, output={"error": {"code", "message"}})`` and the session goes on.
Writes produce a ``tracker_write`` audit event through :data:`AuditHook`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from symphonyd.core import audit_events
from symphonyd.core.api.audit import AuditEventIn
from symphonyd.core.api.tracker import ToolResult, ToolSpec
from symphonyd.core.errors import SymphonyError
from symphonyd.core.issue import Issue, state_key

log = logging.getLogger(__name__)

READ = "tracker_read_issue"
COMMENT = "tracker_comment"
MOVE = "tracker_move"
MAX_COMMENT_CHARS = 65536

# Sends one audit record; the daemon wires it to audit.append (see daemon.py).
AuditHook = Callable[[AuditEventIn], Awaitable[None]]

READ_SPEC = ToolSpec(
    READ,
    "Read the current tracker snapshot of the issue this run works on.",
    {"type": "object", "properties": {}, "additionalProperties": False},
)
COMMENT_SPEC = ToolSpec(
    COMMENT,
    "Add a Markdown comment to the issue this run works on.",
    {
        "type": "object",
        "properties": {"body": {"type": "string", "minLength": 1, "maxLength": MAX_COMMENT_CHARS}},
        "required": ["body"],
        "additionalProperties": False,
    },
)


def move_spec(states: tuple[str, ...]) -> ToolSpec:
    return ToolSpec(
        MOVE,
        "Move the issue this run works on to another workflow state.",
        {
            "type": "object",
            "properties": {"state": {"type": "string", "enum": list(states)}},
            "required": ["state"],
            "additionalProperties": False,
        },
    )


class ToolFailure(SymphonyError):
    """A tool call that cannot run; its code goes back to the agent."""

    code = "invalid_arguments"


def failure(code: str, message: str) -> ToolResult:
    return ToolResult(success=False, output={"error": {"code": code, "message": message}})


def arguments_object(arguments: Any, allowed: set[str]) -> Mapping[str, Any]:
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, Mapping):
        raise ToolFailure("tool arguments must be a JSON object")
    extra = sorted(str(k) for k in arguments if k not in allowed)
    if extra:
        raise ToolFailure(f"unexpected argument(s): {', '.join(extra)}")
    return arguments


def comment_body(arguments: Any) -> str:
    args = arguments_object(arguments, {"body"})
    body = args.get("body")
    if not isinstance(body, str) or not body.strip():
        raise ToolFailure("'body' must be a non-empty string")
    if len(body) > MAX_COMMENT_CHARS:
        raise ToolFailure(f"'body' is longer than {MAX_COMMENT_CHARS} characters")
    return body


def target_state(arguments: Any, allowed: tuple[str, ...]) -> str:
    """The allowed state the agent asked for, spelled as configured."""
    args = arguments_object(arguments, {"state"})
    state = args.get("state")
    if not isinstance(state, str) or not state.strip():
        raise ToolFailure("'state' must be a non-empty string")
    for candidate in allowed:
        if state_key(candidate) == state_key(state):
            return candidate
    raise ToolFailure(
        f"state {state.strip()[:80]!r} is not one the workflow allows tools to move to "
        f"({', '.join(allowed) or 'none configured'})",
        code="state_not_allowed",
    )


def write_event(
    kind: str, issue: Issue, session_id: str | None, action: str, ok: bool, **detail: Any
) -> AuditEventIn:
    event = audit_events.tracker_write(
        issue.id, issue.identifier, action, detail={"tracker": kind, "ok": ok, **detail}
    )
    return dataclasses.replace(event, session_id=session_id)


def comment_digest(body: str) -> dict[str, Any]:
    """What the audit log keeps of a comment: its hash and size, never the text."""
    return {"comment_sha256": hashlib.sha256(body.encode()).hexdigest(), "comment_chars": len(body)}


async def log_only_audit(event: AuditEventIn) -> None:
    detail = event.payload.get("detail") or {}
    log.info(
        "tracker write %s on %s ok=%s",
        event.payload.get("operation"),
        event.issue_identifier,
        detail.get("ok"),
    )
