"""Claude Code client: ``claude -p`` with stream-json both ways (Claude Code 2.1.197).

Each turn is one ``user`` line on stdin and ends with one ``result`` line on stdout. Tool
permission prompts arrive as ``control_request``/``can_use_tool`` (``--permission-prompt-tool
stdio``) and are answered by the same ApprovalPolicy as Codex approvals. A turn failed when its
result says ``is_error`` (even with ``subtype: success``) or the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from symphonyd import __version__
from symphonyd.core.api.shared import TokenTotals
from symphonyd.core.api.tracker import ToolResult, ToolSpec
from symphonyd.launcher.agents import claude_mcp
from symphonyd.launcher.agents.codex_protocol import as_dict, as_str
from symphonyd.launcher.agents.process import (
    AgentProcess,
    Spawner,
    check_workspace_cwd,
    local_spawn,
    shell_join,
)
from symphonyd.launcher.agents.session import (
    AgentError,
    AgentEvent,
    AgentSession,
    ApprovalPolicy,
    EventSink,
    Timeouts,
    ToolExecutor,
    ToolInvocation,
    TurnResult,
    bounded_item,
    execute_tool,
    short,
)

STREAM_FLAGS = (
    "-p",
    "--input-format",
    "stream-json",
    "--output-format",
    "stream-json",
    "--verbose",
    "--permission-prompt-tool",
    "stdio",
    # MCP servers only from our --mcp-config: none from ~/.claude.json or a .mcp.json that an
    # earlier run (or the repository) planted, which the CLI would otherwise start.
    "--strict-mcp-config",
)
# Tools whose approval follows the file-change policy; every other tool follows the command one.
FILE_TOOLS = frozenset({"Edit", "MultiEdit", "Write", "NotebookEdit"})
KNOWN_TYPES = frozenset(
    {"system", "assistant", "user", "result", "control_request", "stream_event"}
)


@dataclass
class TurnState:
    title: str | None
    announced: bool = False
    last: str | None = None


@dataclass(frozen=True)
class ClaudeSessionConfig:
    command: str = "claude"
    model: str | None = None
    allowed_tools: Sequence[str] = ()
    disallowed_tools: Sequence[str] = ()
    extra_args: Sequence[str] = ()
    timeouts: Timeouts = field(default_factory=Timeouts)
    approvals: ApprovalPolicy = field(default_factory=ApprovalPolicy)

    def shell_command(self, *, host_tools: bool = False) -> str:
        args: list[str] = list(STREAM_FLAGS)
        if host_tools:
            args += ["--mcp-config", claude_mcp.mcp_config_arg()]
        if self.model:
            args += ["--model", self.model]
        if self.allowed_tools:
            args += ["--allowedTools", ",".join(self.allowed_tools)]
        if self.disallowed_tools:
            args += ["--disallowedTools", ",".join(self.disallowed_tools)]
        args += list(self.extra_args)
        # ``command`` is operator config (like codex.command); the flags are ours, quoted.
        return f"{self.command} {shell_join(args)}"


def usage_totals(usage: Any) -> TokenTotals:
    """Tokens of one turn's ``result.usage``; cached input counts as input."""
    u = as_dict(usage)

    def n(key: str) -> int:
        v = u.get(key)
        return max(int(v), 0) if isinstance(v, int | float) and not isinstance(v, bool) else 0

    inp = n("input_tokens") + n("cache_creation_input_tokens") + n("cache_read_input_tokens")
    out = n("output_tokens")
    return TokenTotals(inp, out, inp + out)


