"""Listening sockets: self-bound mode and safety, systemd socket activation, peer identity."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from symphonyd.core.api.shared import HEALTH, Empty
from symphonyd.runtime.activation import SocketSetupError, bind_unix, listen_fds
from symphonyd.runtime.ipc_client import IpcClient
from symphonyd.runtime.peer import unit_from_cgroup, unit_of_pid
from tests.runtime.ipc_helpers import assert_healthy, run, serving

REPO = Path(__file__).resolve().parents[2]


def test_self_bound_socket_is_0600_and_removed_on_close(sock_dir: Path) -> None:
    async def body() -> None:
        old = os.umask(0)  # even a permissive umask must not loosen the socket
        try:
            async with serving(sock_dir) as (_server, path, _gates):
                st = path.lstat()
                assert stat.S_ISSOCK(st.st_mode)
                assert stat.S_IMODE(st.st_mode) == 0o600
                await assert_healthy(path)
            assert not path.exists()
        finally:
            os.umask(old)

    run(body())


def test_refuses_to_replace_a_regular_file(sock_dir: Path) -> None:
    victim = sock_dir / "test.sock"
    victim.write_text("precious")
    with pytest.raises(SocketSetupError, match="not a socket"):
        bind_unix(victim)
    assert victim.read_text() == "precious"
    link = sock_dir / "link.sock"
    link.symlink_to(victim)
    with pytest.raises(SocketSetupError, match="not a socket"):
        bind_unix(link)
    assert victim.read_text() == "precious"


def test_replaces_a_stale_socket_but_not_a_live_one(sock_dir: Path) -> None:
    path = sock_dir / "s.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # file left behind, nobody listening
    live = bind_unix(path)
    try:
        assert stat.S_IMODE(path.lstat().st_mode) == 0o600
        with pytest.raises(SocketSetupError, match="in use"):
            bind_unix(path)
    finally:
        live.close()


def test_listen_fds_ignores_another_pids_sockets_and_unsets_env() -> None:
    env = {"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "1", "LISTEN_FDNAMES": "ipc"}
    assert listen_fds(env) == {}
    assert env == {}
    with pytest.raises(SocketSetupError):
        listen_fds({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "many"})
    with pytest.raises(SocketSetupError):
        listen_fds({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "1000"})


def test_socket_activation_in_a_real_child_process(sock_dir: Path) -> None:
    path = sock_dir / "activated.sock"
    listener = bind_unix(path)
    fd = listener.fileno()
    # Like systemd after fork(): move the socket to fd 3, name the process itself in
    # LISTEN_PID, then exec the daemon (exec keeps the pid).
    exec_as_systemd = (
        "import os, sys; fd = int(sys.argv[1]); os.dup2(fd, 3); os.close(fd); "
        "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1', LISTEN_FDNAMES='ipc'); "
        "os.execv(sys.executable, [sys.executable, '-m', 'tests.runtime.activated_server'])"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")}
    child = subprocess.Popen(
        [sys.executable, "-c", exec_as_systemd, str(fd)],
        pass_fds=(fd,),
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
    )
    listener.close()  # only the child holds the listening socket now

    async def body() -> dict[str, object]:
        async with await IpcClient.connect(path) as client:
            health = await client.call(HEALTH, Empty(), timeout=30)
            return {"daemon": health.daemon, **health.detail}

    try:
        detail = run(body())
        assert child.wait(timeout=30) == 0, child.stderr.read().decode() if child.stderr else ""
    finally:
        child.kill()
        child.wait()
        if child.stderr:
            child.stderr.close()
    assert detail["daemon"] == "activated"
    assert detail["pid"] == child.pid
    # The child removed LISTEN_* so its own children cannot mistake the fds for theirs.
    assert detail["env"] == {"LISTEN_PID": None, "LISTEN_FDS": None, "LISTEN_FDNAMES": None}


@pytest.mark.parametrize(
    ("text", "unit"),
    [
        ("0::/system.slice/symphony-launcher.service\n", "symphony-launcher.service"),
        ("0::/system.slice/symphony-agent-abc.service/payload\n", "symphony-agent-abc.service"),
        ("0::/user.slice/user-1000.slice/session-3.scope\n", "session-3.scope"),
        ("12:cpu:/x\n1:name=systemd:/system.slice/cron.service\n0::/\n", "cron.service"),
        ("0::/\n", None),
        ("garbage", None),
        ("", None),
    ],
)
def test_unit_from_cgroup(text: str, unit: str | None) -> None:
    assert unit_from_cgroup(text) == unit


def test_unit_of_a_missing_pid_is_none() -> None:
    assert unit_of_pid(2**22 + 12345) is None


def test_client_connect_to_a_non_socket_is_unavailable(sock_dir: Path) -> None:
    from symphonyd.core.errors import SymphonyError

    (sock_dir / "plain").write_text("x")

    async def body() -> None:
        with pytest.raises(SymphonyError) as err:
            await IpcClient.connect(sock_dir / "plain")
        assert err.value.error_code == "unavailable"

    run(body())
