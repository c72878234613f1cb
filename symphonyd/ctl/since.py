"""The one ``--since TIME`` parser of ``symphonyctl audit show`` and ``symphonyctl logs``.

Both commands used to take different spellings (``audit show`` parsed ``2h`` itself,
``logs`` passed the text to journalctl, which wants ``-2h``), so the same habit worked in one
and failed in the other. Now both accept the same forms and resolve them here to one instant;
``logs`` hands journalctl that instant, not the operator's text.

Accepted (times without a zone are UTC, like every timestamp symphonyd writes):

- a duration ago: ``30s``, ``30m``, ``2h``, ``7d``, also written ``-2h`` or ``2h ago``;
- ``now``, ``today`` (00:00 UTC), ``yesterday`` (00:00 UTC the day before);
- a date ``2026-01-31`` (00:00 UTC that day);
- a date and time, RFC 3339 or ISO 8601: ``2026-01-31T10:00:00Z``, ``2026-01-31 10:00``,
  ``2026-01-31T10:00+02:00``.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

HELP = (
    "30m, 2h, 7d (also -2h, '2h ago'), today, yesterday, now, YYYY-MM-DD, "
    "or an RFC 3339 time (UTC unless a zone is given)"
)
MAX_SINCE = 64
_RELATIVE = re.compile(r"-?(\d{1,9})\s*([smhd])(?:\s+ago)?\Z")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> datetime:
    """The instant ``text`` names, timezone-aware in UTC; raises ArgumentTypeError."""
    cleaned = text.strip().lower()
    if not cleaned or len(cleaned) > MAX_SINCE or not cleaned.isprintable():
        raise argparse.ArgumentTypeError("invalid_since: must be a short printable time")
    current = now().astimezone(UTC)
    midnight = current.replace(hour=0, minute=0, second=0, microsecond=0)
    keywords = {"now": current, "today": midnight, "yesterday": midnight - timedelta(days=1)}
    if cleaned in keywords:
        return keywords[cleaned]
    match = _RELATIVE.match(cleaned)
    if match:
        return current - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(cleaned.upper().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid_since: not a time symphonyctl understands: {text!r} (use {HELP})"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def audit_timestamp(text: str) -> str:
    """``--since`` as the audit writer's timestamp format, for string comparison."""
    return parse_since(text).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def journal_timestamp(text: str) -> str:
    """``--since`` in a form journalctl reads exactly (systemd.time(7), whole seconds)."""
    return parse_since(text).strftime("%Y-%m-%d %H:%M:%S UTC")
