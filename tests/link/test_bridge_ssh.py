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
from pathlib import Path

import pytest

from symphonyd.core.api.launcher import LAUNCHER_LIST_RUNS, ListRuns
from symphonyd.core.api.shared import HEALTH, Empty
from symphonyd.link.bridge import EX_NOPERM, EX_UNAVAILABLE
from symphonyd.runtime.ipc_client import IpcClient
from tests.link.conftest import Worker, free_port

pytestmark = pytest.mark.root


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


@pytest.mark.parametrize("command", ["bash -c id", "launcher; id", "audit; id", "../launcher"])
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
        [*worker.ssh("-o", "ExitOnForwardFailure=yes", "-R", f"{free_port()}:127.0.0.1:9")],
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
