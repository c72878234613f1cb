"""One process per state directory: an exclusive ``flock`` taken before anything else.

The lock lives on ``<state_dir>/<name>.lock`` and is held by an open descriptor for the
life of the process; the kernel drops it when the process exits, however it exits, so a
crash never leaves a stale lock behind. The holder writes its pid into the file so the
refusal can name it. See docs/design/0257-one-dispatcher-per-state-lock.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from symphonyd.core.errors import SymphonyError


class AlreadyRunning(SymphonyError):
    """Another process holds this state directory's lock (exit 75, EX_TEMPFAIL)."""

    code = "already_running"


class InstanceLock:
    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        pid = int(os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "x")
        return f"pid {pid}"
    return "another process"


def acquire(state_dir: Path, name: str) -> InstanceLock:
    """Take ``<state_dir>/<name>.lock`` or raise AlreadyRunning naming the holder."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = state_dir / f"{name}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise AlreadyRunning(
            f"another symphony-{name} ({holder}) holds {path}: only one may run on "
            f"{state_dir}. Stop it first (systemctl stop symphony-{name}, or end the one "
            "started by hand)",
            code="already_running",
            state_dir=str(state_dir),
        ) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return InstanceLock(path, fd)
