"""Request checks every route goes through, and the JSON error envelope.

Order matters and is the order below: body size (before anything is read), ``Host``
allowlist (stops DNS rebinding: a hostile page whose name now points at 127.0.0.1 still
sends its own name), ``Origin`` (a browser always sends it on cross-site POSTs), then the
CSRF token on state-changing methods. The dashboard sets no CORS headers, so a foreign page
can neither read a response nor learn the token.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from symphonyd.runtime.logging import log_event

log = logging.getLogger("symphonyd.dashboard")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CSRF_HEADER = "X-CSRF-Token"
MAX_BODY_BYTES = 16 * 1024
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SECURITY_HEADERS = {
    # No inline script or style anywhere: every byte of code comes from /static.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def error_response(status: int, code: str, message: str) -> web.Response:
    body = json.dumps({"error": {"code": code, "message": message}})
    return web.Response(status=status, text=body, content_type="application/json")


def allowed_hosts(port: int, bind_host: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """``Host`` header values accepted: loopback names and the bind address with the port;
    configured names (a proxy's public name) with or without one, since a proxy on 443
    forwards the bare name."""
    local = {"127.0.0.1", "localhost", "[::1]", _bracket(bind_host)}
    hosts = {f"{name.lower()}:{port}" for name in local}
    for name in map(_bracket, extra):
        hosts |= {name.lower(), f"{name.lower()}:{port}"}
    return frozenset(hosts)


def _bracket(host: str) -> str:
    host = host.strip()
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class Guard:
    def __init__(self, hosts: frozenset[str], *, token: str | None = None) -> None:
        self.hosts = hosts
        self.token = token or secrets.token_urlsafe(32)

    def origin_ok(self, origin: str) -> bool:
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.netloc.lower() in self.hosts

    def token_ok(self, sent: str | None) -> bool:
        return sent is not None and hmac.compare_digest(sent.encode(), self.token.encode())

    def refusal(self, request: web.Request) -> web.Response | None:
        length = request.content_length
        if length is not None and length > MAX_BODY_BYTES:
            return error_response(
                413, "payload_too_large", f"request bodies are limited to {MAX_BODY_BYTES} bytes"
            )
        host = (request.headers.get("Host") or "").lower()
        if host not in self.hosts:
            return error_response(
                421, "host_not_allowed", "this Host is not served here (see docs/dashboard.md)"
            )
        origin = request.headers.get("Origin")
        state_changing = request.method not in SAFE_METHODS
        if origin is not None and not self.origin_ok(origin):
            return error_response(403, "origin_not_allowed", "cross-origin requests are refused")
        if state_changing and origin is None:
            return error_response(403, "origin_required", "state-changing requests need Origin")
        if state_changing and not self.token_ok(request.headers.get(CSRF_HEADER)):
            return error_response(
                403, "csrf_token_invalid", f"missing or wrong {CSRF_HEADER} header"
            )
        return None

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        refused = self.refusal(request)
        if refused is not None:
            log_event(
                log,
                "http_refused",
                level=logging.WARNING,
                method=request.method,
                path=request.path[:200],
                status=refused.status,
            )
            response: web.StreamResponse = refused
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                response = _envelope(exc)
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        return response


def _envelope(exc: web.HTTPException) -> web.StreamResponse:
    if exc.status < 400:
        return exc
    codes = {
        404: "not_found",
        405: "method_not_allowed",
        413: "payload_too_large",
        400: "bad_request",
    }
    response = error_response(exc.status, codes.get(exc.status, "http_error"), exc.reason)
    allow = exc.headers.get("Allow")
    if allow is not None:
        response.headers["Allow"] = allow
    return response


def json_body(raw: bytes) -> dict[str, Any]:
    """An optional JSON object body: empty means ``{}``; anything else is a 400."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise web.HTTPBadRequest(reason="body is not JSON") from None
    if not isinstance(value, dict):
        raise web.HTTPBadRequest(reason="body must be a JSON object")
    return value
