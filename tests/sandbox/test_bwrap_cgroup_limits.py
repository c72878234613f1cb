"""Resource limits on the bubblewrap path (cgroups.py), against real cgroups: each limit
bites, and a control with a generous limit shows the same program passes, so the failure is
the limit's doing. The systemd path's limits are tested in test_resource_limits.py."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from symphonyd.core import audit_events
from symphonyd.core.config_extensions import ResourcesConfig
from symphonyd.launcher.sandbox import bwrap, cgroups
from symphonyd.launcher.sandbox.errors import SandboxError
from symphonyd.launcher.sandbox.instance import new_instance
from symphonyd.launcher.sandbox.sandbox import SandboxHandle
from tests.sandbox.conftest import Launcher, World, agent_policy, sh

pytestmark = [pytest.mark.root, pytest.mark.enforcer("bwrap")]

MEMORY_HOG = "data = b'x' * (256 << 20); print('survived', len(data))"
BUSY = "import time\nend = time.monotonic() + 0.6\nwhile time.monotonic() < end: pass\n"


def run(launcher: Launcher, handle: SandboxHandle, world: World, code: str) -> tuple[int, str]:
    async def go() -> tuple[int, str]:
        proc = await bwrap.spawn(
            handle,
            world.view(),
            ["/usr/bin/python3", "-c", code],
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode or 0, out.decode(errors="replace")

    return launcher.loop.run(go(), timeout=90)


def limited(launcher: Launcher, name: str, **limits: Any) -> SandboxHandle:
    args: dict[str, Any] = {"memory_max": "1G", "tasks_max": 512, "cpu_quota": "200%"}
    args.update(limits)
    resources = ResourcesConfig(**args)
    return launcher.loop.run(launcher.manager.setup(name, agent_policy(), resources))


@pytest.fixture
def sandbox(launcher: Launcher) -> Generator[list[SandboxHandle], None, None]:
    """Handles made by a test; torn down after it even when it fails."""
    handles: list[SandboxHandle] = []
    yield handles
    for handle in handles:
        launcher.teardown(handle)


def stat_of(cg: cgroups.Cgroup, v1_file: str, v2_file: str, key: str) -> int:
    """One counter of the group, e.g. its oom kills, from whichever hierarchy it lives in."""
    files = [d / (v2_file if cg.version == 2 else v1_file) for d in cg.dirs]
    for f in files:
        if f.exists():
            for line in f.read_text().splitlines():
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
    raise AssertionError(f"{key} not in {files}")


def test_fork_bomb_is_capped_by_the_pids_limit(
    launcher: Launcher, world: World, sandbox: list[SandboxHandle]
) -> None:
    sandbox.append(tight := limited(launcher, "res-fork", tasks_max=24))
    sandbox.append(loose := limited(launcher, "res-fork-control", tasks_max=512))
    script = str(world.workspace / "probe.py")
    probe = (
        f"import runpy, sys; sys.argv = ['probe', 'fork_many', '80']; "
        f"runpy.run_path({script!r}, run_name='__main__')"
    )
    rc, out = run(launcher, tight, world, probe)
    capped = json.loads(out.strip().splitlines()[-1])
    assert capped["error"], out  # fork failed (EAGAIN) ...
    assert capped["started"] < 24  # ... before the limit; bwrap and python count too
    rc, out = run(launcher, loose, world, probe)
    assert json.loads(out.strip().splitlines()[-1]) == {"ok": True, "started": 80, "error": ""}


def test_memory_hog_is_killed_by_the_memory_limit(
    launcher: Launcher, world: World, sandbox: list[SandboxHandle]
) -> None:
    sandbox.append(tight := limited(launcher, "res-mem", memory_max="64M"))
    sandbox.append(loose := limited(launcher, "res-mem-control", memory_max="1G"))
    rc, out = run(launcher, tight, world, MEMORY_HOG)
    assert rc != 0 and "survived" not in out, (rc, out)
    assert tight.cgroup is not None
    assert stat_of(tight.cgroup, "memory.oom_control", "memory.events", "oom_kill") >= 1
    rc, out = run(launcher, loose, world, MEMORY_HOG)
    assert rc == 0 and f"survived {256 << 20}" in out, (rc, out)


def test_cpu_quota_throttles(
    launcher: Launcher, world: World, sandbox: list[SandboxHandle]
) -> None:
    sandbox.append(handle := limited(launcher, "res-cpu", cpu_quota="10%"))
    assert run(launcher, handle, world, BUSY)[0] == 0
    assert handle.cgroup is not None
    assert stat_of(handle.cgroup, "cpu.stat", "cpu.stat", "nr_throttled") > 0


def test_teardown_kills_and_removes_the_cgroup(launcher: Launcher, world: World) -> None:
    handle = limited(launcher, "res-teardown")
    cg = handle.cgroup
    assert cg is not None and all(d.is_dir() for d in cg.dirs)

    async def start() -> int:
        proc = await bwrap.spawn(handle, world.view(), ["/bin/sleep", "300"])
        return proc.pid

    outer = launcher.loop.run(start())
    deadline = time.monotonic() + 10
    while len(members := cg.procs_files[0].read_text().split()) < 2:
        assert time.monotonic() < deadline, "sandbox never joined its cgroup"
        time.sleep(0.05)
    assert str(outer) in members  # the outermost process, before bwrap, is already inside
    launcher.teardown(handle)
    assert not any(d.exists() for d in cg.dirs)
    for pid in members:
        assert not Path(f"/proc/{pid}").exists() or _zombie(int(pid))


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_crashed_launchers_cgroups_are_reconciled(launcher: Launcher) -> None:
    """A group of this instance with a live process and no sandbox (what a crash leaves) is
    killed and removed; the same name under another instance (a second symphonyd beside
    this one) is not touched."""
    own = launcher.manager.instance
    other = new_instance()
    hierarchy = cgroups.prepare(own)
    cgroups.prepare(other)
    stray = cgroups.create(hierarchy, own, "symv9999", cgroups.Limits(None, 16, 100_000))
    theirs = cgroups.create(hierarchy, other, "symv9999", cgroups.Limits(None, 16, 100_000))
    proc = subprocess.Popen([*stray.join_prefix(), "/bin/sleep", "300"])
    survivor = subprocess.Popen([*theirs.join_prefix(), "/bin/sleep", "300"])
    try:
        deadline = time.monotonic() + 10
        for p, cg in ((proc, stray), (survivor, theirs)):
            while str(p.pid) not in cg.procs_files[0].read_text().split():
                assert time.monotonic() < deadline
                time.sleep(0.02)
        keep = {h.lease.host_ifname for h in launcher.manager.live.values()}
        assert cgroups.reconcile(keep, own) == ["symv9999"]
        assert proc.wait(10) == -signal.SIGKILL
        assert not any(d.exists() for d in stray.dirs)
        assert survivor.poll() is None
        assert all(d.exists() for d in theirs.dirs)
    finally:
        proc.kill()
        survivor.kill()
        survivor.wait()
        cgroups.destroy(stray)
        cgroups.destroy(theirs)
        cgroups.release(other)


def test_no_cgroup_means_no_sandbox_and_an_audit_record(
    launcher: Launcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    links = sh("ip", "-o", "link").stdout
    monkeypatch.setattr(cgroups, "locate", lambda *a: [])  # a host with no usable hierarchy
    with pytest.raises(SandboxError) as info:
        limited(launcher, "res-none")
    assert info.value.error_code == "sandbox_resources_failed"
    failure = [a for a in launcher.audit if a.get("agent_id") == "res-none"]
    assert failure and failure[-1]["type"] == audit_events.SANDBOX_FAILURE
    assert failure[-1]["code"] == "sandbox_resources_failed"
    assert "res-none" not in launcher.manager.live
    assert sh("ip", "-o", "link").stdout.count("symv") == links.count("symv")


def test_cgroup_removed_under_a_live_sandbox_refuses_to_spawn(
    launcher: Launcher, world: World, sandbox: list[SandboxHandle]
) -> None:
    sandbox.append(handle := limited(launcher, "res-gone"))
    assert handle.cgroup is not None
    cgroups.destroy(handle.cgroup)
    with pytest.raises(SandboxError) as info:
        run(launcher, handle, world, "print(1)")
    assert info.value.error_code == "sandbox_resources_failed"
