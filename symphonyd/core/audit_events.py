"""Audit event types and payload builders every daemon uses to describe a side effect.

Daemons build :class:`~symphonyd.core.api.audit.AuditEventIn` values here and send them with
``audit.append``; the audit writer stamps sequence, time and sender identity. Builders keep
payloads small and uniform, and never carry a raw prompt: :func:`prompt_sent` stores the
prompt's SHA-256 and a scrubbed preview. The writer enforces the same rules again, so a
sender that skips these helpers cannot store more than they would.
"""

from __future__ import annotations

import hashlib
from typing import Any

from symphonyd.core.api.audit import AuditEventIn
from symphonyd.core.redact import NO_SECRETS, Redactor

PREVIEW_CHARS = 500

GENESIS = "genesis"
RECOVERED = "recovered"
DISPATCH = "dispatch"
RUN_FINISHED = "run_finished"
PROMPT_SENT = "prompt_sent"
TOOL_CALL = "tool_call"
# The agent's own words and the commands it ran: bounded, scrubbed previews (launcher
# transcript.py), at most audit.transcript_records per run, the rest counted in a summary.
AGENT_MESSAGE = "agent_message"
COMMAND = "command"
TRANSCRIPT_SUMMARY = "transcript_summary"
FILE_CHANGE = "file_change"
TRACKER_WRITE = "tracker_write"
EGRESS_ALLOW = "egress_allow"
EGRESS_DENY = "egress_deny"
# Counts of an agent's repeated egress decisions per interval (launcher/sandbox/audit_limit.py).
EGRESS_SUMMARY = "egress_summary"
PAUSE = "pause"
RESUME = "resume"
RELEASE = "release"  # one issue's hold lifted (operator or a tracker change)
STOP = "stop"
HOST_DRAIN = "host_drain"  # an operator took a worker host out of (or back into) dispatch
CONFIG_RELOAD = "config_reload"
BUDGET_HIT = "budget_hit"
SANDBOX_FAILURE = "sandbox_failure"
SANDBOX_READY = "sandbox_ready"
SANDBOX_TEARDOWN = "sandbox_teardown"
SANDBOX_RECONCILED = "sandbox_reconciled"
WEBHOOK_DELIVERY = "webhook_delivery"  # symphony-webhook: one delivery and its outcome
WORKSPACE_REMOVE = "workspace_remove"  # age cleanup: decided (before), then its outcome

# Types only the writer itself produces; a client sending one is refused.
WRITER_TYPES = frozenset({GENESIS, RECOVERED})
CLIENT_TYPES = frozenset(
    {
        DISPATCH,
        RUN_FINISHED,
        PROMPT_SENT,
        TOOL_CALL,
        AGENT_MESSAGE,
        COMMAND,
        TRANSCRIPT_SUMMARY,
        FILE_CHANGE,
        TRACKER_WRITE,
        EGRESS_ALLOW,
        EGRESS_DENY,
        EGRESS_SUMMARY,
        PAUSE,
        RESUME,
        RELEASE,
        STOP,
        HOST_DRAIN,
        CONFIG_RELOAD,
        BUDGET_HIT,
        SANDBOX_FAILURE,
        SANDBOX_READY,
        SANDBOX_TEARDOWN,
        SANDBOX_RECONCILED,
        WORKSPACE_REMOVE,
        WEBHOOK_DELIVERY,
    }
)
EVENT_TYPES = WRITER_TYPES | CLIENT_TYPES


def prompt_digest(prompt: str, redactor: Redactor = NO_SECRETS) -> dict[str, Any]:
    """SHA-256 of the exact prompt plus a scrubbed preview of at most PREVIEW_CHARS.

    The preview is scrubbed *before* it is cut, so a secret straddling the cut is still
    recognised whole.
    """
    raw = prompt.encode("utf-8", "surrogatepass")
    preview = redactor.text(prompt)
    return {
        "prompt_sha256": hashlib.sha256(raw).hexdigest(),
        "prompt_chars": len(prompt),
        "preview": preview[:PREVIEW_CHARS],
        "preview_truncated": len(preview) > PREVIEW_CHARS,
    }


def _event(
    kind: str,
    payload: dict[str, Any],
    *,
    issue_id: str | None = None,
    issue_identifier: str | None = None,
    session_id: str | None = None,
) -> AuditEventIn:
    return AuditEventIn(
        type=kind,
        payload={k: v for k, v in payload.items() if v is not None},
        issue_id=issue_id,
        issue_identifier=issue_identifier,
        session_id=session_id,
    )


def dispatch(issue_id: str, identifier: str, run_id: str, attempt: int | None) -> AuditEventIn:
    return _event(
        DISPATCH,
        {"run_id": run_id, "attempt": attempt},
        issue_id=issue_id,
        issue_identifier=identifier,
    )


