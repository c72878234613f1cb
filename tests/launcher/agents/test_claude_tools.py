"""Host-side tracker tools for the real ``claude`` 2.1.197, through its SDK MCP channel.

The model is the local mock; the CLI discovers the tools with MCP ``tools/list`` over
``control_request``/``mcp_message`` and calls them the same way. The executor stands in for
the tracker daemon (the outside world here); what is under test is the bridge.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from symphonyd.core.api.tracker import ToolResult, ToolSpec
from symphonyd.launcher.agents.claude import ClaudeSession, ClaudeSessionConfig
from symphonyd.launcher.agents.session import ApprovalPolicy, Timeouts, ToolInvocation
from tests.launcher.agents.conftest import AgentDirs, claude_bin
from tests.launcher.agents.mock_models import (
    MockServer,
    anthropic_calls_once,
    anthropic_offered_tools,
    anthropic_text,
    anthropic_tool_results,
)
from tests.launcher.agents.test_claude_live import MODEL, run, turns, vertex_env

pytestmark = pytest.mark.agents
TOOL = "mcp__symphony__tracker_comment"
COMMENT = ToolSpec(
    "tracker_comment",
    "Add a comment to this run's issue.",
    {"type": "object", "properties": {"body": {"type": "string"}}, "required": ["body"]},
)


def tool_session(
    dirs: AgentDirs, port: int, calls: list[ToolInvocation], *, ok: bool = True
) -> ClaudeSession:
    async def execute(invocation: ToolInvocation) -> ToolResult:
        calls.append(invocation)
        if ok:
            return ToolResult(True, {"comment_id": "c-77"})
        return ToolResult(False, {"error": {"code": "tracker_status", "message": "HTTP 500"}})

    config = ClaudeSessionConfig(
        command=claude_bin(),
        model=MODEL,
        # Declining every command proves our own tools do not depend on that policy.
        approvals=ApprovalPolicy(command="decline", file_change="decline"),
        timeouts=Timeouts(read=20, turn=60),
    )
    return ClaudeSession(
        dirs.workspace,
        config,
        vertex_env(dirs, port),
        workspace_root=dirs.root,
        tools=[COMMENT],
        tool_executor=execute,
        on_event=dirs.events.append,
    )


script = anthropic_calls_once(TOOL, {"body": "Working on it"}, "commented")


@pytest.mark.parametrize("ok", [True, False])
def test_claude_calls_the_tracker_tool_through_the_launcher(
    agent_dirs: AgentDirs, ok: bool
) -> None:
    calls: list[ToolInvocation] = []
    with MockServer(script) as mock:
        s = tool_session(agent_dirs, mock.port, calls, ok=ok)
        (result,) = run(turns(s, "Comment on the issue"))
        bodies = [r["body"] for r in mock.requests]
    assert result.ok, result
    # tools/list was answered by the launcher:
    assert any(TOOL in anthropic_offered_tools(b) for b in bodies)
    results = next(r for b in bodies if (r := anthropic_tool_results(b)))
    assert [(c.tool, c.arguments) for c in calls] == [
        ("tracker_comment", {"body": "Working on it"})
    ]
    assert calls[0].session_id == result.session_id
    out = str(results[0].get("content"))
    if ok:
        assert "c-77" in out and results[0].get("is_error") in (None, False)
    else:
        assert "tracker_status" in out and results[0].get("is_error") is True
    tool_events = [e for e in agent_dirs.events if e.event == "tool_call"]
    assert tool_events and f"success={ok}" in (tool_events[0].message or "")
    assert "approval_declined" not in agent_dirs.event_names()


def test_without_an_executor_no_tools_are_offered(agent_dirs: AgentDirs) -> None:
    with MockServer(lambda n, body: anthropic_text("ok")) as mock:
        config = ClaudeSessionConfig(
            command=claude_bin(), model=MODEL, timeouts=Timeouts(read=20, turn=60)
        )
        s = ClaudeSession(
            agent_dirs.workspace,
            config,
            vertex_env(agent_dirs, mock.port),
            workspace_root=agent_dirs.root,
            tools=[COMMENT],
        )
        (result,) = run(turns(s, "hi"))
        names = [n for r in mock.requests for n in anthropic_offered_tools(r["body"])]
    assert result.ok, result
    assert "Bash" in names and not any(n.startswith("mcp__") for n in names)


def test_mcp_servers_planted_in_home_are_never_started(agent_dirs: AgentDirs) -> None:
    """A server in ~/.claude.json (which an earlier run sharing HOME could have written) is
    started by a plain ``claude``; the launcher's flags keep it off."""
    marker = agent_dirs.tmp / "planted-ran"
    planted = {"type": "stdio", "command": "sh", "args": ["-c", f"touch {marker}; sleep 2"]}
    (agent_dirs.home / ".claude.json").write_text(json.dumps({"mcpServers": {"planted": planted}}))
    calls: list[ToolInvocation] = []
    with MockServer(lambda n, body: anthropic_text("ok")) as mock:
        env = vertex_env(agent_dirs, mock.port)
        plain = subprocess.run(
            [claude_bin(), "-p", "hi", "--output-format", "stream-json", "--verbose"],
            cwd=agent_dirs.workspace, env=env, capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        assert marker.exists(), plain.stderr  # control: the plain CLI starts it
        marker.unlink()
        (result,) = run(turns(tool_session(agent_dirs, mock.port, calls), "hi"))
        names = [n for r in mock.requests for n in anthropic_offered_tools(r["body"])]
    assert result.ok, result
    time.sleep(2.5)  # as long as the planted server would take to show itself
    assert not marker.exists()
    assert not any(n.startswith("mcp__planted") for n in names)
    assert any(n.startswith("mcp__symphony__") for n in names)  # ours still offered
