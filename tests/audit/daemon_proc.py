"""Run the real audit daemon (``python -m symphonyd.audit``) as a subprocess for tests."""

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

REPO = Path(__file__).resolve().parents[2]
CLIENT_NAMES = ("dispatcher", "launcher")


@contextlib.contextmanager
def short_dir() -> Iterator[Path]:
    # AF_UNIX paths are limited to 108 bytes; pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="syaud"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class AuditDaemon:
    """One daemon process with a socket per client name under ``sock_dir``."""

    def __init__(
        self,
        audit_dir: Path,
        sock_dir: Path,
        *,
        allow_uids: tuple[int, ...] = (os.getuid(),),
        extra: tuple[str, ...] = (),
        prefix: tuple[str, ...] = (),
    ) -> None:
        self.audit_dir = audit_dir
        self.sock_dir = sock_dir
        self.allow_uids = allow_uids
        self.extra = extra
        self.prefix = prefix  # e.g. nsenter into a mount namespace with a test journald
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = sock_dir / "daemon.log"

    def sock(self, name: str = "dispatcher") -> Path:
        return self.sock_dir / f"{name}.sock"

    def start(self, timeout: float = 30.0) -> None:
        args = [sys.executable, "-m", "symphonyd.audit", "--dir", str(self.audit_dir)]
        for name in CLIENT_NAMES:
            args += ["--listen", f"{name}={self.sock(name)}"]
        for uid in self.allow_uids:
            args += ["--allow-uid", str(uid)]
        env = dict(os.environ, PYTHONPATH=str(REPO))
        env.pop("NOTIFY_SOCKET", None)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*self.prefix, *args, *self.extra], cwd=REPO, env=env, stdout=log, stderr=log
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"audit daemon exited {self.proc.returncode}: {self.output()}")
            if all(self._connectable(self.sock(n)) for n in CLIENT_NAMES):
                return
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"audit daemon did not come up: {self.output()}")

    @staticmethod
    def _connectable(path: Path) -> bool:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            return False
        finally:
            probe.close()
        return True

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def __enter__(self) -> AuditDaemon:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
