"""Typed reads of ``tracker.provider`` keys, each failure an ``invalid_tracker_config`` error.

Adapters refuse unknown keys: a misspelt scope selector (``projct_slug``) would otherwise widen
the scope silently to everything the token can see.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from symphonyd.tracker.credentials import UNIT_CREDENTIAL_NAME
from symphonyd.tracker.errors import config_error
from symphonyd.tracker.http import HttpPolicy

# Keys every HTTP adapter reads the same way (credential, paging, http_policy, tools).
HTTP_KEYS = (
    "api_key",
    "page_size",
    "timeout_ms",
    "max_attempts",
    "max_retry_wait_ms",
    "tool_states",
)


@dataclass(frozen=True)
class TrackerSettings:
    """What an adapter is built from: the effective tracker config (SPEC 11.2)."""

    kind: str
    provider: Mapping[str, Any]
    active_states: tuple[str, ...] = ()
    terminal_states: tuple[str, ...] = ()
    # systemd credential holding the token (host config tracker.credential).
    unit_credential: str = UNIT_CREDENTIAL_NAME


def check_keys(provider: Mapping[str, Any], allowed: Iterable[str], kind: str) -> None:
    if not isinstance(provider, Mapping):
        raise config_error("tracker.provider must be a mapping")
    known = set(allowed)
    unknown = sorted(k for k in provider if k not in known)
    if unknown:
        raise config_error(
            f"unknown tracker.provider key(s) for kind {kind!r}: {', '.join(map(str, unknown))}; "
            f"known keys: {', '.join(sorted(known))}"
        )


def opt_str(provider: Mapping[str, Any], key: str, default: str | None = None) -> str | None:
    value = provider.get(key, default)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise config_error(f"tracker.provider.{key} must be a non-empty string")
    return value.strip()


def opt_int(provider: Mapping[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = provider.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise config_error(f"tracker.provider.{key} must be an integer in [{lo}, {hi}]")
    return int(value)


def opt_bool(provider: Mapping[str, Any], key: str, default: bool) -> bool:
    value = provider.get(key, default)
    if not isinstance(value, bool):
        raise config_error(f"tracker.provider.{key} must be true or false")
    return value


def opt_str_list(provider: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = provider.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise config_error(f"tracker.provider.{key} must be a list of non-empty strings")
    return tuple(v.strip() for v in value)


def http_endpoint(provider: Mapping[str, Any], key: str, default: str) -> str:
    """An https URL; plain http only to a loopback host (tests, local proxies)."""
    url = opt_str(provider, key, default) or default
    parts = urlsplit(url)
    loopback = parts.hostname in ("localhost", "::1") or (parts.hostname or "").startswith("127.")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise config_error(f"tracker.provider.{key} must not carry credentials or a query")
    if parts.scheme == "https" and parts.hostname:
        return url.rstrip("/")
    if parts.scheme == "http" and loopback:
        return url.rstrip("/")
    raise config_error(
        f"tracker.provider.{key} must be an https URL (http only to a loopback host)"
    )


def http_policy(provider: Mapping[str, Any]) -> HttpPolicy:
    """Timeouts and retries of an HTTP tracker, from its ``provider`` keys."""
    return HttpPolicy(
        timeout_s=opt_int(provider, "timeout_ms", 30_000, 100, 300_000) / 1000,
        max_attempts=opt_int(provider, "max_attempts", 3, 1, 10),
        max_retry_wait_s=opt_int(provider, "max_retry_wait_ms", 60_000, 0, 3_600_000) / 1000,
    )


# An issue identifier's prefix (``PREFIX-123``): safe in file names, URLs and log fields.
_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def identifier_prefix(provider: Mapping[str, Any], default: str, hint: str = "") -> str:
    """``identifier_prefix``, else ``default``; one rule for every adapter that derives ids."""
    prefix = opt_str(provider, "identifier_prefix", default) or default
    if not _PREFIX.match(prefix):
        raise config_error(
            "tracker.provider.identifier_prefix must match [A-Za-z0-9][A-Za-z0-9._-]{0,63}" + hint
        )
    return prefix
