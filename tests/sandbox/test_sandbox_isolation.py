"""Namespaces and shared memory inside a real sandbox, on both enforcers (issue 15, 6 and 7).

- No user namespaces: ``unshare -U`` (and ``-U -n``) fails inside, works for the same user
  outside (docs/design/0852).
- POSIX shared memory works: ``/dev/shm`` is the sandbox's own writable tmpfs, capped by the
  host config's ``[sandbox] shm_size``, not shared between sandboxes nor with the host, and
  gone with the sandbox (docs/design/0853).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from symphonyd.core.hostconfig import parse_host_config
from symphonyd.core.messages import WorkflowSnapshot
from symphonyd.launcher.hooks import RunAs
from symphonyd.launcher.sandbox.sandbox import SandboxHandle
from symphonyd.launcher.sandboxing import AgentSandbox, AgentSandboxes
from symphonyd.launcher.service import bind_config
from tests.sandbox.conftest import AGENT_GID, AGENT_UID, Launcher, World, agent_policy, sh

pytestmark = pytest.mark.root

UNSHARE = 'unshare -U -n true; echo "userns+netns=$?"; unshare -U true; echo "userns=$?"'
# Everything multiprocessing needs /dev/shm for: semaphores (Lock, Queue) and shared memory.
MULTIPROCESSING = """
import json, multiprocessing as mp
from multiprocessing import shared_memory

def child(q, lock, name):
    shm = shared_memory.SharedMemory(name=name)
    with lock:
        shm.buf[:5] = b"hello"
    shm.close()
    q.put("done")

if __name__ == "__main__":
    ctx = mp.get_context("fork")
    q, lock = ctx.Queue(), ctx.Lock()
    shm = shared_memory.SharedMemory(create=True, size=4096)
    p = ctx.Process(target=child, args=(q, lock, shm.name))
    p.start()
    msg = q.get(timeout=20)
    p.join(20)
    print(json.dumps({"msg": msg, "shared": bytes(shm.buf[:5]).decode(), "exit": p.exitcode}))
    shm.close()
    shm.unlink()
"""


def sandboxed(launcher: Launcher, handle: SandboxHandle, world: World, argv: list[str]) -> str:
    async def go() -> tuple[int, bytes]:
        proc = await launcher.spawn(
            handle,
            world.view(),
            argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode or 0, out

    rc, out = launcher.loop.run(go(), timeout=90)
    assert rc == 0, out.decode(errors="replace")
    return out.decode(errors="replace")


def test_control_user_namespaces_work_outside(launcher: Launcher) -> None:
    """The same user, outside any sandbox, may make them: the refusal below is the sandbox's.
    (Per enforcer, so it runs where the sandboxed variant runs: the host, the container.)"""
    as_agent = ("setpriv", f"--reuid={AGENT_UID}", f"--regid={AGENT_GID}", "--clear-groups")
    out = sh(*as_agent, "--", "/bin/sh", "-c", UNSHARE).stdout
    assert "userns+netns=0" in out and "userns=0" in out, out


def test_user_namespaces_cannot_be_made_in_the_sandbox(launcher: Launcher, world: World) -> None:
    handle = launcher.setup("agent-userns", agent_policy())
    try:
        out = sandboxed(launcher, handle, world, ["/bin/sh", "-c", UNSHARE + " 2>&1"])
    finally:
        launcher.teardown(handle)
    assert "userns+netns=0" not in out and "userns=0" not in out, out
    assert "userns+netns=1" in out and "userns=1" in out, out


def test_posix_shared_memory_works(launcher: Launcher, world: World) -> None:
    handle = launcher.setup("agent-shm", agent_policy())
    try:
        out = sandboxed(launcher, handle, world, ["/usr/bin/python3", "-c", MULTIPROCESSING])
    finally:
        launcher.teardown(handle)
    result = json.loads(out.strip().splitlines()[-1])
    assert result == {"msg": "done", "shared": "hello", "exit": 0}, out


# Fills /dev/shm: how much fit, the filesystem's size, and what was there before.
FILL = """
import json, os, sys
name = "/dev/shm/symtest-" + sys.argv[1]
before = sorted(os.listdir("/dev/shm"))
st = os.statvfs("/dev/shm")
written, error = 0, ""
try:
    with open(name, "wb") as f:
        while written < (64 << 20):
            f.write(b"x" * (1 << 20))
            f.flush()
            written += 1 << 20
except OSError as exc:
    error = os.strerror(exc.errno)
print(json.dumps({"before": before, "size": st.f_blocks * st.f_frsize, "written": written,
                  "error": error}), flush=True)
sys.stdin.read()  # hold the sandbox (and its file) until the test is done
"""


def test_shared_memory_is_capped_per_sandbox_from_the_host_config(
    launcher: Launcher, world: World, template: Path
) -> None:
    """Through the launcher's AgentSandboxes, with ``shm_size`` from a parsed host config:
    the cap holds, and a second sandbox running at the same time sees none of the first's
    files (nor does the host)."""
    host, _ = parse_host_config('[sandbox]\nshm_size = "8M"\nrequire_resource_limits = false\n')
    assert host.sandbox.shm_bytes == 8 << 20
    sandboxes = AgentSandboxes(
        launcher.manager,
        host.sandbox,
        run_as=RunAs(AGENT_UID, AGENT_GID),
        template_home=template,
        hidden=[],
        use_systemd=launcher.enforcer == "systemd",
    )
    config = bind_config(
        WorkflowSnapshot(
            str(world.root / "WORKFLOW.md"),
            {"tracker": {"kind": "memory"}, "workspace": {"root": str(world.workspace_root)}},
            "x",
            "0" * 64,
        ),
        {},
    )

    async def fill(
        sandbox: AgentSandbox, tag: str
    ) -> tuple[asyncio.subprocess.Process, dict[str, Any]]:
        cwd = sandbox.view.workspace
        proc = await sandbox.spawn(["/usr/bin/python3", "-c", FILL, tag], cwd, {})
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert line, (await proc.stderr.read()).decode() if proc.stderr else ""
        return proc, json.loads(line)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        first = await sandboxes.open("shm-first", world.workspace, config)
        second = await sandboxes.open("shm-second", world.sibling, config)
        procs = []
        try:
            proc, a = await fill(first, "first")
            procs.append(proc)
            proc, b = await fill(second, "second")
            procs.append(proc)
            assert not Path("/dev/shm/symtest-first").exists()  # not the host's either
            return a, b
        finally:
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.close()
            for proc in procs:
                await asyncio.wait_for(proc.wait(), 30)
            await first.close()
            await second.close()

    a, b = launcher.loop.run(scenario(), timeout=180)
    for seen in (a, b):
        assert seen["size"] == 8 << 20, seen
        assert seen["error"] == "No space left on device", seen
        assert seen["written"] <= 8 << 20, seen
    assert a["before"] == [] and b["before"] == [], (a, b)
