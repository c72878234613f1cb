"""``link-bridge``: the worker side of the link, run by sshd as a forced command.

The control host's key is installed on a worker as
``restrict,command="/usr/lib/symphonyd/link-bridge" ssh-ed25519 ...``, so whatever the
client asks for, sshd runs this program with no pty, no forwarding and no agent, and puts
the client's request in ``SSH_ORIGINAL_COMMAND``. The only requests honoured are the
purposes below; each is one local socket that the worker's daemons serve for the link user.
The bridge copies bytes between the SSH channel (stdin/stdout) and that socket and nothing
else: the daemon behind it checks the peer, parses and bounds every frame, as it does for
local clients. There is deliberately no shell, no argument, no path from the client.

Exit status (sysexits): 0 when either side closed, 77 for a refused request, 69 when the
socket is not there or refuses the connection.
"""

from __future__ import annotations

import argparse
import os
import selectors
import socket
import sys
from collections.abc import Sequence

# SSH_ORIGINAL_COMMAND -> socket file name under the runtime directory.
PURPOSES = {"launcher": "launcher-link.sock", "audit": "audit-link.sock"}
EX_OK, EX_UNAVAILABLE, EX_NOPERM = 0, 69, 77
_CHUNK = 1 << 16


def purpose_socket(command: str | None) -> str | None:
    """The socket file for an SSH request, or None when it is not exactly a known purpose."""
    if command is None:
        return None
    return PURPOSES.get(command)


def splice(sock: socket.socket, stdin: int, stdout: int) -> None:
    """Copy stdin -> sock and sock -> stdout until the socket side is done.

    The client closing its side (stdin EOF) half-closes the socket so the daemon sees the
    end of requests and can still answer; the daemon closing ends the session.
    """
    sel = selectors.DefaultSelector()
    sel.register(stdin, selectors.EVENT_READ, "in")
    sel.register(sock, selectors.EVENT_READ, "sock")
    try:
        while True:
            for key, _ in sel.select():
                if key.data == "in":
                    data = os.read(stdin, _CHUNK)
                    if not data:
                        sel.unregister(stdin)
                        sock.shutdown(socket.SHUT_WR)
                        continue
                    sock.sendall(data)
                else:
                    data = sock.recv(_CHUNK)
                    if not data:
                        return
                    _write_all(stdout, data)
    except (BrokenPipeError, ConnectionResetError):
        return
    finally:
        sel.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="link-bridge", description=__doc__)
    parser.add_argument("--runtime-dir", default="/run/symphony")
    args = parser.parse_args(argv)
    command = os.environ.get("SSH_ORIGINAL_COMMAND")
    name = purpose_socket(command)
    if name is None:
        # stderr goes back to the client and into sshd's journal line for the session.
        shown = "nothing" if command is None else repr(command[:80])
        print(
            f"link-bridge: refused {shown}: the link serves only {', '.join(PURPOSES)}",
            file=sys.stderr,
        )
        return EX_NOPERM
    path = os.path.join(args.runtime_dir, name)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as exc:
        print(f"link-bridge: {path}: {exc.strerror or exc}", file=sys.stderr)
        sock.close()
        return EX_UNAVAILABLE
    with sock:
        splice(sock, sys.stdin.fileno(), sys.stdout.fileno())
    return EX_OK


if __name__ == "__main__":
    sys.exit(main())
