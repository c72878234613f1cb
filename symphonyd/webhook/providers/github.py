"""GitHub: HMAC-SHA256 of the raw body in ``X-Hub-Signature-256: sha256=<hex>``, the delivery
named in ``X-GitHub-Delivery``; no signed time. ``issues`` and ``issue_comment`` events name
the issue by number within ``repository.full_name``."""

from __future__ import annotations

import re
from collections.abc import Mapping

from symphonyd.webhook.providers.common import (
    Delivery,
    Inbound,
    Reference,
    Rejected,
    check_hex_signature,
    delivery_id,
    parse_json,
    unknown_event,
)

_SIG = re.compile(r"^sha256=([0-9a-f]{64})$")
_REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$")
ISSUE_EVENTS = frozenset({"issues", "issue_comment"})
KEYS = ("github",)


def verify(req: Inbound, keys: Mapping[str, bytes], now: float) -> Delivery:
    check_hex_signature(req.headers.get("X-Hub-Signature-256"), _SIG, keys["github"], req.body)
    delivery = delivery_id(req.headers.get("X-GitHub-Delivery"))
    event = req.headers.get("X-GitHub-Event", "")
    doc = parse_json(req.body)
    if event == "ping":
        return Delivery("github", delivery, ())  # sent once when the hook is made: 202
    if event not in ISSUE_EVENTS:
        raise unknown_event(event)  # subscribed to more than issues: a failed delivery says so
    issue, repo = doc.get("issue"), doc.get("repository")
    number = issue.get("number") if isinstance(issue, dict) else None
    full_name = repo.get("full_name") if isinstance(repo, dict) else None
    if isinstance(number, bool) or not isinstance(number, int) or not 0 < number < 10**12:
        raise Rejected("malformed", 400, "issues event without an issue number")
    if not isinstance(full_name, str) or not _REPOSITORY.match(full_name):
        raise Rejected("malformed", 400, "issues event without a repository name")
    return Delivery("github", delivery, (Reference(str(number), full_name),))
