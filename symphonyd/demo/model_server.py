"""A scripted Responses-API endpoint so the quick start runs a real Codex agent offline.

It is not a model: every issue gets the same three steps, chosen from what the agent has
already sent back (so the server keeps no state): (1) create ``symphony-demo.md`` in the
workspace with ``apply_patch``, (2) call the tracker tool ``tracker_move`` to hand the issue
off, (3) answer with a short summary. It binds loopback only and says loudly what it is.

``--record FILE`` (off by default; the end-to-end tests use it) appends every request body,
exactly as the agent CLI sent it, as one JSON line to ``FILE`` (created 0600, never
followed through a symlink), up to ``--record-max-bytes`` in total; later requests are
answered but not kept. Only whoever can read that file sees the prompts: nothing about the
recording is served over HTTP, where every agent sandbox could ask for another's prompts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("symphonyd.demo")
MAX_BODY = 8 << 20
RECORD_MAX_BYTES = 64 << 20
BANNER = (
    "DEMO MODEL ENDPOINT: scripted answers, no real model. Agents using it create "
    "symphony-demo.md and hand the issue off; configure a real model for real work."
)
DEMO_FILE = "symphony-demo.md"


def tool_outputs(body: dict[str, Any]) -> int:
    items = body.get("input")
    if not isinstance(items, list):
        return 0
    return sum(
        1
        for item in items
        if isinstance(item, dict)
        and item.get("type") in ("function_call_output", "custom_tool_call_output")
    )


def next_step(body: dict[str, Any], handoff_state: str) -> list[dict[str, Any]]:
    """The output items of the next scripted response."""
    done = tool_outputs(body)
    if done == 0:
        patch = (
            f"apply_patch <<'EOF'\n*** Begin Patch\n*** Add File: {DEMO_FILE}\n"
            "+# Handled by the symphonyd demo model\n+\n"
            "+This file was written by a real Codex agent driven by scripted answers.\n"
            "*** End Patch\nEOF\n"
        )
        return [_call("exec_command", {"cmd": patch}, "call_patch")]
    if done == 1:
        return [_call("tracker_move", {"state": handoff_state}, "call_move")]
    text = f"Created {DEMO_FILE} and moved the issue to {handoff_state}."
    return [
        {
            "type": "message",
            "role": "assistant",
            "id": "msg_demo",
            "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }
    ]


def _call(name: str, arguments: dict[str, Any], call_id: str) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": f"fc_{call_id}",
        "call_id": call_id,
        "name": name,
        "arguments": json.dumps(arguments),
        "status": "completed",
    }


def sse(items: list[dict[str, Any]]) -> bytes:
    rid = "resp_demo"
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"type": "response.created", "response": {"id": rid}})
    ]
    for index, item in enumerate(items):
        events.append(
            (
                "response.output_item.done",
                {"type": "response.output_item.done", "output_index": index, "item": item},
            )
        )
    usage = {"input_tokens": 200, "output_tokens": 20, "total_tokens": 220}
    events.append(
        (
            "response.completed",
            {"type": "response.completed", "response": {"id": rid, "usage": usage}},
        )
    )
    return b"".join(f"event: {n}\ndata: {json.dumps(d)}\n\n".encode() for n, d in events)


class _Handler(BaseHTTPRequestHandler):
    server: DemoServer

    def log_message(self, format: str, *args: Any) -> None:
        log.info("demo model: " + format, *args)

    def do_HEAD(self) -> None:
        self._empty(200)

    def do_GET(self) -> None:
        self._empty(404)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if not self.path.endswith("/responses") or length > MAX_BODY:
            self._empty(404 if length <= MAX_BODY else 413)
            return
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._empty(400)
            return
        if self.server.recorder is not None:
            self.server.recorder.add(self.path, raw)
        payload = sse(next_step(body if isinstance(body, dict) else {}, self.server.handoff))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _empty(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


class Recorder:
    """Appends request bodies to a private file, bounded in total size."""

    def __init__(self, path: str, max_bytes: int) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
        self._fd = os.open(path, flags, 0o600)
        self._left = max_bytes
        self._lock = threading.Lock()

    def add(self, path: str, raw: bytes) -> None:
        line = json.dumps({"path": path, "body": raw.decode("utf-8", "replace")}) + "\n"
        data = line.encode()
        with self._lock:
            if len(data) > self._left:
                if self._left >= 0:
                    log.warning("demo model: recording limit reached, later requests not kept")
                    self._left = -1
                return
            self._left -= len(data)
            os.write(self._fd, data)

    def close(self) -> None:
        os.close(self._fd)


class DemoServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, handoff: str, recorder: Recorder | None = None) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.handoff = handoff
        self.recorder = recorder


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m symphonyd.demo.model_server")
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--handoff-state", default="Human Review")
    parser.add_argument("--record", metavar="FILE", help="append every request body to FILE")
    parser.add_argument("--record-max-bytes", type=int, default=RECORD_MAX_BYTES)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    recorder = Recorder(args.record, args.record_max_bytes) if args.record else None
    server = DemoServer(args.port, args.handoff_state, recorder)
    log.warning(BANNER)
    log.warning("listening on http://127.0.0.1:%d/v1", server.server_address[1])
    if args.record:
        log.warning("recording request bodies to %s", args.record)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    if recorder is not None:
        recorder.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
