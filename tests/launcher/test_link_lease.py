"""LinkLease decisions on a controlled clock (daemon test: tests/link/test_launcher_lease.py)."""

from __future__ import annotations

import asyncio

from symphonyd.launcher.link_lease import LinkLease


class Fixture:
    def __init__(self) -> None:
        self.now = 100.0
        self.idle: float | None = None
        self.live = {"a", "b"}
        self.stopped: list[str] = []

    async def stop(self, run_id: str) -> bool:
        self.stopped.append(run_id)
        self.live.discard(run_id)
        return True

    def lease(self) -> LinkLease:
        return LinkLease(
            30,
            idle_since=lambda: self.idle,
            live=lambda r: r in self.live,
            stop=self.stop,
            clock=lambda: self.now,
        )


def test_runs_stop_only_after_a_whole_lease_without_any_connection() -> None:
    f = Fixture()
    lease = f.lease()
    lease.started("a")
    lease.started("b")
    assert asyncio.run(lease.check()) == []  # connected
    f.idle = f.now  # the last connection closed now
    f.now += 29.9
    assert asyncio.run(lease.check()) == [] and f.stopped == []
    f.now += 0.2
    assert asyncio.run(lease.check()) == ["a", "b"] == f.stopped
    assert lease.runs == frozenset()


def test_a_reconnect_restarts_the_lease_and_finished_runs_are_forgotten() -> None:
    f = Fixture()
    lease = f.lease()
    lease.started("a")
    lease.started("b")
    f.idle = f.now
    f.now += 20
    f.idle = None  # reconnected
    assert asyncio.run(lease.check()) == []
    f.idle = f.now  # gone again: the lease counts from here
    f.live.discard("b")  # finished on its own
    f.now += 20
    assert asyncio.run(lease.check()) == []
    assert lease.runs == frozenset({"a"})
    f.now += 11
    assert asyncio.run(lease.check()) == ["a"]
