"""cgroup limits on the agent, enforced by the kernel, not just rendered (systemd path).

bubblewrap takes its limits per sandbox, not per spawn (test_bwrap_cgroup_limits.py), so
these run only where the agent is a transient unit (the nspawn container;
tests/e2e/test_sandbox_systemd.py). Each limit has a control run with a roomier limit, so a
probe that could not fork or allocate at all does not pass as "capped".

systemd can only enforce a limit whose cgroup controller it may use, and says nothing when
it cannot (the CI host is cgroup v1 "hybrid", with memory and pids bound to read-only v1
hierarchies inside the container). Where the controller is usable the limit must hold; where
it is not, the launcher's own probe must see the gap, and the launcher then refuses to start
agents at all (test_launcher_refuses_units_where_limits_do_not_hold). docs/design/0807, 0809.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path

import pytest

from symphonyd.core.config import build_service_config
from symphonyd.core.config_extensions import ResourcesConfig
from symphonyd.core.hostconfig import SandboxHost
from symphonyd.core.workflow import WorkflowDefinition
from symphonyd.launcher.hooks import RunAs
from symphonyd.launcher.sandbox.agent_sandbox import AgentSandboxes
from symphonyd.launcher.sandbox.errors import RESOURCES_FAILED, SandboxError
from symphonyd.launcher.sandbox.manager import SandboxHandle
from symphonyd.launcher.sandbox.unit_limits import probe_unit_limits
from tests.sandbox.conftest import (
    AGENT_GID,
    AGENT_UID,
    Launcher,
    World,
    agent_policy,
    probe_output,
)

pytestmark = [pytest.mark.root, pytest.mark.enforcer("systemd")]


@pytest.fixture(scope="module")
def agent(launcher: Launcher) -> Generator[SandboxHandle, None, None]:
    handle = launcher.setup("agent-res", agent_policy())
    yield handle
    launcher.teardown(handle)


def controller_usable(name: str) -> bool:
    """Whether this machine's systemd can put ``name`` limits on a unit."""
    unified = Path("/sys/fs/cgroup/cgroup.controllers")
    if unified.exists():  # pure cgroup v2: the root lists what can be enabled below it
        return name in unified.read_text().split()
    # v1 or hybrid: a controller hierarchy systemd can create the unit's cgroup in
    return os.access(f"/sys/fs/cgroup/{name}", os.W_OK)


def unenforced(launcher: Launcher, name: str, what: object) -> None:
    """A limit that did not hold: acceptable only where the launcher knows and refuses."""
    assert not controller_usable(name), f"{name} limit not enforced: {what}"
    report = launcher.loop.run(probe_unit_limits())
    assert name in report.missing, (report, what)


def limits(memory_max: str = "256M", tasks_max: int = 64) -> ResourcesConfig:
    return ResourcesConfig(memory_max=memory_max, tasks_max=tasks_max, cpu_quota="100%")


def test_fork_bomb_is_capped_by_tasks_max(launcher: Launcher, agent: SandboxHandle, world: World):
    view = world.view()
    roomy, _, err = probe_output(launcher, agent, view, "fork_many", "40", resources=limits())
    assert roomy and roomy[-1] == {"ok": True, "started": 40, "error": ""}, err
    capped, _, err = probe_output(
        launcher, agent, view, "fork_many", "200", resources=limits(tasks_max=16)
    )
    assert capped, err
    r = capped[-1]
    if r["ok"]:
        return unenforced(launcher, "pids", r)
    # TasksMax counts the probe itself too; fork fails with EAGAIN once the cgroup is full.
    assert not r["ok"] and 5 <= r["started"] < 16, r
    assert "Resource temporarily unavailable" in r["error"], r


def test_memory_hog_is_killed_at_memory_max(launcher: Launcher, agent: SandboxHandle, world: World):
    view = world.view()
    roomy, rc, err = probe_output(launcher, agent, view, "hog", "96", resources=limits("256M"))
    assert rc == 0 and roomy[-1] == {"ok": True, "allocated": 96}, err
    lines, rc, err = probe_output(launcher, agent, view, "hog", "512", resources=limits("64M"))
    if rc == 0:
        return unenforced(launcher, "memory", lines[-1:])
    allocated = [line["allocated"] for line in lines if "allocated" in line]
    assert allocated and max(allocated) < 96, allocated  # killed near 64M, far from 512
    assert not any(line.get("ok") for line in lines)


def test_launcher_refuses_units_where_limits_do_not_hold(
    launcher: Launcher, world: World, tmp_path: Path
) -> None:
    report = launcher.loop.run(probe_unit_limits())
    usable = all(controller_usable(c) for c in ("memory", "pids", "cpu"))
    assert report.enforced == usable, report
    definition = WorkflowDefinition(
        config={"tracker": {"kind": "memory"}, "workspace": {"root": str(world.workspace_root)}},
        prompt_template="",
    )
    config = build_service_config(definition, env={}, workflow_dir=tmp_path)

    def sandboxes(require: bool) -> AgentSandboxes:
        return AgentSandboxes(
            launcher.manager,
            SandboxHost(require_resource_limits=require),
            run_as=RunAs(AGENT_UID, AGENT_GID),
            template_home=tmp_path,
            hidden=[],
            use_systemd=True,
        )

    async def opened(require: bool, run_id: str) -> None:
        sandbox = await sandboxes(require).open(run_id, world.workspace, config)
        await sandbox.close()

    if usable:
        launcher.loop.run(opened(True, "limits-ok"))
        return
    before = len(launcher.audit)
    with pytest.raises(SandboxError) as refused:
        launcher.loop.run(opened(True, "limits-refused"))
    assert refused.value.error_code == RESOURCES_FAILED, refused.value
    failures = [a for a in launcher.audit[before:] if a["type"] == "sandbox_failure"]
    assert [(a["agent_id"], a["code"]) for a in failures] == [("limits-refused", RESOURCES_FAILED)]
    assert "limits-refused" not in launcher.manager.live
    launcher.loop.run(opened(False, "limits-waived"))  # the operator's explicit opt-out
