"""Who is on the other end of a socket, from the kernel's point of view only.

The uid and pid come from ``SO_PEERCRED``; the unit comes from the peer's cgroup when this
process may read it (under ``ProtectProc=invisible`` it may not, and the unit is then left
empty); the socket name is the systemd ``FileDescriptorName=`` of the listening socket the
connection arrived on, which names the one client that socket is for. Nothing here is taken
from a message.
"""

from __future__ import annotations

import re
from pathlib import Path

from symphonyd.audit.store import Sender

_UNIT = re.compile(r"/([^/]+\.(?:service|scope))$")


def unit_of(pid: int, proc: Path = Path("/proc")) -> str | None:
    """The systemd unit ``pid`` runs in, or None when unknown or unreadable."""
    try:
        text = (proc / str(pid) / "cgroup").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        # cgroup v2: "0::/system.slice/symphony-dispatcher.service"
        if line.startswith("0::"):
            match = _UNIT.search(line[3:].strip())
            return match.group(1) if match else None
    return None


def sender_of(uid: int, pid: int, socket_name: str | None) -> Sender:
    return Sender(uid=uid, pid=pid, unit=unit_of(pid), socket=socket_name)
