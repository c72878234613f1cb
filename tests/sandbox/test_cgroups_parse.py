"""Finding the cgroup hierarchy and reading systemd-syntax limits (no root needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from symphonyd.core.config_extensions import ResourcesConfig
from symphonyd.launcher.sandbox import cgroups
from symphonyd.launcher.sandbox.errors import SandboxError

HYBRID_MOUNTS = """\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,relatime,cpu,cpuacct 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
"""
HYBRID_SELF = "5:pids:/\n4:memory:/svc/launcher\n2:cpu,cpuacct:/\n0::/\n"


def test_hybrid_host_offers_v2_then_v1_under_the_launchers_own_groups() -> None:
    v2, v1 = cgroups.locate(HYBRID_MOUNTS, HYBRID_SELF)
    assert v2.version == 2
    assert v2.bases == {"": Path("/sys/fs/cgroup/unified/symphony-sandbox")}
    assert v1.version == 1
    assert v1.bases == {
        "cpu": Path("/sys/fs/cgroup/cpu,cpuacct/symphony-sandbox"),
        "memory": Path("/sys/fs/cgroup/memory/svc/launcher/symphony-sandbox"),
        "pids": Path("/sys/fs/cgroup/pids/symphony-sandbox"),
    }


def test_pure_v2_and_incomplete_v1() -> None:
    pure = "cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n"
    [h] = cgroups.locate(pure, "0::/system.slice/x.service\n")
    assert h.bases[""] == Path("/sys/fs/cgroup/system.slice/x.service/symphony-sandbox")
    no_pids = "cgroup /m cgroup rw,memory 0 0\ncgroup /c cgroup rw,cpu 0 0\n"
    assert cgroups.locate(no_pids, "4:memory:/\n2:cpu:/\n") == []


def test_no_usable_hierarchy_fails_closed() -> None:
    with pytest.raises(SandboxError) as info:
        cgroups.prepare("0123456789ab", [])
    assert info.value.error_code == "sandbox_resources_failed"


def test_v2_without_controllers_is_not_used() -> None:
    """A unified hierarchy without memory/pids/cpu (this CI machine's) is refused unchanged."""
    for h in cgroups.locate():
        parent = h.bases.get("", Path("/nonexistent")).parent
        if h.version != 2 or not (parent / "cgroup.controllers").exists():
            continue
        offered = set((parent / "cgroup.controllers").read_text().split())
        if set(cgroups.CONTROLLERS) <= offered:
            continue
        with pytest.raises(SandboxError) as info:
            cgroups.prepare("0123456789ab", [h])
        assert "controllers not available" in info.value.message
        assert not h.bases[""].exists()


def test_limits_in_systemd_syntax() -> None:
    lim = cgroups.limits_from(ResourcesConfig("512M", 64, "150%"))
    assert lim == cgroups.Limits(512 << 20, 64, 150_000)
    assert cgroups.limits_from(ResourcesConfig("infinity", 1, "1%")).memory_bytes is None
    assert cgroups.limits_from(ResourcesConfig("4096", 1, "1%")).memory_bytes == 4096
    for bad in (ResourcesConfig("4X", 1, "1%"), ResourcesConfig("4G", 0, "1%")):
        with pytest.raises(SandboxError) as info:
            cgroups.limits_from(bad)
        assert info.value.error_code == "sandbox_resources_failed"


def test_join_prefix_is_one_argv_with_every_procs_file() -> None:
    cg = cgroups.Cgroup("symv3", 1, (Path("/a/symv3"), Path("/b/symv3")))
    argv = cg.join_prefix()
    assert argv[:3] == ["/bin/sh", "-c", cgroups.JOIN]
    assert argv[4:] == ["2", "/a/symv3/cgroup.procs", "/b/symv3/cgroup.procs"]
