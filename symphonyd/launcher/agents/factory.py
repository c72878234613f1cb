"""Build the run's agent session from the workflow's typed config (SPEC 5.3.5, 5.3.6).

The config is bound once per run: a workflow reload affects later runs, never this one's
tools or policies (SPEC 10.5).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from pathlib import Path

from symphonyd.core.api.tracker import ToolCall, ToolResult, ToolSpec
from symphonyd.core.config import ServiceConfig
from symphonyd.core.issue import Issue
from symphonyd.launcher.agents.claude import ClaudeSession, ClaudeSessionConfig
from symphonyd.launcher.agents.codex import CodexSession, CodexSessionConfig
from symphonyd.launcher.agents.process import Spawner, build_env, local_spawn
from symphonyd.launcher.agents.session import (
    AgentSession,
    ApprovalPolicy,
    EventSink,
    Timeouts,
    ToolExecutor,
    ToolInvocation,
)

SessionFactory = Callable[[Path, EventSink], AgentSession]
# Inside the launcher's kernel sandbox Codex must not try to build its own (it would need user
# namespaces the sandbox denies); the kernel enforces files and network (seed 001's SRT setup).
EXTERNAL_SANDBOX_POLICY = {"type": "externalSandbox", "networkAccess": "enabled"}


def session_factory(
    config: ServiceConfig,
    *,
    agent_home: Path,
    tmpdir: Path | None = None,
    env_extra: Mapping[str, str] | None = None,
    tools: Sequence[ToolSpec] = (),
    tool_executor: ToolExecutor | None = None,
    approvals: ApprovalPolicy | None = None,
    spawner: Spawner = local_spawn,
    sandboxed: bool = False,
    drop_env: Collection[str] = (),
) -> SessionFactory:
    """A factory the worker calls with the prepared workspace path.

    ``spawner`` starts the agent process (inside the run's sandbox when ``sandboxed``).
    """
    policy = approvals or ApprovalPolicy()
    root = Path(config.workspace.root)
    extra = dict(env_extra or {})
    # The runtime's session class with its config bound; the rest is the same for both.
    bound: Callable[..., AgentSession]
    if config.agent.runtime == "claude":
        c = config.claude
        claude = ClaudeSessionConfig(
            command=c.command,
            model=c.model,
            timeouts=Timeouts.from_ms(c.read_timeout_ms, c.turn_timeout_ms, c.stall_timeout_ms),
            approvals=policy,
        )
        bound = functools.partial(ClaudeSession, config=claude)
    else:
        x = config.codex
        codex = CodexSessionConfig(
            command=x.command,
            approval_policy=x.approval_policy,
            thread_sandbox=x.thread_sandbox,
            turn_sandbox_policy=(
                EXTERNAL_SANDBOX_POLICY
                if sandboxed and x.turn_sandbox_policy is None
                else x.turn_sandbox_policy
            ),
            timeouts=Timeouts.from_ms(x.read_timeout_ms, x.turn_timeout_ms, x.stall_timeout_ms),
            approvals=policy,
        )
        bound = functools.partial(CodexSession, config=codex)
        extra.setdefault("CODEX_HOME", str(agent_home / ".codex"))

    def open_session(workspace: Path, sink: EventSink) -> AgentSession:
        env = build_env(home=agent_home, tmpdir=tmpdir, extra=extra, drop=drop_env)
        return bound(
            workspace,
            env=env,
            workspace_root=root,
            tools=tools,
            tool_executor=tool_executor,
            on_event=sink,
            spawner=spawner,
        )

    return open_session


def tracker_tool_executor(
    call: Callable[[ToolCall], Awaitable[ToolResult]], issue: Issue
) -> ToolExecutor:
    """Route the agent's tool calls to the tracker daemon (``tracker.tool_call``), scoped to
    the run's issue; the credential stays in the tracker daemon (SPEC 10.5)."""

    async def execute(invocation: ToolInvocation) -> ToolResult:
        return await call(
            ToolCall(
                issue=issue,
                tool=invocation.tool,
                arguments=invocation.arguments,
                session_id=invocation.session_id,
            )
        )

    return execute
