"""A real HTTP server on 127.0.0.1 for tracker tests, with scripted faults.

Subclasses implement ``answer(method, path, query, body) -> (status, headers, json)``. Each
request first pops the next scripted fault, if any: ``("status", code, headers)``,
``("sleep", seconds)``, ``("truncated",)`` (promises more bytes than it sends),
``("malformed",)`` (a complete body that is not JSON), ``("body", obj)`` or
``("status-body", code, headers, obj)``.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    raw: bytes


class FakeServer:
    def __init__(self, port: int = 0) -> None:
        self.faults: deque[tuple[Any, ...]] = deque()
        self.requests: list[Seen] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in two writes; without this, Nagle plus the
                # client's delayed ACK adds ~40 ms to every response.
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except json.JSONDecodeError:
                    body = None
                url = urlsplit(self.path)
                with owner.lock:
                    owner.requests.append(
                        Seen(self.command, url.path, dict(self.headers.items()), body, raw)
                    )
                    fault = owner.faults.popleft() if owner.faults else None
                if fault is not None and fault[0] == "sleep":
                    time.sleep(fault[1])
                    fault = None
                if fault is not None and fault[0] == "truncated":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "5000")
                    self.end_headers()
                    self.wfile.write(b'{"data": {"issues": {"nodes": [')
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if fault is not None and fault[0] == "malformed":
                    self._send(200, {}, b'{"data": {"issues": nope}')
                    return
                if fault is not None and fault[0] == "status":
                    payload = json.dumps({"message": "scripted"}).encode()
                    self._send(fault[1], fault[2] if len(fault) > 2 else {}, payload)
                    return
                if fault is not None and fault[0] == "status-body":
                    self._send(fault[1], fault[2], json.dumps(fault[3]).encode())
                    return
                if fault is not None and fault[0] == "body":
                    self._send(200, {}, json.dumps(fault[1]).encode())
                    return
                status, headers, obj = owner.answer(
                    self.command, url.path, parse_qs(url.query), body, self.headers
                )
                # 204 (Jira's transition answer) carries no body at all.
                self._send(status, headers, b"" if status == 204 else json.dumps(obj).encode())

            def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = do_DELETE = _handle

        self.httpd = _QuietServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)

    def answer(
        self, method: str, path: str, query: dict[str, list[str]], body: Any, headers: Any
    ) -> tuple[int, dict[str, str], Any]:
        raise NotImplementedError


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up on purpose (timeouts, truncation) are expected here.
        return
