"""Tracker change events (issue 21): a change starts its agent without waiting for the poll.

The polling interval here is an hour, so within a test's lifetime only an event can explain a
dispatch after the first tick. The first two tests run the four real daemons as processes
(tests/dispatcher/suite_tree.py); the others drive the dispatcher's production wiring
(``assemble`` + ``loops``) against tracker doubles on real sockets, for what the real tracker
cannot be made to do: refuse the subscription, or drop the connection mid-stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from symphonyd.dispatcher.tracker_events import follow_tracker_changes
from tests.dashboard.harness import DashboardProcess
from tests.dispatcher.doubles import issue, run_async
from tests.dispatcher.socket_doubles import SocketWorld, eventually, socket_world
from tests.dispatcher.suite_tree import SuiteTree
from tests.dispatcher.test_daemon_sockets import dispatcher, started, wait_status, write_workflow

HOUR_MS = 3_600_000


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[SuiteTree]:
    t = SuiteTree(tmp_path, poll_ms=HOUR_MS)
    try:
        yield t
    finally:
        t.stop()


def subscribed(tree: SuiteTree) -> bool:
    log = tree.log("dispatcher")
    return "event=tracker_events" in log and "outcome=subscribed" in log


@pytest.mark.slow
def test_file_writes_start_agents_without_the_poll(tree: SuiteTree) -> None:
    tree.start()
    tree.wait("the dispatcher to subscribe to tracker events", lambda: subscribed(tree))
    tree.write_issue("EV-1")
    tree.wait("EV-1's agent", lambda: tree.agent_started_ns("EV-1") is not None)
    # The first tick and the one the subscription asks for are over by now: from here on,
    # only an event makes the dispatcher look at the tracker again.
    tree.write_issue("EV-2")
    tree.wait("EV-2's agent", lambda: tree.agent_started_ns("EV-2") is not None)
    tree.write_issue("EV-3", rename=True)  # an editor's save: temporary file renamed into place
    tree.wait("EV-3's agent", lambda: tree.agent_started_ns("EV-3") is not None)
    tree.write_issue("EV-4", state="Backlog")  # a change that makes nothing eligible
    tree.write_issue("EV-4")
    tree.wait("EV-4's agent", lambda: tree.agent_started_ns("EV-4") is not None)
    assert "outcome=watching" in tree.log("tracker")
    events = tree.doctor("tracker-events")  # the operator's view of the same
    assert events["status"] == "ok" and "local_files is live" in events["detail"]
    # Stopping completes: every daemon exits 0 on SIGTERM, the dispatcher's subscription too.
    assert tree.stop() == {"dispatcher": 0, "launcher": 0, "tracker": 0, "audit": 0}


@pytest.mark.slow
def test_an_event_while_paused_dispatches_nothing_until_resume(tree: SuiteTree) -> None:
    tree.start()
    tree.wait("the dispatcher to subscribe to tracker events", lambda: subscribed(tree))
    tree.write_issue("EV-8")  # dispatched by an event before the pause
    tree.wait("EV-8's agent", lambda: tree.agent_started_ns("EV-8") is not None)
    tree.pause()
    before = tree.tracker_checked_at()
    tree.write_issue("EV-9")
    # The event's tick ran (the dispatcher fetched again) and, paused, started nothing.
    tree.wait("the event's tick", lambda: tree.tracker_checked_at() != before)
    snap = tree.snapshot()
    assert snap.pause.paused and snap.counts.running == 0
    assert tree.agent_started_ns("EV-9") is None
    # Not lost: resuming ticks at once (the next poll is an hour away) and sees the issue.
    tree.resume()
    tree.wait("EV-9's agent after resume", lambda: tree.agent_started_ns("EV-9") is not None)


@contextlib.asynccontextmanager
async def evented() -> AsyncIterator[SocketWorld]:
    """The dispatcher's wiring, subscribed to a tracker double that pushes events."""
    async with socket_world() as world:
        world.tracker_events = True
        write_workflow(world.root / "WORKFLOW.md", limit=10, interval=HOUR_MS)
        async with dispatcher(world):
            await eventually(lambda: world.tracker_sinks, "subscription")
            yield world


@run_async
async def test_each_event_ticks_and_a_dropped_stream_is_resubscribed() -> None:
    async with evented() as world:
        world.tracker.put(issue(1))
        assert world.tracker_changed("id-1") == 1
        await eventually(lambda: started(world) == [("MT-1", None)], "dispatch on event")
        # No poll within the hour: MT-2 is found by a tick an event asked for.
        world.tracker.put(issue(2))
        assert world.tracker_changed("id-2") == 1
        await eventually(lambda: ("MT-2", None) in started(world), "second dispatch")
        # The tracker restarts: the stream drops, the dispatcher subscribes again and
        # ticks, since changes made meanwhile were not replayed.
        await world.restart_tracker()
        world.tracker.put(issue(3))
        await eventually(lambda: world.tracker_sinks, "resubscription")
        await eventually(lambda: ("MT-3", None) in started(world), "dispatch on resubscribe")


@run_async
async def test_metrics_and_status_count_the_events_received() -> None:
    async with evented() as world:
        world.tracker.put(issue(1))
        world.tracker_changed("id-1")
        world.tracker_changed("id-1")
        # Ticks: the subscription's, and at least one for the events (paced, so at most two).
        snap = await wait_status(
            world,
            lambda s: s["tracker_events"]["received"] == {"test": 2}
            and s["tracker_events"]["ticks_requested"] >= 2,
            "two events counted",
        )
        assert snap["tracker_events"]["subscribed"] is True
        dash = DashboardProcess(world.root / "ctl.sock", None, world.root / "dash.log")
        await asyncio.to_thread(dash.start)
        try:
            reply = await asyncio.to_thread(httpx.get, dash.base + "/metrics")
        finally:
            await asyncio.to_thread(dash.stop)
    assert 'symphony_tracker_events_total{source="test"} 2' in reply.text, reply.text
    assert "symphony_tracker_events_subscribed 1" in reply.text


@run_async
async def test_polling_alone_dispatches_when_the_tracker_pushes_no_events(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "symphonyd.dispatcher")
    async with socket_world() as world:
        write_workflow(world.root / "WORKFLOW.md", interval=200)
        async with dispatcher(world):
            world.tracker.put(issue(1))
            await eventually(lambda: started(world) == [("MT-1", None)], "dispatch by poll")
    lost = [r.getMessage() for r in caplog.records if "event=tracker_events" in r.getMessage()]
    assert lost and "outcome=lost" in lost[0] and "fallback=poll" in lost[0]
    assert len(lost) == 1  # logged once, not once per reconnect attempt


@run_async
async def test_the_subscription_stops_whenever_it_is_cancelled() -> None:
    """Cancelled while connecting, subscribing, reading, closing or waiting to retry, the
    task always ends (the hang that kept an earlier version of this feature out)."""
    async with socket_world() as world:
        for enabled in (True, False):
            world.tracker_events = enabled
            for step in range(60):
                task = asyncio.create_task(
                    follow_tracker_changes(world.path("tracker"), lambda: None, retry_s=0.001)
                )
                for _ in range(step % 15):
                    await asyncio.sleep(0)
                await asyncio.sleep(0.001 * (step // 15))
                task.cancel()
                done, _ = await asyncio.wait({task}, timeout=10)
                if not done:
                    task.print_stack()
                assert done, f"still running after cancel (events={enabled}, step={step})"
                assert task.cancelled()
