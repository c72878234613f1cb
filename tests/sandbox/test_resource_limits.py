"""cgroup limits on the agent, enforced by the kernel, not just rendered (systemd path).

bubblewrap sets no cgroup limits of its own, so these run only where the agent is a
transient unit (the nspawn container; tests/e2e/test_sandbox_systemd.py). Each limit has a
control run with a roomier limit, so a probe that could not fork or allocate at all does not
pass as "capped".
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from symphonyd.core.config_extensions import ResourcesConfig
from symphonyd.launcher.sandbox.sandbox import SandboxHandle
from tests.sandbox.conftest import Launcher, World, agent_policy, probe_output

pytestmark = [pytest.mark.root, pytest.mark.enforcer("systemd")]


@pytest.fixture(scope="module")
def agent(launcher: Launcher) -> Generator[SandboxHandle, None, None]:
    handle = launcher.setup("agent-res", agent_policy())
    yield handle
    launcher.teardown(handle)


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
    # TasksMax counts the probe itself too; fork fails with EAGAIN once the cgroup is full.
    assert not r["ok"] and 5 <= r["started"] < 16, r
    assert "Resource temporarily unavailable" in r["error"], r


def test_memory_hog_is_killed_at_memory_max(launcher: Launcher, agent: SandboxHandle, world: World):
    view = world.view()
    roomy, rc, err = probe_output(launcher, agent, view, "hog", "96", resources=limits("256M"))
    assert rc == 0 and roomy[-1] == {"ok": True, "allocated": 96}, err
    lines, rc, err = probe_output(launcher, agent, view, "hog", "512", resources=limits("64M"))
    assert rc != 0, lines[-1:]
    allocated = [line["allocated"] for line in lines if "allocated" in line]
    assert allocated and max(allocated) < 96, allocated  # killed near 64M, far from 512
    assert not any(line.get("ok") for line in lines)
