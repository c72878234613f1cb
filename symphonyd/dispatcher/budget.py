"""Token spend per issue and per UTC day (seed 001 budgets), kept in the persisted state.

Counts are fed deltas of absolute thread totals (SPEC 13.5), so a repeated report adds
nothing. The ledger only marks itself dirty; the orchestrator decides when to write, which
bounds disk writes to one per tick or run exit instead of one per token event.
"""

from __future__ import annotations

from datetime import datetime

from symphonyd.core.messages import TokenTotals
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
        self.dirty = True

    def issue_total(self, issue_id: str) -> int:
        return self._p.issue_tokens.get(issue_id, 0)

    def reset_issue(self, issue_id: str) -> None:
        self._p.issue_tokens.pop(issue_id, None)
        self.dirty = True
