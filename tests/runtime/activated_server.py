"""Child process for the socket-activation test: serves `health` on the fd systemd would pass.

Run as ``python -m tests.runtime.activated_server`` with LISTEN_* set and the socket on fd 3.
"""

from __future__ import annotations

import asyncio
import os

from symphonyd.core.api.shared import HEALTH, Empty, Health
from symphonyd.runtime.activation import activated_socket
from symphonyd.runtime.ipc_server import IpcServer
from symphonyd.runtime.peer import Peer


async def main() -> None:
    other = activated_socket("other")  # reads the environment once, remembers "ipc"
    leftover = {k: os.environ.get(k) for k in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")}
    stop = asyncio.Event()
    server = IpcServer("activated", allowed_uids={os.getuid()}, allow_root=os.getuid() == 0)

    async def health(_: Empty, peer: Peer) -> Health:
        stop.set()
        return Health("activated", "0", True, {"pid": os.getpid(), "env": leftover})

    server.handle(HEALTH, health)
    # Takes the remembered "ipc" socket; the fallback path must stay unused.
    await server.start_listening("ipc", "/nonexistent/must-not-bind.sock")
    assert other is None
    await stop.wait()
    await asyncio.sleep(0.2)  # let the reply go out
    await server.close()


if __name__ == "__main__":
    asyncio.run(main())
