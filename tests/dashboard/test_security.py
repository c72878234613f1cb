"""Invariant 6 over real HTTP: Host and Origin allowlists, CSRF token, body cap, headers."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator

import httpx

from symphonyd.dashboard.guard import Guard, allowed_hosts
from tests.dashboard.conftest import Running


def _token(r: Running) -> str:
    token: str = httpx.get(r.base + "/api/v1/csrf").json()["token"]
    return token


def _post(r: Running, path: str, **headers: str) -> httpx.Response:
    return httpx.post(r.base + path, json={"reason": "x"}, headers=headers)


def test_a_foreign_host_header_is_refused_on_every_route(running: Running) -> None:
    # DNS rebinding: a hostile name resolving to 127.0.0.1 still sends its own Host.
    evil = f"evil.test:{running.dashboard.port}"
    for path in ("/", "/api/v1/state", "/metrics", "/events", "/api/v1/csrf"):
        resp = httpx.get(running.base + path, headers={"Host": evil})
        assert resp.status_code == 421, path
        assert resp.json()["error"]["code"] == "host_not_allowed"
    token = _token(running)
    headers = {"X-CSRF-Token": token, "Origin": running.origin, "Host": evil}
    assert _post(running, "/api/v1/pause", **headers).status_code == 421
    assert running.dispatcher.calls == []


def test_loopback_names_are_accepted(running: Running) -> None:
    port = running.dashboard.port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
        assert httpx.get(running.base + "/api/v1/state", headers={"Host": host}).status_code == 200


def test_a_foreign_origin_is_refused_even_with_the_token(running: Running) -> None:
    token = _token(running)
    for origin in ("http://evil.test", f"http://127.0.0.1:{running.dashboard.port + 1}", "null"):
        resp = _post(running, "/api/v1/pause", **{"X-CSRF-Token": token, "Origin": origin})
        assert resp.status_code == 403, origin
        assert resp.json()["error"]["code"] == "origin_not_allowed"
    # A cross-origin read is refused too, and no CORS header ever invites one.
    resp = httpx.get(running.base + "/api/v1/state", headers={"Origin": "http://evil.test"})
    assert resp.status_code == 403
    assert "access-control-allow-origin" not in resp.headers
    assert running.dispatcher.calls == []


def test_state_changing_requests_need_origin_and_the_csrf_token(running: Running) -> None:
    token = _token(running)
    no_origin = _post(running, "/api/v1/pause", **{"X-CSRF-Token": token})
    assert no_origin.status_code == 403
    assert no_origin.json()["error"]["code"] == "origin_required"
    for headers in ({"Origin": running.origin}, {"Origin": running.origin, "X-CSRF-Token": "x"}):
        resp = _post(running, "/api/v1/pause", **headers)
        assert resp.status_code == 403
        assert resp.json()["error"]["code"] == "csrf_token_invalid"
    assert running.dispatcher.calls == []
    ok = _post(running, "/api/v1/pause", **{"X-CSRF-Token": token, "Origin": running.origin})
    assert ok.status_code == 200
    assert [c[0] for c in running.dispatcher.calls] == ["pause"]


def _chunks() -> Iterator[bytes]:
    for _ in range(64):
        yield b"a" * 4096


def test_oversized_bodies_get_413_declared_or_streamed(running: Running) -> None:
    headers = {"X-CSRF-Token": _token(running), "Origin": running.origin}
    big = b'{"reason":"' + b"a" * 100_000 + b'"}'
    resp = httpx.post(running.base + "/api/v1/pause", content=big, headers=headers)
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "payload_too_large"
    # Chunked: no Content-Length to refuse up front; the read itself is capped.
    conn = http.client.HTTPConnection("127.0.0.1", running.dashboard.port, timeout=30)
    try:
        conn.request(
            "POST",
            "/api/v1/pause",
            body=_chunks(),
            headers={**headers, "Content-Type": "application/json"},
            encode_chunked=True,
        )
        response = conn.getresponse()
        status, body = response.status, response.read()
    finally:
        conn.close()
    assert status == 413, body
    assert b"payload_too_large" in body
    assert running.dispatcher.calls == []


def test_security_headers_on_pages_and_api(running: Running) -> None:
    for path in ("/", "/api/v1/state", "/static/dashboard.js", "/api/v1/nope-1"):
        h = httpx.get(running.base + path).headers
        assert "script-src 'self'" in h["content-security-policy"], path
        assert "unsafe-inline" not in h["content-security-policy"]
        assert h["x-frame-options"] == "DENY"
        assert h["x-content-type-options"] == "nosniff"
        assert h["referrer-policy"] == "no-referrer"


def test_pages_have_no_inline_script_and_no_remote_assets(running: Running) -> None:
    for path in ("/", "/activity", "/issues/MT-1", "/audit"):
        html = httpx.get(running.base + path).text
        scripts = [part for part in html.split("<script")[1:]]
        assert scripts and all(part.startswith(' src="/static/') for part in scripts), path
        for tag in html.split("<")[1:]:
            if tag.startswith(("link", "script", "img", "image", "use", "iframe")):
                assert "http" not in tag and "//" not in tag, tag
            assert not tag.startswith("style"), (path, tag)  # the CSP allows no inline style


def test_a_proxy_name_is_accepted_only_when_configured() -> None:
    hosts = allowed_hosts(4000, "127.0.0.1", ["dash.example.test"])
    guard = Guard(hosts)
    assert {"dash.example.test", "dash.example.test:4000", "127.0.0.1:4000"} <= hosts
    assert "127.0.0.1" not in hosts  # loopback names need the port
    assert guard.origin_ok("https://dash.example.test")
    assert not guard.origin_ok("https://dash.example.test.evil.test")
    assert not guard.origin_ok("ftp://dash.example.test")
    assert not Guard(allowed_hosts(4000, "127.0.0.1")).origin_ok("https://dash.example.test")
    assert guard.token_ok(guard.token) and not guard.token_ok(guard.token[:-1])


def _raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_garbage_on_the_wire_gets_4xx_and_the_daemon_keeps_serving(running: Running) -> None:
    port = running.dashboard.port
    host = f"Host: 127.0.0.1:{port}\r\n".encode()
    for junk in (
        b"\x00\xff\xfe garbage\r\n\r\n",
        b"GET / HTTP/1.1\r\n" + host + b"X: " + b"a" * 100_000 + b"\r\n\r\n",
        b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\n" + host + b"\r\n",
        b"POST /api/v1/pause HTTP/1.1\r\n" + host + b"Content-Length: -5\r\n\r\n",
        b"GET /issues/%ff%fe HTTP/1.1\r\n" + host + b"Connection: close\r\n\r\n",
        b"GET /api/v1/%00 HTTP/1.1\r\n" + host + b"Connection: close\r\n\r\n",
    ):
        reply = _raw(port, junk)
        status = reply.split(b" ", 2)[1] if reply.startswith(b"HTTP/") else b""
        assert not status.startswith(b"5"), (junk[:40], reply[:200])
    assert httpx.get(running.base + "/api/v1/state").status_code == 200
    assert running.dashboard.proc is not None and running.dashboard.proc.poll() is None
    assert running.dispatcher.calls == []
