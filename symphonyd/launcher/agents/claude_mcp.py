"""The host-side tracker tools for Claude Code, served as an SDK MCP server over its stdio.

Claude Code reaches tools through MCP. An MCP server the agent starts itself would run inside
the sandbox, where neither the tracker socket nor the credential exists (and must not). So
the launcher declares an *SDK* server (``{"type": "sdk"}`` in ``--mcp-config``): the CLI
then sends each JSON-RPC message of that server to us as a ``control_request`` of subtype
``mcp_message`` on stdout, and reads our JSON-RPC answer from the ``control_response`` on
stdin. Tool calls go to the same executor as Codex's dynamic tools (the tracker daemon,
scoped to the run's issue). docs/design/0506-claude-tracker-tools.md.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from symphonyd.core.api.tracker import ToolResult, ToolSpec
from symphonyd.launcher.agents.session import result_text

SERVER = "symphony"
TOOL_PREFIX = f"mcp__{SERVER}__"
PROTOCOL_VERSION = "2024-11-05"
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602

CallTool = Callable[[str, Any], Awaitable[ToolResult]]


def mcp_config_arg() -> str:
    return json.dumps({"mcpServers": {SERVER: {"type": "sdk", "name": SERVER}}})


def is_host_tool(claude_tool_name: str, tools: Sequence[ToolSpec]) -> bool:
    """``mcp__symphony__<name>`` for a tool this session offers."""
    if not claude_tool_name.startswith(TOOL_PREFIX):
        return False
    name = claude_tool_name[len(TOOL_PREFIX) :]
    return any(t.name == name for t in tools)


async def answer(
    server: Any, message: Any, tools: Sequence[ToolSpec], call: CallTool, version: str
) -> dict[str, Any]:
    """The JSON-RPC reply to one message the CLI sent to an SDK MCP server."""
    msg = message if isinstance(message, dict) else {}
    rid = msg.get("id")
    method = msg.get("method")
    if server != SERVER:
        return _error(rid, METHOD_NOT_FOUND, f"no MCP server named {str(server)[:60]!r}")
    if method == "initialize":
        return _result(
            rid,
            {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {"tools": {}},
                "serverInfo": {"name": SERVER, "version": version},
            },
        )
    if method == "notifications/initialized":
        return {"jsonrpc": "2.0", "result": {}}
    if method == "tools/list":
        listed = [
            {"name": t.name, "description": t.description, "inputSchema": t.input_schema}
            for t in tools
        ]
        return _result(rid, {"tools": listed})
    if method == "tools/call":
        params = msg.get("params")
        params = params if isinstance(params, dict) else {}
        name = params.get("name")
        if not isinstance(name, str) or not any(t.name == name for t in tools):
            return _error(rid, INVALID_PARAMS, f"unknown tool {str(name)[:80]!r}")
        result = await call(name, params.get("arguments"))
        content = [{"type": "text", "text": result_text(result)}]
        return _result(rid, {"content": content, "isError": not result.success})
    return _error(rid, METHOD_NOT_FOUND, f"method {str(method)[:60]!r} not supported")


def _result(rid: Any, result: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "result": result}


def _error(rid: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}}
