"""Test worker hosts: a test-owned sshd whose only key runs the bridge, and a real launcher.

sshd listens on loopback of the root test run's own network namespace (tests/conftest.py),
on a free port; everything lives in the test's temporary directory.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.launcher.test_daemon_sockets import launcher_layout, spawn, stop, wait_for_socket

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


def free_port() -> int:
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
    # As a worker installs it: everything restricted, then the one forward the tracker path
    # needs (without port-forwarding, sshd refuses the Unix-socket forward as well).
    (tmp_path / "authorized_keys").write_text(
        f'restrict,port-forwarding,command="{bridge}" {client_pub}\n'
    )
    port = free_port()
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {host_pub}\n")
    config = tmp_path / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
        f"PidFile {tmp_path / 'sshd.pid'}\nAuthorizedKeysFile {tmp_path / 'authorized_keys'}\n"
        "PermitRootLogin forced-commands-only\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPrintMotd no\n"
        "ClientAliveInterval 5\nClientAliveCountMax 3\n"
        # The worker's sshd_config for the link's user: only remote Unix-socket forwards
        # (the tracker path), replacing a stale socket file a dropped session left behind.
        # "AllowTcpForwarding no" would refuse those too (OpenSSH 9.2); "PermitListen none"
        # refuses every TCP listener instead, and local forwards stay off.
        "AllowTcpForwarding remote\nPermitListen none\nAllowStreamLocalForwarding remote\n"
        "StreamLocalBindUnlink yes\nAllowAgentForwarding no\nX11Forwarding no\nPermitTunnel no\n"
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
