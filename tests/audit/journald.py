"""A real systemd-journald of the test's own, for hosts where systemd is not PID 1.

journald runs in a private mount namespace whose ``/run`` is a fresh tmpfs: its socket
directory and its journal directory are bind mounts of directories under the test's temp
dir, so the test sees the socket and the journal files, and the host's ``/run`` and
``/var/log/journal`` are never touched. Processes that must log to it (the audit writer)
join the namespace with ``nsenter``, so they use the journal at its production path.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

JOURNALD = "/lib/systemd/systemd-journald"

_SETUP = """
set -e
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/systemd/journal /run/log/journal
mount --bind "$1" /run/systemd/journal
mount --bind "$2" /run/log/journal
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
# Neither read nor write the host's kernel log; only our config, no host drop-ins.
mount --bind /dev/null /dev/kmsg
mount --bind "$4" /etc/systemd/journald.conf
if [ -d /etc/systemd/journald.conf.d ]; then mount -t tmpfs tmpfs /etc/systemd/journald.conf.d; fi
exec "$3"
"""
_CONFIG = """[Journal]
Storage=volatile
ReadKMsg=no
ForwardToSyslog=no
ForwardToKMsg=no
ForwardToConsole=no
ForwardToWall=no
"""


_PRIVATE_MOUNTS = ("unshare", "--mount", "--propagation", "private", "--", "sh", "-c")
# argv prefix: run a command where /run is empty, so there is no journal socket at all.
WITHOUT_JOURNAL = (*_PRIVATE_MOUNTS, 'mount -t tmpfs tmpfs /run && exec "$@"', "sh")


@dataclass(frozen=True)
class Journal:
    pid: int
    socket: Path  # the native socket, as seen from outside the namespace
    directory: Path  # where the journal files are (journalctl --directory)

    @property
    def enter(self) -> tuple[str, ...]:
        """argv prefix that runs a command in the journald's mount namespace."""
        return ("nsenter", f"--mount=/proc/{self.pid}/ns/mnt", "--")


@contextlib.contextmanager
def own_journald(base: Path) -> Iterator[Journal]:
    sock_dir, journal_dir = base / "journal-run", base / "journal-files"
    sock_dir.mkdir()
    journal_dir.mkdir()
    config = base / "journald.conf"
    config.write_text(_CONFIG)
    log = base / "journald.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                *_PRIVATE_MOUNTS,
                _SETUP,
                "sh",
                str(sock_dir),
                str(journal_dir),
                JOURNALD,
                str(config),
            ],
            stdout=out,
            stderr=out,
        )
    try:
        deadline = time.monotonic() + 30
        while not (sock_dir / "socket").exists():
            if proc.poll() is not None:
                raise RuntimeError(f"journald exited {proc.returncode}: {log.read_text()!r}")
            if time.monotonic() > deadline:
                raise RuntimeError("journald did not create its socket")
            time.sleep(0.05)
        yield Journal(proc.pid, sock_dir / "socket", journal_dir)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
