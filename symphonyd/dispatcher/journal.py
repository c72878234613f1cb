"""Scheduling decisions as journal lines (SPEC 13.1), readable without drowning.

Every decision the dispatcher takes about an issue (dispatch, retry, stall, reconcile stop,
terminal cleanup, holds, a run the launcher lost) is one ``log_event`` line at the site that
takes it, carrying ``issue_id``/``issue_identifier``/``session_id``/``host`` (journal fields
``ISSUE_ID``, ``ISSUE_IDENTIFIER``, ``SESSION_ID``, ``HOST``: the host the run is bound to,
``local`` for the control host's own launcher). This module holds what those sites share:
the fields of a run, and the failure episodes that turn a daemon outage seen on every tick
into one warning, one more only if the error changes, and one line when it answers again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from symphonyd.dispatcher.state import RunningEntry
from symphonyd.runtime.logging import log_event

log = logging.getLogger("symphonyd.dispatcher")


def run_fields(entry: RunningEntry) -> dict[str, Any]:
    """The journal fields of one run (None values are left out by ``log_event``)."""
    return {
        "issue_id": entry.issue.id,
        "issue_identifier": entry.issue.identifier,
        "session_id": entry.session_id,
        "run_id": entry.run_id,
        "attempt": entry.attempt,
        "host": entry.host,
    }


@dataclass
class _Episode:
    since_ms: int
    error: str
    failures: int = 1


class FailureEpisodes:
    """Per daemon: is it failing, since when, how often, with what error."""

    def __init__(self) -> None:
        self._open: dict[str, _Episode] = {}

    def failed(self, daemon: str, error: str, now_ms: int) -> None:
        episode = self._open.get(daemon)
        if episode is None:
            self._open[daemon] = _Episode(now_ms, error)
            log_event(log, "daemon_call", level=logging.WARNING, daemon=daemon,
                      outcome="failed", error=error)  # fmt: skip
            return
        episode.failures += 1
        if error != episode.error:
            # Same outage, new symptom: worth one line; the same error again is only counted.
            episode.error = error
            log_event(log, "daemon_call", level=logging.WARNING, daemon=daemon,
                      outcome="still_failing", failures=episode.failures, error=error)  # fmt: skip

    def ok(self, daemon: str, now_ms: int) -> None:
        episode = self._open.pop(daemon, None)
        if episode is not None:
            log_event(log, "daemon_call", daemon=daemon, outcome="recovered",
                      failures=episode.failures,
                      down_s=max(now_ms - episode.since_ms, 0) // 1000)  # fmt: skip
