"""Structured logging: stable ``key=value`` lines (SPEC 13.1), journald fields when available.

``log_event(log, "dispatch", outcome="started", issue_id=...)`` logs
``event=dispatch outcome=started issue_id=...``. Values are quoted when they hold spaces,
quotes or ``=``, and control characters (newlines included) are escaped, so a hostile issue
title cannot forge a second log line.
"""

from __future__ import annotations

import logging
import re
from typing import Any

_BARE = re.compile(r"[A-Za-z0-9_.:/@+\-,]+")
_KEY = re.compile(r"[a-z][a-z0-9_]*")
FIELDS_ATTR = "symphony_fields"


def _escape(text: str) -> str:
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 or ch in "\u2028\u2029":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def format_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if _BARE.fullmatch(text):
        return text
    return f'"{_escape(text)}"'


def format_kv(fields: dict[str, Any]) -> str:
    """``k=v`` pairs in the given order; keys that are not ``[a-z][a-z0-9_]*`` are escaped."""
    parts = []
    for key, value in fields.items():
        safe_key = key if _KEY.fullmatch(key) else "bad_key_" + format_value(key)
        parts.append(f"{safe_key}={format_value(value)}")
    return " ".join(parts)


def log_event(
    logger: logging.Logger, event: str, *, level: int = logging.INFO, **fields: Any
) -> None:
    """Log one event as ``event=<event> k=v ...``; the fields also become journal fields."""
    if not logger.isEnabledFor(level):
        return
    present = {k: v for k, v in fields.items() if v is not None}
    message = format_kv({"event": event, **present})
    # "%s" keeps user text out of the format string so a stray "%" cannot break logging.
    logger.log(level, "%s", message, extra={FIELDS_ATTR: {"event": event, **present}}, stacklevel=2)
