"""Startup cleanup touches this launcher instance's agents, all of them, and nothing else.

Each launcher here is the daemon's own composition (``__main__.sandboxes_for`` with a state
directory, ``AgentSandboxes.start``/``open``/``spawn``), on the enforcer of the session
(bubblewrap on the host, transient units in the nspawn container, docs/design/0807). The
agents are found afterwards by a unique ``sleep`` argument, only to look at them: the tests
never signal anything they did not start through a launcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Generator
from pathlib import Path

import pytest

from symphonyd.core.api.audit import AuditEventIn
from symphonyd.core.hostconfig import HostConfig, SandboxHost
from symphonyd.launcher.daemon import AuditQueue, sandboxes_for
from symphonyd.launcher.hooks import RunAs
from symphonyd.launcher.sandbox import procs
from tests.sandbox.conftest import AGENT_GID, AGENT_UID, Launcher, World, sh

pytestmark = pytest.mark.root
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PYTHONPATH = os.environ.get("PYTHONPATH", "")


class Recorded(AuditQueue):
    """The launcher's audit queue, keeping records here instead of sending them."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self.records: list[AuditEventIn] = []

    def put(self, record: AuditEventIn) -> None:
        self.records.append(record)


def tagged(tag: str) -> list[int]:
    """Processes running ``sleep <tag>`` (read only)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
                if argv[:2] in ([b"sleep", tag.encode()], [b"/bin/sleep", tag.encode()]):
                    found.append(int(entry))
    return found


def environ(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes()


def wait_for(predicate: Callable[[], bool], timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def instance_dirs(world: World) -> Generator[tuple[Path, Path, Path], None, None]:
    """Two launcher state directories and a workspace of this test's own."""
    root = Path(tempfile.mkdtemp(prefix="symtest-inst-", dir=world.root))
    os.chmod(root, 0o755)
    ws = world.workspace_root / f"inst-{os.getpid()}-{random.randrange(1 << 30)}"
    ws.mkdir()
    os.chown(ws, AGENT_UID, AGENT_GID)
    try:
        yield root / "state-a", root / "state-b", ws
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(ws, ignore_errors=True)


def launcher_process(
    state: Path,
    ws: Path,
    template: Path,
    pool: str,
    enforcer: str,
    mode: str,
    tag: str,
    *,
    own_netns: bool = False,
) -> subprocess.Popen[str]:
    argv = [sys.executable, str(HERE / "launcher_instance.py"), str(state), str(ws)]
    argv += [str(template), pool, enforcer, mode, tag]
    if own_netns:  # a second symphonyd with a network of its own (a container's)
        argv = ["unshare", "--net", "--", *argv]
    return subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), PYTHONPATH]))},
    )


def ready_line(proc: subprocess.Popen[str]) -> list[str]:
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("READY "):
            return line.split()
    raise AssertionError("the launcher did not start its agent: " + "".join(seen)[-3000:])


def restart(state: Path, template: Path, pool: str, enforcer: str) -> list[AuditEventIn]:
    """A launcher starting on ``state``, as the daemon's startup does it; its audit records.

    It is stopped with its manager only: the session's nftables table stays (as
    test_fail_closed's reconcile test leaves it)."""
    host = HostConfig(
        state_dir=str(state),
        runtime_dir=str(state / "run"),
        audit_dir=str(state / "audit"),
        sandbox=SandboxHost(address_pool=pool, upstream_dns=("198.18.1.53",)),
    )
    audit = Recorded(state / "none.sock")
    sandboxes = sandboxes_for(host, RunAs(AGENT_UID, AGENT_GID), template, audit)
    assert sandboxes is not None
    sandboxes.use_systemd = enforcer == "systemd"

    async def go() -> None:
        await sandboxes.start()
        await sandboxes.manager.close()

    asyncio.run(go())
    return audit.records


def test_restart_kills_a_crashed_launchers_agent_that_shed_its_environment(
    launcher: Launcher, world: World, template: Path, instance_dirs: tuple[Path, Path, Path]
) -> None:
    state, _, ws = instance_dirs
    tag = f"1000.{random.randrange(10**9)}"
    crasher = launcher_process(
        state, ws, template, "100.127.24.0/30", launcher.enforcer, "crash", tag
    )
    try:
        _, ifname, instance = ready_line(crasher)
        assert crasher.wait(30) == 9
    finally:
        crasher.kill()
        crasher.wait()
    assert (state / "launcher" / "sandbox-instance").read_text().strip() == instance
    if launcher.enforcer == "systemd":
        # The unit outlives its launcher; its double-forked child carries no marker at all.
        assert wait_for(lambda: len(tagged(tag)) == 1), "the escaped child is not running"
        (pid,) = tagged(tag)
        assert procs.MARKER.encode() not in environ(pid)
        assert environ(pid) == b""
    # bubblewrap: the crash already took the sandbox's PID namespace with it
    # (--die-with-parent); what is left to find is its cgroup.
    records = restart(state, template, "100.127.24.0/30", launcher.enforcer)
    assert wait_for(lambda: tagged(tag) == [], 10), "a crashed launcher's agent survived"
    (rec,) = [r for r in records if r.type == "sandbox_reconciled"]
    assert rec.payload["instance"] == instance
    if launcher.enforcer == "systemd":
        assert [u for u in rec.payload["units"] if u.startswith("symphony-agent-run-")], rec
    else:
        assert rec.payload["cgroups"] == [ifname], rec
    assert ifname not in sh("ip", "-o", "link").stdout
    assert launcher.manager.firewall.table_exists()


def test_another_instances_agents_survive_startup_cleanup(
    launcher: Launcher, world: World, template: Path, instance_dirs: tuple[Path, Path, Path]
) -> None:
    state_a, state_b, ws = instance_dirs
    tag = f"1000.{random.randrange(10**9)}"
    other = launcher_process(
        state_b, ws, template, "100.127.32.0/30", launcher.enforcer, "serve", tag, own_netns=True
    )
    try:
        _, _, other_instance = ready_line(other)
        assert wait_for(lambda: len(tagged(tag)) == 1), "the other launcher's agent is not up"
        (pid,) = tagged(tag)
        # It carries the launcher's marker, which the old cleanup killed by, host-wide.
        assert procs.MARKER.encode() + b"=" in environ(pid)
        records = restart(state_a, template, "100.127.28.0/30", launcher.enforcer)
        instance = (state_a / "launcher" / "sandbox-instance").read_text().strip()
        assert instance != other_instance
        time.sleep(0.5)
        assert tagged(tag) == [pid], "startup cleanup killed another instance's agent"
        assert not [r for r in records if r.type == "sandbox_reconciled"], records
    finally:
        assert other.stdin is not None
        other.stdin.close()
        out = other.stdout.read() if other.stdout else ""
        assert other.wait(60) == 0, out
    assert "CLOSED" in out
    assert wait_for(lambda: tagged(tag) == [], 10)
