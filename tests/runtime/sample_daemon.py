"""A small daemon built on run_daemon, driven by the daemon tests as a real process.

    python -m tests.runtime.sample_daemon <mode> <socket path>

modes: serve, bad_config, crash_task, slow_startup, hang_shutdown
"""

from __future__ import annotations

import asyncio
import os
import sys

from symphonyd.core.api.shared import HEALTH, Empty, Health
from symphonyd.core.errors import ConfigError
from symphonyd.runtime.daemon import Daemon, run_daemon
from symphonyd.runtime.ipc_server import IpcServer
from symphonyd.runtime.peer import Peer


def main(mode: str, path: str) -> int:
    async def startup(daemon: Daemon) -> None:
        if mode == "bad_config":
            raise ConfigError("polling.interval_ms must be positive", code="invalid_config")
        if mode == "slow_startup":
            print("startup-waiting", flush=True)
            await asyncio.Event().wait()
        server = IpcServer("sample", allowed_uids={os.getuid()}, allow_root=os.getuid() == 0)

        async def health(_: Empty, _peer: Peer) -> Health:
            return Health(daemon.name, "0", ok=not daemon.stopping)

        server.handle(HEALTH, health)
        await server.start_listening("sample", path)  # not activated here: binds path
        daemon.on_shutdown("ipc", server.close)
        if mode == "hang_shutdown":

            async def hang() -> None:
                await asyncio.Event().wait()

            daemon.on_shutdown("hang", hang)
        if mode == "crash_task":

            async def crash() -> None:
                await asyncio.sleep(0.2)
                raise RuntimeError("worker blew up\nforged=line")

            daemon.spawn(crash(), "worker")
        daemon.status("serving")

    return run_daemon("sample", startup, stop_timeout=1.0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
