"""The launcher's AgentSandboxes over the session's sandbox manager, as production builds them."""

from __future__ import annotations

from pathlib import Path

from symphonyd.core.api.launcher import WorkflowSnapshot
from symphonyd.core.config import ServiceConfig
from symphonyd.core.hostconfig import SandboxHost
from symphonyd.launcher.hooks import RunAs
from symphonyd.launcher.sandbox.agent_sandbox import AgentSandboxes
from symphonyd.launcher.workspace_requests import bind_config
from tests.sandbox.conftest import AGENT_GID, AGENT_UID, Launcher, World


def agent_sandboxes(launcher: Launcher, host: SandboxHost, template: Path) -> AgentSandboxes:
    return AgentSandboxes(
        launcher.manager,
        host,
        run_as=RunAs(AGENT_UID, AGENT_GID),
        template_home=template,
        hidden=[],
        use_systemd=launcher.enforcer == "systemd",
    )


def memory_workflow(world: World) -> ServiceConfig:
    """A run's config as the launcher binds it: memory tracker, the world's workspace root."""
    return bind_config(
        WorkflowSnapshot(
            str(world.root / "WORKFLOW.md"),
            {"tracker": {"kind": "memory"}, "workspace": {"root": str(world.workspace_root)}},
            "x",
            "0" * 64,
        ),
        {},
    )
