"""GitLab: two independent authentications, each enabled by its own credential.

- ``gitlab``: the webhook's secret token, sent as is in ``X-Gitlab-Token`` on every delivery
  (compared in constant time). It signs nothing and carries no time.
- ``gitlab_signing``: the signing token (``whsec_<base64 key>``, Standard Webhooks): GitLab
  sends ``webhook-id``, ``webhook-timestamp`` (s) and ``webhook-signature: v1,<base64>`` (one
  or more, space-separated), an HMAC-SHA256 of ``<id>.<timestamp>.<body>``; the timestamp
  must be within 5 minutes.

With both credentials both must hold. The delivery id is ``webhook-id`` when signed, else
``Idempotency-Key`` (the same across GitLab's retries), else ``X-Gitlab-Event-UUID``.
Issue events (``object_kind: issue``) name the issue by ``object_attributes.iid`` and
comments on an issue (``note``) by ``issue.iid``; both name the project by id and path.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Any

from symphonyd.webhook.providers.common import (
    Delivery,
    Inbound,
    Reference,
    Rejected,
    check_token,
    check_window,
    child,
    delivery_id,
    parse_json,
    unknown_event,
)

SIGNED_WINDOW_S = 300.0  # the Standard Webhooks tolerance
KEYS = ("gitlab", "gitlab_signing")
SIGNING_PREFIX = "whsec_"
_STAMP = re.compile(r"^[0-9]{1,12}$")
_PATH = re.compile(r"^[A-Za-z0-9_.-]{1,255}(?:/[A-Za-z0-9_.-]{1,255}){1,20}$")


def signing_key(raw: bytes) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` signing token; ValueError if it is not one."""
    text = raw.decode("ascii", errors="replace")
    if not text.startswith(SIGNING_PREFIX):
        raise ValueError(f"a GitLab signing token starts with {SIGNING_PREFIX}")
    try:
        key = base64.b64decode(text.removeprefix(SIGNING_PREFIX), validate=True)
    except binascii.Error:
        raise ValueError("a GitLab signing token is base64 after whsec_") from None
    if len(key) < 16:
        raise ValueError("a GitLab signing token's key is shorter than 16 bytes")
    return key


def _check_signed(req: Inbound, key: bytes, now: float) -> str:
    wid = delivery_id(req.headers.get("webhook-id"))
    stamp = req.headers.get("webhook-timestamp", "")
    given = req.headers.get("webhook-signature")
    if not given or not _STAMP.match(stamp):
        raise Rejected("bad_signature", 401, "missing or malformed webhook-signature headers")
    mac = hmac.new(key, f"{wid}.{stamp}.".encode() + req.body, hashlib.sha256).digest()
    expected = b"v1," + base64.b64encode(mac)
    offered = [s.encode(errors="surrogateescape") for s in given.split()]
    # Every entry is compared, so the time taken does not tell which one matched.
    if not sum(hmac.compare_digest(s, expected) for s in offered):
        raise Rejected("bad_signature", 401, "signature does not match")
    check_window(float(stamp), now, SIGNED_WINDOW_S, "webhook-timestamp")
    return wid


def _iid(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 10**12:
        raise Rejected("malformed", 400, "issue event without an iid")
    return str(value)


def _scope(doc: Mapping[str, Any]) -> str:
    project = child(doc, "project")
    pid, path = project.get("id"), project.get("path_with_namespace")
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise Rejected("malformed", 400, "event without a project id")
    if not isinstance(path, str) or not _PATH.match(path):
        raise Rejected("malformed", 400, "event without a project path")
    return f"{pid}:{path}"


def verify(req: Inbound, keys: Mapping[str, bytes], now: float) -> Delivery:
    if "gitlab" in keys:
        check_token(req.headers.get("X-Gitlab-Token"), keys["gitlab"], "X-Gitlab-Token")
    if "gitlab_signing" in keys:
        delivery = _check_signed(req, keys["gitlab_signing"], now)
    else:
        delivery = delivery_id(
            req.headers.get("Idempotency-Key") or req.headers.get("X-Gitlab-Event-UUID")
        )
    doc = parse_json(req.body)
    kind = doc.get("object_kind")
    if kind == "issue":
        iid = _iid(child(doc, "object_attributes").get("iid"))
    elif kind == "note":
        if child(doc, "object_attributes").get("noteable_type") != "Issue":
            return Delivery("gitlab", delivery, ())  # a comment on a merge request, ...
        iid = _iid(child(doc, "issue").get("iid"))
    else:
        raise unknown_event(str(kind))
    return Delivery("gitlab", delivery, (Reference(iid, _scope(doc)),))
