"""Dispatch eligibility, ordering, concurrency and retry maths (SPEC 8.2 - 8.4), all pure."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime

from symphonyd.core.issue import Issue, state_key

CONTINUATION_DELAY_MS = 1_000
FAILURE_BASE_DELAY_MS = 10_000
NO_SLOTS_ERROR = "no available orchestrator slots"

# Far-future sentinel so issues without created_at sort after every dated one.
_NO_DATE_KEY = (1, 0.0)


def issue_routable(issue: Issue, required_labels: Iterable[str]) -> bool:
    """SPEC 8.2: adapter says dispatchable and every required label is present.

    Labels compare trimmed and case-insensitively; a blank required label matches nothing.
    """
    if not issue.dispatchable:
        return False
    have = set(issue.labels)
    for label in required_labels:
        wanted = label.strip().lower()
        if not wanted or wanted not in have:
            return False
    return True


def state_is_active(state: str, active: Collection[str], terminal: Collection[str]) -> bool:
    """Active means listed as active and not listed as terminal; inputs are already keyed."""
    key = state_key(state)
    return key in active and key not in terminal


def candidate_eligible(
    issue: Issue,
    *,
    active_states: Collection[str],
    terminal_states: Collection[str],
    required_labels: Iterable[str],
) -> bool:
    """Per-issue half of SPEC 8.2; claims and slots are checked by the dispatcher's state.

    ``active_states``/``terminal_states`` must hold :func:`state_key` forms.
    """
    if not (issue.id and issue.identifier and issue.title and issue.state):
        return False
    if not state_is_active(issue.state, active_states, terminal_states):
        return False
    return issue_routable(issue, required_labels)


def dispatch_sort_key(issue: Issue) -> tuple[tuple[int, int], tuple[int, float], str]:
    """Priority 1..4 first (ascending), then oldest created_at, then identifier."""
    prio = issue.priority
    prio_key = (0, prio) if prio is not None and 1 <= prio <= 4 else (1, 0)
    created: datetime | None = issue.created_at
    date_key = (0, created.timestamp()) if created is not None else _NO_DATE_KEY
    return (prio_key, date_key, issue.identifier)


def sort_for_dispatch(issues: Iterable[Issue]) -> list[Issue]:
    return sorted(issues, key=dispatch_sort_key)


def failure_backoff_ms(attempt: int, max_backoff_ms: int) -> int:
    """``min(10 s * 2^(attempt-1), max)`` for failure retries; attempt is 1-based."""
    exponent = max(attempt, 1) - 1
    # Cap the exponent so huge attempt counts cannot build enormous integers.
    delay = FAILURE_BASE_DELAY_MS * (1 << min(exponent, 40))
    return min(delay, max(max_backoff_ms, 0))


def normalize_state_limits(raw: Mapping[str, object] | None) -> dict[str, int]:
    """SPEC 5.3.5: keys trimmed + lowercased; non-positive or non-integer values dropped."""
    out: dict[str, int] = {}
    if not raw:
        return out
    for key, value in raw.items():
        if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, int):
            continue
        if value > 0 and key.strip():
            out[state_key(key)] = value
    return out


def available_global_slots(max_concurrent: int, running_count: int) -> int:
    return max(max_concurrent - running_count, 0)


def state_slot_available(
    state: str,
    running_states: Iterable[str],
    *,
    max_concurrent: int,
    per_state_limits: Mapping[str, int],
) -> bool:
    """Per-state limit (falling back to the global one) counted over running issues' states."""
    key = state_key(state)
    limit = per_state_limits.get(key, max_concurrent)
    in_state = sum(1 for s in running_states if state_key(s) == key)
    return in_state < limit
