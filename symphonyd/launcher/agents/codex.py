"""Codex ``app-server`` client over stdio (SPEC 10, protocol 0.169.0).

One reader task owns stdout: responses resolve pending requests, server requests are answered
(approvals by policy, tool calls through the executor, anything else with a JSON-RPC error so
nothing waits), notifications update tokens, rate limits and the current turn. ``run_turn``
waits for ``turn/completed`` with a silence timeout that every output line resets.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from symphonyd import __version__
from symphonyd.core.api.shared import TokenTotals
from symphonyd.core.api.tracker import ToolSpec
from symphonyd.launcher.agents import codex_protocol as cp
from symphonyd.launcher.agents.process import (
    AgentProcess,
    Spawner,
    check_workspace_cwd,
    local_spawn,
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
from symphonyd.launcher.agents.stream import MAX_LINE


@dataclass(frozen=True)
class CodexSessionConfig:
    """The run's ``codex`` settings (SPEC 5.3.6), bound for the session's whole life."""

    command: str = "codex app-server"
    approval_policy: Any = "never"  # as symphonyd.core.config: the kernel sandbox is the boundary
    thread_sandbox: Any = "workspace-write"
    turn_sandbox_policy: Any | None = None  # None: workspaceWrite rooted at the workspace
    timeouts: Timeouts = field(default_factory=Timeouts)
    approvals: ApprovalPolicy = field(default_factory=ApprovalPolicy)
    max_line: int = MAX_LINE


@dataclass
class _Turn:
    turn_id: str | None = None
    done: asyncio.Future[TurnResult] | None = None
    input_required: bool = False
    last_message: str | None = None


class CodexSession(AgentSession):
    def __init__(
        self,
        workspace: Path,
        config: CodexSessionConfig,
        env: dict[str, str],
        *,
        workspace_root: Path | None = None,
        tools: Sequence[ToolSpec] = (),
        tool_executor: ToolExecutor | None = None,
        on_event: EventSink | None = None,
        spawner: Spawner = local_spawn,
    ) -> None:
        self._spawner = spawner
        self._workspace = workspace
        self._root = workspace_root
        self._config = config
        self._env = env
        self._tools = list(tools)
        self._tool_names = {t.name for t in self._tools}
        self._executor = tool_executor
        self._emit_cb = on_event
        self._proc: AgentProcess | None = None
        self._reader: asyncio.Task[None] | None = None
        self._next_id = 1
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self.thread_id: str | None = None
        self._turn = _Turn()
        self._early_completions: dict[str, Any] = {}
        self._turn_count = 0
        self._tokens = TokenTotals()
        self._rate_limits: dict[str, Any] = {}
        self._exit_reason: AgentError | None = None
        self._cwd = ""

    # ------------------------------------------------------------------ AgentSession

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def tokens(self) -> TokenTotals:
        return self._tokens

    @property
    def rate_limits(self) -> dict[str, Any]:
        return dict(self._rate_limits)

    @property
    def session_id(self) -> str | None:
        if self.thread_id and self._turn.turn_id:
            return f"{self.thread_id}-{self._turn.turn_id}"
        return None

    def seconds_since_activity(self) -> float:
        return time.monotonic() - self._proc.last_activity if self._proc else 0.0

    @property
    def stream_stats(self) -> dict[str, int]:
        return self._proc.stats.as_dict() if self._proc else {}

    @property
    def stderr_tail(self) -> str:
        return self._proc.stderr.tail() if self._proc else ""

    async def start(self) -> None:
        cwd = check_workspace_cwd(self._workspace, self._root)
        self._cwd = str(cwd)
        self._proc = AgentProcess(
            self._config.command, cwd, self._env, self._config.max_line, spawner=self._spawner
        )
        await self._proc.spawn()
        self._reader = asyncio.create_task(self._read_loop())
        try:
            await self._handshake()
        except BaseException:
            await self.stop()  # a half-started codex must not outlive the failed start
            raise

    async def _handshake(self) -> None:
        assert self._proc is not None
        await self._request("initialize", cp.initialize_params(__version__))
        await self._send_or_exit({"method": "initialized"})
        policy, sandbox = self._config.approval_policy, self._config.thread_sandbox
        result = await self._request(
            "thread/start", cp.thread_start_params(self._cwd, policy, sandbox, self._tools)
        )
        thread_id = cp.as_str(cp.as_dict(cp.as_dict(result).get("thread")).get("id"))
        if not thread_id:
            raise AgentError("thread/start returned no thread id", code="response_error")
        self.thread_id = thread_id

    async def run_turn(self, prompt: str, *, title: str | None = None) -> TurnResult:
        if self._proc is None or self.thread_id is None:
            raise AgentError("session not started", code="port_exit")
        loop = asyncio.get_running_loop()
        self._turn = _Turn(done=loop.create_future())
        named = None
        try:
            if title and self._turn_count == 0:  # best effort; answered with turn/start's
                with contextlib.suppress(AgentError):
                    named = await self._send("thread/name/set", {"threadId": self.thread_id,
                                                                 "name": title})  # fmt: skip
            sandbox = self._config.turn_sandbox_policy or cp.default_sandbox_policy(self._cwd)
            started = await self._send(
                "turn/start", cp.turn_start_params(self.thread_id, prompt, self._cwd, sandbox)
            )
            if named is not None:
                with contextlib.suppress(AgentError):
                    await self._answer_to(*named)
            result = await self._answer_to(*started)
        except AgentError as exc:
            return TurnResult("failed", error_code=exc.error_code, error=exc.message)
        turn_id, _, _ = cp.turn_of(result)
        if not turn_id:
            return TurnResult(
                "failed", error_code="response_error", error="turn/start returned no turn id"
            )
        self._turn.turn_id = turn_id
        self._turn_count += 1
        early = self._early_completions.pop(turn_id, None)
        if early is not None:  # the reader saw turn/completed before we got here
            self._turn_completed(early)
        self._early_completions.clear()
        first = self._turn_count == 1
        self._emit("session_started" if first else "turn_started", message=title if first else None)
        outcome = await self._wait_turn()
        self._emit_outcome(outcome)
        return outcome

    async def interrupt(self) -> None:
        if self._proc is None or self.thread_id is None or self._turn.turn_id is None:
            return
        params = {"threadId": self.thread_id, "turnId": self._turn.turn_id}
        with contextlib.suppress(AgentError):
            await self._request("turn/interrupt", params)

    async def stop(self) -> None:
        if self._proc is not None:
            await self._proc.stop()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    # ------------------------------------------------------------------ requests

    async def _request(self, method: str, params: Any) -> Any:
        return await self._answer_to(*await self._send(method, params))

    async def _send(self, method: str, params: Any) -> tuple[str, int]:
        """Send a request; ``_answer_to(method, id)`` waits for its answer (one round trip
        for two requests sent one after the other: thread/name/set, turn/start)."""
        assert self._proc is not None
        if self._exit_reason is not None:
            raise self._exit_reason
        req_id, self._next_id = self._next_id, self._next_id + 1
        fut = self._pending[req_id] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())  # may go unawaited
        try:
            await self._send_or_exit({"id": req_id, "method": method, "params": params})
        except BaseException:
            del self._pending[req_id]
            raise
        return method, req_id

    async def _answer_to(self, method: str, req_id: int) -> Any:
        try:
            return await asyncio.wait_for(self._pending[req_id], self._config.timeouts.read)
        except TimeoutError:
            raise AgentError(
                f"{method}: no response within {self._config.timeouts.read:g}s",
                code="response_timeout",
            ) from None
        finally:
            self._pending.pop(req_id, None)

    async def _send_or_exit(self, message: dict[str, Any]) -> None:
        """Send; if stdin is gone, report why the process ended rather than the broken pipe."""
        assert self._proc is not None
        try:
            await self._proc.send(message)
        except AgentError as exc:
            if self._reader is not None:
                await asyncio.wait({self._reader}, timeout=3)
            raise (self._exit_reason or exc) from None

    async def _wait_turn(self) -> TurnResult:
        assert self._proc is not None and self._turn.done is not None
        limit = self._config.timeouts.turn
        while True:
            silent = time.monotonic() - self._proc.last_activity
            try:
                return await asyncio.wait_for(
                    asyncio.shield(self._turn.done), max(limit - silent, 0.01)
                )
            except TimeoutError:
                if time.monotonic() - self._proc.last_activity >= limit:
                    with contextlib.suppress(AgentError):
                        await self.interrupt()
                    return TurnResult(
                        "timed_out",
                        session_id=self.session_id,
                        error_code="turn_timeout",
                        error=f"no output from codex for {limit:g}s",
                        last_message=self._turn.last_message,
                    )

    # ------------------------------------------------------------------ reading

    async def _read_loop(self) -> None:
        assert self._proc is not None
        try:
            while (msg := await self._proc.next_object()) is not None:
                self._dispatch(msg)
        finally:
            await self._on_exit()

    def _dispatch(self, msg: dict[str, Any]) -> None:
        method = msg.get("method")
        has_id = (
            "id" in msg and isinstance(msg["id"], int | str) and not isinstance(msg["id"], bool)
        )
        if isinstance(method, str) and has_id:
            self._spawn(self._answer(msg["id"], method, msg.get("params")))
        elif isinstance(method, str):
            self._notification(method, msg.get("params"))
        elif has_id and ("result" in msg or "error" in msg):
            self._response(msg)
        else:
            self._unknown()

    def _response(self, msg: dict[str, Any]) -> None:
        fut = self._pending.get(msg["id"]) if isinstance(msg["id"], int) else None
        if fut is None or fut.done():
            self._unknown()
            return
        if "error" in msg:
            err = cp.as_dict(msg["error"])
            text = short(str(err.get("message") or "error"))
            fut.set_exception(
                AgentError(f"codex error {err.get('code')}: {text}", code="response_error")
            )
        else:
            fut.set_result(msg.get("result"))

    def _unknown(self) -> None:
        assert self._proc is not None
        self._proc.stats.unknown += 1
        count = self._proc.stats.unknown + self._proc.stats.malformed
        if count & (count - 1) == 0:  # 1, 2, 4, 8...: visible without flooding
            self._emit("malformed", message=f"dropped {count} unusable lines from codex")

    def _notification(self, method: str, params: Any) -> None:
        if method in cp.IGNORED_NOTIFICATIONS:
            assert self._proc is not None
            self._proc.stats.ignored += 1
        elif method not in cp.KNOWN_NOTIFICATIONS:
            self._unknown()
        elif method == "turn/completed":
            self._turn_completed(params)
        elif method == "thread/tokenUsage/updated":
            totals = cp.token_totals(params)
            if totals is not None and totals != self._tokens:
                # Absolute totals can only grow; a smaller figure is a reordering, not a refund.
                self._tokens = TokenTotals(
                    max(totals.input_tokens, self._tokens.input_tokens),
                    max(totals.output_tokens, self._tokens.output_tokens),
                    max(totals.total_tokens, self._tokens.total_tokens),
                )
                self._emit("tokens", tokens=self._tokens)
        elif method == "account/rateLimits/updated":
            update = cp.as_dict(params).get("rateLimits")
            merged = cp.merge_sparse(self._rate_limits, update)
            if merged != self._rate_limits:
                self._rate_limits = merged
                self._emit("rate_limits", rate_limits=merged)
        elif method == "item/completed":
            kind, summary = cp.item_summary(params)
            if kind == "agentMessage" and summary:
                self._turn.last_message = summary
            entry = cp.transcript_item(params)
            if summary or entry:
                self._emit(
                    "notification",
                    message=summary,
                    item=None if entry is None else bounded_item(*entry),
                )
        elif method == "error":
            p = cp.as_dict(params)
            if p.get("willRetry") is False:
                self._emit("notification", message=cp.turn_error_message(p))

    def _turn_completed(self, params: Any) -> None:
        turn_id, status, turn = cp.turn_of(params)
        current = self._turn
        if current.turn_id is None and turn_id and len(self._early_completions) < 8:
            self._early_completions[turn_id] = params
            return
        if current.done is None or current.done.done() or turn_id != current.turn_id:
            return
        sid, last = self.session_id, current.last_message
        if current.input_required:
            result = TurnResult(
                "input_required",
                sid,
                "turn_input_required",
                "the agent asked for user input; the run waits for an operator",
                last,
            )
        elif status == "completed":
            result = TurnResult("completed", sid, last_message=last)
        elif status == "interrupted":
            result = TurnResult("cancelled", sid, "turn_cancelled", "turn interrupted", last)
        else:
            result = TurnResult("failed", sid, "turn_failed", cp.turn_error_message(turn), last)
        current.done.set_result(result)

    async def _on_exit(self) -> None:
        assert self._proc is not None
        rc = await self._proc.wait_exit(2.0)
        if rc == 127 and self.thread_id is None:
            reason = AgentError(
                f"codex command not found: {self._config.command!r}", code="codex_not_found"
            )
        else:
            tail = self._proc.stderr.tail()
            reason = AgentError(
                f"codex exited (rc={rc}){': ' + tail if tail else ''}", code="port_exit"
            )
        self._exit_reason = reason
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(reason)
        done = self._turn.done
        if done is not None and not done.done():
            done.set_result(
                TurnResult(
                    "failed",
                    self.session_id,
                    reason.error_code,
                    reason.message,
                    self._turn.last_message,
                )
            )

    # ------------------------------------------------------------------ server requests

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _answer(self, req_id: Any, method: str, params: Any) -> None:
        assert self._proc is not None
        try:
            reply = await self._server_request(method, cp.as_dict(params))
        except Exception as exc:  # a bug in a handler must still answer, never stall codex
            reply = {
                "error": {"code": -32603, "message": f"client error: {exc.__class__.__name__}"}
            }
        with contextlib.suppress(AgentError):
            await self._proc.send({"id": req_id, **reply})

    async def _server_request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        approvals = self._config.approvals
        if method in (cp.COMMAND_APPROVAL, cp.LEGACY_COMMAND_APPROVAL):
            return {
                "result": self._approve(method, approvals.command, "command", params.get("command"))
            }
        if method in (cp.FILE_APPROVAL, cp.LEGACY_PATCH_APPROVAL):
            return {"result": self._approve(method, approvals.file_change, "file change", None)}
        if method == cp.USER_INPUT:
            # Documented policy: answer at once (codex never waits), then end the turn blocked.
            self._turn.input_required = True
            self._emit("notification", message=_questions(params))
            self._spawn(self.interrupt())
            return {"result": {"answers": {}}}
        if method == cp.TOOL_CALL:
            return {"result": await self._tool_call(params)}
        self._emit(
            "notification", message=f"declined unsupported codex request {short(method, 80)}"
        )
        return {"error": {"code": -32601, "message": f"unsupported request {method}"}}

    def _approve(self, method: str, decision: str, what: str, command: Any) -> dict[str, Any]:
        detail = f": {short(str(command), 160)}" if command else ""
        if decision == "accept":
            self._emit("approval_auto_approved", message=f"{what} approved{detail}")
            return cp.approval_result(method, "accept")
        self._emit("approval_declined", message=f"{what} declined by policy{detail}")
        return cp.approval_result(method, "decline")

    async def _tool_call(self, params: dict[str, Any]) -> dict[str, Any]:
        tool = cp.as_str(params.get("tool")) or ""
        if tool not in self._tool_names or self._executor is None:
            self._emit("unsupported_tool_call", message=f"unsupported tool {short(tool, 80)!r}")
            return cp.tool_failure("unsupported_tool", f"tool {tool!r} is not available")
        invocation = ToolInvocation(
            tool, params.get("arguments"), cp.as_str(params.get("callId")), self.session_id
        )
        result = await execute_tool(self._executor, invocation, self._config.timeouts.tool)
        self._emit("tool_call", message=f"tool {tool} success={result.success}")
        return cp.tool_call_result(result)

    # ------------------------------------------------------------------ events

    def _emit(self, name: Any, **fields: Any) -> None:
        if self._emit_cb is None:
            return
        event = AgentEvent(event=name, session_id=self.session_id, turn_count=self._turn_count,
                           pid=self.pid, **fields)  # fmt: skip
        with contextlib.suppress(Exception):  # a broken sink must not break the protocol
            self._emit_cb(event)

    def _emit_outcome(self, result: TurnResult) -> None:
        name = result.event_name
        self._emit(name, message=result.error or result.last_message, tokens=self._tokens)


def _questions(params: dict[str, Any]) -> str:
    questions = params.get("questions")
    texts = (
        [cp.as_str(cp.as_dict(q).get("question")) for q in questions]
        if isinstance(questions, list)
        else []
    )
    return short("agent asks: " + " / ".join(t for t in texts if t))
