"""Listening sockets: taken from systemd socket activation, or bound by hand with mode 0600.

systemd passes activated sockets as fds 3.. with ``LISTEN_PID``/``LISTEN_FDS``/
``LISTEN_FDNAMES`` (sd_listen_fds(3)). The variables are removed once read so a child
process (hooks, agents) never believes the fds are meant for it.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import socket
import stat
from collections.abc import MutableMapping
from pathlib import Path

from symphonyd.core.errors import SymphonyError

SD_LISTEN_FDS_START = 3
_ENV = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


class SocketSetupError(SymphonyError):
    code = "socket_setup_failed"


def listen_fds(
    environ: MutableMapping[str, str] | None = None, *, unset: bool = True
) -> dict[str, list[socket.socket]]:
    """Sockets systemd passed to this process, by FileDescriptorName (default "unknown")."""
    env = os.environ if environ is None else environ
    try:
        pid_s, count_s = env.get("LISTEN_PID"), env.get("LISTEN_FDS")
        names_s = env.get("LISTEN_FDNAMES")
    finally:
        if unset:
            for key in _ENV:
                env.pop(key, None)
    if not pid_s or not count_s:
        return {}
    try:
        pid, count = int(pid_s), int(count_s)
    except ValueError:
        raise SocketSetupError("LISTEN_PID/LISTEN_FDS are not integers") from None
    if pid != os.getpid():
        return {}  # meant for another process (e.g. inherited from a parent)
    if not 0 < count <= 64:
        raise SocketSetupError(f"LISTEN_FDS={count} is out of range")
    names = names_s.split(":") if names_s else []
    if len(names) != count:
        names = ["unknown"] * count
    found: dict[str, list[socket.socket]] = {}
    for i, name in enumerate(names):
        fd = SD_LISTEN_FDS_START + i
        try:
            os.set_inheritable(fd, False)
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            raise SocketSetupError(f"fd {fd} ({name}) is not a socket: {exc.strerror}") from None
        found.setdefault(name, []).append(sock)
    return found


@functools.cache
def _process_fds() -> dict[str, list[socket.socket]]:
    # The environment can be read once only (it is unset), so keep what it named.
    return listen_fds()


def activated_socket(
    name: str, environ: MutableMapping[str, str] | None = None
) -> socket.socket | None:
    """The listening Unix stream socket systemd passed as ``name``, or None if none was.

    Without ``environ`` this reads the process environment once and remembers the sockets,
    so a daemon with several activated sockets can claim each by its FileDescriptorName.
    """
    fds = listen_fds(environ) if environ is not None else _process_fds()
    socks = fds.pop(name, [])
    if not socks:
        return None
    if len(socks) != 1:
        raise SocketSetupError(f"expected one activated socket named {name!r}, got {len(socks)}")
    sock = socks[0]
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        raise SocketSetupError(f"activated socket {name!r} is not a Unix stream socket")
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        raise SocketSetupError(f"activated socket {name!r} is not listening")
    return sock


def bind_unix(path: str | Path, *, mode: int = 0o600, backlog: int = 128) -> socket.socket:
    """Bind and listen on ``path`` with ``mode``; replace only a stale socket, never a file.

    The mode is set between bind() and listen(): until listen() every connect() is refused,
    so no peer can slip in while the node still has the umask's looser mode.
    """
    path = Path(path)
    _remove_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, mode)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise SocketSetupError(f"cannot listen on {path}: {exc.strerror}") from None
    return sock


def _remove_stale(path: Path) -> None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise SocketSetupError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise SocketSetupError(f"cannot probe {path}: {exc.strerror}") from None
    else:
        raise SocketSetupError(f"{path} is in use by a running server")
    finally:
        probe.close()
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
