"""Finding the processes that belong to a sandbox, for teardown and crash reconciliation."""

from __future__ import annotations

import contextlib
import os
import signal

MARKER = "SYMPHONY_SANDBOX_ID"


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def pids_in_netns(inode: int) -> list[int]:
    """Processes whose network namespace is the one with this nsfs inode."""
    found = []
    for pid in _pids():
        with contextlib.suppress(OSError):
            if os.stat(f"/proc/{pid}/ns/net").st_ino == inode and pid != os.getpid():
                found.append(pid)
    return found


def pids_with_marker(keep: set[str]) -> list[int]:
    """Processes started in a sandbox (the marker is in their environment) no live sandbox owns."""
    needle = MARKER.encode() + b"="
    found = []
    for pid in _pids():
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read(1 << 20)
            for item in env.split(b"\0"):
                if item.startswith(needle):
                    if item[len(needle) :].decode(errors="replace") not in keep:
                        found.append(pid)
                    break
    return found


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
