"""The Codex client against the real ``codex app-server`` 0.169.0 and a mock Responses API."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from symphonyd.core.api.tracker import ToolResult, ToolSpec
from symphonyd.launcher.agents import codex_protocol as cp
from symphonyd.launcher.agents.codex import CodexSession, CodexSessionConfig
from symphonyd.launcher.agents.factory import EXTERNAL_SANDBOX_POLICY
from symphonyd.launcher.agents.session import (
    AgentError,
    ApprovalPolicy,
    Timeouts,
    ToolInvocation,
    TurnResult,
)
from tests.launcher.agents.conftest import AgentDirs, codex_bin, codex_command
from tests.launcher.agents.mock_models import (
    MockServer,
    Reply,
    responses_call,
    responses_text,
    tool_outputs,
)

pytestmark = pytest.mark.agents

T = TypeVar("T")
LOOKUP = ToolSpec(
    "symphony_lookup",
    "Look a key up in the tracker",
    {"type": "object", "properties": {"key": {"type": "string"}}, "required": ["key"]},
)


def run(coro: Awaitable[T], timeout: float = 90) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def session(
    dirs: AgentDirs,
    *,
    command: str | None = None,
    approvals: ApprovalPolicy | None = None,
    tools: list[ToolSpec] | None = None,
    executor: Callable[[ToolInvocation], Awaitable[ToolResult]] | None = None,
    timeouts: Timeouts | None = None,
    approval_policy: Any = "on-request",
    turn_sandbox_policy: Any | None = None,
) -> CodexSession:
    config = CodexSessionConfig(
        command=command or codex_command(),
        approval_policy=approval_policy,
        turn_sandbox_policy=turn_sandbox_policy,
        approvals=approvals or ApprovalPolicy(),
        timeouts=timeouts or Timeouts(read=20, turn=60),
    )
    return CodexSession(
        dirs.workspace,
        config,
        dirs.codex_env(),
        workspace_root=dirs.root,
        tools=tools or [],
        tool_executor=executor,
        on_event=dirs.events.append,
    )


async def one_turn(s: CodexSession, prompt: str = "hello", **kw: Any) -> TurnResult:
    await s.start()
    try:
        return await s.run_turn(prompt, **kw)
    finally:
        await s.stop()


def script_first(first: Reply, then: Reply | None = None) -> Callable[[int, dict[str, Any]], Reply]:
    return lambda n, body: first if n == 1 else (then or responses_text("done", rid=f"r{n}"))


def test_text_turn_reports_session_tokens_and_rate_limits(agent_dirs: AgentDirs) -> None:
    with MockServer(script_first(responses_text("pong"))) as mock:
        agent_dirs.write_codex_config(mock.port)
        s = session(agent_dirs)
        result = run(one_turn(s, "Reply pong", title="ABC-1: Make it pong"))
    assert result.ok, result
    assert result.last_message == "pong"
    assert s.thread_id and result.session_id and result.session_id.startswith(s.thread_id + "-")
    assert s.tokens.input_tokens == 120 and s.tokens.output_tokens == 7
    assert s.tokens.total_tokens == 127
    assert s.rate_limits["primary"]["usedPercent"] == 13
    names = agent_dirs.event_names()
    assert names.index("session_started") < names.index("turn_completed")
    started = next(e for e in agent_dirs.events if e.event == "session_started")
    assert started.session_id == result.session_id and started.pid == s.pid
    assert started.message == "ABC-1: Make it pong"
    # the prompt reached the model verbatim
    sent = json.dumps(mock.requests[0]["body"]["input"])
    assert "Reply pong" in sent


def test_documented_notifications_codex_always_sends_are_not_malformed(
    agent_dirs: AgentDirs,
) -> None:
    # A sandboxed run's turn carries the launcher's externalSandbox policy; codex then always
    # announces thread/settings/updated. That is protocol we do not use, not an unusable line.
    with MockServer(script_first(responses_text("pong"))) as mock:
        agent_dirs.write_codex_config(mock.port)
        s = session(agent_dirs, turn_sandbox_policy=EXTERNAL_SANDBOX_POLICY)
        result = run(one_turn(s, "Reply pong"))
    assert result.ok, result
    stats = s.stream_stats
    assert stats["ignored"] >= 1, stats
    assert (stats["unknown"], stats["malformed"]) == (0, 0), stats
    assert "malformed" not in agent_dirs.event_names()


def test_two_continuation_turns_share_one_thread_and_tokens_are_absolute(
    agent_dirs: AgentDirs,
) -> None:
    with MockServer(lambda n, body: responses_text(f"answer {n}", rid=f"r{n}")) as mock:
        agent_dirs.write_codex_config(mock.port)
        s = session(agent_dirs)

        async def scenario() -> list[TurnResult]:
            await s.start()
            try:
                return [await s.run_turn("first task"), await s.run_turn("continue please")]
            finally:
                await s.stop()

        first, second = run(scenario())
        second_body = json.dumps(mock.requests[1]["body"]["input"])
    assert first.ok and second.ok
    assert first.session_id != second.session_id
    assert first.session_id and second.session_id and s.thread_id
    assert first.session_id.startswith(s.thread_id) and second.session_id.startswith(s.thread_id)
    # same thread: the second request carries the first turn's history
    assert "first task" in second_body and "continue please" in second_body
    # thread totals are absolute: 2 x (120 in, 7 out), never a sum of sums
    assert s.tokens.input_tokens == 240 and s.tokens.output_tokens == 14
    token_events = [e.tokens for e in agent_dirs.events if e.event == "tokens"]
    assert token_events[-1] == s.tokens
    assert "turn_started" in agent_dirs.event_names()


@pytest.mark.parametrize("decision", ["accept", "decline"])
def test_command_approval_follows_policy(agent_dirs: AgentDirs, decision: str) -> None:
    call = responses_call(
        "exec_command",
        {
            "cmd": "env; echo hi > made.txt",
            "sandbox_permissions": "require_escalated",
            "justification": "t",
        },
    )
    os.environ["SYMPHONY_CANARY_SECRET"] = "canary-7f3a"
    try:
        with MockServer(script_first(call)) as mock:
            agent_dirs.write_codex_config(mock.port)
            policy = ApprovalPolicy(command=decision)  # type: ignore[arg-type]
            result = run(one_turn(session(agent_dirs, approvals=policy)))
            outputs = tool_outputs(mock.requests[1]["body"])
    finally:
        del os.environ["SYMPHONY_CANARY_SECRET"]
    assert result.ok, result
    made = (agent_dirs.workspace / "made.txt").exists()
    names = agent_dirs.event_names()
    if decision == "accept":
        assert made and "approval_auto_approved" in names
        # the command ran with the agent's environment: no parent secret leaked into it
        assert outputs and "HOME=" in outputs[0] and "canary-7f3a" not in outputs[0]
    else:
        assert not made and "approval_declined" in names
        assert outputs and "rejected" in outputs[0].lower()


def test_file_change_approval_writes_the_file(agent_dirs: AgentDirs) -> None:
    patch = (
        "apply_patch <<'EOF'\n*** Begin Patch\n*** Add File: hello.txt\n+hello\n"
        "*** End Patch\nEOF\n"
    )
    with MockServer(script_first(responses_call("exec_command", {"cmd": patch}))) as mock:
        agent_dirs.write_codex_config(mock.port)
        s = session(agent_dirs, approval_policy="untrusted")
        result = run(one_turn(s))
    assert result.ok, result
    assert (agent_dirs.workspace / "hello.txt").read_text() == "hello\n"
    assert "approval_auto_approved" in agent_dirs.event_names()
    assert any(e.message and "file change completed" in e.message for e in agent_dirs.events)


def test_dynamic_tool_call_reaches_executor_and_unknown_tool_fails_softly(
    agent_dirs: AgentDirs,
) -> None:
    calls: list[ToolInvocation] = []

    async def executor(inv: ToolInvocation) -> ToolResult:
        calls.append(inv)
        if inv.tool == "broken":
            raise ConnectionError("tracker daemon unreachable")
        return ToolResult(True, {"value": "tool-result-42"})

    def script(n: int, body: dict[str, Any]) -> Reply:
        if n == 1:
            return responses_call("symphony_lookup", {"key": "magic"}, call_id="c1")
        if n == 2:
            return responses_call("broken", {}, call_id="c2")
        if n == 3:
            return responses_call("not_advertised", {"x": 1}, call_id="c3")
        return responses_text("done")

    with MockServer(script) as mock:
        agent_dirs.write_codex_config(mock.port)
        broken = ToolSpec("broken", "always fails", {"type": "object"})
        s = session(agent_dirs, tools=[LOOKUP, broken], executor=executor)
        result = run(one_turn(s))
        outs = [tool_outputs(mock.requests[i]["body"])[-1] for i in (1, 2, 3)]
    assert result.ok, result
    assert [c.tool for c in calls] == ["symphony_lookup", "broken"]
    assert calls[0].arguments == {"key": "magic"} and calls[0].call_id == "c1"
    assert calls[0].session_id == result.session_id
    assert "tool-result-42" in outs[0]
    # an executor failure is a structured tool failure, and the turn went on
    assert "tool_error" in outs[1] and "ConnectionError" in outs[1]
    # codex itself refuses a tool nobody advertised; the session still completes
    assert "not_advertised" in outs[2]


def test_model_api_401_fails_the_turn(agent_dirs: AgentDirs) -> None:
    with MockServer(lambda n, body: Reply(status=401)) as mock:
        agent_dirs.write_codex_config(mock.port)
        result = run(one_turn(session(agent_dirs)))
    assert result.status == "failed" and result.error_code == "turn_failed"
    assert result.error and "401" in result.error
    assert "turn_failed" in agent_dirs.event_names()
    assert result.outcome().status == "failed"


def test_interrupt_cancels_a_running_turn(agent_dirs: AgentDirs) -> None:
    release = threading.Event()

    def slow(n: int, body: dict[str, Any]) -> Reply:
        release.wait(30)
        return responses_text("late")

    with MockServer(slow) as mock:
        agent_dirs.write_codex_config(mock.port)
        s = session(agent_dirs)

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
    assert result.status == "cancelled" and result.error_code == "turn_cancelled"
    assert "turn_cancelled" in agent_dirs.event_names()


def test_user_input_request_blocks_the_run_without_stalling(agent_dirs: AgentDirs) -> None:
    ask = responses_call(
        "request_user_input",
        {
            "questions": [
                {
                    "id": "db",
                    "header": "Database",
                    "question": "Which database?",
                    "options": [
                        {"label": "pg", "description": "a"},
                        {"label": "sqlite", "description": "b"},
                    ],
                }
            ]
        },
    )
    with MockServer(script_first(ask)) as mock:
        agent_dirs.write_codex_config(mock.port)
        cmd = codex_command("--enable default_mode_request_user_input")
        result = run(one_turn(session(agent_dirs, command=cmd)))
    assert result.status == "input_required" and result.error_code == "turn_input_required"
    assert result.outcome().status == "blocked"
    assert any(e.message and "Which database?" in e.message for e in agent_dirs.events)


def test_turn_silence_timeout(agent_dirs: AgentDirs) -> None:
    release = threading.Event()
    with MockServer(lambda n, body: (release.wait(30), responses_text("late"))[1]) as mock:
        agent_dirs.write_codex_config(mock.port)
        s = session(agent_dirs, timeouts=Timeouts(read=20, turn=1.5))
        try:
            result = run(one_turn(s))
        finally:
            release.set()
    assert result.status == "timed_out" and result.error_code == "turn_timeout"


def test_missing_binary_is_codex_not_found(agent_dirs: AgentDirs) -> None:
    s = session(agent_dirs, command="/nonexistent/codex app-server")
    with pytest.raises(AgentError) as err:
        run(one_turn(s))
    assert err.value.error_code == "codex_not_found"


def test_cwd_outside_root_is_refused_before_launch(agent_dirs: AgentDirs, tmp_path: Path) -> None:
    marker = tmp_path / "launched"
    s = CodexSession(
        tmp_path / "home",
        CodexSessionConfig(command=f"touch {marker}; exit 1"),
        agent_dirs.codex_env(),
        workspace_root=agent_dirs.root,
    )
    with pytest.raises(AgentError) as err:
        run(s.start())
    assert err.value.error_code == "invalid_workspace_cwd"
    assert not marker.exists()


def test_process_that_speaks_nonsense_then_exits_is_port_exit(agent_dirs: AgentDirs) -> None:
    cmd = 'printf \'garbage\\n{"id": "x"}\\n\\377\\376\\n\'; echo oops >&2; exit 3'
    s = session(agent_dirs, command=cmd, timeouts=Timeouts(read=10, turn=10))
    with pytest.raises(AgentError) as err:
        run(one_turn(s))
    assert err.value.error_code == "port_exit"
    assert "rc=3" in err.value.message and "oops" in err.value.message
    assert s.stream_stats["malformed"] >= 1


def test_silent_process_is_response_timeout(agent_dirs: AgentDirs) -> None:
    s = session(agent_dirs, command="sleep 30", timeouts=Timeouts(read=0.5, turn=10))
    with pytest.raises(AgentError) as err:
        run(one_turn(s))
    assert err.value.error_code == "response_timeout"


def test_every_notification_of_the_real_schema_is_handled_or_ignored(tmp_path: Path) -> None:
    # The lists in codex_protocol follow the binary's own schema: an upgrade that adds a
    # notification shows up here instead of as "malformed" events in every run.
    subprocess.run(
        [
            codex_bin(),
            "app-server",
            "generate-json-schema",
            "--experimental",
            "--out",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    schema = json.loads((tmp_path / "ServerNotification.json").read_text())
    methods = {m for v in schema["oneOf"] for m in v["properties"]["method"]["enum"]}
    handled = cp.KNOWN_NOTIFICATIONS | cp.IGNORED_NOTIFICATIONS
    assert methods == handled, (methods - handled, handled - methods)
    assert not cp.KNOWN_NOTIFICATIONS & cp.IGNORED_NOTIFICATIONS
