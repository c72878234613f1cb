"""The receiver's HTTP handlers: POST /hooks/<provider>, and GET /metrics.

Each delivery goes through, in order: method and path, body size (declared, then counted
while reading, so at most ``MAX_BODY_BYTES`` + 1 bytes are ever held), the provider's
signature or token (providers/), the delivery id and time window, and only then the payload.
A verified event becomes one ``tracker.hint`` per issue it names (one, or up to ten Asana
tasks); nothing else of the payload leaves this process. Asana's handshake is answered here
once its token is verified, and its secret kept (hook_secret.py). Every refusal is a 4xx
with a JSON reason, a journal line, an audit record and a count in /metrics, and has no
other effect.
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
from symphonyd.webhook.hook_secret import HookSecretStore
from symphonyd.webhook.providers import Inbound, Rejected, asana
from symphonyd.webhook.replay import SeenDeliveries

log = logging.getLogger("symphonyd.webhook")
MAX_BODY_BYTES = 1 << 20
HINT_TIMEOUT_S = 30.0
OUTCOMES = ("accepted", "bad_signature", "replay", "too_large", "malformed", "unknown_event",
            "ignored", "enrolled", "not_allowed", "unavailable")  # fmt: skip


class Receiver:
    def __init__(
        self,
        keys: Mapping[str, bytes],
        tracker: ReconnectingClient,
        audit: AuditFeed,
        hook_secret: HookSecretStore | None = None,
        now: Callable[[], float] = providers.now,
    ) -> None:
        self.audit = audit
        self.keys = dict(keys)  # credential name -> key; a provider without one is off
        self.providers = providers.enabled(self.keys)
        self.hook_secret = hook_secret  # Asana's, learnt in the handshake
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
        if provider not in self.providers:
            return self._refuse(request, "-", Rejected("not_allowed", 404, "no such hook"))
        if request.method != "POST":
            return self._refuse(request, provider, Rejected("not_allowed", 405, "POST only"))
        try:
            req = Inbound(request.headers, await self._body(request), request.query)
            keys = providers.keys_of(provider, self.keys)
            if provider == "asana" and asana.is_handshake(req):
                return self._handshake(req, keys)
            if provider == "asana" and self.hook_secret and self.hook_secret.secret:
                keys[asana.HOOK_KEY] = self.hook_secret.secret
            delivery = providers.VERIFIERS[provider](req, keys, self.now())
        except Rejected as exc:
            return self._refuse(request, provider, exc)
        did = delivery.delivery_id
        if did is not None and not self.seen.claim(provider, did):
            again = Rejected("replay", 409, "delivery id already received")
            return self._refuse(request, provider, again, did)
        if not delivery.references:
            return self._reply(provider, did, "ignored", 202, "event not used")
        refreshed, reason = False, None
        for ref in delivery.references:
            hint = TrackerHint(provider, ref.issue_id, ref.scope)
            try:
                result = await self.tracker.call(TRACKER_HINT, hint, timeout=HINT_TIMEOUT_S)
            except SymphonyError as exc:
                return self._unavailable(provider, did, exc)
            refreshed, reason = refreshed or result.refreshed, reason or result.reason
        if not refreshed:
            return self._reply(provider, did, "ignored", 202, reason or "not on the board")
        return self._reply(provider, did, "accepted", 202, "refresh requested")

    def _handshake(self, req: Inbound, keys: Mapping[str, bytes]) -> web.Response:
        """Asana's first request: store its secret, echo it (providers/asana.py)."""
        secret = asana.handshake(req, keys)
        if self.hook_secret is None:
            raise Rejected("not_allowed", 404, "no state directory for the handshake")
        try:
            self.hook_secret.save(secret)
        except OSError as exc:
            log_event(log, "webhook_delivery", level=logging.ERROR, provider="asana",
                      outcome="unavailable", reason=f"cannot save: {exc.strerror}")  # fmt: skip
            self._count("asana", "unavailable")
            self.audit.record(webhook_delivery("asana", None, "unavailable", 503,
                                               "hook secret not saved"))  # fmt: skip
            return web.json_response({"error": "hook secret not saved"}, status=503)
        reply = self._reply("asana", None, "enrolled", 200, "handshake accepted")
        reply.headers["X-Hook-Secret"] = secret.decode()
        return reply

    def _unavailable(self, provider: str, did: str | None, exc: SymphonyError) -> web.Response:
        # The provider may deliver again; its id must then be accepted.
        if did is not None:
            self.seen.release(provider, did)
        log_event(log, "webhook_delivery", level=logging.WARNING, provider=provider,
                  delivery=did, outcome="unavailable", error_code=exc.error_code)  # fmt: skip
        self._count(provider, "unavailable")
        self.audit.record(webhook_delivery(provider, did, "unavailable", 503, exc.error_code))
        return web.json_response({"error": "tracker unavailable"}, status=503)

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
        self, provider: str, delivery: str | None, outcome: str, status: int, reason: str
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
        for provider in self.providers:
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
