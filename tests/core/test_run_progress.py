"""The one rule both daemons fold run events with (docs/design/0712)."""

from __future__ import annotations

from dataclasses import fields

from symphonyd.core.api.dispatcher import RunningRow
from symphonyd.core.api.launcher import RunEvent, RunInfo, RunOutcome
from symphonyd.core.api.shared import TokenTotals
from symphonyd.core.run_progress import RunProgress

AT = "2026-03-01T12:00:00.000Z"
# Fields of the wire shapes that say who the run is, not what it has done.
IDENTITY = {
    "run_id", "issue_id", "issue_identifier", "issue_url", "issue_title", "state",
    "attempt", "started_at", "host",
}  # fmt: skip


def event(name: str = "notification", **kw: object) -> RunEvent:
    return RunEvent("r1", "i1", name, kw.pop("at", AT), **kw)  # type: ignore[arg-type]


def test_fields_an_event_leaves_out_keep_their_value() -> None:
    p = RunProgress()
    p.apply(event("session_started", session_id="t-1", turn_count=1, message="hi", pid=42))
    p.apply(event("turn_completed", at="2026-03-01T12:00:05.000Z", session_id="", pid=0))
    assert (p.session_id, p.turn_count, p.last_message, p.pid) == ("t-1", 1, "hi", 42)
    assert (p.last_event, p.last_event_at) == ("turn_completed", "2026-03-01T12:00:05.000Z")


def test_token_totals_never_go_down_and_each_token_is_added_once() -> None:
    p = RunProgress()
    assert p.apply(event(tokens=TokenTotals(10, 5, 15))) == TokenTotals(10, 5, 15)
    assert p.apply(event(tokens=TokenTotals(10, 5, 15))) == TokenTotals(0, 0, 0)
    assert p.apply(event(tokens=TokenTotals(4, 9, 13))) == TokenTotals(0, 4, 0)
    assert p.tokens == TokenTotals(10, 9, 15)
    assert p.apply(event()) == TokenTotals(0, 0, 0)  # no totals: nothing added


def test_only_run_finished_sets_the_outcome() -> None:
    p = RunProgress()
    p.apply(event("turn_failed", outcome=RunOutcome("failed")))
    assert p.outcome is None
    p.apply(event("run_finished", outcome=RunOutcome("succeeded"), agent_seconds=2.5))
    assert p.outcome == RunOutcome("succeeded") and p.agent_seconds == 2.5


def test_a_receiver_may_record_its_own_time() -> None:
    p = RunProgress()
    p.apply(event(at="not a time"), at="2026-03-01T12:00:09Z")
    assert p.last_event_at == "2026-03-01T12:00:09Z"


def test_wire_shapes_carry_the_record_by_name_and_miss_none_of_it() -> None:
    p = RunProgress()
    p.workspace_path = "/ws/MT-1"
    p.apply(event("run_finished", session_id="t-1", turn_count=3, pid=7, message="done",
                  tokens=TokenTotals(1, 2, 3), outcome=RunOutcome("succeeded")))  # fmt: skip
    info = RunInfo("r1", "i1", "MT-1", None, AT, **p.fields_for(RunInfo))
    back = RunProgress.of(info)
    assert back == RunProgress(**{**p.__dict__, "agent_seconds": None})
    mine = {f.name for f in fields(RunProgress)}
    for shape in (RunInfo, RunningRow):
        # A progress field added to a wire shape but not to the record would go unfilled.
        assert {f.name for f in fields(shape)} - IDENTITY <= mine, shape
