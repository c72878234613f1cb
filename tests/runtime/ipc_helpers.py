"""Shared pieces of the IPC tests: test-only methods, a served server, raw socket peers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from symphonyd.core.api.shared import HEALTH, Empty, Health
from symphonyd.core.errors import SymphonyError
from symphonyd.core.wire import MethodSpec
from symphonyd.runtime.ipc_client import IpcClient
from symphonyd.runtime.ipc_server import IpcServer, ServerLimits
from symphonyd.runtime.peer import Peer

T = TypeVar("T")


@dataclass(frozen=True)
class Echo:
    text: str
    # Name of a gate the handler waits on before replying, to force reply order.
    wait_for: str | None = None
    release: str | None = None
    sleep: float = 0.0
    fail: str | None = None  # "symphony", "crash", "bad_result", "nan", "big"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EchoResult:
    text: str


# Built directly (not via messages.method) so test methods stay out of the product registry.
ECHO = MethodSpec("test.echo", Echo, EchoResult, "Echo, with knobs to fail or wait.")
UNSERVED = MethodSpec("test.unserved", Empty, Empty, "Registered by no server.")


def run(coro: Awaitable[T], timeout: float = 60.0) -> T:
    """Run one async test body; the timeout only prevents a hang, it asserts nothing."""

    async def bounded() -> T:
        result = await asyncio.wait_for(coro, timeout)
        # Nothing the server or client started may outlive them: a leftover task is a leak.
        for _ in range(100):
            left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if not left:
                break
            await asyncio.sleep(0.05)
        assert not left, f"tasks leaked: {left}"
        return result

    return asyncio.run(bounded())


@contextlib.contextmanager
def short_dir() -> Iterator[Path]:
    # AF_UNIX paths are limited to 108 bytes; pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="syipc"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Gates:
    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def __getitem__(self, name: str) -> asyncio.Event:
        return self._events.setdefault(name, asyncio.Event())


def make_server(
    path_dir: Path,
    *,
    limits: ServerLimits | None = None,
    allowed: set[int] | None = None,
    allow_root: bool | None = None,
) -> tuple[IpcServer, Gates]:
    uid = os.getuid()
    server = IpcServer(
        "test",
        allowed_uids=allowed if allowed is not None else {uid},
        allow_root=allow_root if allow_root is not None else uid == 0,
        limits=limits,
    )
    gates = Gates()

    async def health(_: Empty, peer: Peer) -> Health:
        return Health(
            daemon="test",
            version="0",
            ok=True,
            detail={"uid": peer.uid, "gid": peer.gid, "pid": peer.pid, "unit": peer.unit},
        )

    async def echo(params: Echo, _peer: Peer) -> EchoResult:
        if params.release:
            gates[params.release].set()
        if params.wait_for:
            await gates[params.wait_for].wait()
        if params.sleep:
            await asyncio.sleep(params.sleep)
        if params.fail == "symphony":
            raise SymphonyError("tracker said no", code="tracker_auth")
        if params.fail == "crash":
            raise RuntimeError("secret detail /etc/symphony/token")
        if params.fail == "bad_result":
            return "not an EchoResult"  # type: ignore[return-value]
        if params.fail == "big":
            return EchoResult("x" * 10_000)
        if params.fail == "nan":
            return EchoResult(float("nan"))  # type: ignore[arg-type]
        return EchoResult(params.text)

    server.handle(HEALTH, health)
    server.handle(ECHO, echo)
    return server, gates


@contextlib.asynccontextmanager
async def serving(path_dir: Path, **kwargs: Any) -> AsyncIterator[tuple[IpcServer, Path, Gates]]:
    server, gates = make_server(path_dir, **kwargs)
    path = path_dir / "test.sock"
    await server.start_path(path)
    try:
        yield server, path, gates
    finally:
        await server.close()


@contextlib.asynccontextmanager
async def connected(path_dir: Path, **kwargs: Any) -> AsyncIterator[IpcClient]:
    """A served test server and one client connected to it."""
    async with serving(path_dir, **kwargs) as (_server, path, _gates):
        client = await IpcClient.connect(path)
        try:
            yield client
        finally:
            await client.close()


async def assert_healthy(path: Path) -> None:
    """A well-behaved client is still served."""
    async with await IpcClient.connect(path) as client:
        health = await client.call(HEALTH, Empty(), timeout=10)
        assert health.ok
        assert (await client.call(ECHO, Echo("still here"), timeout=10)).text == "still here"


class Raw:
    """A hand-driven peer that can send anything."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, path: Path) -> Raw:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=1 << 22)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def frame(self, timeout: float = 10.0) -> dict[str, Any]:
        line = await asyncio.wait_for(self.reader.readline(), timeout)
        assert line.endswith(b"\n"), f"connection ended instead: {line[:200]!r}"
        obj = json.loads(line)
        assert isinstance(obj, dict)
        return obj

    async def at_eof(self, timeout: float = 10.0) -> bool:
        """True once the server closed the stream (EOF or reset) with nothing more to read."""
        try:
            data = await asyncio.wait_for(self.reader.read(1 << 16), timeout)
        except ConnectionResetError:
            return True
        return data == b""

    def close(self) -> None:
        self.writer.transport.abort()


def request(req_id: int, method: str, params: dict[str, Any]) -> bytes:
    return json.dumps({"v": 1, "id": req_id, "method": method, "params": params}).encode() + b"\n"
