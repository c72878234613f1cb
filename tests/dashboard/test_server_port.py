"""WORKFLOW.md ``server.port`` (SPEC 13.7) through the dashboard's own entry point.

When the dashboard binds itself: ``--port`` over ``server.port`` over the host config's
``dashboard.port``. Under socket activation the socket unit's port stands and a differing
``server.port`` is reported at startup, naming the precedence.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from symphonyd.runtime.daemon import EXIT_OK
from tests.dashboard.double import DispatcherDouble
from tests.dashboard.harness import _TRAMPOLINE as TRAMPOLINE
from tests.dashboard.harness import REPO, short_dir


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def workflow(d: Path, port: int | None) -> Path:
    path = d / "WORKFLOW.md"
    server = "" if port is None else f"server:\n  port: {port}\n"
    path.write_text(f"---\ntracker:\n  kind: memory\n{server}---\nWork.\n")
    return path


def host_config(d: Path, port: int) -> Path:
    path = d / "symphonyd.toml"
    path.write_text(f'workflow = "{d / "WORKFLOW.md"}"\n[dashboard]\nport = {port}\n')
    return path


def serves(port: int) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"http://127.0.0.1:{port}/api/v1/csrf", timeout=2).status_code == 200
    return False


class Started:
    """A dashboard process, its log, and what it told the service manager (sd_notify)."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path, notify: socket.socket) -> None:
        self.proc, self.log, self._notify = proc, log, notify

    def ready_status(self) -> str:
        """The STATUS= sent with READY=1: what `systemctl status` shows."""
        fields: list[str] = []
        self._notify.settimeout(30)
        while "READY=1" not in fields:
            fields = self._notify.recv(65536).decode().split("\n")
        return next(f.removeprefix("STATUS=") for f in fields if f.startswith("STATUS="))


@contextlib.contextmanager
def dashboard(d: Path, *args: str, activated: socket.socket | None = None) -> Iterator[Started]:
    """The real dashboard, as systemd would start it: NOTIFY_SOCKET, and with ``activated``
    the listening socket at fd 3 (LISTEN_FDS); without it the dashboard binds its own."""
    log = d / "dashboard.log"
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "NOTIFY_SOCKET": str(d / "n.sock")}
    argv = ["--host-config", str(d / "symphonyd.toml"), "--dispatcher-socket",
            str(d / "disp.sock"), "--audit-socket", "none", *args]  # fmt: skip
    fds: tuple[int, ...] = ()
    if activated is None:
        cmd = [sys.executable, "-m", "symphonyd.dashboard", *argv]
    else:
        fd = activated.fileno()
        cmd, fds = [sys.executable, "-c", TRAMPOLINE, str(fd), *argv], (fd,)
        env.update(LISTEN_FDS="1", LISTEN_FDNAMES="http")
    with (
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify,
        DispatcherDouble(d / "disp.sock"),
        log.open("wb") as out,
    ):
        notify.bind(env["NOTIFY_SOCKET"])
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=out, pass_fds=fds)
        try:
            yield Started(proc, log, notify)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=30)
    assert code == EXIT_OK, log.read_text()


def wait_serving(started: Started, port: int) -> str:
    deadline = time.monotonic() + 30
    while not serves(port):
        assert started.proc.poll() is None, started.log.read_text()
        assert time.monotonic() < deadline, started.log.read_text()
        time.sleep(0.1)
    return started.log.read_text()


def test_workflow_server_port_wins_over_the_host_config() -> None:
    with short_dir() as d:
        wanted, host_port = free_port(), free_port()
        workflow(d, wanted)
        host_config(d, host_port)
        with dashboard(d) as started:
            text = wait_serving(started, wanted)
            assert f"event=http_listen host=127.0.0.1 port={wanted} source=bound" in text
            assert "port_from=server.port" in text
            assert not serves(host_port)
            assert started.ready_status() == f"serving http://127.0.0.1:{wanted}/ (server.port)"


def test_cli_port_wins_over_workflow_server_port() -> None:
    with short_dir() as d:
        cli, wanted = free_port(), free_port()
        workflow(d, wanted)
        host_config(d, free_port())
        with dashboard(d, "--port", str(cli)) as started:
            text = wait_serving(started, cli)
            assert f"port={cli} source=bound port_from=--port" in text
            assert not serves(wanted)


def test_host_config_port_when_the_workflow_sets_none() -> None:
    with short_dir() as d:
        host_port = free_port()
        workflow(d, None)
        host_config(d, host_port)
        with dashboard(d) as started:
            text = wait_serving(started, host_port)
            assert "port_from=dashboard.port" in text and "server_port" not in text


def test_unreadable_workflow_falls_back_to_the_host_config_and_says_why() -> None:
    # The dispatcher judges WORKFLOW.md; a broken one must not take the dashboard down.
    with short_dir() as d:
        host_port = free_port()
        (d / "WORKFLOW.md").write_text("---\nserver: [unclosed\n---\n")
        host_config(d, host_port)
        with dashboard(d) as started:
            text = wait_serving(started, host_port)
            assert "outcome=server_port_unread" in text
            assert "error_code=workflow_parse_error" in text
            assert "port_from=dashboard.port" in text


def test_socket_activation_keeps_its_port_and_reports_the_ignored_server_port() -> None:
    with short_dir() as d, socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        wanted = free_port()
        workflow(d, wanted)
        host_config(d, free_port())
        with dashboard(d, activated=listener) as started:
            text = wait_serving(started, port)
            assert not serves(wanted)
            assert f"outcome=server_port_ignored server_port={wanted} port={port}" in text
            assert "symphony-dashboard.socket" in text
            assert "--port over WORKFLOW.md server.port over host config dashboard.port" in text
            assert f"port={port} source=systemd port_from=" in text
            status = started.ready_status()
            assert status == (
                f"serving http://127.0.0.1:{port}/ "
                f"(symphony-dashboard.socket; server.port {wanted} ignored)"
            )
