"""Client paths the real codex never takes, driven by a scripted fake app-server process."""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
from pathlib import Path

from symphonyd.core.api.tracker import ToolSpec
from symphonyd.launcher.agents.codex import CodexSession, CodexSessionConfig
from symphonyd.launcher.agents.session import Timeouts, TurnResult
from tests.launcher.agents.conftest import AgentDirs

FAKE = Path(__file__).with_name("fake_app_server.py")


def fake_session(dirs: AgentDirs, scenario: str, report: Path, read_s: float = 10) -> CodexSession:
    cmd = " ".join(shlex.quote(a) for a in (sys.executable, str(FAKE), scenario, str(report)))
    config = CodexSessionConfig(
        command=cmd, timeouts=Timeouts(read=read_s, turn=20), max_line=1024 * 1024
    )
    tools = [ToolSpec("known", "a tool", {"type": "object"})]
    return CodexSession(
        dirs.workspace,
        config,
        dirs.codex_env(),
        workspace_root=dirs.root,
        tools=tools,
        on_event=dirs.events.append,
    )


def drive(s: CodexSession, title: str | None = None) -> TurnResult:
    async def scenario() -> TurnResult:
        await s.start()
        try:
            return await s.run_turn("hi", title=title)
        finally:
            await s.stop()

    return asyncio.run(asyncio.wait_for(scenario(), 60))


def replies(report: Path) -> dict[int, dict[str, object]]:
    out = {}
    for line in report.read_text().splitlines():
        msg = json.loads(line)
        if isinstance(msg.get("id"), int) and "method" not in msg:
            out[msg["id"]] = msg
    return out


def test_unknown_tool_and_unknown_requests_are_answered(
    agent_dirs: AgentDirs, tmp_path: Path
) -> None:
    report = tmp_path / "report.ndjson"
    result = drive(fake_session(agent_dirs, "requests", report))
    assert result.ok
    got = replies(report)
    tool = got[0]["result"]
    assert isinstance(tool, dict) and tool["success"] is False
    assert "unsupported_tool" in tool["contentItems"][0]["text"]
    assert got[1]["error"] and got[2]["error"]  # JSON-RPC errors, not silence
    assert "unsupported_tool_call" in agent_dirs.event_names()


def test_hostile_stream_is_survived_and_counted(agent_dirs: AgentDirs, tmp_path: Path) -> None:
    report = tmp_path / "report.ndjson"
    s = fake_session(agent_dirs, "hostile", report)
    result = drive(s)
    assert result.ok
    stats = s.stream_stats
    assert stats["oversized"] == 1
    assert stats["malformed"] >= 2  # invalid UTF-8 garbage and the too-deep array
    assert stats["unknown"] >= 3  # bad method type, unknown method, stray response id
    # absolute totals taken from ``total``; ``last`` and bad types ignored
    assert (s.tokens.input_tokens, s.tokens.output_tokens, s.tokens.total_tokens) == (10, 2, 12)
    # sparse merge: a null primary keeps the last primary
    assert s.rate_limits == {"primary": {"usedPercent": 5}, "secondary": {"usedPercent": 9}}
    assert "malformed" in agent_dirs.event_names()


def test_exit_mid_turn_is_port_exit(agent_dirs: AgentDirs, tmp_path: Path) -> None:
    result = drive(fake_session(agent_dirs, "exit", tmp_path / "r"))
    assert result.status == "failed" and result.error_code == "port_exit"
    assert result.error and "rc=7" in result.error


def test_thread_name_and_turn_start_go_out_together(agent_dirs: AgentDirs, tmp_path: Path) -> None:
    """thread/name/set is sent first and answered with turn/start: a server that answers it
    only once turn/start has come still names the thread, within the same turn. A client that
    waited for the name before sending turn/start would give up on it (read timeout) and
    then see its late answer as an unknown response."""
    report = tmp_path / "report.ndjson"
    s = fake_session(agent_dirs, "named", report, read_s=2)
    result = drive(s, title="T-1: a title")
    assert result.ok
    sent = [json.loads(line).get("method") for line in report.read_text().splitlines()]
    assert sent.index("thread/name/set") < sent.index("turn/start")
    assert s.stream_stats["unknown"] == 0
