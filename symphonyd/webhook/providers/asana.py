"""Asana: a handshake, then HMAC-SHA256 signed events.

Asana chooses the signing secret itself and sends it once, in ``X-Hook-Secret`` on the
handshake request it makes while the operator's ``POST /webhooks`` is in flight; the reply
must echo it. The credential ``asana`` is therefore not the HMAC key but the token that
authorises a handshake and every later request: the target URL registered with Asana ends
in ``?token=<credential>`` (Asana posts to the full URL, query included), compared in
constant time. The secret of an authorised handshake is kept by the receiver
(webhook/hook_secret.py) and checks ``X-Hook-Signature: <hex>`` on every event delivery.

Asana sends neither a delivery id nor a signed send time. The SHA-256 of the signed body
serves as the delivery id (every real delivery differs: its events carry ``created_at``),
and a delivery whose newest event is more than 24 h old (Asana's retry period) is refused.
A heartbeat (``{"events": []}``) is answered and not remembered. Events on a task name its
gid; events on a story (a comment) name the task it belongs to (``parent``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from symphonyd.webhook.providers.common import (
    Delivery,
    Inbound,
    Reference,
    Rejected,
    check_hex_signature,
    check_token,
    check_window,
    child,
    parse_json,
)

KEYS = ("asana",)
HOOK_KEY = "asana_hook"  # the handshake's secret, as the receiver passes it in
EVENTS_WINDOW_S = 24 * 3600.0
MAX_TASKS = 10  # per delivery; more are left to the poll
_SIG = re.compile(r"^([0-9a-f]{64})$")
_GID = re.compile(r"^[1-9][0-9]{0,29}$")
_HOOK_SECRET = re.compile(r"^[A-Za-z0-9_-]{16,256}$")


def is_handshake(req: Inbound) -> bool:
    return "X-Hook-Secret" in req.headers


def handshake(req: Inbound, keys: Mapping[str, bytes]) -> bytes:
    """The secret of an authorised handshake (to store and echo back)."""
    check_token(req.query.get("token"), keys["asana"], "token")
    secret = req.headers.get("X-Hook-Secret", "")
    if not _HOOK_SECRET.match(secret):
        raise Rejected("malformed", 400, "malformed X-Hook-Secret")
    return secret.encode()


def _when(event: Mapping[str, Any]) -> float:
    stamp = event.get("created_at")
    try:
        when = datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
    except ValueError:
        return -1.0
    return when.timestamp() if when is not None and when.tzinfo is not None else -1.0


def _task_gid(event: Mapping[str, Any]) -> str | None:
    resource, parent = child(event, "resource"), child(event, "parent")
    if resource.get("resource_type") == "task":
        gid = resource.get("gid")
    elif resource.get("resource_type") == "story" and parent.get("resource_type") == "task":
        gid = parent.get("gid")
    else:
        return None  # a section, the project, ...: names no task
    if not isinstance(gid, str) or not _GID.match(gid):
        raise Rejected("malformed", 400, "event without a task gid")
    return gid


def verify(req: Inbound, keys: Mapping[str, bytes], now: float) -> Delivery:
    check_token(req.query.get("token"), keys["asana"], "token")
    secret = keys.get(HOOK_KEY)
    if secret is None:
        raise Rejected("bad_signature", 401, "no Asana handshake has been made")
    check_hex_signature(req.headers.get("X-Hook-Signature"), _SIG, secret, req.body)
    events = parse_json(req.body).get("events")
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise Rejected("malformed", 400, "payload without an events list")
    if not events:
        return Delivery("asana", None, ())  # a heartbeat
    delivery = "sha256:" + hashlib.sha256(req.body).hexdigest()
    times = [_when(e) for e in events]
    if min(times) < 0:
        raise Rejected("malformed", 400, "event without created_at")
    check_window(max(times), now, EVENTS_WINDOW_S, "newest event")
    gids: list[str] = []
    for event in events:
        gid = _task_gid(event)
        if gid is not None and gid not in gids:
            gids.append(gid)
    return Delivery("asana", delivery, tuple(Reference(g, None) for g in gids[:MAX_TASKS]))