def run_finished(
    issue_id: str,
    identifier: str,
    run_id: str,
    status: str,
    *,
    error_code: str | None = None,
    session_id: str | None = None,
    turns: int | None = None,
    total_tokens: int | None = None,
) -> AuditEventIn:
    return _event(
        RUN_FINISHED,
        {
            "run_id": run_id,
            "outcome": status,
            "error_code": error_code,
            "turns": turns,
            "total_tokens": total_tokens,
        },
        issue_id=issue_id,
        issue_identifier=identifier,
        session_id=session_id,
    )


def prompt_sent(
    issue_id: str,
    identifier: str,
    prompt: str,
    *,
    redactor: Redactor = NO_SECRETS,
    session_id: str | None = None,
    turn: int | None = None,
) -> AuditEventIn:
    return _event(
        PROMPT_SENT,
        {**prompt_digest(prompt, redactor), "turn": turn},
        issue_id=issue_id,
        issue_identifier=identifier,
        session_id=session_id,
    )


def tool_call(
    issue_id: str,
    identifier: str,
    tool: str,
    success: bool,
    *,
    arguments: Any = None,
    session_id: str | None = None,
    redactor: Redactor = NO_SECRETS,
) -> AuditEventIn:
    return _event(
        TOOL_CALL,
        {"tool": tool, "success": success, "arguments": redactor.value(arguments)},
        issue_id=issue_id,
        issue_identifier=identifier,
        session_id=session_id,
    )


def file_change(
    issue_id: str, identifier: str, path: str, change: str, *, session_id: str | None = None
) -> AuditEventIn:
    return _event(
        FILE_CHANGE,
        {"path": path, "change": change},
        issue_id=issue_id,
        issue_identifier=identifier,
        session_id=session_id,
    )


def tracker_write(
    issue_id: str, identifier: str, operation: str, *, detail: dict[str, Any] | None = None
) -> AuditEventIn:
    return _event(
        TRACKER_WRITE,
        {"operation": operation, "detail": detail},
        issue_id=issue_id,
        issue_identifier=identifier,
    )


def egress(
    allowed: bool,
    host: str,
    port: int | None,
    *,
    issue_id: str | None = None,
    identifier: str | None = None,
    reason: str | None = None,
) -> AuditEventIn:
    return _event(
        EGRESS_ALLOW if allowed else EGRESS_DENY,
        {"host": host, "port": port, "reason": reason},
        issue_id=issue_id,
        issue_identifier=identifier,
    )


def operator_action(
    kind: str, *, operator_uid: int | None, reason: str | None = None, issue_id: str | None = None
) -> AuditEventIn:
    """pause, resume, release or stop; ``operator_uid`` is the peer uid the dispatcher saw."""
    if kind not in (PAUSE, RESUME, RELEASE, STOP):
        raise ValueError(f"not an operator action: {kind}")
    return _event(kind, {"operator_uid": operator_uid, "reason": reason}, issue_id=issue_id)


def host_drain(host: str, *, drained: bool, operator_uid: int | None, running: int) -> AuditEventIn:
    """``symphonyctl hosts drain|undrain``: the host, the new state, who, runs left in flight."""
    return _event(
        HOST_DRAIN,
        {"host": host, "drained": drained, "operator_uid": operator_uid, "running": running},
    )


def config_reload(
    path: str, fingerprint: str, ok: bool, *, error: str | None = None
) -> AuditEventIn:
    return _event(
        CONFIG_RELOAD, {"path": path, "fingerprint": fingerprint, "ok": ok, "error": error}
    )


def budget_hit(kind: str, limit: int, used: int, *, issue_id: str | None = None) -> AuditEventIn:
    return _event(BUDGET_HIT, {"budget": kind, "limit": limit, "used": used}, issue_id=issue_id)


def sandbox_failure(
    issue_id: str, identifier: str, stage: str, error: str, *, run_id: str | None = None
) -> AuditEventIn:
    return _event(
        SANDBOX_FAILURE,
        {"stage": stage, "error": error, "run_id": run_id},
        issue_id=issue_id,
        issue_identifier=identifier,
    )


def workspace_remove(
    issue_id: str, identifier: str, outcome: str, *, reason: str, detail: dict[str, Any]
) -> AuditEventIn:
    """One step of an automatic workspace removal: ``requested`` (written before anything
    is deleted) and then ``removed``, ``kept`` or ``failed``."""
    return _event(
        WORKSPACE_REMOVE,
        {"outcome": outcome, "reason": reason, **detail},
        issue_id=issue_id,
        issue_identifier=identifier,
    )


def webhook_delivery(
    provider: str, delivery: str | None, outcome: str, status: int, reason: str
) -> AuditEventIn:
    """One webhook delivery the receiver answered: accepted, ignored or refused (and why)."""
    return _event(
        WEBHOOK_DELIVERY,
        {"provider": provider, "delivery": delivery, "outcome": outcome, "status": status,
         "reason": reason},
    )  # fmt: skip
