"""The SDK MCP bridge's answers to whatever the CLI sends, including garbage."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from symphonyd.core.api.tracker import ToolResult, ToolSpec
from symphonyd.launcher.agents import claude_mcp

TOOLS = [ToolSpec("tracker_comment", "comment", {"type": "object"})]


def answer(server: Any, message: Any) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    calls: list[tuple[str, Any]] = []

    async def call(name: str, arguments: Any) -> ToolResult:
        calls.append((name, arguments))
        return ToolResult(True, {"ok": True})

    reply = asyncio.run(claude_mcp.answer(server, message, TOOLS, call, "1.2.3"))
    json.dumps(reply)  # always serialisable
    return reply, calls


def test_handshake_and_listing() -> None:
    init, _ = answer("symphony", {"jsonrpc": "2.0", "id": 0, "method": "initialize"})
    assert init["id"] == 0 and init["result"]["capabilities"] == {"tools": {}}
    assert init["result"]["serverInfo"] == {"name": "symphony", "version": "1.2.3"}
    listed, _ = answer("symphony", {"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert [t["name"] for t in listed["result"]["tools"]] == ["tracker_comment"]
    assert listed["result"]["tools"][0]["inputSchema"] == {"type": "object"}


def test_a_call_runs_the_executor_once() -> None:
    msg = {"id": 7, "method": "tools/call", "params": {"name": "tracker_comment", "arguments": {}}}
    reply, calls = answer("symphony", msg)
    assert calls == [("tracker_comment", {})]
    assert reply["result"] == {
        "content": [{"type": "text", "text": '{"ok": true}'}],
        "isError": False,
    }


@pytest.mark.parametrize(
    ("server", "message", "code"),
    [
        ("other", {"id": 1, "method": "tools/list"}, -32601),
        ("symphony", {"id": 1, "method": "resources/list"}, -32601),
        ("symphony", {"id": 1, "method": "tools/call", "params": {"name": "rm_rf"}}, -32602),
        ("symphony", {"id": 1, "method": "tools/call", "params": "garbage"}, -32602),
        ("symphony", {"id": 1, "method": "tools/call"}, -32602),
        ("symphony", "not an object", -32601),
        (None, None, -32601),
    ],
)
def test_bad_messages_get_json_rpc_errors_and_run_nothing(
    server: Any, message: Any, code: int
) -> None:
    reply, calls = answer(server, message)
    assert reply["error"]["code"] == code and calls == []


def test_only_offered_tools_count_as_ours() -> None:
    assert claude_mcp.is_host_tool("mcp__symphony__tracker_comment", TOOLS)
    assert not claude_mcp.is_host_tool("mcp__symphony__tracker_delete", TOOLS)
    assert not claude_mcp.is_host_tool("mcp__other__tracker_comment", TOOLS)
    assert not claude_mcp.is_host_tool("tracker_comment", TOOLS)
