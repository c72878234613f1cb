"""Seed 001: pause/resume, automatic pauses, stop/release, budgets and blocked runs."""

from __future__ import annotations

import os
import tomllib
from datetime import timedelta
from pathlib import Path

import pytest

from symphonyd.core.errors import SymphonyError
from symphonyd.dispatcher.snapshot import build_issue_view, build_snapshot
from symphonyd.dispatcher.store import STATE_FILE
from tests.dispatcher.doubles import T0, issue, run_async, tokens
from tests.dispatcher.harness import Harness


def pause_codes(h: Harness) -> list[str]:
    return [r.code for r in build_snapshot(h.orch).pause.reasons]


@run_async
async def test_pause_persists_and_blocks_new_runs_but_not_inflight(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.tracker.put(issue(1))
    await h.orch.start()
    await h.orch.tick()
    message = await h.orch.pause("deploy window", uid=1234)
    assert "uid 1234" in message
    h.tracker.put(issue(2))
    await h.orch.tick()
    assert [r.issue.identifier for r in h.launcher.started] == ["MT-1"]
    assert "id-1" in h.orch.running and h.launcher.stopped == []
    [reason] = build_snapshot(h.orch).pause.reasons
    assert (reason.code, reason.message, reason.by_uid) == ("operator", "deploy window", 1234)
    assert reason.since == "2026-03-01T12:00:00Z"
    saved = tomllib.loads((tmp_path / STATE_FILE).read_text())
    assert saved["operator_pause"]["reason"] == "deploy window"
    assert oct(os.stat(tmp_path / STATE_FILE).st_mode & 0o777) == "0o600"

    await h.restart()  # a crash does not forget the pause
    await h.orch.tick()
    assert pause_codes(h) == ["operator"]
    assert len(h.launcher.started) == 1

    await h.orch.resume(uid=1234)
    await h.orch.tick()
    assert [r.issue.identifier for r in h.launcher.started] == ["MT-1", "MT-2"]
    assert h.audit.types().count("pause") == 1 and h.audit.types().count("resume") == 1
    pause_rec = next(r for r in h.audit.records if r.type == "pause")
    assert pause_rec.payload == {"reason": "deploy window", "operator_uid": 1234}


@run_async
async def test_paused_retries_wait_instead_of_starting(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.tracker.put(issue(1))
    await h.orch.start()
    await h.orch.tick()
    await h.finish("id-1", "succeeded")
    await h.orch.pause("hold on", uid=0)
    h.clock.advance(1_000)
    await h.orch.fire_due_retries()
    assert len(h.launcher.started) == 1
    assert "paused" in (h.orch.retries["id-1"].error or "")
    await h.orch.resume(uid=0)
    h.clock.advance(30_000)
    await h.orch.fire_due_retries()
    assert len(h.launcher.started) == 2


@run_async
async def test_pause_needs_a_reason(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    await h.orch.start()
    with pytest.raises(SymphonyError) as err:
        await h.orch.pause(" \n\t ", uid=1)
    assert err.value.error_code == "invalid_params"
    long = await h.orch.pause("x\x1b[31m" + "y" * 2000, uid=1)
    assert "\x1b" not in long
    assert len(build_snapshot(h.orch).pause.reasons[0].message) == 500


@run_async
async def test_daily_budget_pauses_until_next_utc_day(tmp_path: Path) -> None:
    h = Harness(tmp_path, tokens_per_day=1_000)
    h.tracker.put(issue(1), issue(2))
    await h.orch.start()
    await h.orch.tick()
    await h.send("id-1", "tokens", tokens=tokens(600))
    await h.send("id-2", "tokens", tokens=tokens(500))
    await h.finish("id-2", "failed")
    h.tracker.put(issue(3))
    await h.orch.tick()
    snap = build_snapshot(h.orch)
    [reason] = snap.pause.reasons
    assert reason.code == "daily_budget" and reason.until == "2026-03-02T00:00:00Z"
    assert "id-1" in h.orch.running  # in-flight runs go on
    assert len(h.launcher.started) == 2

    await h.restart()  # the day's spend survives a crash
    await h.orch.tick()
    assert "daily_budget" in pause_codes(h)

    h.clock.advance(12 * 3600 * 1000)  # past midnight UTC
    await h.orch.tick()
    assert pause_codes(h) == []
    assert "MT-3" in [r.issue.identifier for r in h.launcher.started]
    assert build_snapshot(h.orch).budgets.day == "2026-03-02"


@run_async
async def test_issue_budget_stops_run_without_retry_and_survives_restart(tmp_path: Path) -> None:
    h = Harness(tmp_path, tokens_per_issue=500)
    h.tracker.put(issue(1))
    await h.orch.start()
    await h.orch.tick()
    await h.send("id-1", "tokens", tokens=tokens(300))
    assert h.launcher.stopped == []
    await h.send("id-1", "tokens", tokens=tokens(520))
    assert [s.reason for s in h.launcher.stopped] == ["budget"]
    await h.deliver()
    assert h.orch.retries == {} and h.orch.claimed == set()
    assert "budget_hit" in h.audit.types()
    view = build_issue_view(h.orch, "MT-1")
    assert view.status == "budget" and view.tokens_used == 520

    await h.restart()
    h.tracker.move("id-1", "In Progress", updated=T0 + timedelta(hours=1))
    await h.orch.tick()
    await h.orch.tick()
    assert len(h.launcher.started) == 1  # a tracker change does not lift a budget hold
    await h.orch.release("MT-1", uid=7)
    await h.orch.tick()
    assert len(h.launcher.started) == 2
    assert build_issue_view(h.orch, "MT-1").tokens_used == 0


@run_async
async def test_stop_holds_issue_until_tracker_change(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.tracker.put(issue(1, updated=T0))
    await h.orch.start()
    await h.orch.tick()
    await h.orch.stop("MT-1", uid=1000)
    assert [(s.reason, s.cleanup_workspace) for s in h.launcher.stopped] == [("operator", False)]
    await h.deliver()
    for _ in range(3):
        await h.orch.tick()
    assert len(h.launcher.started) == 1
    view = build_issue_view(h.orch, "MT-1")
    assert view.status == "stopped" and view.hold is not None and view.hold.by_uid == 1000
    await h.restart()
    await h.orch.tick()
    assert len(h.launcher.started) == 1
    h.tracker.put(issue(1, updated=T0 + timedelta(minutes=5)))  # someone edits the issue
    await h.orch.tick()
    assert len(h.launcher.started) == 2
    lifted = [r for r in h.audit.records if r.type == "release" and r.issue_id == "id-1"]
    assert lifted and "operator_uid" not in lifted[-1].payload  # no operator: the tracker


@run_async
async def test_stop_a_retrying_issue_and_release_it(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.tracker.put(issue(1))
    await h.orch.start()
    await h.orch.tick()
    await h.finish("id-1", "failed")
    await h.orch.stop("MT-1", uid=5)
    assert h.orch.retries == {} and h.orch.claimed == set()
    h.clock.advance(60_000)
    await h.orch.fire_due_retries()
    await h.orch.tick()
    assert len(h.launcher.started) == 1
    await h.orch.release("MT-1", uid=5)
    await h.orch.tick()
    assert len(h.launcher.started) == 2
    [released] = [r for r in h.audit.records if r.type == "release"]
    assert released.issue_id == "id-1" and released.payload["operator_uid"] == 5
    assert "resume" not in h.audit.types()  # one issue released, not dispatch resumed


@run_async
async def test_stop_and_release_unknown_identifiers_fail_clearly(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    await h.orch.start()
    with pytest.raises(SymphonyError) as err:
        await h.orch.stop("MT-404", uid=1)
    assert err.value.error_code == "issue_not_found"
    with pytest.raises(SymphonyError) as err:
        await h.orch.release("MT-404", uid=1)
    assert err.value.error_code == "not_held"
    with pytest.raises(SymphonyError) as err:
        build_issue_view(h.orch, "MT-404")
    assert err.value.error_code == "issue_not_found"


@run_async
async def test_input_required_becomes_a_visible_blocked_hold(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.tracker.put(issue(1, updated=T0))
    await h.orch.start()
    await h.orch.tick()
    await h.send("id-1", "turn_input_required", message="agent asks: which branch?")
    await h.finish("id-1", "failed", error_code="turn_input_required", error="needs input")
    snap = build_snapshot(h.orch)
    [held] = snap.held
    assert held.kind == "blocked" and "turn_input_required" in held.reason
    assert snap.retrying == [] and snap.running == []
    h.clock.advance(600_000)
    await h.orch.fire_due_retries()
    await h.orch.tick()
    assert len(h.launcher.started) == 1
    view = build_issue_view(h.orch, "MT-1")
    assert view.status == "blocked"
    assert [e.event for e in view.recent_events][-2:] == ["turn_input_required", "run_finished"]
    h.tracker.move("id-1", "In Progress", updated=T0 + timedelta(hours=1))
    await h.orch.tick()
    assert len(h.launcher.started) == 2


@run_async
async def test_audit_outage_fails_closed_and_recovers(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.tracker.put(issue(1))
    await h.orch.start()
    h.audit.fail = True
    await h.orch.tick()
    assert h.launcher.started == [] and pause_codes(h) == ["audit_unavailable"]
    await h.orch.pause("investigating", uid=3)  # still accepted, audited later
    h.audit.fail = False
    await h.orch.resume(uid=3)
    await h.orch.tick()
    assert len(h.launcher.started) == 1
    types = h.audit.types()
    assert types.index("pause") < types.index("resume") < types.index("dispatch")


@run_async
async def test_audit_failure_on_retry_requeues(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.tracker.put(issue(1))
    await h.orch.start()
    await h.orch.tick()
    await h.finish("id-1", "succeeded")
    h.clock.advance(1_000)
    h.audit.fail = True
    await h.orch.fire_due_retries()
    assert len(h.launcher.started) == 1
    assert h.orch.retries["id-1"].error == "audit writer unreachable"


@run_async
async def test_low_disk_and_tracker_outage_pause_automatically(tmp_path: Path) -> None:
    h = Harness(tmp_path, workspace_root=str(tmp_path), min_free_disk_bytes=10**9)
    h.tracker.put(issue(1))
    await h.orch.start()
    h.disk.free = 10**6
    await h.orch.tick()
    assert pause_codes(h) == ["low_disk"] and h.launcher.started == []
    h.disk.free = 10**10
    h.tracker.fail = True
    await h.orch.tick()
    assert pause_codes(h) == ["tracker_unavailable"]
    health = {d.daemon: d.ok for d in build_snapshot(h.orch).daemons}
    assert health["tracker"] is False and health["audit"] is True
    h.tracker.fail = False
    await h.orch.tick()
    assert pause_codes(h) == [] and len(h.launcher.started) == 1


@run_async
async def test_broken_workflow_keeps_last_good_config_and_says_so(tmp_path: Path) -> None:
    h = Harness(tmp_path, max_concurrent_agents=1)
    h.tracker.put(issue(1), issue(2), issue(3))
    await h.orch.start()
    await h.orch.tick()
    good = build_snapshot(h.orch).config.fingerprint
    h.config.broken = "invalid YAML front matter at line 3"
    await h.orch.reload_config()
    await h.finish(next(iter(h.orch.running)), "succeeded")
    h.clock.advance(1_000)
    await h.orch.tick()
    snap = build_snapshot(h.orch)
    assert not snap.config.ok and snap.config.fingerprint == good
    assert snap.config.error is not None and "line 3" in snap.config.error
    assert [r.code for r in snap.pause.reasons] == ["invalid_config"]
    assert snap.max_concurrent_agents == 1  # still the last good value
    rejected = [r for r in h.audit.records if r.type == "config_reload" and not r.payload["ok"]]
    assert len(rejected) == 1  # said once, not every tick
    assert rejected[0].payload["fingerprint"] == good
    assert len(h.launcher.started) == 1

    h.config.broken = None
    h.config.settings = h.config.settings.__class__(max_concurrent_agents=3)
    await h.orch.tick()
    snap = build_snapshot(h.orch)
    assert snap.config.ok and snap.config.fingerprint != good and snap.pause.reasons == []
    # MT-3 waits on its continuation retry; the two others start under the new limit.
    assert snap.max_concurrent_agents == 3 and len(h.launcher.started) == 3
    assert h.launcher.started[-1].workflow.fingerprint == snap.config.fingerprint


@run_async
async def test_invalid_config_at_startup_fails_start(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.config.broken = "missing tracker.kind"
    with pytest.raises(SymphonyError):
        await h.orch.start()


@pytest.mark.parametrize(
    "content",
    [
        "format = 1\n[holds\n",  # not TOML
        'format = 1\n[issue_tokens_at]\n"id-1" = 5\n',  # a time that is not a string
    ],
)
def test_unreadable_state_file_starts_paused(tmp_path: Path, content: str) -> None:
    @run_async
    async def go() -> None:
        (tmp_path / STATE_FILE).write_text(content)
        h = Harness(tmp_path)
        h.tracker.put(issue(1))
        await h.orch.start()
        await h.orch.tick()
        assert pause_codes(h) == ["state_unreadable"] and h.launcher.started == []
        assert (tmp_path / "dispatcher-state.toml.unreadable").exists()
        await h.orch.resume(uid=0)
        await h.orch.tick()
        assert len(h.launcher.started) == 1

    go()
