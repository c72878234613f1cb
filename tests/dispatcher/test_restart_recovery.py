"""A dispatcher that crashed comes back without dispatching any issue twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from symphonyd.core.api.launcher import RunOutcome
from symphonyd.core.errors import SymphonyError
from tests.dispatcher.doubles import issue, run_async, tokens
from tests.dispatcher.harness import Harness


@run_async
async def test_restart_readopts_live_runs_and_starts_nothing_twice(tmp_path: Path) -> None:
    h = Harness(tmp_path, max_concurrent_agents=2)
    h.tracker.put(issue(1), issue(2), issue(3))
    await h.orch.start()
    await h.orch.tick()
    await h.send("id-2", "tokens", tokens=tokens(400), session_id="thread-9", turn_count=3)
    before = {r.info.issue_id: r.info.run_id for r in h.launcher.live()}
    assert len(before) == 2

    orch = await h.restart()
    assert {k: e.run_id for k, e in orch.running.items()} == before
    await orch.tick()
    await orch.tick()
    assert len(h.launcher.started) == 2  # MT-1 waits: both slots are held by adopted runs
    assert all(len(h.launcher.live_for(i)) <= 1 for i in ("id-1", "id-2", "id-3"))
    # Events of adopted runs are followed; their old token totals are not counted again.
    await h.send("id-2", "tokens", tokens=tokens(450))
    assert orch.ledger.total_tokens == 50
    await h.finish("id-2", "succeeded")
    assert orch.retries["id-2"].kind == "continuation"


@run_async
async def test_runs_that_finished_while_down_are_processed_and_acked(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.tracker.put(issue(1), issue(2))
    await h.orch.start()
    await h.orch.tick()
    failed_run = h.run_id("id-1")
    h.launcher.finish(failed_run, RunOutcome("failed", error_code="turn_failed"))
    h.launcher.finish(h.run_id("id-2"), RunOutcome("blocked", error_code="turn_input_required"))
    h.launcher.events.clear()  # the dispatcher died before it saw them

    orch = await h.restart()
    assert orch.running == {}
    assert orch.retries["id-1"].attempt == 1 and orch.retries["id-1"].kind == "failure"
    assert orch.holds.get("id-2") is not None
    assert h.launcher.runs == {}  # both acknowledged
    await orch.tick()
    assert len(h.launcher.started) == 2


@run_async
async def test_duplicate_or_held_runs_are_stopped_on_restart(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.tracker.put(issue(1), issue(2))
    await h.orch.start()
    await h.orch.tick()
    await h.orch.stop("MT-2", uid=0)
    stopped_run = h.launcher.stopped[-1].run_id
    # Simulate the launcher never having received that stop, and a stray second run.
    h.launcher.runs[stopped_run].info = h.launcher.runs[stopped_run].info.__class__(
        **{**h.launcher.runs[stopped_run].info.__dict__, "outcome": None}
    )
    h.launcher.events.clear()
    dup = h.launcher.runs[h.run_id("id-1")].info
    await h.launcher.start_run(
        h.launcher.started[0].__class__(
            "stray-run", h.launcher.started[0].issue, None, h.launcher.started[0].workflow
        )
    )
    h.launcher.runs["stray-run"].info = dup.__class__(
        **{**dup.__dict__, "run_id": "stray-run", "started_at": "2026-03-01T13:00:00+00:00"}
    )
    orch = await h.restart()
    assert orch.running["id-1"].run_id == dup.run_id
    assert "id-2" not in orch.running
    assert {s.run_id for s in h.launcher.stopped if s.reason == "orphan"} == {
        stopped_run,
        "stray-run",
    }
    assert all(len(h.launcher.live_for(i)) <= 1 for i in ("id-1", "id-2"))


@run_async
async def test_restart_refuses_to_start_blind(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.launcher.fail = True
    with pytest.raises(SymphonyError):
        await h.orch.start()


@run_async
async def test_adopted_run_of_a_now_terminal_issue_is_stopped_and_cleaned(tmp_path: Path) -> None:
    h = Harness(tmp_path, handoff_grace_ms=0)  # the stop itself is what is tested
    h.tracker.put(issue(1))
    await h.orch.start()
    await h.orch.tick()
    h.tracker.move("id-1", "Done")
    orch = await h.restart()
    assert "id-1" in orch.running  # never ended by startup cleanup while it is live
    await orch.tick()
    assert [(s.reason, s.cleanup_workspace) for s in h.launcher.stopped] == [("terminal", True)]


@run_async
async def test_lost_stop_is_retried_until_the_launcher_takes_it(tmp_path: Path) -> None:
    h = Harness(tmp_path, handoff_grace_ms=0)  # the stop itself is what is tested
    h.tracker.put(issue(1))
    await h.orch.start()
    await h.orch.tick()
    h.tracker.move("id-1", "Backlog")
    h.launcher.fail = True
    await h.orch.tick()
    assert h.launcher.live_for("id-1") and h.orch.pending_stops
    h.launcher.fail = False
    await h.orch.tick()
    assert not h.launcher.live_for("id-1") and not h.orch.pending_stops