class ClaudeSession(AgentSession):
    def __init__(
        self,
        workspace: Path,
        config: ClaudeSessionConfig,
        env: dict[str, str],
        *,
        workspace_root: Path | None = None,
        tools: Sequence[ToolSpec] = (),
        tool_executor: ToolExecutor | None = None,
        on_event: EventSink | None = None,
        spawner: Spawner = local_spawn,
    ) -> None:
        self._spawner = spawner
        # Host tools are offered only with something to run them.
        self._tools = list(tools) if tool_executor is not None else []
        self._executor = tool_executor
        self._workspace = workspace
        self._root = workspace_root
        self._config = config
        self._env = env
        self._emit_cb = on_event
        self._proc: AgentProcess | None = None
        self.claude_session_id: str | None = None
        self._turn_count = 0
        self._tokens = TokenTotals()
        self._lock = asyncio.Lock()
        self._interrupted = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def tokens(self) -> TokenTotals:
        return self._tokens

    @property
    def session_id(self) -> str | None:
        if self.claude_session_id and self._turn_count:
            return f"{self.claude_session_id}-{self._turn_count}"
        return None

    @property
    def stream_stats(self) -> dict[str, int]:
        return self._proc.stats.as_dict() if self._proc else {}

    def seconds_since_activity(self) -> float:
        return time.monotonic() - self._proc.last_activity if self._proc else 0.0

    async def start(self) -> None:
        cwd = check_workspace_cwd(self._workspace, self._root)
        command = self._config.shell_command(host_tools=bool(self._tools))
        self._proc = AgentProcess(command, cwd, self._env, spawner=self._spawner)
        await self._proc.spawn()
        # claude prints nothing until the first user line, so a quick exit is the only startup
        # failure visible here (127: the command is missing).
        rc = await self._proc.wait_exit(0.2)
        if rc is not None:
            await self._proc.stop()
            code = "claude_not_found" if rc == 127 else "port_exit"
            raise AgentError(
                f"claude exited at start (rc={rc}): {self._proc.stderr.tail()}", code=code
            )

    async def run_turn(self, prompt: str, *, title: str | None = None) -> TurnResult:
        if self._proc is None:
            raise AgentError("session not started", code="port_exit")
        async with self._lock:
            self._interrupted = False
            self._turn_count += 1
            line = {
                "type": "user",
                "message": {"role": "user", "content": prompt},
                "parent_tool_use_id": None,
                "session_id": self.claude_session_id or "",
            }
            try:
                await self._proc.send(line)
            except AgentError as exc:
                return self._finish(TurnResult("failed", None, exc.error_code, exc.message))
            first = self._turn_count == 1
            return self._finish(await self._read_turn(title if first else None))

    async def interrupt(self) -> None:
        if self._proc is None:
            return
        self._interrupted = True
        request = {"subtype": "interrupt"}
        with contextlib.suppress(AgentError):
            await self._proc.send(
                {"type": "control_request", "request_id": uuid.uuid4().hex, "request": request}
            )

    async def stop(self) -> None:
        if self._proc is not None:
            await self._proc.stop()

    # ------------------------------------------------------------------ one turn

    async def _read_turn(self, title: str | None) -> TurnResult:
        assert self._proc is not None
        turn = TurnState(title)
        limit = self._config.timeouts.turn
        while True:
            silent = time.monotonic() - self._proc.last_activity
            try:
                msg = await asyncio.wait_for(self._proc.next_object(), max(limit - silent, 0.01))
            except TimeoutError:
                if time.monotonic() - self._proc.last_activity < limit:
                    continue
                await self.interrupt()
                return TurnResult(
                    "timed_out",
                    self.session_id,
                    "turn_timeout",
                    f"no output for {limit:g}s",
                    turn.last,
                )
            if msg is None:
                rc = await self._proc.wait_exit(2.0)
                code = "claude_not_found" if rc == 127 else "port_exit"
                tail = self._proc.stderr.tail()
                return TurnResult(
                    "failed",
                    self.session_id,
                    code,
                    f"claude exited (rc={rc}) {tail}".strip(),
                    turn.last,
                )
            result = await self.handle(msg, turn)
            if result is not None:
                return result

    async def handle(self, msg: dict[str, Any], turn: TurnState) -> TurnResult | None:
        """Act on one stdout object; the turn's result when this object ends it."""
        assert self._proc is not None
        kind = msg.get("type")
        if not isinstance(kind, str) or kind not in KNOWN_TYPES:
            self._proc.stats.unknown += 1
            return None
        sid = as_str(msg.get("session_id"))
        if sid and not self.claude_session_id:
            self.claude_session_id = sid
        if not turn.announced and self.claude_session_id:
            turn.announced = True
            first = self._turn_count == 1
            self._emit("session_started" if first else "turn_started", message=turn.title)
        if kind == "control_request":
            await self._control(msg)
        elif kind == "assistant":
            text = _assistant_text(msg)
            if text:
                turn.last = short(text)
                self._emit(
                    "notification", message=turn.last, item=bounded_item("agent_message", text)
                )
            for command in _bash_commands(msg):
                self._emit("notification", item=bounded_item("command", command))
        elif kind == "result":
            return self._result(msg, turn.last)
        return None

    def _result(self, msg: dict[str, Any], last: str | None) -> TurnResult:
        turn = usage_totals(msg.get("usage"))
        # result.usage covers this turn only, so the session total is the running sum.
        self._tokens = TokenTotals(
            self._tokens.input_tokens + turn.input_tokens,
            self._tokens.output_tokens + turn.output_tokens,
            self._tokens.total_tokens + turn.total_tokens,
        )
        self._emit("tokens", tokens=self._tokens)
        text = as_str(msg.get("result"))
        last = short(text) if text else last
        subtype = as_str(msg.get("subtype"))
        if msg.get("is_error") is True or subtype != "success":
            reason = short(f"{subtype}: {text or msg.get('errors') or 'error'}")
            if self._interrupted:
                return TurnResult("cancelled", self.session_id, "turn_cancelled", reason, last)
            return TurnResult("failed", self.session_id, "turn_failed", reason, last)
        if self._interrupted:
            return TurnResult(
                "cancelled", self.session_id, "turn_cancelled", "turn interrupted", last
            )
        return TurnResult("completed", self.session_id, last_message=last)

    async def _control(self, msg: dict[str, Any]) -> None:
        assert self._proc is not None
        request_id = msg.get("request_id")
        request = as_dict(msg.get("request"))
        if request.get("subtype") == "mcp_message":
            answer = await claude_mcp.answer(
                request.get("server_name"),
                request.get("message"),
                self._tools,
                self._call_tool,
                __version__,
            )
            reply: dict[str, Any] = {
                "subtype": "success",
                "request_id": request_id,
                "response": {"mcp_response": answer},
            }
        elif request.get("subtype") != "can_use_tool":
            reply = {
                "subtype": "error",
                "request_id": request_id,
                "error": f"unsupported control request {short(str(request.get('subtype')), 60)}",
            }
        else:
            tool = as_str(request.get("tool_name")) or "?"
            approvals = self._config.approvals
            decision = approvals.file_change if tool in FILE_TOOLS else approvals.command
            if claude_mcp.is_host_tool(tool, self._tools):
                decision = "accept"  # our own tracker tools, already scoped to this issue
            what = f"{tool}: {short(str(request.get('input')), 160)}"
            if decision == "accept":
                self._emit("approval_auto_approved", message=f"tool approved {what}")
                body = {"behavior": "allow", "updatedInput": as_dict(request.get("input"))}
            else:
                self._emit("approval_declined", message=f"tool declined by policy {what}")
                body = {"behavior": "deny", "message": "declined by the operator's approval policy"}
            reply = {"subtype": "success", "request_id": request_id, "response": body}
        with contextlib.suppress(AgentError):
            await self._proc.send({"type": "control_response", "response": reply})

    async def _call_tool(self, name: str, arguments: Any) -> ToolResult:
        assert self._executor is not None  # no tools are offered without one
        invocation = ToolInvocation(name, arguments, None, self.session_id)
        result = await execute_tool(self._executor, invocation, self._config.timeouts.tool)
        self._emit("tool_call", message=f"tool {name} success={result.success}")
        return result

    def _finish(self, result: TurnResult) -> TurnResult:
        name = result.event_name
        self._emit(name, message=result.error or result.last_message, tokens=self._tokens)
        return result

    def _emit(self, name: Any, **fields: Any) -> None:
        if self._emit_cb is None:
            return
        event = AgentEvent(
            name, session_id=self.session_id, turn_count=self._turn_count, pid=self.pid, **fields
        )
        with contextlib.suppress(Exception):
            self._emit_cb(event)


def _assistant_text(msg: dict[str, Any]) -> str:
    content = as_dict(msg.get("message")).get("content")
    if not isinstance(content, list):
        return ""
    return " ".join(
        t
        for b in content
        if isinstance(b, dict) and b.get("type") == "text" and isinstance(t := b.get("text"), str)
    )


def _bash_commands(msg: dict[str, Any]) -> list[str]:
    """The commands of the message's Bash tool uses, for the audit transcript."""
    content = as_dict(msg.get("message")).get("content")
    if not isinstance(content, list):
        return []
    return [
        c
        for b in content
        if isinstance(b, dict) and b.get("type") == "tool_use" and b.get("name") == "Bash"
        if isinstance(c := as_dict(b.get("input")).get("command"), str) and c
    ]
