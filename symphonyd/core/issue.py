"""The normalised Issue (SPEC 4.1.1) and the normalisation rules adapters share (SPEC 11.3).

Adapters map provider payloads through :func:`build_issue`, which enforces the required
fields and applies the lenient fallbacks for optional ones. ``Issue.from_dict`` is the strict
inverse of ``Issue.to_dict`` used at IPC boundaries: it never invents values.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from symphonyd.core.errors import ValidationError

JsonDict = dict[str, Any]


def state_key(state: str) -> str:
    """States compare after trimming and lowercasing (SPEC 4.2)."""
    return state.strip().lower()


@dataclass(frozen=True, slots=True)
class BlockerRef:
    id: str | None = None
    identifier: str | None = None
    state: str | None = None

    def to_dict(self) -> JsonDict:
        return {"id": self.id, "identifier": self.identifier, "state": self.state}


@dataclass(frozen=True, slots=True)
class Issue:
    id: str
    identifier: str
    title: str
    state: str
    dispatchable: bool
    description: str | None = None
    priority: int | None = None
    branch_name: str | None = None
    url: str | None = None
    assignee_id: str | None = None
    labels: tuple[str, ...] = ()
    blocked_by: tuple[BlockerRef, ...] = ()
    created_at: datetime | None = None
    updated_at: datetime | None = None
    native_ref: JsonDict | None = field(default=None, compare=False)

    def to_dict(self) -> JsonDict:
        """Every SPEC field present; nullable ones as null, collections as lists."""
        return {
            "id": self.id,
            "identifier": self.identifier,
            "title": self.title,
            "description": self.description,
            "priority": self.priority,
            "state": self.state,
            "branch_name": self.branch_name,
            "url": self.url,
            "assignee_id": self.assignee_id,
            "labels": list(self.labels),
            "blocked_by": [b.to_dict() for b in self.blocked_by],
            "dispatchable": self.dispatchable,
            "created_at": format_timestamp(self.created_at),
            "updated_at": format_timestamp(self.updated_at),
            "native_ref": self.native_ref,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Issue:
        """Strict decode of :meth:`to_dict` output; raises ValidationError on any mismatch.

        Every tick decodes the whole board with this (thousands of issues), so the field
        checks are inline; the order of the checks, hence which error a record with several
        bad fields gets, is the order they appear in here."""
        if type(data) is not dict and not isinstance(data, Mapping):
            raise ValidationError("issue must be an object")
        d: Mapping[str, Any] = data
        blockers = d.get("blocked_by", [])
        if not isinstance(blockers, list) or not all(isinstance(b, Mapping) for b in blockers):
            raise ValidationError("issue.blocked_by must be a list of objects")
        labels = d.get("labels", [])
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise ValidationError("issue.labels must be a list of strings")
        native_ref = d.get("native_ref")
        if native_ref is not None and not isinstance(native_ref, dict):
            raise ValidationError("issue.native_ref must be an object or null")
        dispatchable = d.get("dispatchable")
        if not isinstance(dispatchable, bool):
            raise ValidationError("issue.dispatchable must be a boolean")
        priority = d.get("priority")
        if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
            raise ValidationError("issue.priority must be an integer or null")
        # One check per field, written out: a loop or a helper call per field costs more
        # than the check itself.
        id_, identifier, title, state = (
            d.get("id"),
            d.get("identifier"),
            d.get("title"),
            d.get("state"),
        )
        if not isinstance(id_, str) or not id_:
            raise ValidationError("issue.id must be a non-empty string")
        if not isinstance(identifier, str) or not identifier:
            raise ValidationError("issue.identifier must be a non-empty string")
        if not isinstance(title, str) or not title:
            raise ValidationError("issue.title must be a non-empty string")
        if not isinstance(state, str) or not state:
            raise ValidationError("issue.state must be a non-empty string")
        description, branch_name = d.get("description"), d.get("branch_name")
        url, assignee_id = d.get("url"), d.get("assignee_id")
        if description is not None and not isinstance(description, str):
            raise ValidationError("issue.description must be a string or null")
        if branch_name is not None and not isinstance(branch_name, str):
            raise ValidationError("issue.branch_name must be a string or null")
        if url is not None and not isinstance(url, str):
            raise ValidationError("issue.url must be a string or null")
        if assignee_id is not None and not isinstance(assignee_id, str):
            raise ValidationError("issue.assignee_id must be a string or null")
        return cls(
            id_,
            identifier,
            title,
            state,
            dispatchable,
            description,
            priority,
            branch_name,
            url,
            assignee_id,
            labels=tuple(labels),
            blocked_by=tuple(
                BlockerRef(
                    id=_optional_str(b, "id"),
                    identifier=_optional_str(b, "identifier"),
                    state=_optional_str(b, "state"),
                )
                for b in blockers
            )
            if blockers
            else (),
            created_at=_strict_timestamp(d.get("created_at"), "created_at"),
            updated_at=_strict_timestamp(d.get("updated_at"), "updated_at"),
            native_ref=native_ref,
        )


# Bounds applied when a provider's issue is normalised, so one issue always fits the 1 MiB
# IPC frames it travels in (dispatcher -> launcher, launcher <-> tracker) even when every
# character needs a JSON escape. The prompt caps it far lower again (docs/design/0502).
MAX_TITLE_CHARS = 2_000
MAX_DESCRIPTION_CHARS = 100_000


def cap_text(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with a visible marker saying how much went."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[... truncated {len(text) - limit} characters]"


def build_issue(
    *,
    id: Any,
    identifier: Any,
    title: Any,
    state: Any,
    dispatchable: Any,
    description: Any = None,
    priority: Any = None,
    branch_name: Any = None,
    url: Any = None,
    assignee_id: Any = None,
    labels: Any = (),
    blocked_by: Iterable[BlockerRef] = (),
    created_at: Any = None,
    updated_at: Any = None,
    native_ref: Any = None,
) -> Issue:
    """Normalise provider values into an Issue (SPEC 11.3).

    Required fields (id, identifier, title, state, explicit dispatchable) raise
    ValidationError when unusable; optional ones fall back to null or empty.
    """
    for name, value in (("id", id), ("identifier", identifier), ("title", title)):
        if not isinstance(value, str) or not value.strip():
            raise ValidationError(f"issue field {name!r} must be a non-empty string")
    if not isinstance(state, str) or not state.strip():
        raise ValidationError("issue field 'state' must be a non-empty string")
    if not isinstance(dispatchable, bool):
        raise ValidationError("issue field 'dispatchable' must be an explicit boolean")
    return Issue(
        id=id,
        identifier=identifier,
        title=cap_text(title, MAX_TITLE_CHARS),
        state=state.strip(),
        dispatchable=dispatchable,
        description=(
            cap_text(description, MAX_DESCRIPTION_CHARS) if isinstance(description, str) else None
        ),
        priority=normalize_priority(priority),
        branch_name=branch_name if isinstance(branch_name, str) and branch_name else None,
        url=url if isinstance(url, str) and url else None,
        assignee_id=assignee_id if isinstance(assignee_id, str) and assignee_id else None,
        labels=normalize_labels(labels),
        blocked_by=tuple(blocked_by),
        created_at=parse_timestamp(created_at),
        updated_at=parse_timestamp(updated_at),
        native_ref=normalize_native_ref(native_ref),
    )


def normalize_labels(raw: Any) -> tuple[str, ...]:
    """Trimmed, lowercased, blanks dropped, duplicates removed, first-seen order kept."""
    if not isinstance(raw, Iterable) or isinstance(raw, str | bytes | Mapping):
        return ()
    seen: dict[str, None] = {}
    for item in raw:
        if isinstance(item, str):
            label = item.strip().lower()
            if label:
                seen.setdefault(label, None)
    return tuple(seen)


def normalize_priority(raw: Any) -> int | None:
    """Integers pass; everything else (bools, floats, strings) becomes null."""
    if isinstance(raw, bool) or not isinstance(raw, int):
        return None
    return int(raw)


def parse_timestamp(raw: Any) -> datetime | None:
    """RFC 3339 string to an aware UTC datetime; unusable values become null."""
    if isinstance(raw, datetime):
        return raw.astimezone(UTC) if raw.tzinfo else None
    if not isinstance(raw, str) or not raw:
        return None
    text = raw.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.astimezone(UTC)


def format_timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def normalize_native_ref(raw: Any) -> JsonDict | None:
    """Keep a JSON-safe object verbatim; anything else becomes null."""
    if not isinstance(raw, dict):
        return None
    try:
        json.dumps(raw, allow_nan=False)
    except (TypeError, ValueError):
        return None
    return raw


def _required_str(d: Mapping[str, Any], key: str) -> str:
    value = d.get(key)
    if not isinstance(value, str) or not value:
        raise ValidationError(f"issue.{key} must be a non-empty string")
    return value


def _optional_str(d: Mapping[str, Any], key: str) -> str | None:
    value = d.get(key)
    if value is not None and not isinstance(value, str):
        raise ValidationError(f"issue.{key} must be a string or null")
    return value


def _strict_timestamp(raw: Any, key: str) -> datetime | None:
    if raw is None:
        return None
    if type(raw) is str:
        parsed = _PARSED.get(raw)
        if parsed is None:
            parsed = parse_timestamp(raw)
            if parsed is not None:
                if len(_PARSED) >= _PARSED_MAX:
                    _PARSED.clear()
                _PARSED[raw] = parsed
    else:
        parsed = parse_timestamp(raw)
    if parsed is None:
        raise ValidationError(f"issue.{key} must be an RFC 3339 timestamp or null")
    return parsed


# Timestamps Issue.from_dict parsed, by their text: a board read every tick repeats the same
# created_at and updated_at strings, and a datetime is immutable, so parsing each once is
# the same answer for less work. Bounded: cleared when full.
_PARSED: dict[str, datetime] = {}
_PARSED_MAX = 65_536
