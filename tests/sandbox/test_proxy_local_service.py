"""A configured local service is the one way through the proxy to loopback."""

from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from symphonyd.launcher.sandbox.dns import UpstreamResolver
from symphonyd.launcher.sandbox.egress_policy import build_policy
from symphonyd.launcher.sandbox.proxy import EgressProxy


class _Hello(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        body = b"local model says hi"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


async def _get(proxy_port: int, url: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
    writer.write(f"GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data


def test_local_service_reaches_loopback_and_nothing_else_does() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    records: list[dict[str, Any]] = []
    policy = build_policy(allowed_domains=[], local_services=[f"model.local:{port}"])

    async def go() -> tuple[bytes, bytes, bytes]:
        proxy = EgressProxy(
            "a1",
            "127.0.0.1",
            0,
            policy,
            UpstreamResolver([("127.0.0.1", 9)], timeout=0.5),
            records.append,
        )
        await proxy.start()
        try:
            ok = await _get(proxy.bound_port, f"http://model.local:{port}/v1")
            other_name = await _get(proxy.bound_port, f"http://other.local:{port}/v1")
            literal = await _get(proxy.bound_port, f"http://127.0.0.1:{port}/v1")
        finally:
            await proxy.stop()
        return ok, other_name, literal

    try:
        ok, other_name, literal = asyncio.run(go())
    finally:
        server.shutdown()
        server.server_close()
    assert b" 200 " in ok.split(b"\r\n")[0] and ok.endswith(b"local model says hi"), ok
    assert other_name.startswith(b"HTTP/1.1 403"), other_name
    assert literal.startswith(b"HTTP/1.1 403"), literal
    kinds = [(r["type"], r.get("reason"), r.get("rule")) for r in records]
    assert kinds[0][0] == "egress_allow" and kinds[0][2] == "local_service", kinds
    assert [k[0] for k in kinds[1:]] == ["egress_deny", "egress_deny"], kinds
