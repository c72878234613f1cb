"""Fail closed, teardown and crash reconciliation, against the real kernel and nftables."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from symphonyd.launcher.sandbox import procs
from symphonyd.launcher.sandbox.addresses import AddressPool
from symphonyd.launcher.sandbox.dns import UpstreamResolver
from symphonyd.launcher.sandbox.errors import SandboxError
from symphonyd.launcher.sandbox.launch import launch
from symphonyd.launcher.sandbox.sandbox import SandboxManager
from tests.sandbox.conftest import UPSTREAM, Launcher, World, agent_policy, run_probe, sh

pytestmark = pytest.mark.root
REPO = Path(__file__).resolve().parents[2]


def second_manager(
    launcher: Launcher, prefix: str
) -> tuple[SandboxManager, list[dict[str, object]]]:
    """Another manager on the session's firewall, with its own small pool and audit list."""
    audit: list[dict[str, object]] = []
    manager = SandboxManager(
        upstream=UpstreamResolver([UPSTREAM]),
        audit=audit.append,
        pool=AddressPool(prefix),
        firewall=launcher.manager.firewall,
    )
    return manager, audit


def links() -> str:
    return sh("ip", "-o", "link").stdout


@pytest.mark.parametrize(
    "breakage",
    [
        ("delete", "table", "inet", "symphonyd"),  # someone removed the firewall
        ("flush", "chain", "inet", "symphonyd", "input"),  # the table is there but empty
    ],
    ids=["table_deleted", "drop_rules_flushed"],
)
def test_broken_nftables_means_no_agent_process(
    launcher: Launcher, world: World, breakage: tuple[str, ...]
):
    marker = world.workspace / "agent-started"
    marker.unlink(missing_ok=True)
    sh("nft", *breakage)
    try:
        with pytest.raises(SandboxError) as info:
            launcher.loop.run(
                launch(
                    launcher.manager,
                    "agent-nft",
                    agent_policy(),
                    world.view,
                    ["/usr/bin/touch", str(marker)],
                )
            )
        assert info.value.error_code == "sandbox_nft_failed"
        time.sleep(0.5)
        assert not marker.exists()
        assert "agent-nft" not in launcher.manager.live
        failed = [a for a in launcher.audit if a["type"] == "sandbox_failure"]
        assert failed and failed[-1]["agent_id"] == "agent-nft"
        assert failed[-1]["code"] == "sandbox_nft_failed"
        assert "symv" not in links()
        assert launcher.manager.pool.in_use() == 0
    finally:
        launcher.loop.run(launcher.manager.start())


def test_exhausted_pool_is_a_typed_failure(launcher: Launcher, world: World):
    manager, audit = second_manager(launcher, "100.127.8.0/30")
    first = launcher.loop.run(manager.setup("only", agent_policy()))
    try:
        with pytest.raises(SandboxError) as info:
            launcher.loop.run(manager.setup("second", agent_policy()))
        assert info.value.error_code == "sandbox_address_pool_exhausted"
        assert audit[-1]["type"] == "sandbox_failure"
    finally:
        launcher.loop.run(manager.teardown(first))


def test_dead_proxy_means_no_egress(launcher: Launcher, world: World):
    handle = launcher.setup("agent-deadproxy", agent_policy())
    try:
        assert run_probe(launcher, handle, world, "fetch", "https://allowed.test/", world.ca)["ok"]
        launcher.loop.run(handle.proxy.stop())
        r = run_probe(launcher, handle, world, "fetch", "https://allowed.test/", world.ca)
        assert not r["ok"]
        assert "refused" in r["error"].lower(), r
    finally:
        launcher.teardown(handle)


def test_teardown_removes_processes_rules_and_interfaces(launcher: Launcher, world: World):
    handle = launcher.setup("agent-td", agent_policy())
    ifname = handle.lease.host_ifname

    async def start_sleeper() -> int:
        proc = await launcher.spawn(handle, world.view(), ["/bin/sleep", "1000"])
        return proc.pid

    launcher.loop.run(start_sleeper())
    inode = os.fstat(handle.netns.fd).st_ino
    deadline = time.monotonic() + 10
    while not procs.pids_in_netns(inode):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert ifname in links()
    assert any(e[0] == ifname for e in launcher.manager.firewall.elements("agent_in"))
    launcher.teardown(handle)
    deadline = time.monotonic() + 10
    while procs.pids_in_netns(inode) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert procs.pids_in_netns(inode) == []
    assert ifname not in links()
    assert not any(e[0] == ifname for e in launcher.manager.firewall.elements("agent_in"))
    assert handle.netns.fd == -1
    with pytest.raises(SandboxError):
        launcher.loop.run(launcher.spawn(handle, world.view(), ["/bin/true"]))
    launcher.teardown(handle)  # idempotent


def test_spawn_uses_the_agent_namespace(launcher: Launcher, world: World):
    """The sandboxed process's netns is the handle's, not the host's."""
    handle = launcher.setup("agent-ns", agent_policy())
    try:

        async def go() -> int:
            proc = await launcher.spawn(handle, world.view(), ["/bin/sleep", "5"])
            await asyncio.sleep(0.5)
            pid = await asyncio.to_thread(launcher.agent_pid, proc)
            inode = os.stat(f"/proc/{pid}/ns/net").st_ino
            os.kill(pid, signal.SIGKILL)
            await proc.wait()
            return inode

        assert launcher.loop.run(go()) == os.fstat(handle.netns.fd).st_ino
        assert os.fstat(handle.netns.fd).st_ino != os.stat("/proc/self/ns/net").st_ino
    finally:
        launcher.teardown(handle)


IP_FREEBIND = 15


@pytest.mark.parametrize(
    ("kind", "port", "code"),
    [
        (socket.SOCK_DGRAM, 53, "sandbox_dns_failed"),
        (socket.SOCK_STREAM, 3128, "sandbox_proxy_failed"),
    ],
)
def test_listener_failure_is_typed_and_leaves_nothing(
    launcher: Launcher, world: World, kind: int, port: int, code: str
):
    # The next sandbox of this pool gets 100.127.16.1; squat its port before it exists.
    manager, audit = second_manager(launcher, "100.127.16.0/30")
    squatter = socket.socket(socket.AF_INET, kind)
    squatter.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
    squatter.bind(("100.127.16.1", port))
    if kind == socket.SOCK_STREAM:
        squatter.listen()
    try:
        with pytest.raises(SandboxError) as info:
            launcher.loop.run(manager.setup("agent-squat", agent_policy()))
        assert info.value.error_code == code
    finally:
        squatter.close()
    assert audit[-1]["type"] == "sandbox_failure"
    assert audit[-1]["code"] == code
    assert "symv" not in links()
    assert not any(e[0] == "symv0" for e in launcher.manager.firewall.elements("agent_in"))
    assert manager.pool.in_use() == 0
