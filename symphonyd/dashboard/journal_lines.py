"""One issue's journal lines for the issue page, read with python3-systemd's journal reader.

The daemons log ``issue_identifier`` and ``issue_id`` as the journal fields
``ISSUE_IDENTIFIER`` and ``ISSUE_ID`` (runtime/logging.py). The match is the one
``symphonyctl logs`` uses: those fields, and only entries of the suite's own units, so no
other program can put lines on the page by writing the same field. At most ``MAX_LINES``
of the newest entries are read, each message cut to ``MESSAGE_CHARS``; the page escapes
them. The unit reads the journal through ``SupplementaryGroups=systemd-journal``; where no
journal file is readable (not under systemd, a test) :func:`read_issue_lines` returns None
and the page says so (docs/design/0956).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from symphonyd.core.sockets import SERVICES, service_unit
from symphonyd.runtime.logging import journal_field_name

MAX_LINES = 200
MESSAGE_CHARS = 500
IDENTIFIER_FIELD = journal_field_name("issue_identifier") or "ISSUE_IDENTIFIER"
ID_FIELD = journal_field_name("issue_id") or "ISSUE_ID"


@dataclass(frozen=True)
class JournalLine:
    at: datetime  # UTC
    unit: str
    priority: int | None
    message: str


def _text(value: Any, limit: int) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value) if value is not None else ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _utc(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, UTC)


def read_issue_lines(
    identifier: str, issue_id: str | None, *, limit: int = MAX_LINES
) -> list[JournalLine] | None:
    """The issue's newest ``limit`` lines, oldest first; None when no journal is readable.

    Blocking (file reads): call it in a thread.
    """
    try:
        from systemd import journal
    except ImportError:
        return None
    try:
        reader = journal.Reader(converters={"__REALTIME_TIMESTAMP": _utc})
    except OSError:
        return None
    try:
        if not (reader.has_runtime_files() or reader.has_persistent_files()):
            return None
        units = [service_unit(d) for d in SERVICES]
        fields = [(IDENTIFIER_FIELD, identifier)]
        if issue_id:
            fields.append((ID_FIELD, issue_id))
        for n, (field, value) in enumerate(fields):
            if n:
                reader.add_disjunction()
            reader.add_match(**{field: value})
            for unit in units:
                reader.add_match(_SYSTEMD_UNIT=unit)
        reader.seek_tail()
        lines: list[JournalLine] = []
        while len(lines) < limit:
            entry = reader.get_previous()
            if not entry:
                break
            at = entry.get("__REALTIME_TIMESTAMP")
            priority = entry.get("PRIORITY")
            lines.append(
                JournalLine(
                    at=at if isinstance(at, datetime) else datetime.fromtimestamp(0, UTC),
                    unit=_text(entry.get("_SYSTEMD_UNIT"), 100),
                    priority=priority if isinstance(priority, int) else None,
                    message=_text(entry.get("MESSAGE"), MESSAGE_CHARS),
                )
            )
    except OSError:
        return None
    finally:
        reader.close()
    lines.reverse()
    return lines
