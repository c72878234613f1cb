"""The receiver's HTTP handlers: POST /hooks/<provider>, and GET /metrics.

Each delivery goes through, in order: method and path, body size (declared, then counted
while reading, so at most ``MAX_BODY_BYTES`` + 1 bytes are ever held), the provider's
signature over the raw body, the delivery id and timestamp window, and only then the payload.
A verified issue event becomes one ``tracker.hint`` naming the issue; nothing else of the
payload leaves this process. Every refusal is a 4xx with a JSON reason, a journal line and a
count in /metrics, and has no other effect.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from aiohttp import web

from symphonyd.core.api.tracker import TRACKER_HINT, TrackerHint
from symphonyd.core.audit_events import webhook_delivery
from symphonyd.core.errors import SymphonyError
from symphonyd.runtime.ipc_client import ReconnectingClient
from symphonyd.runtime.logging import log_event
from symphonyd.webhook import providers
from symphonyd.webhook.audit_feed import AuditFeed
from symphonyd.webhook.providers import Rejected
from symphonyd.webhook.replay import SeenDeliveries

log = logging.getLogger("symphonyd.webhook")
MAX_BODY_BYTES = 1 << 20
HINT_TIMEOUT_S = 30.0
OUTCOMES = ("accepted", "bad_signature", "replay", "too_large", "malformed", "ignored",
            "not_allowed", "unavailable")  # fmt: skip


class Receiver:
    def __init__(
        self,
        secrets: Mapping[str, bytes],
        tracker: ReconnectingClient,
        audit: AuditFeed,
        now: Callable[[], float] = providers.now,
    ) -> None:
        self.audit = audit
        self.secrets = dict(secrets)  # provider -> HMAC key; a provider without one is off
        self.tracker = tracker
        self.now = now
        self.seen = SeenDeliveries()
        self.counts: dict[tuple[str, str], int] = {}

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_route("*", "/hooks/{provider}", self.hook)
        app.router.add_route("*", "/metrics", self.metrics)
        app.router.add_route("*", "/{tail:.*}", self.elsewhere)
        return app

    # ------------------------------------------------------------------ deliveries

    async def hook(self, request: web.Request) -> web.StreamResponse:
        provider = request.match_info["provider"]
        if provider not in self.secrets:
            return self._refuse(request, "-", Rejected("not_allowed", 404, "no such hook"))
        if request.method != "POST":
            return self._refuse(request, provider, Rejected("not_allowed", 405, "POST only"))
        try:
            body = await self._body(request)
            verify = providers.VERIFIERS[provider]
            delivery = verify(request.headers, body, self.secrets[provider], self.now())
        except Rejected as exc:
            return self._refuse(request, provider, exc)
        if not self.seen.claim(provider, delivery.delivery_id):
            again = Rejected("replay", 409, "delivery id already received")
            return self._refuse(request, provider, again, delivery.delivery_id)
        if delivery.reference is None:
            return self._reply(provider, delivery.delivery_id, "ignored", 202, "event not used")
        hint = TrackerHint(provider, delivery.reference.issue_id, delivery.reference.scope)
        try:
            result = await self.tracker.call(TRACKER_HINT, hint, timeout=HINT_TIMEOUT_S)
        except SymphonyError as exc:
            # The provider may deliver again; its id must then be accepted.
            self.seen.release(provider, delivery.delivery_id)
            log_event(log, "webhook_delivery", level=logging.WARNING, provider=provider,
                      delivery=delivery.delivery_id, outcome="unavailable",
                      error_code=exc.error_code)  # fmt: skip
            self._count(provider, "unavailable")
            self.audit.record(webhook_delivery(provider, delivery.delivery_id, "unavailable",
                                               503, exc.error_code))  # fmt: skip
            return web.json_response({"error": "tracker unavailable"}, status=503)
        if not result.refreshed:
            return self._reply(provider, delivery.delivery_id, "ignored", 202,
                               result.reason or "not on the board")  # fmt: skip
        return self._reply(provider, delivery.delivery_id, "accepted", 202, "refresh requested")

    async def _body(self, request: web.Request) -> bytes:
        declared = request.content_length
        if declared is not None and declared > MAX_BODY_BYTES:
            raise Rejected("too_large", 413, f"body over {MAX_BODY_BYTES} bytes")
        chunks, size = [], 0
        while chunk := await request.content.read(64 * 1024):
            size += len(chunk)
            if size > MAX_BODY_BYTES:  # a chunked body that never declared its length
                raise Rejected("too_large", 413, f"body over {MAX_BODY_BYTES} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _reply(
        self, provider: str, delivery: str, outcome: str, status: int, reason: str
    ) -> web.Response:
        self._count(provider, outcome)
        log_event(log, "webhook_delivery", provider=provider, delivery=delivery,
                  outcome=outcome, reason=reason)  # fmt: skip
        self.audit.record(webhook_delivery(provider, delivery, outcome, status, reason))
        return web.json_response({"outcome": outcome, "reason": reason}, status=status)

    def _refuse(
        self, request: web.Request, provider: str, exc: Rejected, delivery: str | None = None
    ) -> web.Response:
        self._count(provider, exc.outcome)
        log_event(log, "webhook_delivery", level=logging.WARNING, provider=provider,
                  delivery=delivery, outcome=exc.outcome, status=exc.status, reason=exc.reason,
                  method=request.method, peer=request.remote)  # fmt: skip
        self.audit.record(webhook_delivery(provider, delivery, exc.outcome, exc.status, exc.reason))
        return web.json_response({"error": exc.outcome, "reason": exc.reason}, status=exc.status)

    async def elsewhere(self, request: web.Request) -> web.StreamResponse:
        return self._refuse(request, "-", Rejected("not_allowed", 404, "no such path"))

    # ------------------------------------------------------------------ metrics

    def _count(self, provider: str, outcome: str) -> None:
        key = (provider, outcome)
        self.counts[key] = self.counts.get(key, 0) + 1

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        if request.method != "GET":
            return self._refuse(request, "-", Rejected("not_allowed", 405, "GET only"))
        lines = [
            "# HELP symphony_webhook_deliveries_total Webhook deliveries by provider and outcome.",
            "# TYPE symphony_webhook_deliveries_total counter",
        ]
        for provider in sorted(self.secrets):
            for outcome in OUTCOMES:
                n = self.counts.get((provider, outcome), 0)
                lines.append(
                    f'symphony_webhook_deliveries_total{{provider="{provider}",'
                    f'outcome="{outcome}"}} {n}'
                )
        unrouted = sum(n for (p, _), n in self.counts.items() if p == "-")
        lines += [
            "# HELP symphony_webhook_audit_dropped_total Delivery records not sent to the audit"
            " writer (queue full or writer unavailable).",
            "# TYPE symphony_webhook_audit_dropped_total counter",
            f"symphony_webhook_audit_dropped_total {self.audit.dropped + self.audit.failed}",
            "# HELP symphony_webhook_unrouted_total Requests to no hook (wrong path).",
            "# TYPE symphony_webhook_unrouted_total counter",
            f"symphony_webhook_unrouted_total {unrouted}",
        ]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")
