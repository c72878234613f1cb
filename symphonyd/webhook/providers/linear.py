"""Linear: HMAC-SHA256 of the raw body in ``Linear-Signature: <hex>``, the delivery named in
``Linear-Delivery``, the send time (ms) in the signed payload's ``webhookTimestamp``, which
must be within 60 s. ``Issue`` events name the issue by id, ``Comment`` events by
``issueId``."""

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
    delivery_id,
    parse_json,
    unknown_event,
)

TIMESTAMP_WINDOW_S = 60.0
_SIG = re.compile(r"^([0-9a-f]{64})$")
_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
ISSUE_TYPES = frozenset({"Issue", "Comment"})
KEYS = ("linear",)


def verify(req: Inbound, keys: Mapping[str, bytes], now: float) -> Delivery:
    check_hex_signature(req.headers.get("Linear-Signature"), _SIG, keys["linear"], req.body)
    delivery = delivery_id(req.headers.get("Linear-Delivery"))
    doc = parse_json(req.body)
    check_ms_stamp(doc, "webhookTimestamp", now, TIMESTAMP_WINDOW_S)
    kind, data = doc.get("type"), doc.get("data")
    if kind not in ISSUE_TYPES:
        raise unknown_event(str(kind))  # another resource type subscribed: say so
    if not isinstance(data, dict):
        raise Rejected("malformed", 400, "event without data")
    issue_id = data.get("id") if kind == "Issue" else data.get("issueId")
    if not isinstance(issue_id, str) or not _ID.match(issue_id):
        raise Rejected("malformed", 400, "event without an issue id")
    return Delivery("linear", delivery, (Reference(issue_id, None),))
