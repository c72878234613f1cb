"""One tick's read of the candidate board, shared by reconciliation and the candidate poll.

A tick reads the board (``tracker.fetch_by_states`` of the active states) once, before
reconciliation instead of after it. Reconciliation refreshes each running issue the board
lists from the board and fetches by id only the others (moved out of the active states,
filtered out by the adapter's board query, omitted as malformed, or gone); the candidate
poll then takes the same answer (issues or error) if the active states did not change in
preflight and the read is at most BOARD_MAX_AGE_MS old, else it reads again. After a failed
read, reconciliation fetches every running issue by id, as before, and the poll reports
that read's error: the tracker sees the same requests per tick as before, in every case.
docs/design/1117-reconcile-from-the-board.md says why this is the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from symphonyd.core.issue import Issue
from symphonyd.dispatcher.engine import Engine

# A board read older than this when the poll wants it (a slow stop_run or audit append in
# between) is read again, so dispatch never decides on a snapshot much older than before.
BOARD_MAX_AGE_MS = 1_000


@dataclass(frozen=True)
class Board:
    states: tuple[str, ...]  # the active states it was read for
    issues: list[Issue]
    error: Exception | None  # the read failed with this (issues then empty)
    read_ms: int  # the engine clock's monotonic_ms when the answer arrived

    def answer(self) -> list[Issue]:
        """The issues, or the read's error raised again."""
        if self.error is not None:
            raise self.error
        return self.issues

    def by_id(self) -> dict[str, Issue]:
        """Each id's first listing (the adapters' fetch_by_ids also keeps the first)."""
        out: dict[str, Issue] = {}
        for issue in self.issues:
            out.setdefault(issue.id, issue)
        return out


async def read_board(eng: Engine) -> Board | None:
    """The board for the current config's active states, None without a config."""
    if eng.cfg is None:
        return None
    states = tuple(eng.settings.active_states_raw)
    try:
        issues = await eng.tracker.fetch_by_states(list(states))
    except Exception as exc:
        return Board(states, [], exc, eng.clock.monotonic_ms())
    return Board(states, issues, None, eng.clock.monotonic_ms())


async def refresh_running(eng: Engine, ids: list[str], board: Board | None) -> list[Issue]:
    """The current snapshot of each running id the tracker still has: from the board when
    it lists the id, else by id. Raises whatever ``fetch_by_ids`` raises."""
    if board is None or board.error is not None:
        return await eng.tracker.fetch_by_ids(ids)
    listed = board.by_id()
    missing = [i for i in ids if i not in listed]
    fetched = await eng.tracker.fetch_by_ids(missing) if missing else []
    return [listed[i] for i in ids if i in listed] + fetched


def board_for_poll(eng: Engine, board: Board | None) -> Board | None:
    """The tick's board if the poll may use it, else None (the poll reads again)."""
    if board is None or eng.cfg is None:
        return None
    if board.states != tuple(eng.settings.active_states_raw):
        return None  # preflight loaded a config with other active states
    if eng.clock.monotonic_ms() - board.read_ms > BOARD_MAX_AGE_MS:
        return None
    return board
