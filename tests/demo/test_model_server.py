"""The quick start's scripted model endpoint drives the real codex to edit and hand off."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from pathlib import Path

import pytest

from symphonyd.core.api.launcher import StartRun
from symphonyd.core.api.tracker import ToolSpec, ToolSpecList
from symphonyd.demo.model_server import DEMO_FILE, DemoServer, Recorder
from tests.launcher.test_service import TrackerDouble, issue, make_service, snapshot, wait_finished

pytestmark = pytest.mark.agents

MOVE_TOOL = ToolSpec(
    "tracker_move",
    "Move the issue",
    {
        "type": "object",
        "properties": {"state": {"type": "string", "enum": ["Human Review"]}},
        "required": ["state"],
    },
)


class MoveTracker(TrackerDouble):
    async def tool_specs(self) -> ToolSpecList:
        return ToolSpecList([MOVE_TOOL], tracker_fingerprint="fp-1")


def test_demo_model_edits_the_workspace_and_hands_the_issue_off(tmp_path: Path) -> None:
    server = DemoServer(0, "Human Review")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        tracker = MoveTracker(issue())
        service, audit = make_service(tmp_path, tracker, server.server_address[1])

        async def scenario() -> None:
            started = await service.start_run(
                StartRun("r1", issue(), None, snapshot(tmp_path, tmp_path / "ws"))
            )
            assert started.accepted
            await wait_finished(service, "r1")

        asyncio.run(scenario())
    finally:
        server.shutdown()
        server.server_close()
    (info,) = service.list_runs().runs
    assert info.outcome is not None and info.outcome.status == "succeeded", info.outcome
    written = tmp_path / "ws" / "ABC-1" / DEMO_FILE
    assert "demo model" in written.read_text()
    assert [(c.tool, c.arguments) for c in tracker.calls] == [
        ("tracker_move", {"state": "Human Review"})
    ]
    assert tracker.issues["i-1"].state == "Human Review"


def test_recording_keeps_exact_bodies_privately_and_within_its_bound(tmp_path: Path) -> None:
    record = tmp_path / "requests.jsonl"
    first = json.dumps({"input": [{"type": "message", "content": "ü <untrusted-x>"}]}).encode()
    recorder = Recorder(str(record), max_bytes=len(first) + 200)
    server = DemoServer(0, "Human Review", recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1/responses"
    try:
        for body in (first, json.dumps({"input": "x" * 500}).encode()):
            with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=10) as r:
                assert r.status == 200  # answered whether or not it was kept
    finally:
        server.shutdown()
        server.server_close()
        recorder.close()
    lines = record.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["body"].encode() == first
    assert record.stat().st_mode & 0o777 == 0o600
    link = tmp_path / "link.jsonl"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError):
        Recorder(str(link), 100)
