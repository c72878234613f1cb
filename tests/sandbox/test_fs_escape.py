"""Filesystem escape suite: what the sandboxed agent can read and write, on both enforcers.

Every secret below is world-readable on the host on purpose, so a failed read can only be the
sandbox's doing; test_control_secrets_are_readable_outside proves the files are there.
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from symphonyd.launcher.sandbox import procs
from symphonyd.launcher.sandbox.fs_view import FsView, build_fs_view
from symphonyd.launcher.sandbox.manager import SandboxHandle
from tests.sandbox.conftest import (
    AGENT_GID,
    AGENT_UID,
    Launcher,
    World,
    agent_policy,
    probe_output,
    run_probe,
)

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def agent(launcher: Launcher) -> Generator[SandboxHandle, None, None]:
    handle = launcher.setup("agent-fs", agent_policy())
    yield handle
    launcher.teardown(handle)


def secrets(world: World) -> list[Path]:
    return [
        world.home / ".ssh" / "id_ed25519",
        world.etc_symphony / "symtest-secret",
        world.audit_dir / "2026-01-01.ndjson",
        world.sibling / "secret.txt",
    ]


def test_control_secrets_are_readable_outside(world: World) -> None:
    for path in secrets(world):
        assert path.read_text()
        assert path.stat().st_mode & 0o004


@pytest.mark.parametrize("index", range(4), ids=["ssh", "etc_symphony", "audit", "sibling"])
def test_secrets_are_unreadable(launcher: Launcher, agent: SandboxHandle, world: World, index):
    path = secrets(world)[index]
    r = run_probe(launcher, agent, world, "read", str(path))
    assert not r["ok"], r
    listing = run_probe(launcher, agent, world, "read", str(path.parent))
    assert not listing.get("entries"), listing


def test_only_own_workspace_is_visible(launcher: Launcher, agent: SandboxHandle, world: World):
    r = run_probe(launcher, agent, world, "read", str(world.workspace_root))
    assert r["entries"] == [world.workspace.name]
    # bubblewrap shows an empty tmpfs, systemd an inaccessible directory: nothing either way
    assert not run_probe(launcher, agent, world, "read", "/root").get("entries")


@pytest.mark.parametrize("rel", [".git/hooks/pre-commit", ".git/config", ".git/packed-refs"])
def test_git_metadata_is_read_only(launcher: Launcher, agent: SandboxHandle, world: World, rel):
    before = (world.workspace / rel).read_bytes() if (world.workspace / rel).exists() else None
    r = run_probe(launcher, agent, world, "write", str(world.workspace / rel))
    assert not r["ok"], r
    after = (world.workspace / rel).read_bytes() if (world.workspace / rel).exists() else None
    assert before == after
    # but the agent can read it (git needs to)
    assert run_probe(launcher, agent, world, "read", str(world.workspace / ".git/config"))["ok"]


def test_workspace_is_writable(launcher: Launcher, agent: SandboxHandle, world: World):
    target = world.workspace / "written-by-agent.txt"
    target.unlink(missing_ok=True)
    r = run_probe(launcher, agent, world, "write", str(target))
    assert r["ok"], r
    assert target.read_text() == "x"
    assert target.stat().st_uid == AGENT_UID
    objects = world.workspace / ".git" / "objects-probe"
    r = run_probe(launcher, agent, world, "write", str(objects))
    assert r["ok"], r  # the rest of .git (objects, refs) stays writable for commits
    objects.unlink()


def test_tmp_is_private_and_host_tmp_invisible(
    launcher: Launcher, agent: SandboxHandle, world: World, tmp_path: Path
):
    marker = Path("/tmp") / f"symtest-host-{os.getpid()}"
    marker.write_text("host tmp")
    marker.chmod(0o644)
    try:
        assert not run_probe(launcher, agent, world, "read", str(marker))["ok"]
        assert run_probe(launcher, agent, world, "write", "/tmp/agent-scratch")["ok"]
        assert not Path("/tmp/agent-scratch").exists()
    finally:
        marker.unlink()


def test_system_is_read_only(launcher: Launcher, agent: SandboxHandle, world: World):
    assert not run_probe(launcher, agent, world, "write", "/etc/symtest-write")["ok"]
    assert not run_probe(launcher, agent, world, "write", "/usr/symtest-write")["ok"]
    assert not Path("/etc/symtest-write").exists()


def test_host_shared_memory_is_invisible(launcher: Launcher, agent: SandboxHandle, world: World):
    """/dev/shm is a fresh tmpfs for the agent: no host or sibling files in, nothing out."""
    marker = Path("/dev/shm") / f"symtest-host-{os.getpid()}"
    marker.write_text("host shm secret")
    marker.chmod(0o644)
    try:
        assert not run_probe(launcher, agent, world, "read", str(marker))["ok"]
        r = run_probe(launcher, agent, world, "write", "/dev/shm/symtest-from-agent")
        assert not Path("/dev/shm/symtest-from-agent").exists(), r
    finally:
        marker.unlink()
        Path("/dev/shm/symtest-from-agent").unlink(missing_ok=True)


def test_other_agents_processes_are_out_of_reach(
    launcher: Launcher, agent: SandboxHandle, world: World
):
    """Agents share a uid; another agent's process must not lead into its workspace
    (``/proc/<pid>/cwd``) or show its environment."""
    other = launcher.setup("agent-fs-b", agent_policy())

    async def start() -> asyncio.subprocess.Process:
        return await launcher.spawn(
            other, world.view(world.sibling), ["/bin/sleep", "60"], cwd=world.sibling
        )

    try:
        launcher.loop.run(start())
        # Control: from outside, the other agent's process does lead into its workspace.
        inode = os.fstat(other.netns.fd).st_ino
        deadline = time.monotonic() + 10
        while not [
            pid
            for pid in procs.pids_in_netns(inode)
            if (Path(f"/proc/{pid}/cwd") / "secret.txt").exists()
        ]:
            assert time.monotonic() < deadline, "the other agent's sleeper did not start"
            time.sleep(0.05)
        r = run_probe(launcher, agent, world, "peek_procs", "secret.txt")
        assert r["reached"] == [] and r["environ"] == [], r
    finally:
        launcher.teardown(other)


def sandboxed_sh(launcher: Launcher, handle: SandboxHandle, world: World, script: str) -> str:
    async def go() -> tuple[int, bytes]:
        proc = await launcher.spawn(
            handle,
            world.view(),
            ["/bin/sh", "-c", script],
            env=GIT_ENV,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode or 0, out

    rc, out = launcher.loop.run(go())
    assert rc == 0, out.decode(errors="replace")
    return out.decode()


GIT_ENV = {
    "GIT_AUTHOR_NAME": "agent",
    "GIT_AUTHOR_EMAIL": "agent@example.invalid",
    "GIT_COMMITTER_NAME": "agent",
    "GIT_COMMITTER_EMAIL": "agent@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


@pytest.fixture
def bare_repo(world: World) -> Generator[Path, None, None]:
    """A real repository in the workspace without hooks/, info/, config.worktree, packed-refs."""
    repo = world.workspace / "nested"
    env = {**GIT_ENV, "HOME": "/nonexistent", "PATH": "/usr/bin:/bin"}
    run = functools.partial(subprocess.run, cwd=repo, env=env, check=True, capture_output=True)
    repo.mkdir()
    run(["git", "-c", "init.defaultBranch=main", "init", "-q"])
    (repo / "a.txt").write_text("a\n")
    run(["git", "add", "a.txt"])
    run(["git", "commit", "-qm", "first"])
    shutil.rmtree(repo / ".git" / "hooks")
    shutil.rmtree(repo / ".git" / "info")
    for p in [repo, *repo.rglob("*")]:
        os.lchown(p, AGENT_UID, AGENT_GID)
    yield repo
    shutil.rmtree(repo)


@pytest.mark.parametrize(
    "rel", ["hooks/post-checkout", "config.worktree", "info/attributes", "packed-refs"]
)
def test_missing_git_metadata_cannot_be_created(
    launcher: Launcher, agent: SandboxHandle, world: World, bare_repo: Path, rel: str
):
    target = bare_repo / ".git" / rel
    assert not target.exists()
    r = run_probe(launcher, agent, world, "write", str(target))
    assert not r["ok"], r
    assert not target.exists() or target.read_bytes() == b""


def test_git_works_in_the_sandbox(
    launcher: Launcher, agent: SandboxHandle, world: World, bare_repo: Path
):
    out = sandboxed_sh(
        launcher,
        agent,
        world,
        f"cd {bare_repo} && echo b > b.txt && git add b.txt && git commit -qm second && "
        "git status --porcelain && git log --format=%s && git branch -q side && "
        "git checkout -q side && git checkout -q main",
    )
    assert out.split() == ["second", "first"], out
    assert (bare_repo / ".git" / "refs" / "heads" / "side").exists()
    assert not os.listdir(bare_repo / ".git" / "hooks")


def probe_in(launcher: Launcher, handle: SandboxHandle, view: FsView, *args: str) -> Any:
    lines, rc, err = probe_output(launcher, handle, view, *args)
    assert lines, f"probe printed nothing (rc={rc}): {err}"
    return lines[-1]


def test_wildcard_entries_hide_matches_only(launcher: Launcher, agent: SandboxHandle, world: World):
    # Not under /tmp (private in the sandbox) nor /home (hidden wholesale): only the
    # ~/*.pem pattern can hide the key here.
    home = Path(
        tempfile.mkdtemp(
            prefix="symtest-home-", dir="/srv" if os.path.isdir("/srv") else "/var/cache"
        )
    )
    try:
        home.chmod(0o755)
        key, notes = home / "deploy.pem", home / "notes.txt"
        for path in (key, notes):
            path.write_text("content")
            path.chmod(0o644)
        view = build_fs_view(
            world.workspace, world.workspace_root, uid=AGENT_UID, gid=AGENT_GID, homes=[home]
        )
        assert key in view.hidden_files
        assert not probe_in(launcher, agent, view, "read", str(key))["ok"]
        assert probe_in(launcher, agent, view, "read", str(notes))["ok"]  # control
    finally:
        shutil.rmtree(home)


def test_key_created_in_a_home_after_the_build_is_hidden(
    launcher: Launcher, agent: SandboxHandle, world: World
):
    """A wildcard cannot match a file that does not exist yet; /home hidden wholesale can."""
    home = Path("/home") / f"symtest-{os.getpid()}"
    home.mkdir(mode=0o755)
    try:
        view = world.view()  # built while the key does not exist
        late = home / "late.key"
        late.write_text("created after the sandbox was built")
        late.chmod(0o644)
        assert not probe_in(launcher, agent, view, "read", str(late))["ok"]
    finally:
        shutil.rmtree(home)


def test_host_unix_sockets_under_run_are_out_of_reach(
    launcher: Launcher, agent: SandboxHandle, world: World
):
    """/run holds sockets any local user may connect to (journald, D-Bus, varlink services);
    one stands in for them here: world-writable, listening, reachable from the host."""
    path = Path("/run") / f"symtest-{os.getpid()}.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(str(path))
        path.chmod(0o666)
        server.listen(8)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as control:
            control.connect(str(path))  # the socket works outside the sandbox
        r = run_probe(launcher, agent, world, "unix", str(path))
        assert not r["ok"], r
        # Nor the other sandboxes' files (bubblewrap: /run is empty; systemd: each entry of
        # /run is inaccessible but its name, see systemd_unit.INACCESSIBLE_NODES).
        others = run_probe(launcher, agent, world, "read", "/run/symphony-sandbox")
        assert not others.get("entries"), others
        # The agent's own resolver still answers: its resolv.conf is bound from /run.
        resolv = run_probe(launcher, agent, world, "read", "/etc/resolv.conf")
        assert resolv["ok"] and "nameserver" in resolv.get("data", ""), resolv
    finally:
        server.close()
        path.unlink(missing_ok=True)
