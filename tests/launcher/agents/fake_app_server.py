"""A scripted stand-in for ``codex app-server`` for protocol paths the real one never takes.

The real server refuses tools nobody advertised before the client sees them and sends no
unknown request types, so those client paths are driven from here. Run as
``python fake_app_server.py SCENARIO REPORT``; every client message is appended to REPORT.
"""

from __future__ import annotations

import json
import sys
from typing import Any

scenario, report_path = sys.argv[1], sys.argv[2]
report = open(report_path, "a")  # noqa: SIM115


def send(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def receive() -> dict[str, Any]:
    line = sys.stdin.readline()
    if not line:
        sys.exit(0)
    report.write(line)
    report.flush()
    return json.loads(line)  # type: ignore[no-any-return]


THREAD, TURN = "thr_1", "turn_1"
held: list[Any] = []  # "named": thread/name/set ids answered only once turn/start has come

while True:
    msg = receive()
    method = msg.get("method")
    if method == "thread/name/set" and scenario == "named":
        held.append(msg["id"])
        continue
    if method == "turn/start":
        for name_id in held:
            send({"id": name_id, "result": {}})
    if method == "initialize":
        send({"id": msg["id"], "result": {"userAgent": "fake"}})
    elif method == "thread/start":
        send({"id": msg["id"], "result": {"thread": {"id": THREAD}}})
    elif method == "turn/start":
        send({"id": msg["id"], "result": {"turn": {"id": TURN, "status": "inProgress"}}})
        if scenario == "requests":
            send({"id": 0, "method": "item/tool/call", "params": {"tool": "nope", "callId": "c"}})
            send({"id": 1, "method": "mcpServer/elicitation/request", "params": {}})
            send({"id": 2, "method": "item/permissions/requestApproval", "params": {}})
            for _ in (0, 1, 2):
                answer = receive()
                assert answer.get("id") in (0, 1, 2), answer
        if scenario == "hostile":
            sys.stdout.write("x" * (3 * 1024 * 1024) + "\n")  # over the test's 1 MiB cap
            sys.stdout.buffer.write(b"\xff\xfe{not json}\n")
            sys.stdout.write("[" * 100000 + "\n")
            sys.stdout.write(json.dumps({"method": 5, "params": []}) + "\n")
            sys.stdout.write(json.dumps({"method": "no/such/notification"}) + "\n")
            sys.stdout.write(json.dumps({"id": 999, "result": {}}) + "\n")
            send(
                {
                    "method": "thread/tokenUsage/updated",
                    "params": {"tokenUsage": {"total": {"inputTokens": "many"}, "last": {}}},
                }
            )
            send(
                {
                    "method": "thread/tokenUsage/updated",
                    "params": {
                        "tokenUsage": {
                            "total": {"inputTokens": 10, "outputTokens": 2, "totalTokens": 12},
                            "last": {"inputTokens": 999, "outputTokens": 999, "totalTokens": 999},
                        }
                    },
                }
            )
            send(
                {
                    "method": "account/rateLimits/updated",
                    "params": {"rateLimits": {"primary": {"usedPercent": 5}}},
                }
            )
            send(
                {
                    "method": "account/rateLimits/updated",
                    "params": {"rateLimits": {"primary": None, "secondary": {"usedPercent": 9}}},
                }
            )
        if scenario == "exit":
            sys.exit(7)
        send(
            {
                "method": "turn/completed",
                "params": {"threadId": THREAD, "turn": {"id": TURN, "status": "completed"}},
            }
        )
    elif method == "turn/interrupt":
        send({"id": msg["id"], "result": {}})
