"""Local stand-ins for the model APIs (the outside world), bound to 127.0.0.1.

``ResponsesMock`` speaks enough of the OpenAI Responses API (SSE) for ``codex``;
``VertexMock`` speaks the Anthropic streamRawPredict SSE that ``claude`` uses in Vertex mode.
Each is scripted by a function of (request number, request body) returning a list of replies.
Every request body is kept so tests can check what the agent sent back (tool outputs).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted answer: either an HTTP error or a list of SSE (event, data) pairs."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


Script = Callable[[int, dict[str, Any]], Reply]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    script: Script
    requests: list[dict[str, Any]]
    lock: threading.Lock


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        try:
            body = json.loads(raw)
        except ValueError:
            body = {}
        with self.server.lock:
            self.server.requests.append({"path": self.path, "body": body})
            number = len(self.server.requests)
        reply = self.server.script(number, body)
        if reply.status != 200:
            payload = json.dumps({"error": {"message": "mock says no", "type": "auth"}}).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        out = b"".join(
            f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in reply.events
        )
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


class MockServer:
    def __init__(self, script: Script) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.script = script
        self._server.requests = []
        self._server.lock = threading.Lock()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def requests(self) -> list[dict[str, Any]]:
        with self._server.lock:
            return list(self._server.requests)

    def __enter__(self) -> MockServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


# --------------------------------------------------------------------------- Responses API


RATE_HEADERS = {
    "x-codex-primary-used-percent": "13",
    "x-codex-primary-window-minutes": "300",
    "x-codex-secondary-used-percent": "40",
    "x-codex-secondary-window-minutes": "10080",
}


def _usage(inp: int, out: int) -> dict[str, Any]:
    return {
        "input_tokens": inp,
        "input_tokens_details": {"cached_tokens": 3},
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": 1},
        "total_tokens": inp + out,
    }


def responses_text(text: str, *, rid: str = "resp_1", inp: int = 120, out: int = 7) -> Reply:
    item = {
        "type": "message",
        "role": "assistant",
        "id": f"msg_{rid}",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }
    added = dict(item, content=[], status="in_progress")
    return Reply(
        events=[
            ("response.created", {"type": "response.created", "response": {"id": rid}}),
            (
                "response.output_item.added",
                {"type": "response.output_item.added", "output_index": 0, "item": added},
            ),
            (
                "response.output_text.delta",
                {
                    "type": "response.output_text.delta",
                    "item_id": item["id"],
                    "output_index": 0,
                    "content_index": 0,
                    "delta": text,
                },
            ),
            (
                "response.output_item.done",
                {"type": "response.output_item.done", "output_index": 0, "item": item},
            ),
            (
                "response.completed",
                {
                    "type": "response.completed",
                    "response": {"id": rid, "usage": _usage(inp, out)},
                },
            ),
        ],
        headers=RATE_HEADERS,
    )


def responses_call(
    name: str, arguments: dict[str, Any], *, call_id: str = "call_1", rid: str = "resp_c"
) -> Reply:
    item = {
        "type": "function_call",
        "id": f"fc_{call_id}",
        "call_id": call_id,
        "name": name,
        "arguments": json.dumps(arguments),
        "status": "completed",
    }
    return Reply(
        events=[
            ("response.created", {"type": "response.created", "response": {"id": rid}}),
            (
                "response.output_item.done",
                {"type": "response.output_item.done", "output_index": 0, "item": item},
            ),
            (
                "response.completed",
                {"type": "response.completed", "response": {"id": rid, "usage": _usage(50, 5)}},
            ),
        ],
        headers=RATE_HEADERS,
    )


def responses_custom_call(name: str, text: str, *, call_id: str = "call_p") -> Reply:
    item = {
        "type": "custom_tool_call",
        "id": f"ctc_{call_id}",
        "call_id": call_id,
        "name": name,
        "input": text,
        "status": "completed",
    }
    return Reply(
        events=[
            ("response.created", {"type": "response.created", "response": {"id": "r_p"}}),
            (
                "response.output_item.done",
                {"type": "response.output_item.done", "output_index": 0, "item": item},
            ),
            (
                "response.completed",
                {"type": "response.completed", "response": {"id": "r_p", "usage": _usage(50, 5)}},
            ),
        ],
    )


def tool_outputs(body: dict[str, Any]) -> list[str]:
    """Outputs of tool calls the agent sent back to the model in one request."""
    found: list[str] = []
    for item in body.get("input") or []:
        if isinstance(item, dict) and item.get("type") in (
            "function_call_output",
            "custom_tool_call_output",
        ):
            out = item.get("output")
            found.append(out if isinstance(out, str) else json.dumps(out))
    return found


# --------------------------------------------------------------------------- Anthropic (Vertex)


def anthropic_text(text: str, *, inp: int = 42, out: int = 9) -> Reply:
    return _anthropic([{"type": "text", "text": text}], "end_turn", inp, out)


def anthropic_tool(name: str, tool_input: dict[str, Any], *, tool_id: str = "toolu_1") -> Reply:
    return _anthropic(
        [{"type": "tool_use", "id": tool_id, "name": name, "input": tool_input}], "tool_use", 60, 12
    )


def _anthropic(blocks: list[dict[str, Any]], stop: str, inp: int, out: int) -> Reply:
    events: list[tuple[str, dict[str, Any]]] = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_mock",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-sonnet-4-5@20250929",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": inp, "output_tokens": 1},
                },
            },
        )
    ]
    for index, block in enumerate(blocks):
        start: dict[str, Any]
        if block["type"] == "text":
            start = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": block["text"]}
        else:
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        events += [
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            ),
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            ),
            ("content_block_stop", {"type": "content_block_stop", "index": index}),
        ]
    events += [
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": out},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return Reply(events=events)


def anthropic_tool_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            found += [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]
    return found


def anthropic_offered_tools(body: dict[str, Any]) -> list[str]:
    return [str(t.get("name")) for t in body.get("tools") or [] if isinstance(t, dict)]


def anthropic_calls_once(
    tool: str, tool_input: dict[str, Any], final: str
) -> Callable[[int, dict[str, Any]], Reply]:
    """A model script: call ``tool`` once in the conversation, then answer ``final``.

    Claude Code also makes side requests that offer no tools; those get text, so the call
    lands in the conversation whatever the order of requests."""

    def script(n: int, body: dict[str, Any]) -> Reply:
        if tool in anthropic_offered_tools(body) and not anthropic_tool_results(body):
            return anthropic_tool(tool, tool_input)
        return anthropic_text(final)

    return script
