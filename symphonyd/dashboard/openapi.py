"""The OpenAPI 3.0 document of ``/api/v1`` (served at ``/api/v1/openapi.json``).

Hand-written next to the handlers; tests/dashboard/test_openapi.py keeps it in step with the
router and runs schemathesis against a live dashboard to check responses match it.
"""

from __future__ import annotations

from typing import Any

from symphonyd import __version__
from symphonyd.core.api.audit import AUDIT_QUERY_MAX_LIMIT

MAX_REASON_CHARS = 200
# What a pause from the dashboard says when its reason is absent or blank.
DEFAULT_PAUSE_REASON = "paused from the dashboard"
# Tracker identifiers look like ABC-123; the server accepts any, the document names the
# common form so generated examples do not collide with fixed paths such as /api/v1/state.
IDENTIFIER_PATTERN = r"^[A-Z][A-Z0-9]{0,9}-[1-9][0-9]{0,6}$"


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def _obj(props: dict[str, Any], *, required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": list(props) if required is None else required,
    }


STR = {"type": "string"}
INT = {"type": "integer"}
NSTR = _nullable(STR)
NINT = _nullable(INT)
REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": REF + name}


SCHEMAS: dict[str, Any] = {
    "Error": _obj({"error": _obj({"code": STR, "message": STR})}),
    "Tokens": _obj({"input_tokens": INT, "output_tokens": INT, "total_tokens": INT}),
    "RunningRow": _obj(
        {
            "issue_id": STR,
            "issue_identifier": STR,
            "issue_url": NSTR,
            "state": STR,
            "session_id": NSTR,
            "turn_count": INT,
            "last_event": NSTR,
            "last_message": STR,
            "started_at": STR,
            "last_event_at": NSTR,
            "tokens": _ref("Tokens"),
            "attempt": NINT,
            "run_id": STR,
            "workspace_path": NSTR,
            "issue_title": NSTR,
            "host": NSTR,
        }
    ),
    "RetryRow": _obj(
        {
            "issue_id": STR,
            "issue_identifier": STR,
            "issue_url": NSTR,
            "attempt": INT,
            "due_at": STR,
            "error": NSTR,
            "kind": {"type": "string", "enum": ["continuation", "failure", "requeue"]},
            "host": NSTR,
        }
    ),
    "HoldRow": _obj(
        {
            "issue_id": STR,
            "issue_identifier": STR,
            "kind": {"type": "string", "enum": ["stopped", "blocked", "budget"]},
            "reason": STR,
            "since": STR,
            "by_uid": NINT,
            "released_by_tracker_change": {"type": "boolean"},
        }
    ),
    "State": _obj(
        {
            "generated_at": STR,
            "counts": _obj({"running": INT, "retrying": INT, "held": INT, "blocked": INT}),
            "running": {"type": "array", "items": _ref("RunningRow")},
            "retrying": {"type": "array", "items": _ref("RetryRow")},
            "codex_totals": _obj(
                {
                    "input_tokens": INT,
                    "output_tokens": INT,
                    "total_tokens": INT,
                    "seconds_running": {"type": "number"},
                }
            ),
            "rate_limits": _nullable({"type": "object"}),
            "held": {"type": "array", "items": _ref("HoldRow")},
            "pause": _obj(
                {
                    "paused": {"type": "boolean"},
                    "reasons": {
                        "type": "array",
                        "items": _obj(
                            {
                                "code": STR,
                                "message": STR,
                                "since": STR,
                                "by_uid": NINT,
                                "until": NSTR,
                            }
                        ),
                    },
                }
            ),
            "budgets": _obj(
                {"tokens_per_issue": NINT, "tokens_per_day": NINT, "day": STR, "tokens_today": INT}
            ),
            "daemons": {
                "type": "array",
                "items": _obj(
                    {"daemon": STR, "ok": {"type": "boolean"}, "detail": NSTR, "checked_at": NSTR}
                ),
            },  # fmt: skip
            "config": _obj(
                {
                    "ok": {"type": "boolean"},
                    "path": NSTR,
                    "fingerprint": NSTR,
                    "loaded_at": NSTR,
                    "error": NSTR,
                }
            ),  # fmt: skip
            "poll_interval_ms": INT,
            "max_concurrent_agents": INT,
        }
    ),
    "Issue": _obj(
        {
            "issue_identifier": STR,
            "issue_id": STR,
            "status": {
                "type": "string",
                "enum": ["running", "retrying", "stopped", "blocked", "budget", "idle"],
            },
            "workspace": _obj({"path": NSTR}),
            "attempts": _obj({"restart_count": INT, "current_retry_attempt": NINT}),
            "running": _nullable(
                _obj(
                    {
                        "session_id": NSTR,
                        "turn_count": INT,
                        "state": STR,
                        "started_at": STR,
                        "last_event": NSTR,
                        "last_message": STR,
                        "last_event_at": NSTR,
                        "tokens": _ref("Tokens"),
                        "host": NSTR,
                    }
                )
            ),
            "retry": _nullable(_ref("RetryRow")),
            "logs": _obj({"codex_session_logs": {"type": "array", "items": {"type": "object"}}}),
            "recent_events": {
                "type": "array",
                "items": _obj({"at": STR, "event": STR, "message": NSTR}),
            },
            "last_error": NSTR,
            "tracked": _obj({"hold": _nullable(_ref("HoldRow")), "tokens_used": INT}),
        }
    ),
    "Refresh": _obj(
        {
            "queued": {"type": "boolean"},
            "coalesced": {"type": "boolean"},
            "requested_at": STR,
            "operations": {"type": "array", "items": STR},
        }
    ),
    "Control": _obj({"ok": {"type": "boolean"}, "message": STR}),
    "AuditRecords": _obj(
        {
            "records": {
                "type": "array",
                "items": _obj(
                    {
                        "seq": INT,
                        "ts": STR,
                        "type": STR,
                        "sender": {"type": "object"},
                        "issue_id": NSTR,
                        "issue_identifier": NSTR,
                        "session_id": NSTR,
                        "payload": {"type": "object"},
                        "record_hash": STR,
                    }
                ),
            },
            "truncated": {"type": "boolean"},
        }
    ),
    "AuditVerify": _obj(
        {
            "ok": {"type": "boolean"},
            "records": INT,
            "files": INT,
            "head_seq": NINT,
            "broken_at": NSTR,
            "reason": NSTR,
        }
    ),
    "Csrf": _obj({"header": STR, "token": STR}),
}


