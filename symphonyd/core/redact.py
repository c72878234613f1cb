"""Scrubbing secrets out of text and JSON values before they are stored or shown.

Two layers. *Configured secrets* (the values the daemons actually hold: tracker keys, API
keys, webhook tokens) are removed wherever they appear, also in their common encodings
(URL-encoded, JSON-escaped, base64 at any byte alignment), because an exact value is the one
thing we know for certain. *Token shapes* catch well-known credential formats we were not
told about (provider API keys, GitHub/Slack/AWS/Linear tokens, bearer and basic auth, PEM
private keys, JWTs, credentials in URLs, ``SECRET=value`` assignments). Object keys that
name a secret (``password``, ``api_key``, ``authorization`` ...) have their whole value
replaced.

Replacements are ``[REDACTED:<kind>]`` so a reader sees that and why something was removed.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from collections.abc import Iterable
from typing import Any

MARK = "[REDACTED:{}]"
# Configured secrets shorter than this are still scrubbed verbatim, but not in encoded
# forms: short base64 fragments would match ordinary text everywhere.
_MIN_ENCODED_SECRET = 8
_MAX_DEPTH = 64

# (kind, pattern), tried in this order at each position. Flags are scoped so the patterns
# can be joined into one alternation and the text scanned once.
_SHAPES: tuple[tuple[str, str], ...] = (
    (
        "private_key",
        r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----(?s:.*?)"
        r"(?:-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)",
    ),
    ("anthropic_key", r"\bsk-ant-[A-Za-z0-9_\-]{10,}"),
    ("openai_key", r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{16,}"),
    ("stripe_key", r"\b[rsp]k_(?:live|test)_[A-Za-z0-9]{16,}"),
    ("github_token", r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"),
    ("gitlab_token", r"\bglpat-[A-Za-z0-9_\-]{20,}"),
    ("atlassian_token", r"\bATATT3x[A-Za-z0-9_\-=]{20,}"),
    ("slack_token", r"\bxox[abposre]-[A-Za-z0-9\-]{10,}"),
    ("slack_webhook", r"https://hooks\.slack\.com/services/[A-Za-z0-9/_\-]+"),
    ("aws_access_key", r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b"),
    ("linear_key", r"\blin_(?:api|oauth)_[A-Za-z0-9]{16,}"),
    ("google_api_key", r"\bAIza[0-9A-Za-z_\-]{35}"),
    ("npm_token", r"\bnpm_[A-Za-z0-9]{36}"),
    ("jwt", r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
    ("auth_header", r"(?i:\b(?:bearer|basic)(?:\s+|%20)[A-Za-z0-9._~+/=\-]{8,})"),
    ("url_credentials", r"(?<=://)[^/\s:@]{1,256}:[^/\s@]{1,256}(?=@)"),
    # NAME=value / "name": "value" where the name says secret: keep the name, drop the value.
    (
        "assignment",
        r"(?i:\b(?P<name>[A-Z0-9_\-]*(?:SECRET|TOKEN|PASSWORD|PASSWD|API_?KEY|ACCESS_?KEY"
        r"|PRIVATE_?KEY|CREDENTIALS?)[A-Z0-9_\-]*)(?P<sep>\"?\s*[:=]\s*\"?)[^\s\"',;&]{8,})",
    ),
)
_SCAN = re.compile("|".join(f"(?P<{kind}>{pattern})" for kind, pattern in _SHAPES))


def _replace_shape(match: re.Match[str]) -> str:
    kind = match.lastgroup or "secret"
    if kind == "assignment":
        return match.group("name") + match.group("sep") + MARK.format("secret")
    return MARK.format(kind)


_SECRET_KEY = re.compile(
    r"(?i)(secret|token|password|passwd|api[_-]?key|access[_-]?key|private[_-]?key"
    r"|authorization|cookie|credential)"
)
# Keys that contain a secret word but are metadata about it, not the secret itself.
_SAFE_KEY = re.compile(r"(?i)(_sha256|_hash|_count|_tokens|tokens_|_total|_at|_kind|_name)$")


def _encoded_forms(secret: str) -> set[str]:
    forms = {secret}
    if len(secret) < _MIN_ENCODED_SECRET:
        return forms
    forms.add(urllib.parse.quote(secret, safe=""))
    forms.add(urllib.parse.quote_plus(secret, safe=""))
    forms.add(json.dumps(secret, ensure_ascii=False)[1:-1])
    forms.add(json.dumps(secret)[1:-1])
    raw = secret.encode("utf-8")
    for shift in range(3):
        # The base64 characters fully determined by the secret's bytes when it starts at
        # byte offset ``shift`` (mod 3) of the encoded data.
        encoded = base64.b64encode(b"\0" * shift + raw).decode("ascii")
        start = -(-shift * 8 // 6)
        end = (shift + len(raw)) * 8 // 6
        fragment = encoded[start:end]
        if len(fragment) >= _MIN_ENCODED_SECRET:
            forms.add(fragment)
            forms.add(fragment.replace("+", "-").replace("/", "_"))
    return {f for f in forms if f}


class Redactor:
    """Scrubs configured secret values and well-known token shapes."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        forms: set[str] = set()
        for secret in secrets:
            value = secret.strip()
            if value:
                forms |= _encoded_forms(value)
        # Longest first so a secret that contains another is removed whole.
        ordered = sorted(forms, key=len, reverse=True)
        self._secret_re = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def text(self, value: str) -> str:
        """``value`` with every secret and token shape replaced by a marker."""
        if self._secret_re is not None:
            value = self._secret_re.sub(MARK.format("secret"), value)
        return _SCAN.sub(_replace_shape, value)

    def value(self, obj: Any, _depth: int = 0) -> Any:
        """A copy of a JSON value with every string scrubbed and secret-named keys blanked."""
        if _depth > _MAX_DEPTH:
            return MARK.format("too_deep")
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, dict):
            out: dict[str, Any] = {}
            for key, item in obj.items():
                clean_key = self.text(str(key))
                if _is_secret_key(clean_key) and isinstance(item, str) and item:
                    out[clean_key] = MARK.format("secret")
                else:
                    out[clean_key] = self.value(item, _depth + 1)
            return out
        if isinstance(obj, list | tuple):
            return [self.value(item, _depth + 1) for item in obj]
        return obj


def _is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key)) and not _SAFE_KEY.search(key)


NO_SECRETS = Redactor()
