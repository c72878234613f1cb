"""Record the stdout of a real ``codex app-server`` session for bench/stream_parse.py.

Drives codex 0.169.0 against the tests' mock Responses API through a realistic mix: a text
turn, an approved command with output, a dynamic tool call, a file change, then a second turn.
Writes bench/data/codex_session.ndjson (raw stdout lines, exactly as codex wrote them).
Run: .venv/bin/python bench/record_codex_session.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.launcher.agents.mock_models import (
    MockServer,
    Reply,
    responses_call,
    responses_text,
)

CODEX = os.environ.get("CODEX_BIN", "/opt/symphony-agents/node_modules/.bin/codex")
OUT = Path(__file__).resolve().parent / "data" / "codex_session.ndjson"
PATCH = (
    "apply_patch <<'EOF'\n*** Begin Patch\n*** Add File: notes.md\n+# Notes\n+done\n"
    "*** End Patch\nEOF\n"
)


def script(n: int, body: dict[str, Any]) -> Reply:
    steps = [
        responses_call("exec_command", {"cmd": "seq 1 400; ls -la"}, call_id="c1"),
        responses_call("symphony_lookup", {"key": "ABC-1"}, call_id="c2"),
        responses_call("exec_command", {"cmd": PATCH}, call_id="c3"),
        responses_text("Implemented the change and wrote notes.md. " * 20, rid="r4"),
        responses_text("Nothing left to do on this issue.", rid="r5"),
    ]
    return steps[min(n, len(steps)) - 1]


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="symphony-bench-", dir="/var/tmp"))
    home, codex_home, ws, tmp = (base / d for d in ("home", "codex", "ws", "tmp"))
    for d in (home, codex_home, ws, tmp):
        d.mkdir()
    lines: list[bytes] = []
    with MockServer(script) as mock:
        (codex_home / "config.toml").write_text(
            f'model = "mock-model"\nmodel_provider = "mock"\n'
            f"suppress_unstable_features_warning = true\n[model_providers.mock]\n"
            f'name = "mock"\nbase_url = "http://127.0.0.1:{mock.port}/v1"\n'
            f'wire_api = "responses"\nrequest_max_retries = 0\nstream_max_retries = 0\n'
            f"supports_websockets = false\n"
        )
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "CODEX_HOME": str(codex_home),
            "TMPDIR": str(tmp),
        }
        cmd = [
            CODEX,
            "--disable",
            "plugins",
            "--disable",
            "unbounded_connection_retries",
            "app-server",
        ]
        proc = subprocess.Popen(
            cmd,
            cwd=ws,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdin and proc.stdout

        def send(obj: Any) -> None:
            assert proc.stdin
            proc.stdin.write(json.dumps(obj).encode() + b"\n")
            proc.stdin.flush()

        def until(pred: Any) -> dict[str, Any]:
            assert proc.stdout
            while True:
                raw = proc.stdout.readline()
                if not raw:
                    raise SystemExit("codex exited early")
                lines.append(raw)
                msg = json.loads(raw)
                if "id" in msg and "method" in msg:
                    method = msg["method"]
                    if method == "item/tool/call":
                        send(
                            {
                                "id": msg["id"],
                                "result": {
                                    "contentItems": [
                                        {
                                            "type": "inputText",
                                            "text": json.dumps(
                                                {"issue": "ABC-1", "state": "In Progress"}
                                            ),
                                        }
                                    ],
                                    "success": True,
                                },
                            }
                        )
                    else:
                        send({"id": msg["id"], "result": {"decision": "accept"}})
                if pred(msg):
                    return dict(msg)

        send(
            {
                "id": 1,
                "method": "initialize",
                "params": {
                    "clientInfo": {"name": "bench", "title": None, "version": "0"},
                    "capabilities": {"experimentalApi": True},
                },
            }
        )
        until(lambda m: m.get("id") == 1 and "result" in m)
        send({"method": "initialized"})
        tool = {
            "type": "function",
            "name": "symphony_lookup",
            "description": "lookup",
            "inputSchema": {"type": "object", "properties": {"key": {"type": "string"}}},
        }
        send(
            {
                "id": 2,
                "method": "thread/start",
                "params": {
                    "cwd": str(ws),
                    "approvalPolicy": "untrusted",
                    "sandbox": "workspace-write",
                    "dynamicTools": [tool],
                },
            }
        )
        thread = until(lambda m: m.get("id") == 2 and "result" in m)["result"]["thread"]["id"]
        for i, prompt in enumerate(["Implement ABC-1", "Continue if needed"]):
            send(
                {
                    "id": 10 + i,
                    "method": "turn/start",
                    "params": {"threadId": thread, "input": [{"type": "text", "text": prompt}]},
                }
            )
            until(lambda m: m.get("method") == "turn/completed")
        proc.stdin.close()
        proc.wait(10)
    shutil.rmtree(base, ignore_errors=True)
    OUT.write_bytes(b"".join(lines))
    print(f"recorded {len(lines)} lines, {OUT.stat().st_size} bytes -> {OUT}")


if __name__ == "__main__":
    main()
