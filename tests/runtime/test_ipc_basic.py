"""IPC server and client over real Unix sockets: calls, pipelining, subscriptions, errors."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from symphonyd.core.api.launcher import LAUNCHER_RUN_EVENT, LAUNCHER_SUBSCRIBE, RunEvent
from symphonyd.core.api.shared import HEALTH, Empty
from symphonyd.core.errors import SymphonyError
from symphonyd.runtime.ipc_client import IpcClient, ReconnectingClient
from symphonyd.runtime.ipc_server import Broadcast, EventSink
from symphonyd.runtime.peer import Peer
from tests.runtime.ipc_helpers import (
    ECHO,
    UNSERVED,
    Echo,
    Raw,
    assert_healthy,
    connected,
    request,
    run,
    serving,
)


def test_round_trip_reports_kernel_peer_credentials(sock_dir: Path) -> None:
    async def body() -> None:
        async with connected(sock_dir) as client:
            health = await client.call(HEALTH, Empty())
            assert health.daemon == "test"
            assert health.detail["uid"] == os.getuid()
            assert health.detail["pid"] == os.getpid()
            echoed = await client.call(ECHO, Echo("héllo \u2028 wörld"))
            assert echoed.text == "héllo \u2028 wörld"

    run(body())


def test_pipelined_calls_complete_out_of_order(sock_dir: Path) -> None:
    async def body() -> None:
        async with connected(sock_dir) as client:
            # The first call cannot finish before the second one has run.
            first = asyncio.create_task(client.call(ECHO, Echo("first", wait_for="g")))
            second = asyncio.create_task(client.call(ECHO, Echo("second", release="g")))
            assert (await first).text == "first"
            assert (await second).text == "second"

        async with serving(sock_dir) as (_server, path, _gates):
            raw = await Raw.open(path)
            await raw.send(
                request(1, "test.echo", {"text": "a", "wait_for": "h"})
                + request(2, "test.echo", {"text": "b", "release": "h"})
            )
            replies = [await raw.frame(), await raw.frame()]
            assert [r["id"] for r in replies] == [2, 1]
            assert [r["result"]["text"] for r in replies] == ["b", "a"]
            raw.close()

    run(body())


def test_many_pipelined_requests_beyond_in_flight_limit_all_answered(sock_dir: Path) -> None:
    from symphonyd.runtime.ipc_server import ServerLimits

    async def body() -> None:
        async with connected(sock_dir, limits=ServerLimits(max_in_flight=2)) as client:
            results = await asyncio.gather(*(client.call(ECHO, Echo(str(i))) for i in range(50)))
            assert [r.text for r in results] == [str(i) for i in range(50)]

    run(body())


def _subscribe_server(sinks: list[EventSink], early: int = 0):
    async def subscribe(_: Empty, _peer: Peer, sink: EventSink) -> Empty:
        for i in range(early):
            sink.send(LAUNCHER_RUN_EVENT, _event(f"early-{i}"))
        sinks.append(sink)
        return Empty()

    return subscribe


def _event(run_id: str, message: str | None = None) -> RunEvent:
    return RunEvent(
        run_id=run_id,
        issue_id="i1",
        event="turn_completed",
        at="2026-01-01T00:00:00Z",
        message=message,
    )


def test_subscription_pushes_typed_events_after_the_response(sock_dir: Path) -> None:
    async def body() -> None:
        sinks: list[EventSink] = []
        async with serving(sock_dir) as (server, path, _gates):
            server.subscription(LAUNCHER_SUBSCRIBE, _subscribe_server(sinks, early=2))
            # Raw view: the response frame precedes events sent while subscribing.
            raw = await Raw.open(path)
            await raw.send(request(9, "launcher.subscribe", {}))
            first = await raw.frame()
            assert first == {"v": 1, "id": 9, "result": {}}
            assert (await raw.frame())["data"]["run_id"] == "early-0"
            assert (await raw.frame())["data"]["run_id"] == "early-1"
            raw.close()

            async with await IpcClient.connect(path) as client:
                await client.call(LAUNCHER_SUBSCRIBE, Empty())
                sink = sinks[-1]
                for i in range(5):
                    assert sink.send(LAUNCHER_RUN_EVENT, _event(f"r{i}", "line\nbreak"))
                received = []
                async for ev in client.events():
                    received.append(ev)
                    if len(received) == 7:
                        break
                assert all(ev.name == "launcher.run_event" for ev in received)
                assert all(isinstance(ev.data, RunEvent) for ev in received)
                assert [ev.data.run_id for ev in received][2:] == [f"r{i}" for i in range(5)]
                assert received[-1].data.message == "line\nbreak"
                # Calls still work on a subscribed connection.
                assert (await client.call(ECHO, Echo("x"))).text == "x"
            await asyncio.wait_for(sink.wait_closed(), 10)
            assert sink.closed
            assert not sink.send(LAUNCHER_RUN_EVENT, _event("late"))

    run(body())


def test_events_iterator_raises_unavailable_when_server_goes_away(sock_dir: Path) -> None:
    async def body() -> None:
        sinks: list[EventSink] = []
        async with serving(sock_dir) as (server, path, _gates):
            server.subscription(LAUNCHER_SUBSCRIBE, _subscribe_server(sinks))
            client = await IpcClient.connect(path)
            await client.call(LAUNCHER_SUBSCRIBE, Empty())
            await server.close()
            with pytest.raises(SymphonyError) as err:
                async for _ in client.events():
                    pass
            assert err.value.error_code == "unavailable"
            await client.close()

    run(body())


@pytest.mark.parametrize(
    ("params", "code", "forbidden"),
    [
        (Echo("x", fail="symphony"), "tracker_auth", None),
        (Echo("x", fail="crash"), "internal_error", "/etc/symphony/token"),
        (Echo("x", fail="bad_result"), "internal_error", None),
        (Echo("x", fail="nan"), "internal_error", None),
        (Echo("x", sleep=30), "timeout", None),
    ],
)
def test_handler_failures_become_typed_replies(
    sock_dir: Path, params: Echo, code: str, forbidden: str | None
) -> None:
    from symphonyd.runtime.ipc_server import ServerLimits

    async def body() -> None:
        limits = ServerLimits(request_timeout=0.2)
        async with connected(sock_dir, limits=limits) as client:
            with pytest.raises(SymphonyError) as err:
                await client.call(ECHO, params)
            assert err.value.error_code == code
            if forbidden:
                assert forbidden not in str(err.value)
            # The connection survives a failed handler.
            assert (await client.call(ECHO, Echo("ok"))).text == "ok"

    run(body())


def test_unknown_method_and_invalid_params_keep_the_connection(sock_dir: Path) -> None:
    async def body() -> None:
        async with connected(sock_dir) as client:
            with pytest.raises(SymphonyError) as err:
                await client.call(UNSERVED, Empty())
            assert err.value.error_code == "unknown_method"
            with pytest.raises(SymphonyError) as err:
                await client.call(ECHO, Echo(5))  # type: ignore[arg-type]
            assert err.value.error_code == "invalid_params"
            assert "Echo.text" in err.value.message
            assert (await client.call(ECHO, Echo("ok"))).text == "ok"

    run(body())


def test_client_errors_are_typed(sock_dir: Path) -> None:
    async def body() -> None:
        with pytest.raises(SymphonyError) as err:
            await IpcClient.connect(sock_dir / "missing.sock")
        assert err.value.error_code == "unavailable"
        async with connected(sock_dir) as client:
            with pytest.raises(SymphonyError) as err:
                await client.call(ECHO, Echo("slow", sleep=5), timeout=0.1)
            assert err.value.error_code == "timeout"
            # A late reply to the abandoned call does not confuse the next one.
            assert (await client.call(ECHO, Echo("next"))).text == "next"
        # Server gone: the socket path it bound was removed on close.
        assert not (sock_dir / "test.sock").exists()

    run(body())


def test_reconnecting_client_survives_a_server_restart(sock_dir: Path) -> None:
    async def body() -> None:
        async with serving(sock_dir) as (_server, path, _gates):
            client = ReconnectingClient(path)
            assert (await client.call(ECHO, Echo("one"))).text == "one"
        with pytest.raises(SymphonyError) as err:
            await client.call(ECHO, Echo("down"))
        assert err.value.error_code == "unavailable"
        async with serving(sock_dir) as (_server, path, _gates):
            assert (await client.call(ECHO, Echo("two"))).text == "two"
            await client.close()
            await assert_healthy(path)

    run(body())


def _subscribe_into(runs: Broadcast[RunEvent]):
    async def subscribe(_: Empty, _peer: Peer, sink: EventSink) -> Empty:
        runs.add(sink)
        return Empty()

    return subscribe


def test_broadcast_fans_out_and_prunes_gone_subscribers(sock_dir: Path) -> None:
    async def body() -> None:
        runs = Broadcast(LAUNCHER_RUN_EVENT)
        async with serving(sock_dir) as (server, path, _gates):
            server.subscription(LAUNCHER_SUBSCRIBE, _subscribe_into(runs))
            a = await IpcClient.connect(path)
            b = await IpcClient.connect(path)
            await a.call(LAUNCHER_SUBSCRIBE, Empty())
            await b.call(LAUNCHER_SUBSCRIBE, Empty())
            assert runs.publish(_event("one")) == 2
            # Not JSON (NaN): dropped with a warning, subscribers kept.
            bad = RunEvent("r", "i", "rate_limits", "t", rate_limits={"x": float("nan")})
            assert runs.publish(bad) == 0
            assert len(runs) == 2
            await b.close()
            for _ in range(100):
                if runs.publish(_event("two")) == 1:
                    break
                await asyncio.sleep(0.05)
            assert len(runs) == 1
            got = []
            async for ev in a.events():
                got.append(ev.data.run_id)
                if got[-1] == "two":
                    break
            assert got[0] == "one" and "r" not in got
            await a.close()

    run(body())


def test_client_event_backlog_is_bounded(sock_dir: Path) -> None:
    async def body() -> None:
        runs = Broadcast(LAUNCHER_RUN_EVENT)
        async with serving(sock_dir) as (server, path, _gates):
            server.subscription(LAUNCHER_SUBSCRIBE, _subscribe_into(runs))
            client = await IpcClient.connect(path, max_events=4)
            await client.call(LAUNCHER_SUBSCRIBE, Empty())
            for i in range(10):
                runs.publish(_event(f"e{i}"))
            seen = []
            with pytest.raises(SymphonyError) as err:
                async for ev in client.events():
                    seen.append(ev.data.run_id)
            assert err.value.error_code == "unavailable"
            assert "too slow" in err.value.message
            assert seen == ["e0", "e1", "e2", "e3"]
            await client.close()
            await assert_healthy(path)

    run(body())


def test_oversized_reply_and_event_are_refused_not_sent(sock_dir: Path) -> None:
    from symphonyd.runtime.ipc_server import ServerLimits

    async def body() -> None:
        sinks: list[EventSink] = []
        async with serving(sock_dir, limits=ServerLimits(max_frame=4096)) as (server, path, _g):
            server.subscription(LAUNCHER_SUBSCRIBE, _subscribe_server(sinks))
            async with await IpcClient.connect(path, max_frame=4096) as client:
                await client.call(LAUNCHER_SUBSCRIBE, Empty())
                with pytest.raises(SymphonyError) as err:
                    await client.call(ECHO, Echo("small request", fail="big"))
                assert err.value.error_code == "frame_too_large"
                assert sinks[0].send(LAUNCHER_RUN_EVENT, _event("big", "m" * 5000))
                assert sinks[0].send(LAUNCHER_RUN_EVENT, _event("small"))
                async for ev in client.events():
                    assert ev.data.run_id == "small"
                    break
                assert (await client.call(ECHO, Echo("ok"))).text == "ok"

    run(body())


def test_half_closed_peer_still_gets_its_replies(sock_dir: Path) -> None:
    async def body() -> None:
        async with serving(sock_dir) as (_server, path, gates):
            raw = await Raw.open(path)
            await raw.send(
                request(1, "test.echo", {"text": "late", "wait_for": "go"})
                + request(2, "test.echo", {"text": "now"})
            )
            raw.writer.write_eof()  # like `socat` or `nc -N` after the last line
            assert (await raw.frame())["result"]["text"] == "now"
            gates["go"].set()
            assert (await raw.frame())["result"]["text"] == "late"
            assert await raw.at_eof()
            raw.close()

    run(body())
