from __future__ import annotations

from datetime import UTC, datetime

from symphonyd.core.issue import Issue, build_issue
from symphonyd.core.scheduling import (
    NO_SLOTS_ERROR,
    available_global_slots,
    candidate_eligible,
    failure_backoff_ms,
    issue_routable,
    normalize_state_limits,
    sort_for_dispatch,
    state_slot_available,
)

ACTIVE = {"todo", "in progress"}
TERMINAL = {"done", "cancelled"}


def mk(identifier: str, **kw: object) -> Issue:
    base: dict[str, object] = {
        "id": f"id-{identifier}",
        "identifier": identifier,
        "title": "t",
        "state": "Todo",
        "dispatchable": True,
    }
    base.update(kw)
    return build_issue(**base)  # type: ignore[arg-type]


def test_sort_priority_then_oldest_then_identifier() -> None:
    old = datetime(2026, 1, 1, tzinfo=UTC)
    new = datetime(2026, 6, 1, tzinfo=UTC)
    issues = [
        mk("E", priority=None, created_at=old),
        mk("D", priority=7, created_at=old),
        mk("C", priority=2, created_at=new),
        mk("B", priority=2, created_at=old),
        mk("A", priority=2, created_at=old),
        mk("F", priority=1, created_at=None),
        mk("G", priority=2, created_at=None),
    ]
    got = [i.identifier for i in sort_for_dispatch(issues)]
    # 1..4 bucket first; out-of-range priority 7 sorts with null; undated sorts last in a bucket.
    assert got == ["F", "A", "B", "C", "G", "D", "E"]


def test_dispatchable_false_is_never_eligible() -> None:
    issue = mk("A", dispatchable=False)
    assert not candidate_eligible(
        issue, active_states=ACTIVE, terminal_states=TERMINAL, required_labels=[]
    )


def test_state_must_be_active_and_not_terminal_case_insensitively() -> None:
    kw = {"active_states": ACTIVE | {"done"}, "terminal_states": TERMINAL, "required_labels": []}
    assert candidate_eligible(mk("A", state="  IN PROGRESS "), **kw)
    assert not candidate_eligible(mk("B", state="Done"), **kw)
    assert not candidate_eligible(mk("C", state="Backlog"), **kw)


def test_required_labels_case_insensitive_and_blank_matches_nothing() -> None:
    issue = mk("A", labels=["Agent", "Backend"])
    assert issue_routable(issue, [" AGENT ", "backend"])
    assert not issue_routable(issue, ["agent", "frontend"])
    assert not issue_routable(issue, ["  "])
    assert issue_routable(issue, [])


def test_failure_backoff_doubles_and_caps() -> None:
    assert [failure_backoff_ms(n, 300_000) for n in (1, 2, 3, 4, 5, 6, 99)] == [
        10_000,
        20_000,
        40_000,
        80_000,
        160_000,
        300_000,
        300_000,
    ]
    assert failure_backoff_ms(3, 15_000) == 15_000
    assert failure_backoff_ms(10**9, 300_000) == 300_000


def test_per_state_limits_normalise_and_drop_invalid() -> None:
    raw = {" In Progress ": 2, "Todo": 0, "Review": -1, "QA": "3", "Ok": True, "Done": 1}
    assert normalize_state_limits(raw) == {"in progress": 2, "done": 1}


def test_slots() -> None:
    assert available_global_slots(3, 5) == 0
    assert available_global_slots(3, 1) == 2
    limits = {"todo": 1}
    assert not state_slot_available("TODO", ["todo"], max_concurrent=10, per_state_limits=limits)
    assert state_slot_available("Review", ["review"], max_concurrent=2, per_state_limits=limits)
    assert not state_slot_available(
        "Review", ["review", "Review"], max_concurrent=2, per_state_limits=limits
    )
    assert NO_SLOTS_ERROR == "no available orchestrator slots"
