"""What every provider's check shares: the request as read, the refusal, the result.

A verifier gets the raw body (already capped), the headers, the query and the keys of its
provider, checks the authentication with ``hmac.compare_digest`` before parsing anything,
then the delivery id and time window, and only then reads the issue references out of the
payload. Of a verified payload only the references are kept; its state, title and labels
are ignored, since the tracker re-fetches each issue itself.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_DELIVERY = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# A clock a little ahead of ours is not a replay; further ahead it is not a real delivery.
FUTURE_SKEW_S = 60.0


class Rejected(Exception):
    """A delivery refused: ``outcome`` is the metrics label, ``status`` the HTTP reply."""

    def __init__(self, outcome: str, status: int, reason: str) -> None:
        super().__init__(reason)
        self.outcome, self.status, self.reason = outcome, status, reason


@dataclass(frozen=True)
class Inbound:
    """One request as the receiver read it: nothing else reaches a verifier."""

    headers: Mapping[str, str]
    body: bytes
    query: Mapping[str, str]


@dataclass(frozen=True)
class Reference:
    issue_id: str  # GitHub/GitLab number (iid), Linear id, Jira numeric id, Asana task gid
    scope: str | None  # GitHub "owner/name", GitLab "<project id>:<path>", Jira project key


@dataclass(frozen=True)
class Delivery:
    provider: str
    delivery_id: str | None  # None: nothing to remember (an Asana heartbeat)
    # Empty: a verified event that names no issue (answered 202 "ignored").
    references: tuple[Reference, ...]


def sign(secret: bytes, body: bytes) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def check_hex_signature(
    header: str | None, pattern: re.Pattern[str], secret: bytes, body: bytes
) -> None:
    """``pattern``'s group 1 must be the hex HMAC-SHA256 of ``body`` under ``secret``."""
    match = pattern.match((header or "").strip().lower())
    if match is None:
        raise Rejected("bad_signature", 401, "missing or malformed signature header")
    if not hmac.compare_digest(match.group(1), sign(secret, body)):
        raise Rejected("bad_signature", 401, "signature does not match")


def check_token(given: str | None, expected: bytes, what: str) -> None:
    """A shared secret sent as is (GitLab's token, Asana's enrolment token)."""
    if given is None:
        raise Rejected("bad_signature", 401, f"missing {what}")
    if not hmac.compare_digest(given.encode(errors="surrogateescape"), expected):
        raise Rejected("bad_signature", 401, f"{what} does not match")


def delivery_id(header: str | None) -> str:
    if header is None or not _DELIVERY.match(header):
        raise Rejected("malformed", 400, "missing or malformed delivery id")
    return header


def check_window(sent: float, now: float, window_s: float, what: str) -> None:
    """``sent`` (seconds since the epoch) must be at most ``window_s`` old."""
    if now - sent > window_s or sent - now > FUTURE_SKEW_S:
        raise Rejected("replay", 401, f"{what} outside the {window_s:.0f} s window")


def check_ms_stamp(doc: Mapping[str, Any], field: str, now: float, window_s: float) -> None:
    """The payload's ``field`` (ms since the epoch, inside the signed body) within the window."""
    stamp = doc.get(field)
    if isinstance(stamp, bool) or not isinstance(stamp, int | float):
        raise Rejected("malformed", 400, f"payload without {field}")
    check_window(stamp / 1000.0, now, window_s, field)


def parse_json(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise Rejected("malformed", 400, "body is not JSON") from None
    if not isinstance(doc, dict):
        raise Rejected("malformed", 400, "body is not a JSON object")
    return doc


def unknown_event(what: str) -> Rejected:
    """A verified delivery of an event kind the receiver does not handle."""
    return Rejected("unknown_event", 422, f"event {what[:64]!r} is not handled")


def child(doc: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = doc.get(key)
    return value if isinstance(value, dict) else {}
