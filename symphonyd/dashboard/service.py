"""The dashboard's HTTP application: pages, ``/api/v1``, ``/events`` and ``/metrics``.

State is read from the dispatcher link; control requests go to the dispatcher's control API
(the same methods symphonyctl uses); audit records come from the audit writer's read-only
methods. No handler keeps state of its own that the orchestrator would need.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web

from symphonyd.core import audit_events
from symphonyd.core.api.audit import (
    AUDIT_COUNTS,
    AUDIT_QUERY,
    AUDIT_QUERY_MAX_LIMIT,
    AUDIT_VERIFY,
    AuditCounts,
    AuditQuery,
    AuditRecords,
    AuditRecordView,
)
from symphonyd.core.api.dispatcher import (
    DISPATCHER_ISSUE,
    DISPATCHER_PAUSE,
    DISPATCHER_REFRESH,
    DISPATCHER_RELEASE,
    DISPATCHER_RESUME,
    DISPATCHER_STOP,
    IssueRefParams,
    IssueView,
    PauseParams,
)
from symphonyd.core.api.shared import Empty
from symphonyd.core.codec import encode
from symphonyd.core.errors import SymphonyError
from symphonyd.core.wire import MethodSpec
from symphonyd.dashboard import activity_page, issue_page, metrics, openapi, pages
from symphonyd.dashboard.assets import CSS, FAVICON, JS
from symphonyd.dashboard.guard import CSRF_HEADER, MAX_BODY_BYTES, Guard, error_response, json_body
from symphonyd.dashboard.history import SANDBOX_TYPES, runs_of
from symphonyd.dashboard.html import page
from symphonyd.dashboard.journal_lines import read_issue_lines
from symphonyd.dashboard.link import DispatcherLink, Hub
from symphonyd.dashboard.names import IssueNames
from symphonyd.dashboard.views import issue_json, state_json
from symphonyd.runtime.ipc_client import ReconnectingClient

P = TypeVar("P")
R = TypeVar("R")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = logging.getLogger("symphonyd.dashboard")

MAX_IDENTIFIER_CHARS = 200
HEARTBEAT_S = 15.0
AUDIT_TIMEOUT_S = 120.0
_STATUS_OF_CODE = {
    "issue_not_found": 404,
    "not_held": 409,
    "invalid_params": 400,
    "unavailable": 503,
    "timeout": 503,
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _from_ipc(exc: SymphonyError) -> ApiError:
    code = exc.error_code
    return ApiError(_STATUS_OF_CODE.get(code, 502), code, exc.message)


def only(method: str, handler: Handler) -> Handler:
    """One method per path, and a 405 (with Allow) for any other, never a fall-through."""
    allowed = {method, "HEAD"} if method == "GET" else {method}

    async def route(request: web.Request) -> web.StreamResponse:
        if request.method not in allowed:
            response = error_response(
                405, "method_not_allowed", f"{request.method} is not allowed here; use {method}"
            )
            response.headers["Allow"] = ", ".join(sorted(allowed))
            return response
        try:
            return await handler(request)
        except ApiError as exc:
            return error_response(exc.status, exc.code, exc.message)

    return route


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=_dumps(data), content_type="application/json")


def _identifier(body: dict[str, Any]) -> str:
    value = body.get("identifier")
    if set(body) != {"identifier"} or not isinstance(value, str):
        raise ApiError(400, "invalid_params", 'body must be {"identifier": "<issue>"}')
    if not 0 < len(value) <= MAX_IDENTIFIER_CHARS:
        raise ApiError(400, "invalid_params", "identifier is empty or too long")
    return value


class Dashboard:
    def __init__(
        self,
        link: DispatcherLink,
        audit: ReconnectingClient | None,
        guard: Guard,
        hub: Hub | None = None,
    ) -> None:
        self.link = link
        self.audit = audit
        self.guard = guard
        self.hub = hub or Hub()
        # None: not known yet (shown neutral, not as a failure)
        self.audit_health: tuple[bool | None, str] = (
            (None, "not checked yet") if audit else (None, "no audit socket configured")
        )
        self.names = IssueNames()
        self._fragment: str | None = None
        self._state_body: tuple[int, str] | None = None  # (link.updates, encoded state)
        link.on_change = self.state_changed

    # ------------------------------------------------------------------ wiring

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.guard.middleware], client_max_size=MAX_BODY_BYTES)
        get, post = "GET", "POST"
        routes: list[tuple[str, str, Handler]] = [
            ("/", get, self.overview_page),
            ("/audit", get, self.audit_page),
            ("/activity", get, self.activity_page),
            ("/issues/{identifier}", get, self.issue_page),
            ("/static/dashboard.css", get, self.css),
            ("/static/dashboard.js", get, self.js),
            ("/static/favicon.svg", get, self.favicon),
            ("/events", get, self.events),
            ("/metrics", get, self.metrics),
            ("/api/v1/state", get, self.api_state),
            ("/api/v1/refresh", post, self.api_refresh),
            ("/api/v1/pause", post, self.api_pause),
            ("/api/v1/resume", post, self.api_resume),
            ("/api/v1/stop", post, self.api_stop),
            ("/api/v1/release", post, self.api_release),
            ("/api/v1/audit", get, self.api_audit),
            ("/api/v1/audit/verify", post, self.api_verify),
            ("/api/v1/csrf", get, self.api_csrf),
            ("/api/v1/openapi.json", get, self.api_openapi),
            ("/api/v1/{issue_identifier}", get, self.api_issue),  # last: fixed paths win
        ]
        for path, method, handler in routes:
            app.router.add_route("*", path, only(method, handler))
        app.on_shutdown.append(self._close_streams)
        return app

    async def _close_streams(self, _app: web.Application) -> None:
        self.hub.close()

    # ------------------------------------------------------------------ live state

    def fragment(self) -> str:
        if self._fragment is None:
            self._fragment = pages.overview_fragment(
                self.link.snapshot,
                error=self.link.error,
                since=self.link.since,
                extra_health=[("dashboard → audit", *self.audit_health)],
                names=self.names,
            )
        return self._fragment

    def state_changed(self) -> None:
        self._fragment = None
        self.names.learn(self.link.snapshot)
        if len(self.hub):
            self.hub.publish(_sse("overview", {"html": self.fragment()}))

    def _set_audit_health(self, ok: bool | None, detail: str) -> None:
        if (ok, detail) != self.audit_health:
            self.audit_health = (ok, detail)
            self.state_changed()

    async def _dispatcher(self, spec: MethodSpec[P, R], params: P) -> R:
        try:
            return await self.link.call(spec, params)
        except SymphonyError as exc:
            raise _from_ipc(exc) from None

    async def _audit(self, spec: MethodSpec[P, R], params: P) -> R:
        if self.audit is None:
            raise ApiError(503, "unavailable", "no audit socket configured")
        try:
            result = await self.audit.call(spec, params, timeout=AUDIT_TIMEOUT_S)
        except SymphonyError as exc:
            self._set_audit_health(False, exc.message)
            raise _from_ipc(exc) from None
        self._set_audit_health(True, "reachable")
        return result

    # ------------------------------------------------------------------ pages

    def _page(self, title: str, body: str, nav: str, status: int = 200) -> web.Response:
        html = page(title, body, csrf=self.guard.token, nav=nav)
        return web.Response(status=status, text=html, content_type="text/html")

    async def overview_page(self, _request: web.Request) -> web.StreamResponse:
        return self._page("Overview", pages.overview_body(self.fragment()), "overview")

    async def issue_page(self, request: web.Request) -> web.StreamResponse:
        identifier = request.match_info["identifier"][:MAX_IDENTIFIER_CHARS]
        view: IssueView | None = None
        note = ""
        status = 200
        try:
            found: IssueView = await self._dispatcher(DISPATCHER_ISSUE, IssueRefParams(identifier))
            view = found
        except ApiError as exc:
            note, status = exc.message, exc.status
            if exc.code == "issue_not_found":
                note = "The dispatcher has nothing live for this issue; its history follows."
        runs = None
        loose: list[AuditRecordView] = []
        with contextlib.suppress(ApiError):
            query = AuditQuery(
                issue_id=view.issue_id if view else None,
                issue_identifier=None if view else identifier,
                limit=AUDIT_QUERY_MAX_LIMIT,
            )
            listed: AuditRecords = await self._audit(AUDIT_QUERY, query)
            records = listed.records + await self._sandbox_records(listed.records)
            runs, loose = runs_of(records)
        if runs and status == 404:
            status = 200  # a finished issue: the history is the page
        title, url = self.names.get(identifier)
        if view is not None and view.running is not None:
            title, url = view.running.issue_title or title, view.running.issue_url or url
        live_run = view.running.run_id if view and view.running else None
        journal = await asyncio.to_thread(
            read_issue_lines, identifier, view.issue_id if view else None
        )
        body = issue_page.head(view, identifier, title, url, note) + issue_page.history(
            runs, loose, live_run, journal
        )
        return self._page(identifier, body, "overview", status)

    async def _sandbox_records(self, records: list[AuditRecordView]) -> list[AuditRecordView]:
        """Sandbox and egress records name the run (``agent_id``), not the issue: read the
        newest since the issue's first run and keep those of its runs."""
        run_ids = {r.payload.get("run_id") for r in records if r.type == audit_events.DISPATCH}
        starts = [r.ts for r in records if r.type == audit_events.DISPATCH]
        if not starts:
            return []
        found: AuditRecords = await self._audit(
            AUDIT_QUERY, AuditQuery(since=min(starts), limit=AUDIT_QUERY_MAX_LIMIT)
        )
        return [
            r
            for r in found.records
            if r.type in SANDBOX_TYPES
            and r.issue_id is None
            and r.payload.get("agent_id") in run_ids
        ]

    async def activity_page(self, _request: web.Request) -> web.StreamResponse:
        error = None
        dispatches = finished = None
        counts: AuditCounts | None = None
        try:
            got: AuditRecords = await self._audit(
                AUDIT_QUERY, AuditQuery(type=audit_events.DISPATCH, limit=AUDIT_QUERY_MAX_LIMIT)
            )
            ended: AuditRecords = await self._audit(
                AUDIT_QUERY,
                AuditQuery(type=audit_events.RUN_FINISHED, limit=AUDIT_QUERY_MAX_LIMIT),
            )
            totals: AuditCounts = await self._audit(AUDIT_COUNTS, Empty())
            dispatches, finished, counts = got.records, ended.records, totals
        except ApiError as exc:
            error = exc.message
        body = activity_page.activity_body(
            dispatches, finished, counts, self.names, datetime.now(UTC), error
        )
        return self._page("Activity", body, "activity")

    async def audit_page(self, request: web.Request) -> web.StreamResponse:
        kind = request.query.get("type", "")[:64]
        issue = request.query.get("issue", "")[:MAX_IDENTIFIER_CHARS]
        records: AuditRecords | None = None
        error = None
        try:
            listed: AuditRecords = await self._audit(
                AUDIT_QUERY,
                AuditQuery(type=kind or None, issue_identifier=issue or None, limit=200),
            )
            records = listed
        except ApiError as exc:
            error = exc.message
        body = pages.audit_body(
            None if records is None else records.records,
            types=sorted(audit_events.EVENT_TYPES),
            chosen_type=kind,
            issue=issue,
            truncated=bool(records and records.truncated),
            error=error,
        )
        return self._page("Audit", body, "audit")

    async def css(self, _request: web.Request) -> web.StreamResponse:
        return web.Response(text=CSS, content_type="text/css")

    async def js(self, _request: web.Request) -> web.StreamResponse:
        return web.Response(text=JS, content_type="application/javascript")

    async def favicon(self, _request: web.Request) -> web.StreamResponse:
        return web.Response(text=FAVICON, content_type="image/svg+xml")

    async def events(self, request: web.Request) -> web.StreamResponse:
        queue = self.hub.join()
        if queue is None:
            return error_response(503, "too_many_streams", "too many open event streams")
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        try:
            await response.prepare(request)
            await response.write(_sse("overview", {"html": self.fragment()}).encode())
            while True:
                try:
                    message = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
                except TimeoutError:
                    message = ": keep-alive\n\n"
                if message is None:
                    break
                await response.write(message.encode())
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.hub.leave(queue)
        return response

    async def metrics(self, _request: web.Request) -> web.StreamResponse:
        counts: AuditCounts | None = None
        with contextlib.suppress(ApiError):
            got: AuditCounts = await self._audit(AUDIT_COUNTS, Empty())
            counts = got
        text = metrics.render(
            self.link.snapshot,
            counts,
            sse_clients=len(self.hub),
            sse_dropped=self.hub.dropped,
        )
        return web.Response(body=text.encode(), headers={"Content-Type": metrics.CONTENT_TYPE})

    # ------------------------------------------------------------------ API

    async def api_state(self, _request: web.Request) -> web.StreamResponse:
        snap = self.link.snapshot
        if snap is None:
            raise ApiError(503, "unavailable", f"dispatcher is unavailable: {self.link.error}")
        # Encode once per snapshot: with 100 runs the body is ~50 KB and polled often.
        cached = self._state_body
        if cached is None or cached[0] != self.link.updates:
            cached = (self.link.updates, _dumps(state_json(snap)))
            self._state_body = cached
        return web.Response(text=cached[1], content_type="application/json")

    async def api_issue(self, request: web.Request) -> web.StreamResponse:
        identifier = request.match_info["issue_identifier"]
        if len(identifier) > MAX_IDENTIFIER_CHARS:
            raise ApiError(404, "issue_not_found", "no such issue")
        view = await self._dispatcher(DISPATCHER_ISSUE, IssueRefParams(identifier))
        return _json(issue_json(view))

    async def _body(self, request: web.Request) -> dict[str, Any]:
        return json_body(await request.read())

    async def api_refresh(self, request: web.Request) -> web.StreamResponse:
        await self._body(request)
        result = await self._dispatcher(DISPATCHER_REFRESH, Empty())
        return _json(
            {
                "queued": result.queued,
                "coalesced": result.coalesced,
                "requested_at": result.requested_at,
                "operations": result.operations,
            },
            202,
        )

    async def api_pause(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        reason = body.get("reason", "")
        if set(body) - {"reason"} or not isinstance(reason, str):
            raise ApiError(400, "invalid_params", 'body must be {"reason": "<text>"}')
        if len(reason) > openapi.MAX_REASON_CHARS:
            raise ApiError(400, "invalid_params", "reason is too long")
        if not any(ch.isprintable() and not ch.isspace() for ch in reason):
            # Nothing the dispatcher would keep (it drops unprintable characters and blanks):
            # the same as no reason, as the page's own form does (docs/dashboard.md).
            reason = openapi.DEFAULT_PAUSE_REASON
        result = await self._dispatcher(DISPATCHER_PAUSE, PauseParams(reason))
        return _json({"ok": result.ok, "message": result.message})

    async def api_resume(self, request: web.Request) -> web.StreamResponse:
        await self._body(request)
        result = await self._dispatcher(DISPATCHER_RESUME, Empty())
        return _json({"ok": result.ok, "message": result.message})

    async def api_stop(self, request: web.Request) -> web.StreamResponse:
        identifier = _identifier(await self._body(request))
        result = await self._dispatcher(DISPATCHER_STOP, IssueRefParams(identifier))
        return _json({"ok": result.ok, "message": result.message})

    async def api_release(self, request: web.Request) -> web.StreamResponse:
        identifier = _identifier(await self._body(request))
        result = await self._dispatcher(DISPATCHER_RELEASE, IssueRefParams(identifier))
        return _json({"ok": result.ok, "message": result.message})

    async def api_audit(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        try:
            limit = int(q.get("limit", "100"))
        except ValueError:
            raise ApiError(400, "invalid_params", "limit must be an integer") from None
        if not 1 <= limit <= AUDIT_QUERY_MAX_LIMIT:
            raise ApiError(400, "invalid_params", f"limit must be 1..{AUDIT_QUERY_MAX_LIMIT}")
        query = AuditQuery(
            type=q.get("type") or None, issue_identifier=q.get("issue") or None, limit=limit
        )
        result = await self._audit(AUDIT_QUERY, query)
        return _json(
            {
                "records": encode(result.records),
                "truncated": result.truncated,
            }
        )

    async def api_verify(self, request: web.Request) -> web.StreamResponse:
        await self._body(request)
        return _json(encode(await self._audit(AUDIT_VERIFY, Empty())))

    async def api_csrf(self, _request: web.Request) -> web.StreamResponse:
        return _json({"header": CSRF_HEADER, "token": self.guard.token})

    async def api_openapi(self, _request: web.Request) -> web.StreamResponse:
        return _json(openapi.document())


def _sse(event: str, data: Any) -> str:
    # JSON never contains a raw newline, so one data: line carries the whole message.
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
