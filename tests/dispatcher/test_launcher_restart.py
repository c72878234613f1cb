"""A launcher restart loses its run table; the dispatcher notices at resync (0750).

Driven through the dispatcher's production wiring (``assemble`` + ``loops``, its event
stream follower and IPC clients) against a launcher double on a real Unix socket that goes
away and comes back, with or without its runs.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from symphonyd.core.api.launcher import RunEvent, RunOutcome
from tests.dispatcher.doubles import issue, run_async
from tests.dispatcher.harness import Harness
from tests.dispatcher.journal_capture import journal_capture
from tests.dispatcher.socket_doubles import eventually, socket_world
from tests.dispatcher.test_daemon_sockets import dispatcher, started, status, write_workflow

# No stall detection: before the fix a lost run stayed "running" for good.
NO_STALL = "codex:\n  stall_timeout_ms: 0\n"
BACKOFF_MS = 4000  # long enough to see the retries waiting, even on a loaded machine


@run_async
async def test_runs_a_restarted_launcher_lost_are_retried_once_with_backoff() -> None:
    async with socket_world() as world:
        write_workflow(world.root / "WORKFLOW.md", backoff=BACKOFF_MS, extra=NO_STALL)
        world.tracker.put(issue(1), issue(2))
        with journal_capture() as journal:
            async with dispatcher(world) as orch:
                await eventually(lambda: len(world.launcher.started) == 2, "two runs")
                await eventually(lambda: world.subscriptions == 1, "event stream")
                old = {r.issue.id: r.run_id for r in world.launcher.started}
                world.emit(RunEvent(old["id-1"], "id-1", "session_started",
                                    "2026-03-01T12:00:00Z", session_id="thread-1"))  # fmt: skip
                await eventually(lambda: orch.running["id-1"].session_id == "thread-1", "event")

                await world.restart_launcher()
                # Resync finds neither run: both slots are freed, each issue waits for a
                # failure retry with backoff and stays claimed, so nothing starts it early.
                await eventually(lambda: set(orch.retries) == {"id-1", "id-2"}, "retries")
                assert orch.running == {}
                for retry in orch.retries.values():
                    assert retry.kind == "failure" and retry.attempt == 1
                    assert retry.error and "launcher no longer has this run" in retry.error
                assert world.launcher.started == []
                snap = await status(world)
                assert {r["issue_identifier"] for r in snap["retrying"]} == {"MT-1", "MT-2"}

                await eventually(lambda: len(world.launcher.started) == 2, "new attempts")
                assert sorted(started(world)) == [("MT-1", 1), ("MT-2", 1)]
                # A run_finished for a lost run that turns up late changes nothing.
                world.emit(RunEvent(old["id-1"], "id-1", "run_finished", "2026-03-01T12:01:00Z",
                                    outcome=RunOutcome("failed")))  # fmt: skip
                await asyncio.sleep(0.6)  # several ticks
                assert sorted(started(world)) == [("MT-1", 1), ("MT-2", 1)]
                new = {r.issue.id: r.run_id for r in world.launcher.started}
                assert {k: e.run_id for k, e in orch.running.items()} == new
                assert orch.retries == {}

    lost = [r for r in world.audit.records if r.type == "run_finished"]
    assert sorted(r.payload["run_id"] for r in lost) == sorted(old.values())
    assert all(r.payload["error_code"] == "run_lost" for r in lost)
    [mt1] = [r for r in lost if r.issue_id == "id-1"]
    assert mt1.session_id == "thread-1" and mt1.issue_identifier == "MT-1"
    # The new attempts were audited (dispatch) after the lost runs were.
    types = world.audit.types()
    assert types.index("run_finished") < len(types) - 1 - types[::-1].index("dispatch")
    [line] = journal.events("run_lost", ISSUE_IDENTIFIER="MT-1")
    assert line["SESSION_ID"] == "thread-1" and line["PRIORITY"] == "4"
    [line] = journal.events("retry", ISSUE_ID="id-1", KIND="failure")
    assert line["DUE_IN_MS"] == str(BACKOFF_MS) and line["SESSION_ID"] == "thread-1"


@run_async
async def test_a_run_that_finished_during_a_reconnect_is_not_taken_for_lost() -> None:
    async with socket_world() as world:
        write_workflow(world.root / "WORKFLOW.md", extra=NO_STALL)
        world.tracker.put(issue(1), issue(2))
        async with dispatcher(world) as orch:
            await eventually(lambda: len(world.launcher.started) == 2, "two runs")
            await eventually(lambda: world.subscriptions == 1, "event stream")
            runs = {r.issue.id: r.run_id for r in world.launcher.started}
            # The stream drops; MT-2 ends while nobody listens; the launcher keeps its table.
            world.launcher.finish(runs["id-2"], RunOutcome("succeeded"))
            world.launcher.events.clear()
            await world.restart_launcher(lose_runs=False)
            await eventually(lambda: ("MT-2", 1) in started(world), "continuation of MT-2")
            assert orch.running["id-1"].run_id == runs["id-1"]  # still the same live run
            assert [r.issue.identifier for r in world.launcher.started].count("MT-1") == 1
        assert not any(r.type == "run_finished" for r in world.audit.records)
        assert runs["id-2"] in world.launcher.acked


@run_async
async def test_a_failed_resync_is_retried_by_the_next_tick(tmp_path: Path) -> None:
    h = Harness(tmp_path, stall_timeout_ms=0)
    h.tracker.put(issue(1))
    await h.orch.start()
    await h.orch.tick()
    assert "id-1" in h.orch.running
    h.launcher.fail = True
    await h.orch.resync_runs()  # the stream came back, but list_runs failed
    h.launcher.runs.clear()  # it was a restart
    h.launcher.fail = False
    await h.orch.tick()
    assert h.orch.running == {} and h.orch.retries["id-1"].kind == "failure"
    assert h.launcher.started[-1].issue.id == "id-1" and len(h.launcher.started) == 1
