"""Durable file writes shared by the audit writer and the link's replicas.

An append is durable once its bytes are written in full and ``fdatasync`` returned; a new
file is durable once its directory was fsynced too. Both stores keep their files in a
private (0700) directory.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a file just created) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written (a short write is not an error)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def private_dir(path: Path) -> None:
    """Create ``path`` (and parents) as 0700 or fix its mode; NotADirectoryError if not a dir."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(f"{path} is not a directory")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)
