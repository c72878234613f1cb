"""Each run's kernel sandbox, from the launcher's side: built before the agent, torn down after.

The agent process is started only with a sandbox handle in hand (fail closed): as a transient
systemd unit when systemd is PID 1, under bubblewrap otherwise (docs/sandbox.md). Its HOME is
a private tmpfs seeded from the read-only agent template (``<state>/agent``: the Codex config
and sign-in), so concurrent agents never share session files and nothing lands in the
workspace.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

from symphonyd.core.config import ServiceConfig
from symphonyd.core.egress_policy import EgressPolicy
from symphonyd.core.hostconfig import SandboxHost
from symphonyd.launcher.agents.process import PIPE_LIMIT
from symphonyd.launcher.hooks import RunAs
from symphonyd.launcher.sandbox import bwrap
from symphonyd.launcher.sandbox.config_policy import egress_policy
from symphonyd.launcher.sandbox.fs_view import FsView, build_fs_view
from symphonyd.launcher.sandbox.sandbox import SandboxHandle, SandboxManager
from symphonyd.launcher.sandbox.systemd_unit import systemd_run_argv, unit_properties

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

    async def start(self) -> None:
        """Reconcile what a crashed launcher left behind (rules, interfaces, processes)."""
        await self.manager.start()

    async def close(self) -> None:
        """Tear down every live sandbox, then the table: a stopped launcher leaves no rules."""
        await self.manager.close()
        await asyncio.to_thread(self.manager.firewall.remove_table)

    def policy(self, config: ServiceConfig) -> EgressPolicy:
        return egress_policy(
            config.sandbox.egress,
            runtime=config.agent.runtime,
            permitted_networks=self.host.permitted_networks,
            local_services=self.host.local_services,
        )

    async def open(self, run_id: str, workspace: Path, config: ServiceConfig) -> AgentSandbox:
        view = build_fs_view(
            workspace,
            Path(config.workspace.root),
            uid=self.run_as.uid,
            gid=self.run_as.gid,
            extra_hidden=self.hidden,
        )
        # The agent template sits under the hidden state directory: bound back read-only.
        view = dataclasses.replace(view, readonly=(*view.readonly, self.template_home))
        # bubblewrap path: the launcher's own cgroup carries the limits (a unit does otherwise)
        limits = None if self.use_systemd else config.sandbox.resources
        handle = await self.manager.setup(run_id, self.policy(config), limits)
        unit = f"symphony-agent-{_UNIT_SAFE.sub('_', run_id)}" if self.use_systemd else None
        return AgentSandbox(self, handle, view, config, unit)


class AgentSandbox:
    """One run's sandbox. ``spawn`` starts the agent in it; ``close`` removes everything."""

    def __init__(
        self,
        owner: AgentSandboxes,
        handle: SandboxHandle,
        view: FsView,
        config: ServiceConfig,
        unit: str | None,
    ) -> None:
        self.owner = owner
        self.handle = handle
        self.view = view
        self.config = config
        self.unit = unit

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
        resources = self.config.sandbox.resources
        props = unit_properties(
            self.view,
            netns_path=self.handle.netns_path,
            resolv_conf=bwrap.write_resolv_conf(self.handle),
            memory_max=resources.memory_max,
            tasks_max=resources.tasks_max,
            cpu_quota=resources.cpu_quota,
            environment={**inner_env, **self.handle.environment()},
            reachable=[str(self.handle.lease.host_ip)],
        )
        argv_unit = systemd_run_argv(self.unit, props, seeded)
        return await asyncio.create_subprocess_exec(
            *argv_unit,
            env={"PATH": bwrap.BASE_PATH},
            **pipes,  # type: ignore[arg-type]
        )

    def hook_wrapper(self) -> Callable[[list[str]], list[str]]:
        return bwrap.hook_wrapper(self.handle, self.view)

    async def close(self) -> None:
        if self.unit is not None:
            proc = await asyncio.create_subprocess_exec(
                "systemctl",
                "stop",
                f"{self.unit}.service",
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 30)
        await self.owner.manager.teardown(self.handle)
