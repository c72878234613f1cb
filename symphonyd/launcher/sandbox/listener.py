"""A TCP listener that serves at most ``cap`` connections of one agent at once.

``asyncio.start_server`` accepts whatever arrives, so an agent opening thousands of
connections costs the launcher a descriptor, a transport and a task for each. Here, at the
cap, a new connection is accepted only to be refused (``refuse``: the proxy's 503, the
resolver's close), at most ``refusals_per_s`` a second; past that budget the listener stops
accepting until a connection ends or the budget refills, and further connections wait in the
kernel's queue (backlog: the cap), where they cost the launcher nothing. So a flood costs a
bounded number of descriptors and a bounded amount of the launcher's time per second, and a
refusal is never silent (each one is counted and audited by the caller). docs/design/0855.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable

log = logging.getLogger("symphonyd.launcher")
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
STREAM_LIMIT = 64 * 1024


class CappedListener:
    def __init__(
        self,
        bind_ip: str,
        port: int,
        cap: int,
        handle: Handler,
        refuse: Handler,
        *,
        limit: int = STREAM_LIMIT,
        refusals_per_s: float = 20.0,
    ) -> None:
        self.bind_ip = bind_ip
        self.port = port
        self.cap = cap
        self.handle = handle
        self.refuse = refuse
        self.limit = limit
        self.refusals_per_s = refusals_per_s
        self.open = 0
        self.paused = 0  # times the listener stopped accepting (cap reached, budget spent)
        self._tokens = refusals_per_s
        self._refilled = 0.0
        self._sock: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._freed = asyncio.Event()

    async def start(self) -> None:
        """Bind and listen (raises OSError); serving runs in a task of its own."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.bind_ip, self.port))
            sock.listen(self.cap)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        loop = asyncio.get_running_loop()
        self._refilled = loop.time()
        self._accepting = loop.create_task(self._accept_loop(sock))

    @property
    def bound_port(self) -> int:
        return int(self._sock.getsockname()[1]) if self._sock is not None else self.port

    async def stop(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
            self._accepting = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    def _take_token(self, now: float) -> bool:
        self._tokens = min(
            self.refusals_per_s, self._tokens + (now - self._refilled) * self.refusals_per_s
        )
        self._refilled = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    async def _accept_loop(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self.open >= self.cap and not self._take_token(loop.time()):
                # Leave the rest in the kernel's queue until a slot or a token comes back.
                self.paused += 1
                self._freed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._freed.wait(), 1.0 / self.refusals_per_s)
                continue
            try:
                conn, _addr = await loop.sock_accept(sock)
            except OSError:
                await asyncio.sleep(0.1)  # EMFILE and the like: do not spin
                continue
            try:
                reader = asyncio.StreamReader(limit=self.limit)
                protocol = asyncio.StreamReaderProtocol(reader)
                transport, _ = await loop.connect_accepted_socket(_factory(protocol), conn)
            except OSError:
                conn.close()
                continue
            writer = asyncio.StreamWriter(transport, protocol, reader, loop)
            over = self.open >= self.cap
            if not over:
                self.open += 1
            self._spawn(self._serve(reader, writer, over))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, over: bool
    ) -> None:
        self._writers.add(writer)
        try:
            await (self.refuse if over else self.handle)(reader, writer)
        except Exception:  # a client must never take the listener down
            log.debug("egress connection handler failed", exc_info=True)
        finally:
            self._writers.discard(writer)
            writer.close()
            if not over:
                self.open -= 1
                self._freed.set()


def _factory(protocol: asyncio.StreamReaderProtocol) -> Callable[[], asyncio.StreamReaderProtocol]:
    return lambda: protocol
