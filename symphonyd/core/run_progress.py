"""One record of a run's progress, folded from its events by one rule (SPEC 4.1.6, 13.5).

The launcher keeps one per run it executes (``launcher.list_runs`` sends it as
:class:`RunInfo`); the dispatcher keeps one per running entry (its snapshot shows it as
:class:`RunningRow`, and a run it adopts after a restart starts from the launcher's
:class:`RunInfo`). Both fold ``RunEvent`` values in with :meth:`RunProgress.apply`, so the two
daemons cannot disagree on what a run has done. The wire shapes stay as they are; the
conversions below copy the fields they share with this record by name, never by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import cache
from typing import Any

from symphonyd.core.api.launcher import RunEvent, RunInfo, RunOutcome
from symphonyd.core.api.shared import TokenTotals

NO_TOKENS = TokenTotals()


@dataclass
class RunProgress:
    """What a run has done so far. Mutable: only the daemon that owns it applies events."""

    session_id: str | None = None
    turn_count: int = 0
    # The highest absolute thread totals reported; a repeated or lower total adds nothing,
    # so no counter fed from the deltas ever counts a token twice (SPEC 13.5).
    tokens: TokenTotals = field(default_factory=TokenTotals)
    last_event: str | None = None
    last_event_at: str | None = None  # RFC 3339 UTC
    last_message: str | None = None
    pid: int | None = None
    workspace_path: str | None = None
    # Seconds the agent process ran, hooks excluded: only the launcher's run_finished says.
    agent_seconds: float | None = None
    outcome: RunOutcome | None = None  # set by run_finished

    def apply(self, event: RunEvent, *, at: str | None = None) -> TokenTotals:
        """Fold one event in; returns the tokens it adds (deltas of the absolute totals).

        ``at``: the time to record instead of the event's own, for a receiver that does not
        take the sender's clock as given. Fields the event leaves out keep their value."""
        self.last_event = event.event
        self.last_event_at = at if at is not None else event.at
        if event.session_id:
            self.session_id = event.session_id
        if event.turn_count is not None:
            self.turn_count = event.turn_count
        if event.message is not None:
            self.last_message = event.message
        if event.pid:
            self.pid = event.pid
        if event.agent_seconds is not None:
            self.agent_seconds = event.agent_seconds
        if event.event == "run_finished" and event.outcome is not None:
            self.outcome = event.outcome
        if event.tokens is None:
            return NO_TOKENS
        old, new = self.tokens, event.tokens
        self.tokens = TokenTotals(
            max(new.input_tokens, old.input_tokens),
            max(new.output_tokens, old.output_tokens),
            max(new.total_tokens, old.total_tokens),
        )
        return TokenTotals(
            self.tokens.input_tokens - old.input_tokens,
            self.tokens.output_tokens - old.output_tokens,
            self.tokens.total_tokens - old.total_tokens,
        )

    @classmethod
    def of(cls, info: RunInfo) -> RunProgress:
        """The progress a launcher reported in ``list_runs`` (a run adopted after a restart)."""
        return cls(**{name: getattr(info, name) for name in _shared(RunInfo)})

    def fields_for(self, shape: type) -> dict[str, Any]:
        """This record's fields that the wire dataclass ``shape`` also has, by name."""
        return {name: getattr(self, name) for name in _shared(shape)}


@cache
def _shared(shape: type) -> tuple[str, ...]:
    mine = {f.name for f in fields(RunProgress)}
    return tuple(f.name for f in fields(shape) if f.name in mine)
