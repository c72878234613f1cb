"""The quick start's scripted model endpoint drives the real codex to edit and hand off."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from symphonyd.core.messages import StartRun, ToolSpec
from symphonyd.demo.model_server import DEMO_FILE, DemoServer
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
    async def tool_specs(self) -> list[ToolSpec]:
        return [MOVE_TOOL]


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
