"""Issues kept out of dispatch: operator stops, blocked agents and per-issue budget stops.

A stop or blocked hold lifts itself once a human changes the issue in the tracker (its state
or ``updated_at`` differs from the first observation after the hold began); a budget hold
lifts only on an operator release, since a changed issue would just spend the budget again.
"""

from __future__ import annotations

from datetime import datetime

from symphonyd.core.api.dispatcher import HoldKind, HoldRow
from symphonyd.core.issue import Issue, format_timestamp, state_key
from symphonyd.dispatcher.state import iso
from symphonyd.dispatcher.store import Hold, PersistedState


def fingerprint(issue: Issue) -> str:
    return f"{state_key(issue.state)}|{format_timestamp(issue.updated_at) or ''}"


class HoldBook:
    def __init__(self, persisted: PersistedState) -> None:
        self._holds = persisted.holds

    def get(self, issue_id: str) -> Hold | None:
        return self._holds.get(issue_id)

    def find(self, ref: str) -> Hold | None:
        """The hold of the issue whose identifier or tracker id is ``ref``."""
        hold = self._holds.get(ref)
        if hold is not None:
            return hold
        for hold in self._holds.values():
            if hold.identifier == ref:
                return hold
        return None

    def place(
        self, issue: Issue, kind: HoldKind, reason: str, now: datetime, uid: int | None = None
    ) -> None:
        # No baseline yet: the agent may have written to the issue just before it ended,
        # so the first poll after the hold, not our older snapshot, is the reference.
        self._holds[issue.id] = Hold(issue.id, issue.identifier, kind, reason, iso(now), uid)

    def drop(self, issue_id: str) -> Hold | None:
        return self._holds.pop(issue_id, None)

    def observe(self, issue: Issue) -> bool:
        """Record a tracker sighting; True when it released the hold."""
        hold = self._holds.get(issue.id)
        if hold is None:
            return False
        seen = fingerprint(issue)
        if hold.baseline is None:
            hold.baseline = seen
            return False
        if hold.kind != "budget" and seen != hold.baseline:
            del self._holds[issue.id]
            return True
        return False

    def rows(self) -> list[HoldRow]:
        return [
            HoldRow(
                issue_id=h.issue_id,
                issue_identifier=h.identifier,
                kind=h.kind,
                reason=h.reason,
                since=h.since,
                by_uid=h.by_uid,
                released_by_tracker_change=h.kind != "budget",
            )
            for h in self._holds.values()
        ]

    def __len__(self) -> int:
        return len(self._holds)
