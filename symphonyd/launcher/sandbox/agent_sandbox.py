"""The one way the launcher starts a process in a sandbox: build it first, then spawn.

Each run's (and each hook's) kernel sandbox, from the launcher's side: ``manager.py`` builds
the kernel pieces and spawns nothing; here the process is started only with a sandbox handle
in hand (fail closed), and the run's ``close`` removes it again. It starts as a transient
systemd unit when systemd is PID 1, under bubblewrap otherwise (docs/sandbox.md). Its HOME is
a private tmpfs seeded from the read-only agent template (``<state>/agent``: the Codex config
and sign-in), so concurrent agents never share session files and nothing lands in the
workspace.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import re
import secrets
from collections.abc import Collection, Coroutine
from pathlib import Path
from typing import Any

from symphonyd.core import audit_events
from symphonyd.core.config import ServiceConfig
from symphonyd.core.egress_presets import preset_dirs
from symphonyd.core.hostconfig import SandboxHost
from symphonyd.core.issue import Issue
from symphonyd.launcher.agents.process import PIPE_LIMIT
from symphonyd.launcher.hooks import CommandWrapper, HookResult, HookRunner, RunAs
from symphonyd.launcher.sandbox import bwrap, systemd_unit
from symphonyd.launcher.sandbox.config_policy import egress_policy
from symphonyd.launcher.sandbox.egress_policy import EgressPolicy
from symphonyd.launcher.sandbox.errors import RESOURCES_FAILED, SandboxError
from symphonyd.launcher.sandbox.fs_view import FsView, build_fs_view
from symphonyd.launcher.sandbox.instance import slice_name
from symphonyd.launcher.sandbox.manager import SandboxHandle, SandboxManager
from symphonyd.launcher.sandbox.unit_limits import LimitsReport, probe_unit_limits

log = logging.getLogger("symphonyd.launcher")
PRIVATE_HOME = "/tmp/home"  # noqa: S108 - inside the sandbox's own private /tmp
# Copies the agent template into the private HOME, then becomes the agent command.
SEED_HOME = (
    'tpl=$1; shift; mkdir -p "$HOME" && '
    'if [ -d "$tpl/.codex" ]; then cp -R "$tpl/.codex" "$HOME/"; fi; '
    'if [ -d "$tpl/.claude" ]; then cp -R "$tpl/.claude" "$HOME/"; fi; exec "$@"'
)
_UNIT_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def systemd_is_pid1() -> bool:
    return os.path.isdir("/run/systemd/system")


class AgentSandboxes:
    """The launcher's sandbox manager plus what every run's view and policy need."""

    def __init__(
        self,
        manager: SandboxManager,
        host: SandboxHost,
        *,
        run_as: RunAs,
        template_home: Path,
        hidden: list[Path],
        use_systemd: bool | None = None,
    ) -> None:
        self.manager = manager
        self.host = host
        self.run_as = run_as
        self.template_home = template_home
        self.hidden = hidden
        self.use_systemd = systemd_is_pid1() if use_systemd is None else use_systemd
        self._limits: LimitsReport | None = None  # probed before the first unit
        self._limits_lock = asyncio.Lock()
        self._closing: set[asyncio.Future[None]] = set()  # teardowns under way

    async def _require_unit_limits(self) -> None:
        """Fail closed where systemd would accept resource limits but not apply them."""
        async with self._limits_lock:
            if self._limits is None:
                self._limits = await probe_unit_limits()
                if not self._limits.enforced:
                    log.warning(
                        "systemd here does not enforce sandbox.resources (%s not applied; %s)%s",
                        ", ".join(self._limits.missing),
                        self._limits.seen or self._limits.detail,
                        "; agents will NOT start"
                        if self.host.require_resource_limits
                        else "; agents run WITHOUT those limits (require_resource_limits = false)",
                    )
        if not self._limits.enforced and self.host.require_resource_limits:
            raise SandboxError(
                "this host's systemd does not enforce sandbox.resources "
                f"({', '.join(self._limits.missing)} not applied; docs/sandbox.md)",
                code=RESOURCES_FAILED,
            )

    @property
    def unit_slice(self) -> str:
        """Every agent and hook unit of this launcher instance runs in this slice."""
        return slice_name(self.manager.instance)

    async def start(self) -> None:
        """Reconcile what a crashed launcher of this instance left behind (rules, interfaces,
        processes): its units' slice is stopped (systemd), its cgroups emptied (bubblewrap)."""
        stopped = await systemd_unit.stop_slice(self.unit_slice) if self.use_systemd else []
        await self.manager.start(stopped)

    def track_teardown(self, teardown: Coroutine[Any, Any, None]) -> asyncio.Future[None]:
        """Run a teardown as its own task, which :meth:`settle` waits for."""
        task = asyncio.ensure_future(teardown)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        return task

    async def settle(self) -> None:
        """Wait for teardowns already under way (a cancelled run's, a finished hook's)."""
        while self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def close(self) -> None:
        """Tear down every live sandbox, then the table and the slice: a stopped launcher
        leaves no rules and no units."""
        await self.settle()
        await self.manager.close()
        await asyncio.to_thread(self.manager.firewall.remove_table)
        if self.use_systemd:  # whatever a timed-out unit stop left, and the slice itself
            await systemd_unit.stop_slice(self.unit_slice)

    def policy(self, config: ServiceConfig) -> EgressPolicy:
        return egress_policy(
            config.sandbox.egress,
            runtime=config.agent.runtime,
            presets=preset_dirs(self.host.egress_presets_dir),
            permitted_networks=self.host.permitted_networks,
            local_services=self.host.local_services,
            intercept=self.host.intercept,
        )

    def hook_policy(self, config: ServiceConfig) -> EgressPolicy:
        return egress_policy(
            config.sandbox.hooks_egress,
            runtime=None,
            presets=preset_dirs(self.host.egress_presets_dir),
            permitted_networks=self.host.permitted_networks,
            intercept=self.host.intercept,
        )

    async def open(
        self,
        run_id: str,
        workspace: Path,
        config: ServiceConfig,
        *,
        policy: EgressPolicy | None = None,
        unit_prefix: str = "symphony-agent",
        description: str | None = None,
    ) -> AgentSandbox:
        """``description``: the unit's, for systemctl and PID 1's journal lines
        (``symphony agent for DEMO-5``); made safe by ``systemd_unit.unit_description``."""
        try:
            if self.use_systemd:
                await self._require_unit_limits()
            view = build_fs_view(
                workspace,
                Path(config.workspace.root),
                uid=self.run_as.uid,
                gid=self.run_as.gid,
                extra_hidden=self.hidden,
            )
        except SandboxError as exc:
            self.manager.audit(
                {
                    "type": audit_events.SANDBOX_FAILURE,
                    "agent_id": run_id,
                    "code": exc.error_code,
                    "message": exc.message,
                }
            )
            raise
        # The agent template sits under the hidden state directory: bound back read-only.
        view = dataclasses.replace(
            view, readonly=(*view.readonly, self.template_home), shm_bytes=self.host.shm_bytes
        )
        # bubblewrap path: the launcher's own cgroup carries the limits (a unit does otherwise)
        limits = None if self.use_systemd else config.sandbox.resources
        handle = await self.manager.setup(run_id, policy or self.policy(config), limits)
        unit = f"{unit_prefix}-{_UNIT_SAFE.sub('_', run_id)}" if self.use_systemd else None
        return AgentSandbox(self, handle, view, config, unit, description)


