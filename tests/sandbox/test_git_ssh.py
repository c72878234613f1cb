"""git over ssh from a real sandbox, through the checked path only (docs/design/0868).

A test-owned sshd in the fake internet's namespace is the forge (git.test, 198.18.1.10:22),
serving a bare repository to one key. The real ``git`` and ``ssh`` run inside the sandbox with
nothing but the sandbox's own ssh_config: its ProxyCommand (``ssh_connect.py``) CONNECTs to
the agent's proxy, which checks the name like any CONNECT and writes one audit record. The same
to a denied name fails with the proxy's reason; port 22 of the forge's address without the
proxy has no route. The agent's uid has no host passwd entry (AGENT_UID): ssh works because
the sandbox gives the agent its own passwd view.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from symphonyd.core.api.launcher import WorkflowSnapshot
from symphonyd.core.config import ServiceConfig
from symphonyd.core.hostconfig import parse_host_config
from symphonyd.launcher.sandbox.manager import SandboxHandle
from symphonyd.launcher.workspace_requests import bind_config
from tests.sandbox.agent_sandboxes import agent_sandboxes
from tests.sandbox.conftest import (
    AGENT_GID,
    AGENT_UID,
    INET_NS,
    Internet,
    Launcher,
    World,
    agent_policy,
    run_probe,
    sh,
)

pytestmark = pytest.mark.root
AGENT = "agent-gitssh"
SSHD = "/usr/sbin/sshd"
FORGE_IP = "198.18.1.10"


@dataclass(frozen=True)
class Forge:
    head: str  # the served repository's commit
    key: Path  # the client key, inside the agent's workspace


def _keygen(path: Path) -> str:
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path))
    return path.with_suffix(".pub").read_text().strip()


@pytest.fixture(scope="module")
def forge(
    tmp_path_factory: pytest.TempPathFactory, internet: Internet, world: World
) -> Generator[Forge, None, None]:
    if not Path(SSHD).exists():
        pytest.fail("openssh-server is not installed (.ci/run installs it)")
    tmp = tmp_path_factory.mktemp("forge")
    repo, src = tmp / "repo.git", tmp / "src"
    sh("git", "init", "-q", "--bare", str(repo))
    sh("git", "init", "-q", str(src))
    (src / "README").write_text("forge\n")
    git = ("git", "-C", str(src), "-c", "user.name=t", "-c", "user.email=t@t")
    sh(*git, "add", "README")
    sh(*git, "commit", "-q", "-m", "one")
    sh(*git, "push", "-q", str(repo), "HEAD:refs/heads/main")
    head = sh("git", "-C", str(src), "rev-parse", "HEAD").stdout.strip()
    host_key = tmp / "host_key"
    _keygen(host_key)
    key = world.workspace / f"forge-key-{os.getpid()}"
    client_pub = _keygen(key)
    os.chown(key, AGENT_UID, AGENT_GID)
    os.chmod(key, 0o600)
    # Whatever the client asks for, this key only ever reads the one repository.
    serve = f"git-upload-pack {repo}"
    (tmp / "authorized_keys").write_text(f'restrict,command="{serve}" {client_pub}\n')
    config = tmp / "sshd_config"
    config.write_text(
        f"Port 22\nListenAddress {FORGE_IP}\nHostKey {host_key}\n"
        f"PidFile {tmp / 'sshd.pid'}\nAuthorizedKeysFile {tmp / 'authorized_keys'}\n"
        "PermitRootLogin forced-commands-only\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPrintMotd no\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
    proc = subprocess.Popen(
        ["ip", "netns", "exec", INET_NS, SSHD, "-D", "-e", "-f", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "sshd.log").open("wb"),
    )
    try:
        deadline = time.monotonic() + 20
        while f"{FORGE_IP}:22 " not in sh("ip", "netns", "exec", INET_NS, "ss", "-ltnH").stdout:
            assert proc.poll() is None, (tmp / "sshd.log").read_text()
            assert time.monotonic() < deadline, "sshd did not listen"
            time.sleep(0.05)
        yield Forge(head, key)
    finally:
        proc.terminate()
        proc.wait(20)
        key.unlink(missing_ok=True)
        key.with_suffix(".pub").unlink(missing_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def agent(launcher: Launcher) -> Generator[SandboxHandle, None, None]:
    policy = agent_policy(allowed_domains=["git.test"], denied_domains=["denied.test"])
    handle = launcher.setup(AGENT, policy)
    yield handle
    launcher.teardown(handle)


def in_sandbox(
    launcher: Launcher, handle: SandboxHandle, world: World, *command: str
) -> tuple[int, str]:
    # cwd: the sandbox's private tmpfs (the workspace's placeholder .git is no repository)
    return launcher.output(handle, world.view(), list(command), cwd=Path("/tmp"))


def records(launcher: Launcher, kind: str, **match: Any) -> list[dict[str, Any]]:
    return launcher.records(AGENT, kind, **match)


def test_the_agent_uid_has_no_host_account() -> None:
    # What makes the passwd view necessary: ssh would exit "No user exists for uid".
    with pytest.raises(KeyError):
        pwd.getpwuid(AGENT_UID)


def forge_workflow(world: World, **egress: Any) -> ServiceConfig:
    """A run's config as the launcher binds it, its WORKFLOW.md allowing the forge's name."""
    raw = {
        "tracker": {"kind": "memory"},
        "workspace": {"root": str(world.workspace_root)},
        "sandbox": {"egress": {"allowed_domains": ["git.test"], **egress}},
    }
    return bind_config(WorkflowSnapshot(str(world.root / "WORKFLOW.md"), raw, "x", "0" * 64), {})


def run_agent(
    launcher: Launcher, world: World, template: Path, config: ServiceConfig, *argv: str
) -> tuple[int, str]:
    """``argv`` as the launcher starts an agent: AgentSandboxes from the host config, the
    policy from the workflow, the seeded private HOME; (exit status, stdout+stderr)."""
    host, _ = parse_host_config(
        '[sandbox]\nrequire_resource_limits = false\npermitted_networks = ["198.18.0.0/15"]\n'
    )
    sandboxes = agent_sandboxes(launcher, host.sandbox, template)

    async def go() -> tuple[int, str]:
        sandbox = await sandboxes.open(f"{AGENT}-wired", world.workspace, config)
        try:
            proc = await sandbox.spawn(list(argv), Path("/tmp"), {})
            assert proc.stdin is not None
            proc.stdin.close()
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            return proc.returncode or 0, (out + err).decode(errors="replace")
        finally:
            await sandbox.close()

    return launcher.loop.run(go())


def test_git_ls_remote_over_ssh_reaches_an_allowed_forge(
    launcher: Launcher, world: World, template: Path, forge: Forge
) -> None:
    ssh = f"ssh -i {forge.key} -o IdentitiesOnly=yes"
    git = ("git", "-c", f"core.sshCommand={ssh}", "ls-remote", "root@git.test:repo.git")
    rc, out = run_agent(launcher, world, template, forge_workflow(world), *git)
    assert rc == 0, out
    assert f"{forge.head}\trefs/heads/main" in out, out
    (allow,) = launcher.records(f"{AGENT}-wired", "egress_allow", port=22)
    assert allow["via"] == "connect" and allow["address"] == FORGE_IP, allow
    assert allow["host"] == "git.test", allow
    # The agent resolves its own uid; ssh's "~" is the agent's seeded private HOME.
    who = ("sh", "-c", 'id -un; getent passwd "$(id -u)"; echo "home=$HOME"')
    rc, out = run_agent(launcher, world, template, forge_workflow(world), *who)
    assert rc == 0 and f":{AGENT_UID}:{AGENT_GID}:" in out, out
    assert ":/tmp/home:" in out and "home=/tmp/home" in out, out
    # WORKFLOW.md can switch the path off: the same clone is refused by the proxy.
    off = forge_workflow(world, ssh_ports=[])
    rc, out = run_agent(launcher, world, template, off, *git)
    assert rc != 0 and "port_not_allowed" in out and forge.head not in out, out
    assert "ssh_ports (default: 22)" in out, out


def test_ssh_to_a_denied_name_fails_with_the_proxys_reason(
    launcher: Launcher, agent: SandboxHandle, world: World, forge: Forge
) -> None:
    rc, out = in_sandbox(
        launcher, agent, world, "ssh", "-T", "-i", str(forge.key), "root@denied.test"
    )
    assert rc != 0, out
    assert "egress proxy refused denied.test:22" in out and "denied_domain" in out, out
    (deny,) = records(launcher, "egress_deny", host="denied.test", port=22)
    assert deny["reason"] == "denied_domain" and deny["via"] == "connect", deny
    # A name that is simply not listed gets the hint that says what to add.
    rc, out = in_sandbox(launcher, agent, world, "ssh", "-T", "root@other.allowed.test")
    assert rc != 0 and "allowed_domains: [other.allowed.test]" in out, out


def test_port_22_has_no_route_around_the_proxy(
    launcher: Launcher, agent: SandboxHandle, world: World, forge: Forge
) -> None:
    # The forge's own address, no proxy: not intercepted (22 is a CONNECT-only port), dropped.
    direct = run_probe(launcher, agent, world, "connect", FORGE_IP, "22")
    assert not direct["ok"], direct
    rc, out = in_sandbox(
        launcher, agent, world, "ssh", "-T", "-o", "ProxyCommand=none",
        "-o", "ConnectTimeout=3", "-i", str(forge.key), "root@git.test",
    )  # fmt: skip
    assert rc != 0 and "SSH-2.0" not in out, out
    assert not records(launcher, "egress_allow", via="intercept", port=22)
    # Plain HTTP through the proxy may not use the ssh port either.
    rc, out = in_sandbox(launcher, agent, world, "curl", "-sS", "-i", "http://git.test:22/")
    assert " 403 " in out and "port_not_allowed" in out, out