def _json(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {
        400: "Malformed body or parameters",
        403: "Origin or CSRF token refused",
        404: "Unknown issue",
        405: "Wrong method",
        409: "The issue is not in a state this action applies to (e.g. not held)",
        413: "Body too large",
        421: "Host not allowed",
        502: "The dispatcher refused or failed the request",
        503: "Dispatcher or audit writer unavailable",
    }
    return {str(s): _json("Error", text[s]) for s in statuses}


_GET_ERRORS = (421, 503)
_POST_ERRORS = (400, 403, 404, 409, 413, 421, 502, 503)
_CSRF_PARAM = {
    "name": "X-CSRF-Token",
    "in": "header",
    "required": True,
    "schema": STR,
    "description": "The token from GET /api/v1/csrf (or the page's csrf-token meta tag).",
}


def _post(
    summary: str, result: str, status: int, body: dict[str, Any] | None, *, required: bool = False
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "parameters": [_CSRF_PARAM],
        "responses": {str(status): _json(result, summary), **_errors(*_POST_ERRORS)},
    }
    if body is not None:
        op["requestBody"] = {
            "required": required,
            "content": {"application/json": {"schema": body}},
        }
    return {"post": op}


_IDENT_BODY = {
    "type": "object",
    "properties": {"identifier": {"type": "string", "pattern": IDENTIFIER_PATTERN}},
    "required": ["identifier"],
    "additionalProperties": False,
}

PATHS: dict[str, Any] = {
    "/api/v1/state": {
        "get": {
            "summary": "Current orchestrator state (SPEC 13.7.2)",
            "responses": {"200": _json("State", "State"), **_errors(*_GET_ERRORS)},
        }
    },
    "/api/v1/refresh": _post("Queue a poll and reconcile now", "Refresh", 202, {"type": "object"}),
    "/api/v1/pause": _post(
        "Pause dispatching new runs",
        "Control",
        200,
        {
            "type": "object",
            "properties": {
                "reason": {
                    "type": "string",
                    "maxLength": MAX_REASON_CHARS,
                    "description": "Shown with the pause. Absent, or nothing printable but"
                    f' spaces: "{DEFAULT_PAUSE_REASON}".',
                }
            },
            "additionalProperties": False,
        },
    ),
    "/api/v1/resume": _post("Clear the operator pause", "Control", 200, {"type": "object"}),
    "/api/v1/stop": _post(
        "Stop one issue's run and hold it", "Control", 200, _IDENT_BODY, required=True
    ),
    "/api/v1/release": _post("Release a held issue", "Control", 200, _IDENT_BODY, required=True),
    "/api/v1/audit": {
        "get": {
            "summary": "Audit records, newest first",
            "parameters": [
                {"name": "type", "in": "query", "schema": STR},
                {"name": "issue", "in": "query", "schema": STR},
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": AUDIT_QUERY_MAX_LIMIT},
                },
            ],
            "responses": {"200": _json("AuditRecords", "Records"), **_errors(400, *_GET_ERRORS)},
        }
    },
    "/api/v1/audit/verify": _post("Verify the audit hash chain", "AuditVerify", 200, None),
    "/api/v1/csrf": {
        "get": {
            "summary": "The CSRF token to send with state-changing requests",
            "responses": {"200": _json("Csrf", "Token"), **_errors(421)},
        }
    },
    "/api/v1/openapi.json": {
        "get": {
            "summary": "This document",
            "responses": {
                "200": {"description": "OpenAPI", "content": {"application/json": {}}},
                **_errors(421),
            },
        }
    },
    "/api/v1/{issue_identifier}": {
        "get": {
            "summary": "One issue's runtime view (SPEC 13.7.2)",
            "parameters": [
                {
                    "name": "issue_identifier",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": IDENTIFIER_PATTERN},
                }
            ],
            "responses": {"200": _json("Issue", "Issue"), **_errors(404, *_GET_ERRORS)},
        }
    },
}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "symphonyd dashboard API",
            "version": __version__,
            "description": "Observability and control of symphonyd; see docs/dashboard.md.",
        },
        "paths": PATHS,
        "components": {"schemas": SCHEMAS},
    }
