"""``python -m symphonyd.link`` as a real process: the dispatcher's side of a worker host.

The test plays the dispatcher and connects to the link's per-worker socket exactly as it
connects to a local launcher; behind it are the real ``ssh``, a test-owned ``sshd`` with the
bridge as the key's forced command, and the real launcher daemon (tests/link/conftest.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from symphonyd.core.api.launcher import LAUNCHER_LIST_RUNS, ListRuns
from symphonyd.core.api.shared import HEALTH, Empty
from symphonyd.core.errors import SymphonyError
from symphonyd.runtime.ipc_client import IpcClient
from tests.launcher.test_daemon_sockets import spawn, stop
from tests.link.conftest import Worker

pytestmark = pytest.mark.root


def host_config(tmp_path: Path, worker: Worker, *, known_hosts: Path | None = None) -> Path:
    path = tmp_path / "link.toml"
    path.write_text(
        f'[paths]\nruntime_dir = "{tmp_path}"\nstate_dir = "{tmp_path / "state"}"\n'
        f'[worker]\nssh_user = "root"\nknown_hosts = "{known_hosts or worker.known_hosts}"\n'
        f'[[worker.hosts]]\nname = "w1"\naddress = "127.0.0.1"\nport = {worker.port}\n'
    )
    return path


def spawn_link(
    config: Path, hosts: Path, key: Path, uid: int = 0, extra: tuple[str, ...] = ()
) -> subprocess.Popen[bytes]:
    return spawn(
        "symphonyd.link",
        "--host-config",
        str(config),
        "--hosts-dir",
        str(hosts),
        "--key",
        str(key),
        "--dispatcher-uid",
        str(uid),
        *extra,
    )


def wait_socket(path: Path, proc: subprocess.Popen[bytes]) -> None:
    async def wait() -> None:
        async with asyncio.timeout(30):
            while not path.exists():
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                await asyncio.sleep(0.05)

    asyncio.run(wait())


@pytest.fixture
def link(worker: Worker, tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    hosts = tmp_path / "hosts"
    proc = spawn_link(host_config(tmp_path, worker), hosts, worker.key)
    wait_socket(hosts / "w1.sock", proc)
    yield hosts / "w1.sock", proc
    if proc.poll() is None:
        code, err = stop(proc)
        assert code == 0, err


async def _launcher_over_link(path: Path) -> tuple[str, int, str]:
    # Two connections at once, as the dispatcher holds (calls and the event subscription).
    async with (
        await IpcClient.connect(path) as first,
        await IpcClient.connect(path) as second,
    ):
        health = await first.call(HEALTH, Empty(), timeout=30)
        runs = await second.call(LAUNCHER_LIST_RUNS, ListRuns(0, 50), timeout=30)
        again = await first.call(HEALTH, Empty(), timeout=30)
    return health.daemon, len(runs.runs), again.daemon


def test_the_dispatcher_reaches_the_worker_launcher_through_the_link(
    launcher: subprocess.Popen[bytes], link: tuple[Path, subprocess.Popen[bytes]]
) -> None:
    path, _ = link
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert asyncio.run(_launcher_over_link(path)) == ("launcher", 0, "launcher")


async def _call_fails(path: Path) -> str:
    async with await IpcClient.connect(path) as client:
        with pytest.raises(SymphonyError) as caught:
            await client.call(HEALTH, Empty(), timeout=30)
    return caught.value.error_code


def test_a_worker_with_an_unpinned_host_key_is_never_reached(
    worker: Worker, launcher: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    other = tmp_path / "other_known_hosts"
    other.write_text("")
    hosts = tmp_path / "hosts"
    proc = spawn_link(host_config(tmp_path, worker, known_hosts=other), hosts, worker.key)
    wait_socket(hosts / "w1.sock", proc)
    assert asyncio.run(_call_fails(hosts / "w1.sock")) == "unavailable"
    code, err = stop(proc)
    assert code == 0
    assert "ssh_failed" in err and "Host key verification failed" in err


def test_only_the_dispatcher_may_use_the_link(
    worker: Worker, launcher: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    hosts = tmp_path / "hosts"
    proc = spawn_link(host_config(tmp_path, worker), hosts, worker.key, uid=4242)
    wait_socket(hosts / "w1.sock", proc)
    assert asyncio.run(_call_fails(hosts / "w1.sock")) == "unavailable"
    code, err = stop(proc)
    assert code == 0
    assert "link_refused" in err and "peer_not_allowed" in err
    assert "link_session" not in err  # no ssh was started for the stranger


async def _session_then_stop(path: Path, proc: subprocess.Popen[bytes]) -> str:
    async with await IpcClient.connect(path) as client:
        await client.call(HEALTH, Empty(), timeout=30)
        proc.send_signal(signal.SIGTERM)
        with pytest.raises(SymphonyError) as caught:
            for _ in range(200):
                await client.call(HEALTH, Empty(), timeout=30)
                await asyncio.sleep(0.05)
    return caught.value.error_code


def test_stopping_the_link_ends_its_sessions(
    launcher: subprocess.Popen[bytes], link: tuple[Path, subprocess.Popen[bytes]]
) -> None:
    path, proc = link
    assert asyncio.run(_session_then_stop(path, proc)) == "unavailable"
    assert proc.wait(timeout=30) == 0
    assert not path.exists()


@pytest.mark.parametrize(
    ("edit", "code"),
    [
        (lambda text: text.split("[[worker.hosts]]")[0], "no_worker_hosts"),
        (
            lambda text: text.replace("known_hosts = ", 'known_hosts = "/nonexistent"\n#'),
            "missing_known_hosts",
        ),
        (lambda text: text.replace('name = "w1"', 'name = "../w1"'), "invalid_config"),
        (
            lambda text: text.replace('address = "127.0.0.1"', 'address = "worker.example"'),
            "invalid_config",
        ),
    ],
)
def test_configuration_errors_exit_78(
    worker: Worker, tmp_path: Path, edit: Callable[[str], str], code: str
) -> None:
    config = host_config(tmp_path, worker)
    config.write_text(edit(config.read_text()))
    proc = spawn_link(config, tmp_path / "hosts", worker.key)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 78, err.decode()
    assert code in err.decode()


def test_a_missing_key_exits_78(worker: Worker, tmp_path: Path) -> None:
    proc = spawn_link(host_config(tmp_path, worker), tmp_path / "hosts", tmp_path / "nokey")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 78
    assert "missing_credential" in err.decode()
