"""The launcher's request handlers: start, stop, list and acknowledge runs, publish events.

One ``LauncherService`` per launcher process; the runs it knows are kept in its run table
(``run_table.py``). Each run is bound at start to the workflow snapshot the dispatcher sent
(SPEC 10.5): its typed config, prompt template and tracker tool specs never change under it.
Finished runs stay listed with their outcome until the dispatcher acknowledges them, so a
dispatcher restart never loses how a run ended; at most ``MAX_UNACKED_FINISHED`` of them are
kept (the oldest go first), so a dispatcher that never acknowledges cannot grow the table
without bound (symphonyd.launcher.run_table, 0606).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from asyncio.subprocess import Process
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from symphonyd.core import audit_events as ae
from symphonyd.core.api.audit import AuditEventIn
from symphonyd.core.api.launcher import (
    LAUNCHER_RUN_EVENT,
    RemoveWorkspaceResult,
    RunEvent,
    RunInfo,
    RunList,
    RunOutcome,
    StartRun,
    StartRunResult,
    StopRun,
    StopRunResult,
    WorkflowSnapshot,
    WorkspaceListing,
)
from symphonyd.core.api.tracker import ToolCall, ToolResult, ToolSpecList, TrackerProfile
from symphonyd.core.config import ServiceConfig
from symphonyd.core.errors import SymphonyError
from symphonyd.core.hostconfig import HostConfig
from symphonyd.core.issue import Issue
from symphonyd.core.prompt_guard import guarded_issue_data
from symphonyd.core.redact import Redactor
from symphonyd.core.run_progress import RunProgress
from symphonyd.core.template import compile_prompt
from symphonyd.core.tracker_kinds import state_rules
from symphonyd.launcher.agents.factory import session_factory
from symphonyd.launcher.agents.process import Spawner, local_spawn
from symphonyd.launcher.agents.session import ApprovalPolicy, ToolInvocation, short, utc_now
from symphonyd.launcher.hooks import HookRunner, RunAs, RunsHooks
from symphonyd.launcher.run_table import RunTable
from symphonyd.launcher.sandbox.agent_sandbox import (
    AgentSandbox,
    AgentSandboxes,
    SandboxedHookRunner,
)
from symphonyd.launcher.secret_env import tools_and_policy
from symphonyd.launcher.worker import WorkerDeps, run_worker_attempt
from symphonyd.launcher.workspace import WorkspaceManager
from symphonyd.launcher.workspace_requests import (
    bind_config,
    list_root,
    remove_if_idle,
    workspace_ages,
)
from symphonyd.runtime.logging import log_context, log_event

log = logging.getLogger("symphonyd.launcher")


class TrackerLink(Protocol):
    """The tracker daemon, as the launcher uses it (``tracker.*`` over IPC)."""

    async def fetch_by_ids(self, ids: list[str]) -> list[Issue]: ...
    async def tool_specs(self) -> ToolSpecList: ...
    async def tool_call(self, call: ToolCall) -> ToolResult: ...
    async def profile(self) -> TrackerProfile: ...  # its declared secret names
    async def redact(self, text: str) -> str: ...  # scrubbed of the secrets it holds


class Subscriber(Protocol):
    @property
    def closed(self) -> bool: ...

    def send(self, spec: Any, data: Any) -> bool: ...


@dataclass
class LauncherDeps:
    tracker: TrackerLink
    audit: Callable[[AuditEventIn], None]  # queues; delivery is the caller's business
    agent_home: Path
    env: Mapping[str, str] = field(default_factory=dict)  # for `$NAME` in workflow config
    run_as: RunAs | None = None
    approvals: ApprovalPolicy = field(default_factory=ApprovalPolicy)
    agent_env: Mapping[str, str] = field(default_factory=dict)  # model endpoint etc.
    host: HostConfig | None = None  # its workspace root wins over the workflow's
    # None only when the host config turns the sandbox off (benchmarks, unsupported hosts).
    sandboxes: AgentSandboxes | None = None


@dataclass
class _Run:
    run_id: str
    issue_id: str
    issue_identifier: str  # as the run started; ``issue`` follows the tracker's refreshes
    attempt: int | None
    started_at: str
    issue: Issue
    workflow: WorkflowSnapshot
    progress: RunProgress = field(default_factory=RunProgress)
    task: asyncio.Task[None] | None = None
    stop_reason: str | None = None
    cleanup_on_stop: bool = False
    sandbox: AgentSandbox | None = None
    seq: int = 0  # start order; the list_runs cursor
    config: ServiceConfig | None = None  # ``workflow`` bound once (LauncherService._bound)

    def info(self) -> RunInfo:
        """The run as ``launcher.list_runs`` reports it."""
        return RunInfo(
            run_id=self.run_id,
            issue_id=self.issue_id,
            issue_identifier=self.issue_identifier,
            attempt=self.attempt,
            started_at=self.started_at,
            **self.progress.fields_for(RunInfo),
        )


class LauncherService:
    def __init__(self, deps: LauncherDeps) -> None:
        self.deps = deps
        self._runs: RunTable[_Run] = RunTable()
        self._subscribers: set[Subscriber] = set()
        self._latest: _Run | None = None  # its workflow locates workspaces by default
        if deps.sandboxes is not None:
            # Sandbox and egress records name the agent (the run id); add the run's issue so
            # the audit log finds them by issue too (docs/design/0955).
            manager = deps.sandboxes.manager
            sink = manager.audit
            manager.audit = lambda record: sink(self._with_issue(record))

    def _with_issue(self, record: dict[str, Any]) -> dict[str, Any]:
        run = self._runs.get(str(record.get("agent_id")))
        if run is None:
            return record
        return {
            **record,
            "issue_id": run.issue_id,
            "issue_identifier": run.issue_identifier,
        }

    # ------------------------------------------------------------------ control API

    async def start_run(self, req: StartRun) -> StartRunResult:
        live = self._runs.live_run_id(req.issue.id)
        if live is not None:
            # The dispatcher's claim should prevent this; refusing keeps one run per issue
            # even if it is wrong (e.g. after a restart that lost its state).
            return StartRunResult(req.run_id, False, f"{live} is running")
        if req.run_id in self._runs:
            return StartRunResult(req.run_id, False, "run id already used")
        run = _Run(
            run_id=req.run_id,
            issue_id=req.issue.id,
            issue_identifier=req.issue.identifier,
            attempt=req.attempt,
            started_at=utc_now(),
            issue=req.issue,
            workflow=req.workflow,
            seq=self._runs.next_seq(),
        )
        self._runs.add(run)
        log_event(
            log,
            "run",
            outcome="started",
            run_id=req.run_id,
            issue_id=req.issue.id,
            issue_identifier=req.issue.identifier,
            attempt=req.attempt,
        )
        self._latest = run
        run.task = asyncio.create_task(self._execute(run), name=f"run-{req.run_id}")
        run.task.add_done_callback(lambda _: self._task_done(run))
        return StartRunResult(req.run_id, True)

    async def stop_run(self, req: StopRun) -> StopRunResult:
        run = self._runs.get(req.run_id)
        if run is None or run.task is None or run.task.done():
            return StopRunResult(False)
        run.stop_reason = req.reason
        run.cleanup_on_stop = req.cleanup_workspace
        run.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run.task
        return StopRunResult(True)

    @property
    def live_count(self) -> int:
        return self._runs.live_count

    def is_live(self, run_id: str) -> bool:
        run = self._runs.get(run_id)
        return run is not None and run.task is not None and not run.task.done()

    def list_runs(self, after: int = 0, limit: int | None = None) -> RunList:
        """Runs started after cursor ``after``, in start order; all of them without a limit."""
        page, next_after = self._runs.page(after, limit)
        return RunList([r.info() for r in page], next_after=next_after)

    def ack_runs(self, run_ids: list[str]) -> None:
        self._runs.ack(run_ids)

    async def remove_workspace(
        self, identifier: str, workflow: WorkflowSnapshot | None, min_idle_s: float | None = None
    ) -> RemoveWorkspaceResult:
        if workflow is None and self._latest is None:
            raise SymphonyError(
                "no workflow known yet to locate the workspace root", code="unavailable"
            )
        if any(r.issue_identifier == identifier for r in self._runs.live()):
            raise SymphonyError(f"{identifier} has a live run", code="run_active")
        with log_context(issue_identifier=identifier):
            manager = self._workspaces(self._config_for(workflow))
            return await remove_if_idle(manager, identifier, min_idle_s)

    def _bound(self, run: _Run) -> ServiceConfig:
        """The run's typed config: bound once from its snapshot, then the same value."""
        if run.config is None:
            run.config = bind_config(run.workflow, self.deps.env, self.deps.host)
        return run.config

    def _config_for(self, workflow: WorkflowSnapshot | None) -> ServiceConfig:
        """The config of a workflow the dispatcher sent, else the latest run's own."""
        if workflow is not None:
            return bind_config(workflow, self.deps.env, self.deps.host)
        if self._latest is None:
            raise SymphonyError("no workflow known yet", code="unavailable")
        return self._bound(self._latest)

    def _root(self, workflow: WorkflowSnapshot | None = None) -> str:
        root = self.deps.host.workspace_root if self.deps.host else None
        if root is None and (workflow is not None or self._latest is not None):
            root = self._config_for(workflow).workspace.root
        if root is None:
            raise SymphonyError("no workspace root known yet", code="unavailable")
        return root

    def workspace_ages(self, identifiers: list[str]) -> dict[str, float | None]:
        return workspace_ages(self._root(), identifiers)

    def list_workspaces(self, workflow: WorkflowSnapshot | None) -> WorkspaceListing:
        return list_root(self._root(workflow))

    def subscribe(self, sink: Subscriber) -> None:
        self._subscribers.add(sink)

    async def shutdown(self) -> None:
        """Stop every live run (after_run still runs) so nothing outlives the launcher."""
        live = [r for r in self._runs if r.task is not None and not r.task.done()]
        for run in live:
            run.stop_reason = "shutdown"
            assert run.task is not None
            run.task.cancel()
        for run in live:
            assert run.task is not None
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await run.task
        if self.deps.sandboxes is not None:
            await self.deps.sandboxes.settle()  # cancelled runs' teardowns finish first

    def _workspaces(
        self, config: ServiceConfig, drop_env: frozenset[str] = frozenset()
    ) -> WorkspaceManager:
        """Workspaces of this config; with the sandbox on, every hook runs in one of its own.

        ``drop_env``: the tracker's declared secret names, kept out of every hook's env.
        """
        sandboxes = self.deps.sandboxes
        run_as = self.deps.run_as
        runner: RunsHooks = (
            HookRunner(run_as=run_as, drop_env=drop_env)
            if sandboxes is None
            else SandboxedHookRunner(sandboxes, config, drop_env)
        )
        return WorkspaceManager(config.workspace.root, config.hooks, runner, owner=run_as)

    # ------------------------------------------------------------------ one run

    async def _execute(self, run: _Run) -> None:
        # Every line logged for this run (hooks, workspace, sandbox, agent) names its issue.
        with log_context(
            run_id=run.run_id, issue_id=run.issue_id, issue_identifier=run.issue_identifier
        ):
            await self._execute_run(run)

    async def _execute_run(self, run: _Run) -> None:
        try:
            await self._attempt_in_sandbox(run)
        except asyncio.CancelledError:
            if run.progress.outcome is None:
                # Stopped before the worker could report (e.g. while preparing the workspace):
                # still publish and audit run_finished, or the dispatcher never acknowledges it.
                self._finish(run, RunOutcome("cancelled", "turn_cancelled", "run stopped"))
            if run.cleanup_on_stop:
                await self._cleanup(run)
            raise
        except SymphonyError as exc:
            self._finish(run, RunOutcome("failed", exc.error_code, short(exc.message, 300)))
        except Exception as exc:  # a bug must end this run, never the launcher
            log.exception("run %s crashed", run.run_id)
            self._finish(run, RunOutcome("failed", "internal_error", short(str(exc), 300)))

    async def _attempt_in_sandbox(self, run: _Run) -> None:
        try:
            await self._attempt(run)
        finally:
            if run.sandbox is not None:
                sandbox, run.sandbox = run.sandbox, None
                await sandbox.close()

    def _spawner(self, run: _Run, config: ServiceConfig) -> Spawner:
        sandboxes = self.deps.sandboxes
        if sandboxes is None:
            log.warning("run %s starts WITHOUT a sandbox (sandbox.enabled = false)", run.run_id)
            return local_spawn

        async def spawn(argv: list[str], cwd: Path, env: dict[str, str]) -> Process:
            # Built here, once the workspace exists; nothing runs unless this succeeds.
            if run.sandbox is None:
                run.sandbox = await sandboxes.open(
                    run.run_id,
                    cwd,
                    config,
                    description=f"symphony agent for {run.issue_identifier}",
                )
            return await run.sandbox.spawn(argv, cwd, env)

        return spawn

    async def _attempt(self, run: _Run) -> None:
        config = self._bound(run)
        template = compile_prompt(run.workflow.prompt_template)
        offered, env = await tools_and_policy(
            self.deps.tracker, config.agent.forward_env, self.deps.env, self.deps.agent_env
        )
        tools = offered.tools
        rules = state_rules(config.tracker)
        workspaces = self._workspaces(config, env.declared)
        workspaces.ensure_root()
        run.progress.workspace_path = str(workspaces.path_for(run.issue.identifier))

        async def call_tool(inv: ToolInvocation) -> ToolResult:
            result = await self.deps.tracker.tool_call(
                ToolCall(
                    issue=run.issue,
                    tool=inv.tool,
                    arguments=inv.arguments,
                    session_id=inv.session_id,
                    # Bound to the tracker config the session advertised (SPEC 10.5).
                    tracker_fingerprint=offered.tracker_fingerprint,
                )
            )
            self._audit(run, "tool_call", {"tool": inv.tool, "success": result.success})
            return result

        open_session = session_factory(
            config,
            agent_home=self.deps.agent_home,
            env_extra={**env.strip(self.deps.agent_env), **env.forwarded},
            drop_env=env.declared,
            tools=tools,
            tool_executor=call_tool,
            approvals=self.deps.approvals,
            spawner=self._spawner(run, config),
            sandboxed=self.deps.sandboxes is not None,
        )

        async def refresh(issue_id: str) -> Issue | None:
            found = await self.deps.tracker.fetch_by_ids([issue_id])
            issue = next((i for i in found if i.id == issue_id), None)
            if issue is not None:
                run.issue = issue
            return issue

        deps = WorkerDeps(
            workspaces=workspaces,
            # Tracker text reaches the template fenced and capped (0502); the worker caps
            # the whole prompt and adds the preamble when a fence is in it.
            render=lambda issue, attempt: template.render(guarded_issue_data(issue), attempt),
            open_session=open_session,
            refresh_issue=refresh,
            is_active=rules.is_active,
            emit=lambda event: self._on_event(run, event),
            max_turns=config.agent.max_turns,
            stall_timeout=config.codex.stall_timeout_ms / 1000,
            audit=lambda kind, payload: self._audit(run, kind, payload),
            redactor=Redactor(env.secret_values),
            scrub=self.deps.tracker.redact,
            preview_chars=config.audit.prompt_preview_chars,
            transcript_records=config.audit.transcript_records,
        )
        await run_worker_attempt(run.run_id, run.issue, run.attempt, deps)

    async def _cleanup(self, run: _Run) -> None:
        with contextlib.suppress(Exception):
            manager = self._workspaces(self._bound(run))
            await asyncio.shield(manager.remove(run.issue_identifier))

    # ------------------------------------------------------------------ events

    def _on_event(self, run: _Run, event: RunEvent) -> None:
        outcome = event.outcome if event.event == "run_finished" else None
        if outcome is not None:
            if run.stop_reason is not None and outcome.status == "cancelled":
                outcome = dataclasses.replace(outcome, error=f"stopped: {run.stop_reason}")
                event = dataclasses.replace(event, outcome=outcome)
            log_event(
                log,
                "run",
                level=logging.INFO if outcome.status == "succeeded" else logging.WARNING,
                outcome=outcome.status,
                error_code=outcome.error_code,
                error=outcome.error,
                run_id=run.run_id,
                issue_id=run.issue_id,
                issue_identifier=run.issue_identifier,
                session_id=run.progress.session_id,
            )
        progress = run.progress
        progress.apply(event)  # the rule the dispatcher folds the same event with
        if outcome is not None:
            # The shared builder, so /metrics and `audit show` read the shape every
            # run_finished record has (a private {"status": ...} payload once made every
            # successful run count as a failure with reason "unknown").
            self._send_audit(
                ae.run_finished(
                    run.issue_id,
                    run.issue_identifier,
                    run.run_id,
                    outcome.status,
                    error_code=outcome.error_code,
                    session_id=progress.session_id,
                    turns=progress.turn_count,
                    total_tokens=progress.tokens.total_tokens,
                )
            )
        if progress.outcome is not None:
            self._runs.mark_finished(run)
        self._publish(event)

    def _task_done(self, run: _Run) -> None:
        # A task cancelled before its first step never ran _execute's handlers: without an
        # outcome the run would stay live forever and block its issue.
        if run.progress.outcome is None:
            self._finish(run, RunOutcome("cancelled", "turn_cancelled", "run stopped"))

    def _finish(self, run: _Run, outcome: RunOutcome) -> None:
        """Finish a run that never reached the worker (bad config, tracker down)."""
        self._on_event(
            run,
            RunEvent(
                run_id=run.run_id,
                issue_id=run.issue_id,
                event="run_finished",
                at=utc_now(),
                message=outcome.error,
                outcome=outcome,
            ),
        )

    def _publish(self, event: RunEvent) -> None:
        for sink in list(self._subscribers):
            if sink.closed or not sink.send(LAUNCHER_RUN_EVENT, event):
                self._subscribers.discard(sink)

    def _audit(self, run: _Run, kind: str, payload: dict[str, Any]) -> None:
        record = AuditEventIn(
            type=kind,
            payload={"run_id": run.run_id, **payload},
            issue_id=run.issue_id,
            issue_identifier=run.issue_identifier,
            session_id=run.progress.session_id,
        )
        self._send_audit(record)

    def _send_audit(self, record: AuditEventIn) -> None:
        try:
            self.deps.audit(record)
        except Exception:  # audit delivery problems are reported by the forwarder
            log.exception("could not queue audit record %s", record.type)
