"""sd_notify against a real AF_UNIX datagram socket standing in for the service manager."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from symphonyd.runtime.notify import Notifier
from tests.runtime.ipc_helpers import run, short_dir

MakeNotifier = Callable[[dict[str, str]], Notifier]


@pytest.fixture
def make_notifier() -> Iterator[MakeNotifier]:
    made: list[Notifier] = []

    def make(env: dict[str, str]) -> Notifier:
        made.append(Notifier.from_env(env))
        return made[-1]

    yield make
    for notifier in made:
        notifier.close()


@pytest.fixture
def manager() -> Iterator[tuple[str, socket.socket]]:
    with short_dir() as d:
        path = str(d / "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(10)
        try:
            yield path, sock
        finally:
            sock.close()


def _recv(sock: socket.socket) -> list[str]:
    return sock.recv(65536).decode("utf-8").split("\n")


def test_ready_status_stopping_reach_the_manager(
    manager: tuple[str, socket.socket], make_notifier: MakeNotifier
) -> None:
    path, sock = manager
    env = {"NOTIFY_SOCKET": path}
    notifier = make_notifier(env)
    assert env == {}  # children (hooks, agents) must not inherit the notify socket
    assert notifier.ready("serving 3 issues")
    assert _recv(sock) == ["READY=1", "STATUS=serving 3 issues"]
    # A hostile status cannot smuggle a second assignment; UTF-8 survives.
    assert notifier.status("title: ünïcode\nREADY=1\x00MAINPID=1")
    assert _recv(sock) == ["STATUS=title: ünïcode READY=1 MAINPID=1"]
    assert notifier.stopping()
    assert _recv(sock) == ["STOPPING=1"]


def test_abstract_notify_socket(make_notifier: MakeNotifier) -> None:
    name = f"symphony-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(10)
    try:
        notifier = make_notifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.watchdog()
        assert _recv(sock) == ["WATCHDOG=1"]
    finally:
        sock.close()


def test_failure_is_logged_once_and_does_not_raise(
    caplog: pytest.LogCaptureFixture, make_notifier: MakeNotifier
) -> None:
    with short_dir() as d:
        missing = str(Path(d) / "nobody-listens")
        caplog.set_level(logging.WARNING, logger="symphonyd.notify")
        notifier = make_notifier({"NOTIFY_SOCKET": missing})
        assert not notifier.ready()
        assert not notifier.status("x")
        assert not notifier.watchdog()
    failures = [r for r in caplog.records if "event=sd_notify outcome=failed" in r.getMessage()]
    assert len(failures) == 1
    assert missing in failures[0].getMessage()


def test_failure_after_manager_went_away_is_logged_once(
    manager: tuple[str, socket.socket],
    caplog: pytest.LogCaptureFixture,
    make_notifier: MakeNotifier,
) -> None:
    path, sock = manager
    caplog.set_level(logging.WARNING, logger="symphonyd.notify")
    notifier = make_notifier({"NOTIFY_SOCKET": path})
    assert notifier.status("up")
    sock.close()
    os.unlink(path)
    assert not notifier.status("down")
    assert not notifier.status("still down")
    assert len([r for r in caplog.records if "sd_notify" in r.getMessage()]) == 1


def test_without_systemd_everything_is_a_quiet_no_op(
    caplog: pytest.LogCaptureFixture, make_notifier: MakeNotifier
) -> None:
    caplog.set_level(logging.DEBUG)
    notifier = make_notifier({})
    assert not notifier.enabled
    assert not notifier.ready()
    assert caplog.records == []


def test_watchdog_pings_at_half_the_interval(
    manager: tuple[str, socket.socket], make_notifier: MakeNotifier
) -> None:
    path, sock = manager
    notifier = make_notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})
    assert notifier.watchdog_usec == 100000
    sock.setblocking(False)

    async def body() -> list[str]:
        task = asyncio.create_task(notifier.watchdog_loop())
        pings: list[str] = []
        loop = asyncio.get_running_loop()
        while len(pings) < 3:
            pings += (await loop.sock_recv(sock, 4096)).decode().split("\n")
        task.cancel()
        return pings

    assert run(body(), timeout=30)[:3] == ["WATCHDOG=1"] * 3


def test_watchdog_for_another_pid_is_ignored(
    manager: tuple[str, socket.socket], make_notifier: MakeNotifier
) -> None:
    path, _sock = manager
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert make_notifier(env).watchdog_usec is None
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000", "WATCHDOG_PID": str(os.getpid())}
    assert make_notifier(env).watchdog_usec == 100000


def test_unhealthy_check_withholds_the_ping(
    manager: tuple[str, socket.socket], make_notifier: MakeNotifier
) -> None:
    path, sock = manager
    notifier = make_notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000"})
    healthy = {"ok": False}

    async def body() -> str:
        task = asyncio.create_task(notifier.watchdog_loop(lambda: healthy["ok"]))
        await asyncio.sleep(0.1)  # several intervals pass without a ping
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            sock.recv(4096)
        healthy["ok"] = True
        data = await asyncio.get_running_loop().sock_recv(sock, 4096)
        task.cancel()
        return data.decode()

    assert run(body(), timeout=30) == "WATCHDOG=1"
