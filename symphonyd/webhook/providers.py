"""What each provider's delivery must carry, and the one issue reference taken from it.

GitHub signs the raw body with HMAC-SHA256 in ``X-Hub-Signature-256: sha256=<hex>`` and names
the delivery in ``X-GitHub-Delivery``; Linear signs it in ``Linear-Signature: <hex>``, names
it in ``Linear-Delivery`` and puts the send time (ms since the epoch) in the payload's
``webhookTimestamp``. Signatures are compared with ``hmac.compare_digest`` before the body is
parsed. Of a verified payload only the issue reference is kept; its state, title and labels
are ignored, since the tracker re-fetches the issue itself.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

TIMESTAMP_WINDOW_S = 60.0
_GITHUB_SIG = re.compile(r"^sha256=([0-9a-f]{64})$")
_LINEAR_SIG = re.compile(r"^([0-9a-f]{64})$")
_DELIVERY = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$")
_LINEAR_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
GITHUB_ISSUE_EVENTS = frozenset({"issues", "issue_comment"})
LINEAR_ISSUE_TYPES = frozenset({"Issue", "Comment"})


class Rejected(Exception):
    """A delivery refused: ``outcome`` is the metrics label, ``status`` the HTTP reply."""

    def __init__(self, outcome: str, status: int, reason: str) -> None:
        super().__init__(reason)
        self.outcome, self.status, self.reason = outcome, status, reason


@dataclass(frozen=True)
class Reference:
    issue_id: str  # GitHub issue number, Linear issue id
    scope: str | None  # GitHub "owner/name"


@dataclass(frozen=True)
class Delivery:
    provider: str
    delivery_id: str
    reference: Reference | None  # None: a verified event that names no issue (ignored)


def _sign(secret: bytes, body: bytes) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def _check_signature(
    header: str | None, pattern: re.Pattern[str], secret: bytes, body: bytes
) -> None:
    match = pattern.match((header or "").strip().lower())
    if match is None:
        raise Rejected("bad_signature", 401, "missing or malformed signature header")
    if not hmac.compare_digest(match.group(1), _sign(secret, body)):
        raise Rejected("bad_signature", 401, "signature does not match")


def _delivery_id(header: str | None) -> str:
    if header is None or not _DELIVERY.match(header):
        raise Rejected("malformed", 400, "missing or malformed delivery id")
    return header


def _json(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise Rejected("malformed", 400, "body is not JSON") from None
    if not isinstance(doc, dict):
        raise Rejected("malformed", 400, "body is not a JSON object")
    return doc


def github(headers: Mapping[str, str], body: bytes, secret: bytes, now: float) -> Delivery:
    _check_signature(headers.get("X-Hub-Signature-256"), _GITHUB_SIG, secret, body)
    delivery = _delivery_id(headers.get("X-GitHub-Delivery"))
    event = headers.get("X-GitHub-Event", "")
    doc = _json(body)
    if event not in GITHUB_ISSUE_EVENTS:
        return Delivery("github", delivery, None)  # ping, push, ...: verified, not ours
    issue, repo = doc.get("issue"), doc.get("repository")
    number = issue.get("number") if isinstance(issue, dict) else None
    full_name = repo.get("full_name") if isinstance(repo, dict) else None
    if isinstance(number, bool) or not isinstance(number, int) or not 0 < number < 10**12:
        raise Rejected("malformed", 400, "issues event without an issue number")
    if not isinstance(full_name, str) or not _REPOSITORY.match(full_name):
        raise Rejected("malformed", 400, "issues event without a repository name")
    return Delivery("github", delivery, Reference(str(number), full_name))


def linear(headers: Mapping[str, str], body: bytes, secret: bytes, now: float) -> Delivery:
    _check_signature(headers.get("Linear-Signature"), _LINEAR_SIG, secret, body)
    delivery = _delivery_id(headers.get("Linear-Delivery"))
    doc = _json(body)
    stamp = doc.get("webhookTimestamp")
    if isinstance(stamp, bool) or not isinstance(stamp, int | float):
        raise Rejected("malformed", 400, "payload without webhookTimestamp")
    if abs(now - stamp / 1000.0) > TIMESTAMP_WINDOW_S:
        raise Rejected("replay", 401, "webhookTimestamp outside the 60 s window")
    kind, data = doc.get("type"), doc.get("data")
    if kind not in LINEAR_ISSUE_TYPES:
        return Delivery("linear", delivery, None)
    if not isinstance(data, dict):
        raise Rejected("malformed", 400, "event without data")
    issue_id = data.get("id") if kind == "Issue" else data.get("issueId")
    if not isinstance(issue_id, str) or not _LINEAR_ID.match(issue_id):
        raise Rejected("malformed", 400, "event without an issue id")
    return Delivery("linear", delivery, Reference(issue_id, None))


VERIFIERS = {"github": github, "linear": linear}


def now() -> float:
    return time.time()
