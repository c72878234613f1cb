"""The JSON API, the event stream and /metrics of a real dashboard against a dispatcher double."""

from __future__ import annotations

import dataclasses
import json
import os

import httpx

from symphonyd.core.api.dispatcher import StateSnapshot
from tests.dashboard.conftest import Running
from tests.dashboard.double import DispatcherDouble, running_row
from tests.dashboard.harness import DashboardProcess, short_dir, wait_for

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def _control(r: Running) -> dict[str, str]:
    token = httpx.get(r.base + "/api/v1/csrf").json()["token"]
    return {"X-CSRF-Token": token, "Origin": r.origin}


def test_state_has_the_spec_shape(running: Running) -> None:
    body = httpx.get(running.base + "/api/v1/state").json()
    assert body["counts"] == {"running": 2, "retrying": 1, "held": 1, "blocked": 1}
    row = body["running"][0]
    spec_fields = {
        "issue_id", "issue_identifier", "issue_url", "state", "session_id", "turn_count",
        "last_event", "last_message", "started_at", "last_event_at", "tokens",
    }  # fmt: skip
    assert spec_fields <= set(row)
    assert row["issue_identifier"] == "MT-1" and row["turn_count"] == 4
    assert row["issue_title"] == "Parser drops the last line of CRLF files"
    assert row["host"] == "w2"  # the worker host the run is bound to (design 1100)
    assert row["tokens"] == {"input_tokens": 1201, "output_tokens": 801, "total_tokens": 2002}
    assert body["retrying"][0] == {
        "issue_id": "id-900",
        "issue_identifier": "MT-900",
        "issue_url": None,
        "attempt": 3,
        "due_at": "2026-11-22T06:05:00Z",
        "error": "turn_failed: tests red",
        "kind": "failure",
        "host": "w2",
    }
    assert body["codex_totals"]["seconds_running"] == 1834.2
    assert body["rate_limits"] is None
    assert body["pause"] == {"paused": False, "reasons": []}


def test_issue_view_and_unknown_issue(running: Running) -> None:
    body = httpx.get(running.base + "/api/v1/MT-2").json()
    assert body["issue_identifier"] == "MT-2" and body["status"] == "running"
    assert body["workspace"] == {"path": "/var/lib/symphony/workspaces/MT-2"}
    assert body["attempts"] == {"restart_count": 1, "current_retry_attempt": None}
    assert body["running"]["turn_count"] == 5
    assert body["recent_events"][0]["event"] == "turn_completed"
    missing = httpx.get(running.base + "/api/v1/NOPE-1")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "issue_not_found"


def test_wrong_methods_get_405_with_allow(running: Running) -> None:
    for method, path in (
        ("GET", "/api/v1/refresh"),
        ("GET", "/api/v1/pause"),
        ("POST", "/api/v1/state"),
        ("DELETE", "/api/v1/MT-1"),
        ("PUT", "/"),
    ):
        resp = httpx.request(method, running.base + path, headers=_control(running))
        assert resp.status_code == 405, (method, path)
        assert resp.json()["error"]["code"] == "method_not_allowed"
        assert "Allow" in resp.headers
    assert running.dispatcher.calls == []


def test_controls_reach_the_dispatcher(running: Running) -> None:
    h = _control(running)
    refresh = httpx.post(running.base + "/api/v1/refresh", headers=h)
    assert refresh.status_code == 202
    assert refresh.json() == {
        "queued": True,
        "coalesced": False,
        "requested_at": "2026-11-22T06:00:00Z",
        "operations": ["poll", "reconcile"],
    }
    assert httpx.post(running.base + "/api/v1/pause", headers=h, json={}).status_code == 200
    # A blank reason is valid by the schema: the same as none (issue 22, item 10).
    blank = httpx.post(running.base + "/api/v1/pause", headers=h, json={"reason": " \u200b"})
    assert blank.status_code == 200, blank.text
    assert httpx.post(running.base + "/api/v1/resume", headers=h).status_code == 200
    stop = httpx.post(running.base + "/api/v1/stop", headers=h, json={"identifier": "MT-1"})
    assert stop.json() == {"ok": True, "message": "stopping MT-1"}
    not_held = httpx.post(running.base + "/api/v1/release", headers=h, json={"identifier": "MT-1"})
    assert not_held.status_code == 409 and not_held.json()["error"]["code"] == "not_held"
    unknown = httpx.post(running.base + "/api/v1/stop", headers=h, json={"identifier": "ZZ-9"})
    assert unknown.status_code == 404
    names = [(c[0], c[1]) for c in running.dispatcher.calls]
    assert names == [
        ("refresh", None),
        ("pause", "paused from the dashboard"),
        ("pause", "paused from the dashboard"),
        ("resume", None),
        ("stop", "MT-1"),
        ("release", "MT-1"),
        ("stop", "ZZ-9"),
    ]
    # Operator actions are attributed by the kernel: the dispatcher sees the dashboard's uid.
    assert {c[2] for c in running.dispatcher.calls if c[0] != "refresh"} == {os.getuid()}


