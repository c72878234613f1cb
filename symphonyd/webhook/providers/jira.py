"""Jira (Cloud and Data Center admin webhooks with a secret): HMAC-SHA256 of the raw body in
``X-Hub-Signature: sha256=<hex>``, the delivery named in ``X-Atlassian-Webhook-Identifier``
(the same across Jira's retries), the event time (ms) in the signed payload's
``timestamp``, which must be at most an hour old. Issue events (``jira:issue_*``) and
comment events (``comment_*``) carry the issue: its numeric ``id`` (the adapter's dispatch
id) and its ``key``, whose project part is the scope."""

from __future__ import annotations

import re
from collections.abc import Mapping

from symphonyd.webhook.providers.common import (
    Delivery,
    Inbound,
    Reference,
    Rejected,
    check_hex_signature,
    check_ms_stamp,
    child,
    delivery_id,
    parse_json,
    unknown_event,
)

# Atlassian: a primary delivery within 30 s, a secondary (cascading) one within 15 min,
# then retries; an hour covers them without keeping a replay open for long.
TIMESTAMP_WINDOW_S = 3600.0
KEYS = ("jira",)
_SIG = re.compile(r"^sha256=([0-9a-f]{64})$")
_ID = re.compile(r"^[0-9]{1,18}$")
_KEY = re.compile(r"^([A-Z][A-Z0-9_]{0,49})-[1-9][0-9]{0,17}$")
ISSUE_EVENTS = frozenset({"jira:issue_created", "jira:issue_updated", "jira:issue_deleted",
                          "comment_created", "comment_updated", "comment_deleted"})  # fmt: skip


def verify(req: Inbound, keys: Mapping[str, bytes], now: float) -> Delivery:
    check_hex_signature(req.headers.get("X-Hub-Signature"), _SIG, keys["jira"], req.body)
    delivery = delivery_id(req.headers.get("X-Atlassian-Webhook-Identifier"))
    doc = parse_json(req.body)
    check_ms_stamp(doc, "timestamp", now, TIMESTAMP_WINDOW_S)
    event = doc.get("webhookEvent")
    if event not in ISSUE_EVENTS:
        raise unknown_event(str(event))
    issue = child(doc, "issue")
    issue_id, key = issue.get("id"), issue.get("key")
    if not isinstance(issue_id, str) or not _ID.match(issue_id):
        raise Rejected("malformed", 400, "event without an issue id")
    match = _KEY.match(key) if isinstance(key, str) else None
    if match is None:
        raise Rejected("malformed", 400, "event without an issue key")
    return Delivery("jira", delivery, (Reference(issue_id, match.group(1)),))
