"""Agent environment, cwd checks, command building and config wiring (no agent binary)."""

from __future__ import annotations

import asyncio
import shlex
from pathlib import Path

import pytest

from symphonyd.core.api.tracker import ToolCall, ToolResult
from symphonyd.core.config import ServiceConfig, build_service_config
from symphonyd.core.issue import build_issue
from symphonyd.core.workflow import parse_workflow
from symphonyd.launcher.agents.claude import ClaudeSession, ClaudeSessionConfig, usage_totals
from symphonyd.launcher.agents.codex import CodexSession
from symphonyd.launcher.agents.factory import session_factory, tracker_tool_executor
from symphonyd.launcher.agents.process import build_env, check_workspace_cwd
from symphonyd.launcher.agents.session import AgentError, ToolInvocation


def test_env_is_built_from_an_allowlist_only() -> None:
    parent = {
        "PATH": "/usr/bin",
        "LANG": "C.UTF-8",
        "LINEAR_API_KEY": "lin_secret",
        "OPENAI_API_KEY": "sk-parent",
        "AWS_SECRET_ACCESS_KEY": "x",
        "SYMPHONY_CANARY": "canary",
    }
    env = build_env(home=Path("/h"), tmpdir=Path("/t"), extra={"CODEX_HOME": "/c"}, parent=parent)
    assert env == {
        "PATH": "/usr/bin",
        "LANG": "C.UTF-8",
        "HOME": "/h",
        "TMPDIR": "/t",
        "CODEX_HOME": "/c",
    }


@pytest.mark.parametrize("name", ["LINEAR_API_KEY", "SYMPHONY_TRACKER_TOKEN", "GITHUB_TOKEN"])
def test_tracker_secrets_cannot_be_forwarded(name: str) -> None:
    with pytest.raises(AgentError):
        build_env(home=Path("/h"), extra={name: "x"}, parent={})


def test_cwd_must_be_strictly_inside_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "ABC-1").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (root / "link").symlink_to(tmp_path / "outside")
    assert check_workspace_cwd(root / "ABC-1", root) == (root / "ABC-1").resolve()
    for bad in (root, root / "link", root / "missing", tmp_path / "outside"):
        with pytest.raises(AgentError) as err:
            check_workspace_cwd(bad, root)
        assert err.value.error_code == "invalid_workspace_cwd"


def test_claude_command_quotes_our_flags() -> None:
    cmd = ClaudeSessionConfig(command="claude", model="m; rm -rf /", allowed_tools=["Bash", "Read"])
    argv = shlex.split(cmd.shell_command())
    assert argv[:2] == ["claude", "-p"] and "--permission-prompt-tool" in argv
    assert argv[argv.index("--model") + 1] == "m; rm -rf /"
    assert argv[argv.index("--allowedTools") + 1] == "Bash,Read"


def test_claude_usage_counts_cache_as_input() -> None:
    totals = usage_totals(
        {
            "input_tokens": 5,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 10,
            "output_tokens": 7,
        }
    )
    assert (totals.input_tokens, totals.output_tokens, totals.total_tokens) == (115, 7, 122)
    assert usage_totals("garbage").total_tokens == 0
    assert usage_totals({"input_tokens": True, "output_tokens": -3}).total_tokens == 0


def test_session_factory_follows_the_workflow(tmp_path: Path) -> None:
    def config(runtime: str) -> ServiceConfig:
        text = (
            f"---\ntracker:\n  kind: memory\nworkspace:\n  root: {tmp_path}\n"
            f"agent:\n  runtime: {runtime}\ncodex:\n  command: my-codex app-server\n"
            "  read_timeout_ms: 1234\n---\nDo {{ issue.identifier }}\n"
        )
        return build_service_config(parse_workflow(text), env={}, workflow_dir=tmp_path)

    ws = tmp_path / "ABC-1"
    codex = session_factory(config("codex"), agent_home=tmp_path / "home")(ws, lambda e: None)
    assert isinstance(codex, CodexSession)
    assert codex._config.command == "my-codex app-server"
    assert codex._config.timeouts.read == pytest.approx(1.234)
    assert codex._env["CODEX_HOME"] == str(tmp_path / "home" / ".codex")
    claude = session_factory(config("claude"), agent_home=tmp_path / "home")(ws, lambda e: None)
    assert isinstance(claude, ClaudeSession)


def test_tool_executor_scopes_calls_to_the_run_issue() -> None:
    issue = build_issue(id="i", identifier="ABC-1", title="t", state="Todo", dispatchable=True)
    seen: list[ToolCall] = []

    async def tracker_call(call: ToolCall) -> ToolResult:
        seen.append(call)
        return ToolResult(True, {"ok": 1})

    execute = tracker_tool_executor(tracker_call, issue)

    async def go() -> ToolResult:
        return await execute(ToolInvocation("comment", {"body": "x"}, "c1", "thr-turn"))

    result = asyncio.run(go())
    assert result.success and seen[0].issue == issue and seen[0].session_id == "thr-turn"
    assert seen[0].tool == "comment" and seen[0].arguments == {"body": "x"}
