"""The link's worker side through real OpenSSH: a test-owned sshd, the real ``ssh`` client,
the bridge as the key's forced command, and the real launcher daemon behind it.

What is proven is the trust boundary of docs/design/1100-worker-hosts.md: the control key
reaches the worker's launcher protocol and nothing else (no shell, no other command, no
forwarding), and only against the pinned host key.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from symphonyd.core.messages import HEALTH, LAUNCHER_LIST_RUNS, Empty, ListRuns
from symphonyd.link.bridge import EX_NOPERM, EX_UNAVAILABLE
from symphonyd.runtime.ipc_client import IpcClient
from tests.launcher.test_daemon_sockets import launcher_layout, spawn, stop, wait_for_socket

pytestmark = pytest.mark.root
REPO = Path(__file__).resolve().parents[2]
SSHD = "/usr/sbin/sshd"


@dataclass(frozen=True)
class Worker:
    port: int
    key: Path
    known_hosts: Path
    runtime: Path
    tmp: Path

    def ssh(self, *extra: str, known_hosts: Path | None = None) -> list[str]:
        return [
            "ssh",
            "-F",
            "/dev/null",
            "-T",
            "-i",
            str(self.key),
            "-p",
            str(self.port),
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={known_hosts or self.known_hosts}",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ConnectTimeout=10",
            *extra,
            "root@127.0.0.1",
        ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _keygen(path: Path) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)], check=True
    )
    return path.with_suffix(".pub").read_text().strip()


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Worker]:
    """sshd on loopback of this run's own network namespace, the bridge as forced command."""
    if not Path(SSHD).exists():
        pytest.fail("openssh-server is not installed (.ci/run installs it)")
    # sshd refuses to start without its privilege-separation directory; it is created the
    # way Debian's unit does and left in place (it holds nothing).
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    runtime = tmp_path / "run"
    runtime.mkdir()
    host_key = tmp_path / "host_key"
    host_pub = _keygen(host_key)
    client_key = tmp_path / "control_key"
    client_pub = _keygen(client_key)
    bridge = (
        f"env PYTHONPATH={REPO} {sys.executable} -m symphonyd.link.bridge --runtime-dir {runtime}"
    )
    (tmp_path / "authorized_keys").write_text(f'restrict,command="{bridge}" {client_pub}\n')
    port = _free_port()
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {host_pub}\n")
    config = tmp_path / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
        f"PidFile {tmp_path / 'sshd.pid'}\nAuthorizedKeysFile {tmp_path / 'authorized_keys'}\n"
        "PermitRootLogin forced-commands-only\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPrintMotd no\n"
        "ClientAliveInterval 5\nClientAliveCountMax 3\n"
    )
    proc = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "sshd did not listen"
            time.sleep(0.05)
        yield Worker(port, client_key, known, runtime, tmp_path)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        if proc.stderr:
            proc.stderr.close()


@pytest.fixture
def launcher(worker: Worker, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The real launcher daemon serving the link's socket (sandbox off: transport test)."""
    (tmp_path / "launcher").mkdir()
    _, _, _, agent_home, host_config = launcher_layout(tmp_path / "launcher")
    proc = spawn(
        "symphonyd.launcher",
        "--host-config",
        str(host_config),
        "--socket",
        str(worker.runtime / "launcher-link.sock"),
        "--agent-home",
        str(agent_home),
        "--dispatcher-uid",
        "0",
    )
    asyncio.run(wait_for_socket(worker.runtime / "launcher-link.sock", proc))
    yield proc
    code, err = stop(proc)
    assert code == 0, err


async def _over_ssh(worker: Worker) -> tuple[str, int]:
    ours, theirs = socket.socketpair()
    ssh = subprocess.Popen(
        [*worker.ssh(), "launcher"], stdin=theirs.fileno(), stdout=theirs.fileno()
    )
    theirs.close()
    reader, writer = await asyncio.open_unix_connection(sock=ours)
    client = IpcClient(reader, writer, path=f"ssh:127.0.0.1:{worker.port}")
    try:
        health = await client.call(HEALTH, Empty(), timeout=30)
        runs = await client.call(LAUNCHER_LIST_RUNS, ListRuns(0, 100), timeout=30)
    finally:
        await client.close()
    ssh.wait(timeout=30)
    return health.daemon, len(runs.runs)


def test_the_control_key_reaches_the_launcher_protocol(
    worker: Worker, launcher: subprocess.Popen[bytes]
) -> None:
    name, runs = asyncio.run(_over_ssh(worker))
    assert (name, runs) == ("launcher", 0)


@pytest.mark.parametrize("command", ["bash -c id", "launcher; id", "audit", "../launcher"])
def test_any_other_request_is_refused_by_the_bridge(
    worker: Worker, launcher: subprocess.Popen[bytes], command: str
) -> None:
    result = subprocess.run(
        [*worker.ssh(), command], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == EX_NOPERM, result.stderr
    assert "link-bridge: refused" in result.stderr
    assert "uid=" not in result.stdout


def test_a_session_without_a_command_gets_no_shell(
    worker: Worker, launcher: subprocess.Popen[bytes]
) -> None:
    result = subprocess.run(
        worker.ssh(), input="id\n", capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == EX_NOPERM
    assert "refused nothing" in result.stderr and result.stdout == ""


def test_forwarding_is_refused_by_restrict(
    worker: Worker, launcher: subprocess.Popen[bytes]
) -> None:
    result = subprocess.run(
        [*worker.ssh("-o", "ExitOnForwardFailure=yes", "-R", f"{_free_port()}:127.0.0.1:9")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 255
    assert "forwarding failed" in result.stderr


def test_an_unpinned_host_key_is_never_trusted(worker: Worker, tmp_path: Path) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    result = subprocess.run(
        [*worker.ssh(known_hosts=empty), "launcher"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 255
    assert "Host key verification failed" in result.stderr


def test_no_launcher_means_unavailable_not_a_hang(worker: Worker) -> None:
    result = subprocess.run(
        [*worker.ssh(), "launcher"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == EX_UNAVAILABLE
    assert "launcher-link.sock" in result.stderr
    assert os.listdir(worker.runtime) == []