def test_malformed_bodies_are_400_and_reach_nothing(running: Running) -> None:
    h = _control(running)
    for path, content in (
        ("/api/v1/pause", b"{not json"),
        ("/api/v1/pause", b"[1,2]"),
        ("/api/v1/pause", b'{"reason": 5}'),
        ("/api/v1/pause", b'{"reason": "x", "extra": 1}'),
        ("/api/v1/stop", b"{}"),
        ("/api/v1/stop", b'{"identifier": ""}'),
        ("/api/v1/release", b'{"identifier": ["a"]}'),
        ("/api/v1/pause", b"[" * 100_00 + b"]" * 100_00),
    ):
        resp = httpx.post(running.base + path, headers=h, content=content)
        assert resp.status_code in (400, 413), (path, content[:20])
        assert "error" in resp.json()
    assert running.dispatcher.calls == []


def test_dispatcher_away_means_503_and_a_clear_page_then_recovery() -> None:
    with short_dir() as d:
        sock = d / "disp.sock"
        with DashboardProcess(sock, None, d / "dash.log") as dash:
            resp = httpx.get(dash.base + "/api/v1/state")
            assert resp.status_code == 503
            assert resp.json()["error"]["code"] == "unavailable"
            assert httpx.get(dash.base + "/api/v1/MT-1").status_code == 503
            page = httpx.get(dash.base + "/")
            assert page.status_code == 200 and "Dispatcher unavailable" in page.text
            with DispatcherDouble(sock):
                wait_for(
                    lambda: httpx.get(dash.base + "/api/v1/state").status_code == 200,
                    what="dashboard to reconnect",
                )
            # The dispatcher went away again: the dashboard notices and keeps serving.
            wait_for(
                lambda: httpx.get(dash.base + "/api/v1/state").status_code == 503,
                what="dashboard to notice the dispatcher left",
            )
            assert dash.proc is not None and dash.proc.poll() is None
        assert dash.stop() == 0


class EventReader:
    """Parses ``text/event-stream`` from one raw byte iterator (no line-decoder buffering)."""

    def __init__(self, stream: httpx.Response) -> None:
        self._raw = stream.iter_raw()
        self._buf = b""

    def next(self) -> dict[str, str]:
        while b"\n\n" not in self._buf:
            self._buf += next(self._raw)
        block, self._buf = self._buf.split(b"\n\n", 1)
        fields = dict(line.split(": ", 1) for line in block.decode().split("\n") if ": " in line)
        return fields if "event" in fields else self.next()  # skip keep-alive comments


def test_event_stream_pushes_each_change(running: Running) -> None:
    with httpx.stream("GET", running.base + "/events", timeout=30) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = EventReader(stream)
        first = events.next()
        assert first["event"] == "overview"
        assert "MT-2" in json.loads(first["data"])["html"]

        def add_run(snap: StateSnapshot) -> StateSnapshot:
            rows = [*snap.running, running_row(77, message="fresh from the stream")]
            return dataclasses.replace(snap, running=rows)

        running.dispatcher.update(add_run)
        update = events.next()
        assert "fresh from the stream" in json.loads(update["data"])["html"]


def test_hostile_tracker_strings_render_inert(running: Running) -> None:
    def hostile(snap: StateSnapshot) -> StateSnapshot:
        row = dataclasses.replace(
            running_row(5, message=HOSTILE, ident='MT-5"><script>x</script>'),
            state=HOSTILE,
            issue_url="javascript:alert(1)",
            issue_title=HOSTILE,
        )
        return dataclasses.replace(snap, running=[row])

    running.dispatcher.update(hostile)
    wait_for(
        lambda: "onerror" in httpx.get(running.base + "/api/v1/state").text, what="hostile state"
    )
    html = httpx.get(running.base + "/").text
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert 'href="javascript:' not in html
    assert "/issues/MT-5%22%3E%3Cscript%3Ex%3C%2Fscript%3E" in html
    detail = httpx.get(running.base + "/issues/MT-5%22%3E%3Cscript%3Ex%3C%2Fscript%3E").text
    assert "<script>x" not in detail and "&lt;script&gt;x&lt;/script&gt;" in detail
    for page in (html, detail):  # the title is shown, as text
        assert page.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;") >= 1
        assert "<script>alert" not in page and 'href="javascript:' not in page


def test_metrics_in_prometheus_text_format(running: Running) -> None:
    resp = httpx.get(running.base + "/metrics")
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for line in resp.text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    assert samples["symphony_running"] == 2
    assert samples["symphony_retrying"] == 1
    assert samples["symphony_blocked"] == 1
    assert samples["symphony_paused"] == 0
    assert samples['symphony_tokens_total{kind="total"}'] == 7400
    assert samples["symphony_dashboard_dispatcher_up"] == 1
    assert samples["symphony_dashboard_audit_up"] == 0  # this fixture has no audit writer
    httpx.post(running.base + "/api/v1/pause", headers=_control(running), json={"reason": "r"})
    wait_for(
        lambda: "symphony_paused 1" in httpx.get(running.base + "/metrics").text,
        what="paused gauge",
    )
