"""Tracker error categories (SPEC 11.4) as typed errors with stable codes.

Every adapter raises :class:`symphonyd.core.errors.TrackerError` with one of these codes; the
daemon turns it into an IPC error reply whose code is the category. Messages are written for
operators and never contain a credential or a raw provider body.
"""

from __future__ import annotations

from typing import Any

from symphonyd.core.errors import TrackerError

UNSUPPORTED_KIND = "unsupported_tracker_kind"
INVALID_CONFIG = "invalid_tracker_config"
MISSING_SECRET = "missing_tracker_secret"  # noqa: S105 (a category name)
REQUEST = "tracker_request"
STATUS = "tracker_status"
RESPONSE = "tracker_response"
PAGINATION = "tracker_pagination"
RATE_LIMITED = "tracker_rate_limited"
# Local-files adapter: a name that cannot be a safe file name.
INVALID_IDENTIFIER = "invalid_issue_identifier"

CATEGORIES = (
    UNSUPPORTED_KIND,
    INVALID_CONFIG,
    MISSING_SECRET,
    REQUEST,
    STATUS,
    RESPONSE,
    PAGINATION,
    RATE_LIMITED,
    INVALID_IDENTIFIER,
)


def tracker_error(code: str, message: str, **details: Any) -> TrackerError:
    return TrackerError(message, code=code, **details)


def config_error(message: str, **details: Any) -> TrackerError:
    return TrackerError(message, code=INVALID_CONFIG, **details)
