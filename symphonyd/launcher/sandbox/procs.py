"""Finding the processes that belong to a live sandbox (by its network namespace), for teardown.

Crash reconciliation does not look for processes at all: it empties the cgroups (bubblewrap
path) and stops the slice (systemd path) of this launcher instance (instance.py).
"""

from __future__ import annotations

import contextlib
import os
import signal

# Tells the agent which sandbox it is in; informational only, never trusted for cleanup.
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


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
