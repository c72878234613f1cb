"""Hostile peers: each case must be refused or answered with a typed error, and afterwards
the server must still serve a well-behaved client."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from symphonyd.core.api.launcher import LAUNCHER_RUN_EVENT, LAUNCHER_SUBSCRIBE, RunEvent
from symphonyd.core.api.shared import HEALTH, Empty
from symphonyd.core.errors import SymphonyError
from symphonyd.runtime.ipc_client import IpcClient
from symphonyd.runtime.ipc_server import EventSink, ServerLimits
from symphonyd.runtime.peer import Peer
from tests.runtime.ipc_helpers import (
    Raw,
    assert_healthy,
    request,
    run,
    serving,
)

NOBODY = 65534


def test_uid_outside_the_allowlist_is_refused(sock_dir: Path) -> None:
    async def body() -> None:
        other = os.getuid() + 4242
        async with serving(sock_dir, allowed={other}, allow_root=False) as (server, path, _g):
            async with await IpcClient.connect(path) as client:
                with pytest.raises(SymphonyError) as err:
                    await client.call(HEALTH, Empty())
                assert err.value.error_code == "peer_not_allowed"
            assert server.connection_count == 0

    run(body())


def test_root_is_not_allowed_implicitly() -> None:
    from symphonyd.runtime.ipc_server import IpcServer

    with pytest.raises(ValueError, match="allow_root"):
        IpcServer("x", allowed_uids={0})


_NOBODY_CLIENT = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
try:
    s.sendall(b'{"v":1,"id":1,"method":"health","params":{}}\n')
except BrokenPipeError:
    pass  # the server may refuse and close before we get to write
data = b""
while not data.endswith(b"\n"):
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
sys.stdout.write(data.decode())
"""


