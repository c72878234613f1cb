"""Who is on the other end of a Unix socket: kernel-reported credentials plus systemd unit.

The uid/gid/pid come from ``SO_PEERCRED`` (captured by the kernel at ``connect()``), so a peer
cannot claim to be someone else. The unit name is read from ``/proc/<pid>/cgroup`` and is
informational: it is what the audit writer stamps next to the uid.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from pathlib import Path

_UCRED = struct.Struct("3i")  # struct ucred { pid_t pid; uid_t uid; gid_t gid; }
_UNIT_SUFFIXES = (".service", ".scope")


@dataclass(frozen=True)
class Peer:
    uid: int
    gid: int
    pid: int
    unit: str | None = None


def unit_from_cgroup(text: str) -> str | None:
    """The innermost systemd unit named in a ``/proc/<pid>/cgroup`` text, or None.

    Prefers the unified (cgroup v2, ``0::``) hierarchy and falls back to systemd's named v1
    hierarchy; nested paths such as ``/system.slice/x.service/payload`` still name ``x``.
    """
    paths: list[str] = []
    for line in text.splitlines():
        hier, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hier == "0" and controllers == "":
            paths.insert(0, path)
        elif controllers == "name=systemd":
            paths.append(path)
    for path in paths:
        for part in reversed(path.split("/")):
            if part.endswith(_UNIT_SUFFIXES) and len(part) > len(".scope"):
                return part
    return None


def unit_of_pid(pid: int, proc: Path = Path("/proc")) -> str | None:
    try:
        text = (proc / str(pid) / "cgroup").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return unit_from_cgroup(text)


def peer_of(sock: socket.socket) -> Peer:
    """Credentials of the process that connected ``sock`` (raises OSError if unavailable)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return Peer(uid=uid, gid=gid, pid=pid, unit=unit_of_pid(pid) if pid > 0 else None)
