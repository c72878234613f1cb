"""What the writer does to a client's event before it is sequenced: the content rules.

- the type must be a known client event type (``genesis``/``recovered`` are the writer's);
- strings become valid UTF-8 (lone surrogates replaced), floats become decimal strings so
  the canonical form is reproducible in any language, nesting is bounded;
- a raw ``prompt`` in a ``prompt_sent`` payload is replaced by its hash and a preview;
- configured secrets and well-known token shapes are scrubbed;
- long strings are cut and the whole payload is capped, both with explicit markers.

Pure: no I/O, so the rules are tested directly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from symphonyd.core import audit_events
from symphonyd.core.api.audit import AuditEventIn
from symphonyd.core.audit_chain import canonical_bytes
from symphonyd.core.config_extensions import MAX_PREVIEW_CHARS
from symphonyd.core.errors import ValidationError
from symphonyd.core.redact import Redactor

DEFAULT_MAX_RECORD_BYTES = 64 * 1024
MAX_STRING_CHARS = 8 * 1024
MAX_ID_CHARS = 200
_MAX_DEPTH = 24
# Room kept for the writer's own fields (seq, ts, sender, ids, both hashes).
_ENVELOPE_BYTES = 2048
_KEPT_KEYS = 32


@dataclass(frozen=True)
class ShapedEvent:
    """A client event after the content rules, ready to be given a sequence number."""

    type: str
    payload: dict[str, Any]
    issue_id: str | None = None
    issue_identifier: str | None = None
    session_id: str | None = None


def _valid_text(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return value


def _cut(value: str, limit: int) -> str:
    if len(value) <= limit:
        return value
    return f"{value[:limit]}…[truncated {len(value) - limit} chars]"


def _plain(value: Any, depth: int) -> Any:
    """JSON value with reproducible scalars and bounded depth and string length."""
    if depth > _MAX_DEPTH:
        return "[truncated: nested too deeply]"
    if isinstance(value, str):
        return _cut(_valid_text(value), MAX_STRING_CHARS)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return {
            _cut(_valid_text(str(k)), MAX_ID_CHARS): _plain(v, depth + 1) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_plain(v, depth + 1) for v in value]
    return _cut(_valid_text(repr(value)), MAX_ID_CHARS)


def _cap(payload: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    data = canonical_bytes(payload)
    if len(data) <= max_bytes:
        return payload
    return {
        "_truncated": {
            "original_bytes": len(data),
            "payload_sha256": hashlib.sha256(data).hexdigest(),
            "keys": sorted(payload)[:_KEPT_KEYS],
        }
    }


def _ident(value: str | None, redactor: Redactor) -> str | None:
    if value is None:
        return None
    return _cut(redactor.text(_valid_text(value)), MAX_ID_CHARS)


# Types whose ``preview`` is scrubbed again and cut to MAX_PREVIEW_CHARS by the writer.
_PREVIEWED = frozenset({audit_events.PROMPT_SENT, audit_events.AGENT_MESSAGE, audit_events.COMMAND})


def shape(
    event: AuditEventIn,
    redactor: Redactor,
    *,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> ShapedEvent:
    """Apply the content rules or raise ValidationError (code ``invalid_params``)."""
    if event.type not in audit_events.CLIENT_TYPES:
        raise ValidationError(
            f"unknown or writer-only audit event type {event.type[:64]!r}", code="invalid_params"
        )
    payload = dict(event.payload)
    if event.type == audit_events.PROMPT_SENT and isinstance(payload.get("prompt"), str):
        # Never store a raw prompt, whatever the sender did.
        payload.update(audit_events.prompt_digest(payload.pop("prompt"), redactor))
    if event.type in _PREVIEWED and isinstance(payload.get("preview"), str):
        payload["preview"] = redactor.text(payload["preview"])[:MAX_PREVIEW_CHARS]
    # Scrub before cutting so a secret straddling a cut is still recognised whole.
    clean = _plain(redactor.value(payload), 0)
    return ShapedEvent(
        type=event.type,
        payload=_cap(clean, max(256, max_record_bytes - _ENVELOPE_BYTES)),
        issue_id=_ident(event.issue_id, redactor),
        issue_identifier=_ident(event.issue_identifier, redactor),
        session_id=_ident(event.session_id, redactor),
    )