class AgentSandbox:
    """One run's sandbox. ``spawn`` starts the agent in it; ``close`` removes everything."""

    def __init__(
        self,
        owner: AgentSandboxes,
        handle: SandboxHandle,
        view: FsView,
        config: ServiceConfig,
        unit: str | None,
        description: str | None = None,
    ) -> None:
        self.owner = owner
        self.handle = handle
        self.view = view
        self.config = config
        self.unit = unit
        self.description = description

    def _seeded(self, argv: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        inner_env = {**env, "HOME": PRIVATE_HOME, "CODEX_HOME": f"{PRIVATE_HOME}/.codex"}
        seeded = ["/bin/sh", "-c", SEED_HOME, "seed", str(self.owner.template_home), *argv]
        return seeded, inner_env

    async def spawn(
        self, argv: list[str], cwd: Path, env: dict[str, str]
    ) -> asyncio.subprocess.Process:
        seeded, inner_env = self._seeded(argv, env)
        pipes = {
            "stdin": asyncio.subprocess.PIPE,
            "stdout": asyncio.subprocess.PIPE,
            "stderr": asyncio.subprocess.PIPE,
            "start_new_session": True,
            "limit": PIPE_LIMIT,
        }
        if self.unit is None:
            return await bwrap.spawn(
                self.handle, self.view, seeded, env=inner_env, cwd=cwd, **pipes
            )
        return await systemd_unit.spawn(
            self.handle,
            self.view,
            seeded,
            unit=self.unit,
            resources=self.config.sandbox.resources,
            env=inner_env,
            cwd=cwd,
            unit_slice=self.owner.unit_slice,
            description=self.description,
            **pipes,
        )

    def _unit_argv(self, command: list[str], environment: dict[str, str]) -> list[str]:
        assert self.unit is not None
        return systemd_unit.unit_argv(
            self.handle,
            self.view,
            command,
            unit=self.unit,
            resources=self.config.sandbox.resources,
            env=environment,
            unit_slice=self.owner.unit_slice,
            description=self.description,
        )

    def hook_wrapper(self) -> CommandWrapper:
        """Wraps a hook's pinned ``env -i -- ... bash -c`` command to run in this sandbox."""
        if self.unit is None:
            return bwrap.hook_wrapper(self.handle, self.view)
        env = self.handle.environment()
        return lambda inner: self._unit_argv(bwrap.with_sandbox_env(inner, env), env)

    async def close(self) -> None:
        """Remove the sandbox; runs to the end even if the caller is cancelled meanwhile."""
        await asyncio.shield(self.owner.track_teardown(self._close()))

    async def _close(self) -> None:
        if self.unit is not None:
            await systemd_unit.stop(self.unit)
        await self.owner.manager.teardown(self.handle)


class SandboxedHookRunner:
    """Runs each workspace hook in a sandbox of its own (issue #6, docs/design/0605).

    Hooks are trusted scripts acting on content the agent wrote, so they get the agent's
    filesystem view and unprivileged user, the workflow's ``hooks_egress`` policy instead of
    the agent's, and an environment built from nothing (no tracker credential). A sandbox
    that cannot be built means the hook does not run: it reports as failed to start.
    """

    def __init__(
        self, sandboxes: AgentSandboxes, config: ServiceConfig, drop_env: Collection[str] = ()
    ) -> None:
        self.sandboxes = sandboxes
        self.config = config
        self.drop_env = frozenset(drop_env)  # the tracker's declared secret names

    async def run(
        self,
        name: str,
        script: str,
        cwd: Path,
        *,
        timeout_ms: int,
        issue: Issue | None = None,
        identifier: str | None = None,
    ) -> HookResult:
        run_id = f"hook-{secrets.token_hex(6)}"
        ident = issue.identifier if issue is not None else identifier
        try:
            sandbox = await self.sandboxes.open(
                run_id,
                cwd,
                self.config,
                policy=self.sandboxes.hook_policy(self.config),
                unit_prefix="symphony-hook",
                description=f"symphony hook {name} for {ident or 'a workspace'}",
            )
        except SandboxError as exc:
            log.warning("hook %s not run: its sandbox failed: %s", name, exc.message)
            return HookResult(name, None, False, "", 0, 0, f"sandbox: {exc.message}")
        try:
            runner = HookRunner(
                command_wrapper=sandbox.hook_wrapper(),
                home="/tmp",  # noqa: S108
                drop_env=self.drop_env,
            )
            return await runner.run(
                name, script, cwd, timeout_ms=timeout_ms, issue=issue, identifier=identifier
            )
        finally:
            await sandbox.close()
