"""SPEC 17.4: dispatch order, eligibility, reconciliation, retries, stalls and snapshots."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from symphonyd.core.api.launcher import RunOutcome
from symphonyd.core.api.shared import TokenTotals
from symphonyd.core.scheduling import NO_SLOTS_ERROR
from symphonyd.dispatcher.snapshot import build_snapshot
from tests.dispatcher.doubles import T0, issue, run_async, tokens
from tests.dispatcher.harness import Harness


def started_ids(h: Harness) -> list[str]:
    return [r.issue.identifier for r in h.launcher.started]


@run_async
async def test_dispatch_order_is_priority_then_oldest_then_identifier(tmp_path: Path) -> None:
    h = Harness(tmp_path, max_concurrent_agents=10)
    h.tracker.put(
        issue(1, priority=None, created=T0 - timedelta(days=9)),
        issue(2, priority=3, created=T0 - timedelta(days=1)),
        issue(3, priority=1, created=T0 - timedelta(days=1)),
        issue(4, priority=3, created=T0 - timedelta(days=5)),
        issue(5, priority=7, created=T0 - timedelta(days=20)),
        issue(6, priority=1, created=T0 - timedelta(days=1)),
    )
    await h.orch.start()
    await h.orch.tick()
    # 7 is outside 1..4 so it sorts with null; ties on date fall back to the identifier.
    assert started_ids(h) == ["MT-3", "MT-6", "MT-4", "MT-2", "MT-5", "MT-1"]


@run_async
async def test_only_slots_worth_of_best_issues_start(tmp_path: Path) -> None:
    h = Harness(tmp_path, max_concurrent_agents=2)
    h.tracker.put(issue(1, priority=4), issue(2, priority=2), issue(3, priority=1))
    await h.orch.start()
    await h.orch.tick()
    assert started_ids(h) == ["MT-3", "MT-2"]
    await h.orch.tick()
    assert len(h.launcher.started) == 2


@run_async
async def test_undispatchable_and_unlabelled_issues_are_not_eligible(tmp_path: Path) -> None:
    h = Harness(tmp_path, required_labels=("Agent-OK",))
    h.tracker.put(
        issue(1, labels=("agent-ok",), dispatchable=False),
        issue(2, labels=("other",)),
        issue(3, labels=("agent-ok", "x")),  # adapters lowercase labels (SPEC 11.3)
    )
    await h.orch.start()
    await h.orch.tick()
    assert started_ids(h) == ["MT-3"]


@run_async
async def test_per_state_limits_apply(tmp_path: Path) -> None:
    h = Harness(
        tmp_path,
        max_concurrent_agents=5,
        max_concurrent_agents_by_state={"todo": 1},
    )
    h.tracker.put(issue(1), issue(2), issue(3, "In Progress"), issue(4, "In Progress"))
    await h.orch.start()
    await h.orch.tick()
    # issue(n) is created n minutes before issue(n - 1): MT-2 is the older Todo.
    assert sorted(started_ids(h)) == ["MT-2", "MT-3", "MT-4"]


@run_async
async def test_active_refresh_updates_running_entry(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.tracker.put(issue(1))
    await h.orch.start()
    await h.orch.tick()
    h.tracker.move("id-1", "In Progress")
    await h.orch.tick()
    assert h.orch.running["id-1"].issue.state == "In Progress"
    assert h.orch.running_by_state == {"in progress": 1}
    assert h.launcher.stopped == []


@run_async
async def test_non_active_state_stops_without_cleanup(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.tracker.put(issue(1))
    await h.orch.start()
    await h.orch.tick()
    h.tracker.move("id-1", "Backlog")
    await h.orch.tick()
    # The hand-off grace first (design 0713): the run may still end on its own.
    assert h.launcher.stopped == [] and "id-1" in h.orch.running
    h.clock.advance(20_000)
    await h.orch.tick()
    assert [(s.reason, s.cleanup_workspace) for s in h.launcher.stopped] == [("inactive", False)]
    assert "id-1" not in h.orch.claimed and "id-1" not in h.orch.running
    assert h.launcher.removed == []


@run_async
async def test_unroutable_active_issue_stops_without_cleanup(tmp_path: Path) -> None:
    h = Harness(tmp_path, required_labels=("agent",))
    h.tracker.put(issue(1, labels=("agent",)))
    await h.orch.start()
    await h.orch.tick()
    h.tracker.put(issue(1, labels=()))
    await h.orch.tick()
    assert [(s.reason, s.cleanup_workspace) for s in h.launcher.stopped] == [("unroutable", False)]


@run_async
async def test_terminal_state_stops_and_cleans_workspace(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.tracker.put(issue(1))
    await h.orch.start()
    await h.orch.tick()
    h.tracker.move("id-1", "Done")
    await h.orch.tick()
    h.clock.advance(19_999)
    await h.orch.tick()
    assert h.launcher.stopped == []  # still inside the hand-off grace
    h.clock.advance(1)
    await h.orch.tick()
    assert [(s.reason, s.cleanup_workspace) for s in h.launcher.stopped] == [("terminal", True)]
    assert h.launcher.removed == ["MT-1"]
    await h.deliver()  # the cancelled run_finished of a run we ended is only acknowledged
    assert h.orch.retries == {} and h.orch.claimed == set()


@run_async
async def test_a_run_that_hands_off_ends_on_its_own_inside_the_grace(tmp_path: Path) -> None:
    # The agent moves its issue to review and its turn ends: no stop, no cancel (0713).
    h = Harness(tmp_path)
    h.tracker.put(issue(1))
    await h.orch.start()
    await h.orch.tick()
    h.tracker.move("id-1", "Human Review")
    await h.orch.tick()
    h.clock.advance(5_000)
    await h.finish("id-1", "succeeded")
    h.clock.advance(60_000)
    await h.orch.tick()
    assert h.launcher.stopped == []
    assert "id-1" not in h.orch.running


@run_async
async def test_an_issue_back_in_an_active_state_ends_its_grace(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.tracker.put(issue(1))
    await h.orch.start()
    await h.orch.tick()
    h.tracker.move("id-1", "Backlog")
    await h.orch.tick()
    h.tracker.move("id-1", "Todo")
    h.clock.advance(15_000)
    await h.orch.tick()
    h.tracker.move("id-1", "Backlog")
    h.clock.advance(15_000)
    await h.orch.tick()  # a new grace started here, 15 s after the first one began
    assert h.launcher.stopped == []
    h.clock.advance(20_000)
    await h.orch.tick()
    assert [s.reason for s in h.launcher.stopped] == ["inactive"]


@run_async
async def test_reconcile_with_nothing_running_makes_no_refresh_call(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    await h.orch.start()
    h.tracker.calls.clear()
    await h.orch.tick()
    assert [c[0] for c in h.tracker.calls] == ["states"]


@run_async
async def test_refresh_failure_keeps_workers(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.tracker.put(issue(1))
    await h.orch.start()
    await h.orch.tick()
    h.tracker.fail = True
    await h.orch.tick()
    assert "id-1" in h.orch.running and h.launcher.stopped == []


@run_async
async def test_normal_exit_schedules_continuation_attempt_one(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.tracker.put(issue(1))
    await h.orch.start()
    await h.orch.tick()
    await h.finish("id-1", "succeeded")
    retry = h.orch.retries["id-1"]
    assert (retry.attempt, retry.kind, retry.error) == (1, "continuation", None)
    assert retry.due_ms - h.clock.monotonic_ms() == 1_000
    assert "id-1" in h.orch.completed and "id-1" in h.orch.claimed
    h.clock.advance(1_000)
    await h.orch.fire_due_retries()
    assert [r.attempt for r in h.launcher.started] == [None, 1]


@run_async
async def test_failures_back_off_exponentially_up_to_the_cap(tmp_path: Path) -> None:
    h = Harness(tmp_path, max_retry_backoff_ms=35_000)
    h.tracker.put(issue(1))
    await h.orch.start()
    await h.orch.tick()
    delays = []
    for _ in range(4):
        await h.finish("id-1", "failed", error_code="turn_failed", error="boom")
        retry = h.orch.retries["id-1"]
        delays.append((retry.attempt, retry.due_ms - h.clock.monotonic_ms()))
        assert retry.error is not None and "turn_failed" in retry.error
        h.clock.advance(retry.due_ms - h.clock.monotonic_ms())
        await h.orch.fire_due_retries()
    assert delays == [(1, 10_000), (2, 20_000), (3, 35_000), (4, 35_000)]
    assert [r.attempt for r in h.launcher.started] == [None, 1, 2, 3, 4]


@run_async
async def test_retry_rows_carry_attempt_due_identifier_and_error(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.tracker.put(issue(1))
    await h.orch.start()
    await h.orch.tick()
    await h.finish("id-1", "timed_out")
    snap = build_snapshot(h.orch)
    [row] = snap.retrying
    assert row.issue_identifier == "MT-1" and row.attempt == 1
    assert row.due_at == "2026-03-01T12:00:10Z"
    assert row.error == "worker exited: timed_out"
    assert row.issue_url == "https://tracker.test/MT-1"


@run_async
async def test_retry_timer_releases_missing_terminal_and_inactive(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.tracker.put(issue(1), issue(2), issue(3))
    await h.orch.start()
    await h.orch.tick()
    for n in (1, 2, 3):
        await h.finish(f"id-{n}", "failed")
    del h.tracker.issues["id-1"]
    h.tracker.move("id-2", "Done")
    h.tracker.move("id-3", "Backlog")
    h.clock.advance(10_000)
    await h.orch.fire_due_retries()
    assert h.orch.claimed == set() and h.orch.retries == {}
    assert h.launcher.removed == ["MT-2"]
    assert len(h.launcher.started) == 3


@run_async
async def test_slot_exhaustion_requeues_with_explicit_error(tmp_path: Path) -> None:
    h = Harness(tmp_path, max_concurrent_agents=1)
    h.tracker.put(issue(1, priority=1), issue(2, priority=2))
    await h.orch.start()
    await h.orch.tick()
    await h.finish("id-1", "failed")
    await h.orch.tick()  # MT-2 takes the only slot
    h.clock.advance(10_000)
    await h.orch.fire_due_retries()
    retry = h.orch.retries["id-1"]
    assert (retry.attempt, retry.error, retry.kind) == (2, NO_SLOTS_ERROR, "requeue")
    assert retry.due_ms - h.clock.monotonic_ms() == 20_000


@run_async
async def test_stalled_run_is_stopped_and_retried(tmp_path: Path) -> None:
    h = Harness(tmp_path, stall_timeout_ms=60_000)
    h.tracker.put(issue(1), issue(2))
    await h.orch.start()
    await h.orch.tick()
    stalled_run = h.run_id("id-1")
    h.clock.advance(50_000)
    await h.send("id-2", "notification", message="still working")
    h.clock.advance(20_000)
    await h.orch.tick()
    assert [(s.reason, s.cleanup_workspace) for s in h.launcher.stopped] == [("stalled", False)]
    assert h.launcher.stopped[0].run_id == stalled_run
    retry = h.orch.retries["id-1"]
    assert retry.kind == "failure" and retry.attempt == 1 and "stalled" in (retry.error or "")
    assert "id-2" in h.orch.running


@run_async
async def test_stall_detection_off_when_timeout_not_positive(tmp_path: Path) -> None:
    h = Harness(tmp_path, stall_timeout_ms=0)
    h.tracker.put(issue(1))
    await h.orch.start()
    await h.orch.tick()
    h.clock.advance(10**9)
    await h.orch.tick()
    assert h.launcher.stopped == []


@run_async
async def test_snapshot_has_rows_totals_and_rate_limits(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.tracker.put(issue(1), issue(2))
    await h.orch.start()
    await h.orch.tick()
    await h.send("id-1", "tokens", tokens=tokens(100), session_id="t-1", turn_count=2)
    await h.send("id-1", "tokens", tokens=tokens(100))  # same absolute total: no double count
    await h.send("id-1", "rate_limits", rate_limits={"primary": {"used_percent": 12}})
    await h.send("id-2", "tokens", tokens=TokenTotals(30, 20, 50))
    h.clock.advance(5_000)
    await h.finish("id-2", "failed")
    snap = build_snapshot(h.orch)
    assert snap.counts.running == 1 and snap.counts.retrying == 1
    [row] = snap.running
    assert (row.issue_identifier, row.session_id, row.turn_count) == ("MT-1", "t-1", 2)
    assert row.tokens.total_tokens == 100 and row.last_event == "rate_limits"
    assert snap.codex_totals.total_tokens == 150
    assert snap.codex_totals.input_tokens == 80 and snap.codex_totals.output_tokens == 70
    assert snap.codex_totals.seconds_running == 10.0  # 5 s ended + 5 s live
    assert snap.rate_limits == {"primary": {"used_percent": 12}}
    assert snap.budgets.tokens_today == 150


@run_async
async def test_launcher_rejection_becomes_failure_retry(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.tracker.put(issue(1))
    await h.orch.start()
    h.launcher.reject = True
    await h.orch.tick()
    retry = h.orch.retries["id-1"]
    assert retry.error == "failed to spawn agent: sandbox_failed" and retry.attempt == 1
    assert h.orch.running == {}


@run_async
async def test_startup_cleans_terminal_workspaces(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.tracker.put(issue(1, "Done"), issue(2, "Closed"), issue(3))
    await h.orch.start()
    assert sorted(h.launcher.removed) == ["MT-1", "MT-2"]


@run_async
async def test_startup_cleanup_failure_does_not_block_start(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.tracker.fail = True
    await h.orch.start()
    h.tracker.fail = False
    h.tracker.put(issue(1))
    await h.orch.tick()
    assert started_ids(h) == ["MT-1"]


@run_async
async def test_agent_time_leaves_out_hooks(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.tracker.put(issue(1), issue(2))
    await h.orch.start()
    await h.orch.tick()
    h.clock.advance(7_000)  # after_create and before_run: no agent yet, no agent time
    assert build_snapshot(h.orch).codex_totals.seconds_running == 0.0
    await h.send("id-1", "session_started", session_id="t-1")
    h.clock.advance(3_000)
    assert build_snapshot(h.orch).codex_totals.seconds_running == 3.0  # live, id-1 only
    # run_finished after after_run: the launcher's own measure of the agent replaces ours.
    await h.send("id-1", "run_finished", agent_seconds=2.5, outcome=RunOutcome("succeeded"))
    h.clock.advance(4_000)
    assert build_snapshot(h.orch).codex_totals.seconds_running == 2.5
