"""Run the real dashboard (``python -m symphonyd.dashboard``) as a socket-activated process.

The test binds 127.0.0.1:0 itself and hands the listening socket over the way systemd does
(fd 3, ``LISTEN_FDS=1``, ``LISTEN_FDNAMES=http``, ``LISTEN_PID`` = the child's pid via
``exec``), so the port is known before the process starts and the activation path is the
one exercised.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
# What systemd does before exec: the socket at fd 3 and LISTEN_PID naming the new process.
_TRAMPOLINE = (
    "import os, sys; os.dup2(int(sys.argv[1]), 3); os.environ['LISTEN_PID'] = str(os.getpid()); "
    "os.execv(sys.executable, [sys.executable, '-m', 'symphonyd.dashboard', *sys.argv[2:]])"
)


@contextlib.contextmanager
def short_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="sydash"))  # AF_UNIX paths must stay short
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class DashboardProcess:
    def __init__(
        self,
        dispatcher_sock: Path,
        audit_sock: Path | None,
        log_path: Path,
        *,
        extra: tuple[str, ...] = (),
        prefix: tuple[str, ...] = (),  # argv in front, e.g. nsenter into a test journald
    ) -> None:
        self.prefix = prefix
        self.dispatcher_sock = dispatcher_sock
        self.audit_sock = audit_sock
        self.log_path = log_path
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> DashboardProcess:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        fd = listener.fileno()
        host_config = self.log_path.with_suffix(".toml")
        host_config.write_text('log_level = "info"\n')
        cmd = [
            *self.prefix,
            sys.executable,
            "-c",
            _TRAMPOLINE,
            str(fd),
            "--host-config",
            str(host_config),
            "--dispatcher-socket",
            str(self.dispatcher_sock),
            "--audit-socket",
            str(self.audit_sock or "none"),
            *self.extra,
        ]
        env = dict(os.environ, PYTHONPATH=str(REPO), LISTEN_FDS="1", LISTEN_FDNAMES="http")
        for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "JOURNAL_STREAM", "LISTEN_PID"):
            env.pop(key, None)

        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, pass_fds=(fd,))
        listener.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dashboard exited early: {self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base + "/api/v1/csrf", timeout=2).status_code == 200:
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"dashboard did not start: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def __enter__(self) -> DashboardProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for(predicate: object, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
