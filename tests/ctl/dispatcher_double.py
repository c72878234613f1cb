"""An in-test dispatcher serving chosen control methods on a real Unix socket.

symphonyctl runs as a subprocess against it; the handlers are the test's own.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from symphonyd.core.wire import MethodSpec
from symphonyd.runtime.ipc_server import IpcServer
from symphonyd.runtime.peer import Peer

Handler = Callable[[Any, Peer], Awaitable[Any]]


class FakeDispatcher:
    """Serves ``handlers`` from a background event loop until the context exits."""

    def __init__(self, path: Path, handlers: list[tuple[MethodSpec[Any, Any], Handler]]) -> None:
        self.path = path
        self.handlers = handlers
        self.calls: list[Any] = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = IpcServer("dispatcher", allowed_uids={os.getuid()}, allow_root=True)
        for spec, handler in self.handlers:
            server.handle(spec, self._recording(handler))
        self.loop.run_until_complete(server.start_path(self.path))
        self.ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(server.close())
        self.loop.close()

    def _recording(self, handler: Handler) -> Handler:
        async def wrapped(params: Any, peer: Peer) -> Any:
            self.calls.append(params)
            return await handler(params, peer)

        return wrapped

    def __enter__(self) -> FakeDispatcher:
        self.thread.start()
        assert self.ready.wait(30), "fake dispatcher did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
