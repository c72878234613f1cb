"""Linux inotify on one directory, through libc by ctypes: the local tracker's change source.

No third-party package: the three calls (``inotify_init1``, ``inotify_add_watch``, ``read``
on a non-blocking descriptor) are all we need, and the descriptor goes straight into the
asyncio loop with ``add_reader`` (docs/design/0410-tracker-change-events.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
# Writes in place (MODIFY, CLOSE_WRITE), renames into place (MOVED_TO), removals and renames
# away. CREATE alone is not a change: the content arrives with the writes that follow.
WATCH_MASK = (
    IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE
    | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR
)  # fmt: skip
GONE = IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED
HEADER = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then the name
READ_SIZE = 64 * 1024


@dataclass
class Changes:
    """What one or more reads reported."""

    names: set[str] = field(default_factory=set)
    overflow: bool = False  # the kernel queue overflowed: some names were lost
    gone: bool = False  # the directory itself was removed or moved: re-arm the watch


@functools.cache
def _libc() -> ctypes.CDLL:
    lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    lib.inotify_init1.argtypes = [ctypes.c_int]
    lib.inotify_init1.restype = ctypes.c_int
    lib.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    lib.inotify_add_watch.restype = ctypes.c_int
    return lib


def _os_error(what: str, path: Path | None = None) -> OSError:
    code = ctypes.get_errno()
    return OSError(code, f"{what}: {os.strerror(code)}", str(path) if path else None)


class DirectoryWatch:
    """A non-blocking inotify descriptor watching one directory; ``read`` drains it."""

    def __init__(self, directory: Path) -> None:
        libc = _libc()
        self.directory = directory
        fd: int = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise _os_error("inotify_init1")
        self._fd = fd
        if libc.inotify_add_watch(fd, os.fsencode(directory), WATCH_MASK) < 0:
            error = _os_error("inotify_add_watch", directory)
            os.close(fd)
            self._fd = -1
            raise error

    def fileno(self) -> int:
        return self._fd

    def read(self) -> Changes:
        """Everything queued now; never blocks."""
        changes = Changes()
        while True:
            try:
                data = os.read(self._fd, READ_SIZE)
            except BlockingIOError:
                return changes
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            if not data:
                return changes
            _parse(data, changes)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _parse(data: bytes, changes: Changes) -> None:
    offset = 0
    while offset + HEADER.size <= len(data):
        _wd, mask, _cookie, length = HEADER.unpack_from(data, offset)
        offset += HEADER.size
        raw = data[offset : offset + length].split(b"\0", 1)[0]
        offset += length
        if mask & IN_Q_OVERFLOW:
            changes.overflow = True
        if mask & GONE:
            changes.gone = True
        if raw:
            changes.names.add(os.fsdecode(raw))
