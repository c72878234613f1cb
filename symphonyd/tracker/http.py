"""One HTTP exchange with a tracker API: timeouts, size limits, rate limits, retries.

Every failure becomes a TrackerError with a SPEC 11.4 category. Reads retry transport errors,
5xx and 429; writes retry only 429 (the provider did not act on it), so a comment is never
posted twice because a response was lost. A rate-limit wait longer than ``max_retry_wait_s``
is not slept through: the call fails with ``tracker_rate_limited`` and ``retry_after_ms`` so
the dispatcher's next tick tries again.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from symphonyd.tracker.errors import RATE_LIMITED, REQUEST, RESPONSE, STATUS, tracker_error

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
# Rate-limit reset headers, in the units providers send them.
_RESET_EPOCH_MS = ("x-ratelimit-requests-reset", "x-ratelimit-complexity-reset")
_RESET_EPOCH_S = ("x-ratelimit-reset", "ratelimit-reset")  # GitLab: RateLimit-Reset
_REMAINING = ("x-ratelimit-remaining", "x-ratelimit-requests-remaining")


@dataclass(frozen=True)
class HttpPolicy:
    timeout_s: float = 30.0
    max_attempts: int = 3
    max_retry_wait_s: float = 60.0
    base_backoff_s: float = 0.5
    max_response_bytes: int = 32 << 20


@dataclass(frozen=True)
class JsonResponse:
    status: int
    headers: Mapping[str, str]
    body: Any


class RateLimited(Exception):
    """Raised by a body check (e.g. GraphQL RATELIMITED error) to reuse the 429 path."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        super().__init__("rate limited")
        self.headers = headers


def make_client(
    policy: HttpPolicy, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    timeout = httpx.Timeout(policy.timeout_s, connect=min(policy.timeout_s, 10.0))
    # trust_env=False: proxies and netrc from the environment must not see the token.
    return httpx.AsyncClient(
        timeout=timeout, transport=transport, trust_env=False, follow_redirects=False
    )


async def request_json(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    policy: HttpPolicy,
    headers: Mapping[str, str],
    json_body: Any = None,
    params: Mapping[str, str] | None = None,
    idempotent: bool = True,
    ok_statuses: tuple[int, ...] = (200, 201),
    absent_statuses: tuple[int, ...] = (404, 410),
    body_check: Callable[[JsonResponse], None] | None = None,
    sleep: Sleep = asyncio.sleep,
) -> JsonResponse:
    """Send and decode one JSON exchange, retrying per the policy; statuses outside
    ``ok_statuses`` (after retries) raise ``tracker_status`` unless they are in
    ``absent_statuses``, which return so the caller can treat them as "not visible"."""
    attempt = 0
    while True:
        attempt += 1
        last = attempt >= policy.max_attempts
        try:
            resp = await _send(client, method, url, policy, headers, json_body, params)
        except TrackerRetryable as exc:
            if not idempotent or last:
                raise exc.error from None
            await sleep(_backoff(policy, attempt))
            continue
        rate_headers = _rate_limited_headers(resp)
        if rate_headers is None and body_check is not None:
            try:
                body_check(resp)
            except RateLimited as rl:
                rate_headers = rl.headers
        if rate_headers is not None:
            wait = retry_after_s(rate_headers, time.time())
            wait = _backoff(policy, attempt) if wait is None else wait
            if last or wait > policy.max_retry_wait_s:
                raise tracker_error(
                    RATE_LIMITED,
                    f"tracker rate limit hit (HTTP {resp.status}); retry in {wait:.1f}s",
                    retryable=True,
                    retry_after_ms=int(wait * 1000),
                    status=resp.status,
                )
            log.warning("tracker rate limited, waiting %.1fs (attempt %d)", wait, attempt)
            await sleep(wait)
            continue
        if resp.status >= 500 and idempotent and not last:
            log.warning("tracker HTTP %d, retrying (attempt %d)", resp.status, attempt)
            await sleep(_backoff(policy, attempt))
            continue
        if resp.status in ok_statuses or resp.status in absent_statuses:
            return resp
        raise tracker_error(
            STATUS, _status_message(resp.status), status=resp.status, retryable=resp.status >= 500
        )


class TrackerRetryable(Exception):
    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


async def _send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    policy: HttpPolicy,
    headers: Mapping[str, str],
    json_body: Any,
    params: Mapping[str, str] | None,
) -> JsonResponse:
    try:
        async with client.stream(
            method, url, headers=dict(headers), json=json_body, params=params
        ) as resp:
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > policy.max_response_bytes:
                    raise tracker_error(
                        RESPONSE, f"tracker response exceeds {policy.max_response_bytes} bytes"
                    )
                chunks.append(chunk)
            status, resp_headers = resp.status_code, resp.headers
    except httpx.TimeoutException as exc:
        raise TrackerRetryable(
            tracker_error(
                REQUEST,
                f"tracker request timed out after {policy.timeout_s:g}s " f"({type(exc).__name__})",
                retryable=True,
            )
        ) from None
    except httpx.HTTPError as exc:
        # The exception text can carry the URL but never headers; keep only its class.
        raise TrackerRetryable(
            tracker_error(
                REQUEST, f"tracker transport failure ({type(exc).__name__})", retryable=True
            )
        ) from None
    raw = b"".join(chunks)
    body: Any = None
    if 200 <= status < 300 or raw.lstrip().startswith((b"{", b"[")):
        try:
            body = json.loads(raw) if raw else None
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            if 200 <= status < 300:
                raise tracker_error(
                    RESPONSE,
                    f"tracker returned malformed JSON ({len(raw)} bytes, " f"HTTP {status})",
                ) from None
    return JsonResponse(status, {k.lower(): v for k, v in resp_headers.items()}, body)


def _rate_limited_headers(resp: JsonResponse) -> Mapping[str, str] | None:
    if resp.status == 429:
        return resp.headers
    # GitHub signals its primary limit as 403 with zero remaining, secondary with Retry-After.
    if resp.status == 403 and (
        "retry-after" in resp.headers or any(resp.headers.get(h) == "0" for h in _REMAINING)
    ):
        return resp.headers
    return None


def retry_after_s(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds to wait according to Retry-After or a provider reset header, else None."""
    value = headers.get("retry-after")
    if value is not None:
        value = value.strip()
        if value.isdigit():
            return float(value)
        try:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - now)
        except (TypeError, ValueError):
            pass
    for name in _RESET_EPOCH_MS:
        reset = headers.get(name, "").strip()
        if reset.isdigit():
            return max(0.0, int(reset) / 1000 - now)
    for name in _RESET_EPOCH_S:
        reset = headers.get(name, "").strip()
        if reset.isdigit():
            return max(0.0, int(reset) - now)
    return None


def _backoff(policy: HttpPolicy, attempt: int) -> float:
    return float(min(policy.max_retry_wait_s, policy.base_backoff_s * (2 ** (attempt - 1))))


def _status_message(status: int) -> str:
    if status in (401, 403):
        return f"tracker refused the credential (HTTP {status}); check the token and its scopes"
    return f"tracker answered HTTP {status}"
