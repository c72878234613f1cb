"""run_daemon in real child processes: READY after startup, signals, watchdog, exit codes."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from symphonyd.core.api.shared import HEALTH, Empty
from symphonyd.runtime.daemon import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, EXIT_SOFTWARE
from symphonyd.runtime.ipc_client import IpcClient
from tests.runtime.ipc_helpers import run, short_dir

REPO = Path(__file__).resolve().parents[2]
DEADLINE = 30.0  # only to prevent a hang


class Manager:
    """Plays the service manager: a NOTIFY_SOCKET datagram socket and the child process."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.notify_path = str(directory / "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.notify_path)
        self.messages: list[str] = []
        self.proc: subprocess.Popen[str] | None = None

    def start(self, mode: str, **extra_env: str) -> subprocess.Popen[str]:
        env = {
            "PATH": "/usr/bin:/bin",
            "NOTIFY_SOCKET": self.notify_path,
            **extra_env,
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.runtime.sample_daemon", mode, str(self.socket_path)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        return self.proc

    @property
    def socket_path(self) -> Path:
        return self.dir / "sample.sock"

    def wait_for(self, assignment: str) -> None:
        end = time.monotonic() + DEADLINE
        while assignment not in self.messages:
            self.sock.settimeout(max(0.01, end - time.monotonic()))
            try:
                self.messages += self.sock.recv(65536).decode().split("\n")
            except TimeoutError:
                raise AssertionError(f"no {assignment}; got {self.messages}") from None

    def drain(self) -> None:
        self.sock.setblocking(False)
        try:
            while True:
                self.messages += self.sock.recv(65536).decode().split("\n")
        except BlockingIOError:
            pass

    def finish(self) -> tuple[int, str]:
        assert self.proc is not None
        try:
            _, err = self.proc.communicate(timeout=DEADLINE)
        finally:
            self.proc.kill()
        self.drain()
        return self.proc.returncode, err

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()
        self.sock.close()


@pytest.fixture
def manager() -> Iterator[Manager]:
    with short_dir() as d:
        m = Manager(d)
        try:
            yield m
        finally:
            m.close()


def _health(path: Path) -> bool:
    async def body() -> bool:
        async with await IpcClient.connect(path) as client:
            return (await client.call(HEALTH, Empty())).ok

    return run(body(), timeout=DEADLINE)


def test_ready_after_startup_then_graceful_sigterm(manager: Manager) -> None:
    proc = manager.start("serve", WATCHDOG_USEC="100000")
    manager.wait_for("READY=1")
    # READY comes after startup returned, so the socket is already serving.
    assert _health(manager.socket_path)
    assert "STATUS=serving" in manager.messages
    # READY keeps the status startup set: it is what `systemctl status` shows from then on.
    assert manager.messages[manager.messages.index("READY=1") + 1] == "STATUS=serving"
    manager.wait_for("WATCHDOG=1")
    proc.send_signal(signal.SIGTERM)
    code, err = manager.finish()
    assert code == EXIT_OK, err
    assert "STOPPING=1" in manager.messages
    assert manager.messages.index("READY=1") < manager.messages.index("STOPPING=1")
    assert not manager.socket_path.exists()  # the shutdown hook closed the server
    assert "daemon=sample logger=symphonyd.daemon event=startup outcome=ready" in err
    assert "event=shutdown outcome=completed exit_code=0" in err
    assert "reason=SIGTERM" in err


def test_invalid_config_exits_78_without_ready(manager: Manager) -> None:
    manager.start("bad_config")
    code, err = manager.finish()
    assert code == EXIT_CONFIG
    assert "READY=1" not in manager.messages
    assert "event=startup outcome=failed error_code=invalid_config" in err
    assert "Traceback" not in err  # a typed error is explained, not dumped


def test_crashing_task_stops_the_daemon_with_a_one_line_traceback(manager: Manager) -> None:
    manager.start("crash_task")
    code, err = manager.finish()
    assert code == EXIT_SOFTWARE
    assert "READY=1" in manager.messages and "STOPPING=1" in manager.messages
    (line,) = [ln for ln in err.splitlines() if "event=task outcome=failed" in ln]
    assert "task=worker" in line and "worker blew up\\nforged=line" in line
    assert not any(ln.startswith("forged=") for ln in err.splitlines())


def test_sigint_during_startup_stops_cleanly_without_ready(manager: Manager) -> None:
    proc = manager.start("slow_startup")
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "startup-waiting"
    proc.send_signal(signal.SIGINT)
    code, err = manager.finish()
    assert code == EXIT_OK, err
    assert "READY=1" not in manager.messages
    assert "STOPPING=1" in manager.messages


def test_hung_shutdown_hook_is_bounded_and_reported(manager: Manager) -> None:
    proc = manager.start("hang_shutdown")
    manager.wait_for("READY=1")
    proc.send_signal(signal.SIGTERM)
    code, err = manager.finish()
    assert code == EXIT_FAILURE
    assert "event=shutdown outcome=timed_out hook=hang" in err
    # The hook after it (LIFO order: ipc registered first, runs last) still ran.
    assert not manager.socket_path.exists()


def test_second_signal_forces_the_stop(manager: Manager) -> None:
    proc = manager.start("hang_shutdown")
    manager.wait_for("READY=1")
    proc.send_signal(signal.SIGTERM)
    manager.wait_for("STOPPING=1")
    proc.send_signal(signal.SIGTERM)
    code, err = manager.finish()
    assert code == EXIT_FAILURE
    assert "outcome=forced" in err


def test_log_level_from_the_environment(manager: Manager) -> None:
    manager.start("bad_config", SYMPHONY_LOG_LEVEL="warning")
    code, err = manager.finish()
    assert code == EXIT_CONFIG
    assert "outcome=ready" not in err and "level=info" not in err
    assert "event=startup outcome=failed" in err


def test_unknown_log_level_is_reported_and_info_used(manager: Manager) -> None:
    manager.start("bad_config", SYMPHONY_LOG_LEVEL="loud")
    _code, err = manager.finish()
    assert "level=warning" in err and "ignored=SYMPHONY_LOG_LEVEL" in err
    assert "level=info" in err
