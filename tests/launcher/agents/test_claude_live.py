"""The Claude client against the real ``claude`` 2.1.197 in Vertex mode and a local mock."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest

from symphonyd.launcher.agents.claude import ClaudeSession, ClaudeSessionConfig
from symphonyd.launcher.agents.process import build_env
from symphonyd.launcher.agents.session import AgentError, ApprovalPolicy, Timeouts, TurnResult
from tests.launcher.agents.conftest import AgentDirs, claude_bin
from tests.launcher.agents.mock_models import (
    MockServer,
    Reply,
    anthropic_text,
    anthropic_tool,
    anthropic_tool_results,
)

pytestmark = pytest.mark.agents
T = TypeVar("T")
MODEL = "claude-sonnet-4-5@20250929"


def run(coro: Awaitable[T], timeout: float = 90) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def vertex_env(dirs: AgentDirs, port: int | None) -> dict[str, str]:
    extra = {}
    if port is not None:
        extra = {
            "CLAUDE_CODE_USE_VERTEX": "1",
            "CLAUDE_CODE_SKIP_VERTEX_AUTH": "1",
            "ANTHROPIC_VERTEX_BASE_URL": f"http://127.0.0.1:{port}/v1",
            "ANTHROPIC_VERTEX_PROJECT_ID": "offline-test",
            "CLOUD_ML_REGION": "us-east5",
        }
    return build_env(home=dirs.home, tmpdir=dirs.tmp, extra=extra)


def session(
    dirs: AgentDirs,
    port: int | None,
    *,
    approvals: ApprovalPolicy | None = None,
    command: str | None = None,
    timeouts: Timeouts | None = None,
) -> ClaudeSession:
    config = ClaudeSessionConfig(
        command=command or claude_bin(),
        model=MODEL,
        approvals=approvals or ApprovalPolicy(),
        timeouts=timeouts or Timeouts(read=20, turn=60),
    )
    return ClaudeSession(
        dirs.workspace,
        config,
        vertex_env(dirs, port),
        workspace_root=dirs.root,
        on_event=dirs.events.append,
    )


async def turns(s: ClaudeSession, *prompts: str) -> list[TurnResult]:
    await s.start()
    try:
        return [await s.run_turn(p, title="ABC-1: Title") for p in prompts]
    finally:
        await s.stop()


def test_text_turn(agent_dirs: AgentDirs) -> None:
    with MockServer(lambda n, body: anthropic_text("pong")) as mock:
        s = session(agent_dirs, mock.port)
        (result,) = run(turns(s, "Reply pong"))
        body = mock.requests[0]["body"]
    assert result.ok, result
    assert result.last_message == "pong"
    assert s.claude_session_id and result.session_id == f"{s.claude_session_id}-1"
    assert s.tokens.input_tokens == 42 and s.tokens.output_tokens == 9
    assert "Reply pong" in str(body["messages"])
    names = agent_dirs.event_names()
    assert names[0] == "session_started" and names[-1] == "turn_completed"


def test_two_turns_in_one_process_sum_per_turn_usage(agent_dirs: AgentDirs) -> None:
    with MockServer(lambda n, body: anthropic_text(f"answer {n}")) as mock:
        s = session(agent_dirs, mock.port)
        first, second = run(turns(s, "first task", "continue"))
        bodies = [str(r["body"].get("messages")) for r in mock.requests]
    assert first.ok and second.ok
    assert first.session_id != second.session_id
    # same conversation: the request for the second turn carries the first one
    assert any("first task" in b and "'continue'" in b for b in bodies)
    assert s.tokens.input_tokens == 84 and s.tokens.output_tokens == 18
    assert agent_dirs.event_names().count("session_started") == 1


@pytest.mark.parametrize("decision", ["accept", "decline"])
def test_can_use_tool_follows_policy(agent_dirs: AgentDirs, decision: str) -> None:
    def script(n: int, body: dict[str, Any]) -> Reply:
        if n == 1:
            return anthropic_tool(
                "Bash", {"command": "env; echo hi > made.txt", "description": "x"}
            )
        return anthropic_text("done")

    os.environ["SYMPHONY_CANARY_SECRET"] = "canary-9b1c"
    try:
        with MockServer(script) as mock:
            policy = ApprovalPolicy(command=decision)  # type: ignore[arg-type]
            (result,) = run(turns(session(agent_dirs, mock.port, approvals=policy), "go"))
            results = anthropic_tool_results(mock.requests[1]["body"])
    finally:
        del os.environ["SYMPHONY_CANARY_SECRET"]
    assert result.ok, result
    # The transcript items the worker records (launcher/transcript.py): the Bash command as
    # the model asked for it, whatever the policy decided, then the closing words.
    items = [e.item for e in agent_dirs.events if e.item is not None]
    assert items == [("command", "env; echo hi > made.txt"), ("agent_message", "done")], items
    made = (agent_dirs.workspace / "made.txt").exists()
    out = str(results[0].get("content"))
    if decision == "accept":
        assert made and "approval_auto_approved" in agent_dirs.event_names()
        assert "HOME=" in out and "canary-9b1c" not in out
    else:
        assert not made and "approval_declined" in agent_dirs.event_names()
        assert results[0].get("is_error") is True


def test_auth_failure_is_a_failed_turn(agent_dirs: AgentDirs) -> None:
    # No Vertex settings and no credential: claude answers "Not logged in" with
    # subtype "success" and is_error true; the client must call that a failure.
    s = session(agent_dirs, None)
    (result,) = run(turns(s, "hello"))
    assert result.status == "failed" and result.error_code == "turn_failed"
    assert result.error and "logged in" in result.error.lower()
    assert "turn_failed" in agent_dirs.event_names()


def test_interrupt_cancels_the_turn(agent_dirs: AgentDirs) -> None:
    release = threading.Event()

    def slow(n: int, body: dict[str, Any]) -> Reply:
        release.wait(30)
        return anthropic_text("late")

    with MockServer(slow) as mock:
        s = session(agent_dirs, mock.port)

        async def scenario() -> TurnResult:
            await s.start()
            try:
                turn = asyncio.create_task(s.run_turn("take your time"))
                while not mock.requests:
                    await asyncio.sleep(0.05)
                await s.interrupt()
                return await turn
            finally:
                release.set()
                await s.stop()

        result = run(scenario())
    assert result.status == "cancelled", result


def test_missing_binary_is_claude_not_found(agent_dirs: AgentDirs) -> None:
    s = session(agent_dirs, None, command="/nonexistent/claude")
    with pytest.raises(AgentError) as err:
        run(turns(s, "hi"))
    assert err.value.error_code == "claude_not_found"


def test_file_edit_tools_follow_the_file_change_policy(agent_dirs: AgentDirs) -> None:
    target = agent_dirs.workspace / "notes.md"

    def script(n: int, body: dict[str, Any]) -> Reply:
        if n == 1:
            return anthropic_tool("Write", {"file_path": str(target), "content": "hello\n"})
        return anthropic_text("done")

    with MockServer(script) as mock:
        policy = ApprovalPolicy(command="accept", file_change="decline")
        (result,) = run(turns(session(agent_dirs, mock.port, approvals=policy), "write it"))
    assert result.ok, result
    assert not target.exists()
    declined = [e for e in agent_dirs.events if e.event == "approval_declined"]
    assert declined and declined[0].message and "Write" in declined[0].message