@pytest.mark.root
def test_other_uid_refused_while_allowed_uid_is_served(sock_dir: Path) -> None:
    async def body() -> None:
        # Loosened modes on purpose: SO_PEERCRED must hold the line on its own.
        sock_dir.chmod(0o755)
        async with serving(sock_dir, allowed={0}, allow_root=True) as (_server, path, _g):
            path.chmod(0o666)
            proc = await asyncio.create_subprocess_exec(
                "/usr/bin/python3",
                "-I",
                "-c",
                _NOBODY_CLIENT,
                str(path),
                user=NOBODY,
                group=NOBODY,
                extra_groups=[],
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(proc.communicate(), 30)
            assert proc.returncode == 0, err.decode()
            reply = json.loads(out)
            assert reply["error"]["code"] == "peer_not_allowed"
            assert str(NOBODY) in reply["error"]["message"]
            await assert_healthy(path)

    run(body())


def test_oversized_frame_gets_frame_too_large_and_is_closed(sock_dir: Path) -> None:
    async def body() -> None:
        async with serving(sock_dir, limits=ServerLimits(max_frame=4096)) as (_s, path, _g):
            raw = await Raw.open(path)
            big = json.dumps(
                {"v": 1, "id": 1, "method": "test.echo", "params": {"text": "x" * 8000}}
            )
            await raw.send(big.encode() + b"\n")
            reply = await raw.frame()
            assert reply["error"]["code"] == "frame_too_large"
            assert await raw.at_eof()
            raw.close()
            # Exactly at the limit is still fine.
            at_limit = request(2, "test.echo", {"text": ""})
            pad = 4096 - len(at_limit) + 1
            at_limit = request(2, "test.echo", {"text": "y" * pad})
            assert len(at_limit) == 4097  # 4096 bytes plus the newline
            raw = await Raw.open(path)
            await raw.send(at_limit)
            assert (await raw.frame())["result"]["text"] == "y" * pad
            raw.close()
            await assert_healthy(path)

    run(body())


def test_oversized_frame_without_newline_is_cut_off(sock_dir: Path) -> None:
    async def body() -> None:
        async with serving(sock_dir, limits=ServerLimits(max_frame=4096)) as (_s, path, _g):
            raw = await Raw.open(path)
            with pytest.raises((ConnectionError, BrokenPipeError)):
                for _ in range(1000):  # up to 64 MiB; the server cuts us off long before
                    await raw.send(b"a" * 65536)
            raw.close()
            await assert_healthy(path)

    run(body())


GARBAGE = [
    (b"\xff\xfe\xfd not utf-8\n", "malformed_message"),
    (b"hello there\n", "malformed_message"),
    (b"[1,2,3]\n", "malformed_message"),
    (b'{"v":2,"id":1,"method":"health","params":{}}\n', "unsupported_version"),
    (b'{"v":1,"id":1,"method":"health","params":[]}\n', "malformed_message"),
    (b'{"v":1,"id":"x","method":"health","params":{}}\n', "malformed_message"),
    (b'{"v":1,"id":1,"result":{}}\n', "malformed_message"),
    (b'{"v":1,"id":1,"method":"health","params":{"x":NaN}}\n', "malformed_message"),
    (b'{"v":1,"id":' + b"9" * 5000 + b',"method":"health","params":{}}\n', "malformed_message"),
    (b'{"v":1,"id":1,"method":"test.echo","params":' + b"[" * 200000 + b"\n", "malformed_message"),
    (
        b'{"v":1,"id":1,"method":"health","params":' + b'{"a":' * 100 + b"1" + b"}" * 101 + b"\n",
        "invalid_params",
    ),
    (b'{"v":1,"id":1,"method":"nope","params":{}}\n', "unknown_method"),
    (b'{"v":1,"id":1,"method":"test.echo","params":{"text":"\\ud800"}}\n', None),
]


@pytest.mark.parametrize(("payload", "code"), GARBAGE, ids=lambda v: repr(v)[:40])
def test_garbage_gets_a_typed_error_and_the_connection_survives(
    sock_dir: Path, payload: bytes, code: str | None
) -> None:
    async def body() -> None:
        async with serving(sock_dir) as (_server, path, _gates):
            raw = await Raw.open(path)
            await raw.send(payload)
            reply = await raw.frame()
            if code is None:
                # A lone surrogate is valid JSON: it must come back intact, escaped.
                assert reply["result"]["text"] == "\ud800"
            else:
                assert reply["error"]["code"] == code, reply
            # Same connection, next frame: served normally.
            await raw.send(request(77, "test.echo", {"text": "after"}))
            assert (await raw.frame())["result"] == {"text": "after"}
            raw.close()
            await assert_healthy(path)

    run(body())


def test_half_open_connection_does_not_block_others_and_times_out(sock_dir: Path) -> None:
    async def body() -> None:
        limits = ServerLimits(idle_timeout=0.5)
        async with serving(sock_dir, limits=limits) as (server, path, _g):
            stalled = await Raw.open(path)
            await stalled.send(b'{"v":1,"id":1,"method":"hea')
            silent = await Raw.open(path)
            await assert_healthy(path)
            assert await stalled.at_eof(timeout=20)
            assert await silent.at_eof(timeout=20)
            stalled.close()
            silent.close()
            await assert_healthy(path)
            for _ in range(100):
                if server.connection_count == 0:
                    break
                await asyncio.sleep(0.05)
            assert server.connection_count == 0

    run(body())


def test_client_disconnecting_mid_request(sock_dir: Path) -> None:
    async def body() -> None:
        async with serving(sock_dir) as (server, path, gates):
            raw = await Raw.open(path)
            await raw.send(request(1, "test.echo", {"text": "gone", "wait_for": "late"}))
            await asyncio.sleep(0.1)  # let the server start the handler
            raw.close()
            await assert_healthy(path)
            gates["late"].set()  # the orphaned handler now replies into a closed socket
            for _ in range(100):
                if server.connection_count == 0:
                    break
                await asyncio.sleep(0.05)
            assert server.connection_count == 0
            await assert_healthy(path)

    run(body())


def test_flood_of_connections_beyond_the_limit(sock_dir: Path) -> None:
    async def body() -> None:
        limits = ServerLimits(max_connections=4)
        async with serving(sock_dir, limits=limits) as (server, path, _g):
            held = [await Raw.open(path) for _ in range(4)]
            for raw in held:  # make sure all four are admitted before flooding
                await raw.send(request(1, "health", {}))
                assert "result" in await raw.frame()
            flood = [await Raw.open(path) for _ in range(50)]
            for raw in flood:
                reply = await raw.frame()
                assert reply["error"]["code"] == "unavailable"
                assert await raw.at_eof()
                raw.close()
            assert server.connection_count == 4
            with pytest.raises(SymphonyError) as err:
                await assert_healthy(path)
            assert err.value.error_code == "unavailable"
            for raw in held:
                raw.close()
            for _ in range(100):
                if server.connection_count == 0:
                    break
                await asyncio.sleep(0.05)
            await assert_healthy(path)

    run(body())


def test_slow_subscriber_is_disconnected_without_blocking_the_publisher(
    sock_dir: Path,
) -> None:
    async def body() -> None:
        sinks: list[EventSink] = []

        async def subscribe(_: Empty, _peer: Peer, sink: EventSink) -> Empty:
            sinks.append(sink)
            return Empty()

        limits = ServerLimits(send_queue=16, write_timeout=2)
        async with serving(sock_dir, limits=limits) as (server, path, _g):
            server.subscription(LAUNCHER_SUBSCRIBE, subscribe)
            slow = await Raw.open(path)  # subscribes, then never reads
            await slow.send(request(1, "launcher.subscribe", {}))
            while not sinks:
                await asyncio.sleep(0.01)
            sink = sinks[0]
            big = "z" * 8192
            accepted = 0
            for i in range(100_000):  # at most ~800 MiB offered; memory stays bounded
                ev = RunEvent("r", "i", "notification", "2026-01-01T00:00:00Z", message=big)
                if not sink.send(LAUNCHER_RUN_EVENT, ev):
                    break
                accepted += 1
                if i % 8 == 0:
                    await asyncio.sleep(0)  # the publisher yields like a real loop would
            assert sink.closed, "publisher never saw the slow subscriber dropped"
            assert accepted < 100_000
            await assert_healthy(path)
            slow.close()

    run(body())


def test_peer_that_never_reads_replies_is_dropped(sock_dir: Path) -> None:
    async def body() -> None:
        limits = ServerLimits(write_timeout=0.5, send_queue=4, max_in_flight=4)
        async with serving(sock_dir, limits=limits) as (server, path, _g):
            raw = await Raw.open(path)
            text = "q" * 60000
            with pytest.raises((ConnectionError, BrokenPipeError, TimeoutError)):
                for i in range(10_000):
                    await asyncio.wait_for(
                        raw.send(request(i, "test.echo", {"text": text})), timeout=10
                    )
            raw.close()
            await assert_healthy(path)

    run(body())
