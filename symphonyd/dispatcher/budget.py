"""Token spend per issue and per UTC day (seed 001 budgets), kept in the persisted state.

Counts are fed deltas of absolute thread totals (SPEC 13.5), so a repeated report adds
nothing. The ledger only marks itself dirty; the orchestrator decides when to write, which
bounds disk writes to one per tick or run exit instead of one per token event.
"""

from __future__ import annotations

from datetime import datetime

from symphonyd.core.api.shared import TokenTotals
from symphonyd.core.issue import parse_timestamp
from symphonyd.dispatcher.state import iso, next_utc_midnight
from symphonyd.dispatcher.store import PersistedState


class TokenLedger:
    def __init__(self, persisted: PersistedState) -> None:
        self._p = persisted
        self.dirty = False
        self.input_tokens = 0
        self.output_tokens = 0
        self.total_tokens = 0

    @property
    def tokens_today(self) -> int:
        return self._p.tokens_today

    @property
    def day(self) -> str:
        return self._p.day

    def roll(self, now: datetime) -> None:
        today = now.date().isoformat()
        if self._p.day != today:
            self._p.day = today
            self._p.tokens_today = 0
            self.dirty = True

    def resets_at(self, now: datetime) -> str:
        return iso(next_utc_midnight(now))

    def add(self, issue_id: str, delta: TokenTotals, now: datetime) -> None:
        self.input_tokens += delta.input_tokens
        self.output_tokens += delta.output_tokens
        self.total_tokens += delta.total_tokens
        if delta.total_tokens <= 0:
            return
        self.roll(now)
        self._p.tokens_today += delta.total_tokens
        self._p.issue_tokens[issue_id] = self._p.issue_tokens.get(issue_id, 0) + delta.total_tokens
        self._p.issue_tokens_at[issue_id] = iso(now)
        self.dirty = True

    def issue_total(self, issue_id: str) -> int:
        return self._p.issue_tokens.get(issue_id, 0)

    def last_used(self, issue_id: str) -> datetime | None:
        """When the issue's total last grew; None when it has no total."""
        if issue_id not in self._p.issue_tokens:
            return None
        return parse_timestamp(self._p.issue_tokens_at.get(issue_id))

    def stamp_unknown(self, now: datetime) -> None:
        """Totals saved before their times were kept count as used now: never older than
        they are, so prune cannot forget them early."""
        for issue_id in self._p.issue_tokens.keys() - self._p.issue_tokens_at.keys():
            self._p.issue_tokens_at[issue_id] = iso(now)
            self.dirty = True
        for issue_id in self._p.issue_tokens_at.keys() - self._p.issue_tokens.keys():
            del self._p.issue_tokens_at[issue_id]

    def reset_issue(self, issue_id: str) -> None:
        self._p.issue_tokens.pop(issue_id, None)
        self._p.issue_tokens_at.pop(issue_id, None)
        self.dirty = True
