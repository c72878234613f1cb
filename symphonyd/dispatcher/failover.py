"""Host failure classes (design 1100): what the dispatcher does when a worker host fails.

``host_unreachable`` (the start_run was never delivered) is handled where runs start
(:mod:`scheduler`): nothing started, so another host gets the issue and no attempt counts.
``host_lost`` is here: the host accepted runs and then its connection went away. Its agents
may still be running, so each run is **fenced**: its slot is freed, the issue stays claimed
by a retry that is not due before the worker's lease has ended (``lease_seconds`` plus a
margin), a stop waits for the host's return, and the run is audited as
``run_finished/failed/host_lost``. The retry is a new, visible attempt, preferably on
another host; a late result of the fenced run is ignored (:mod:`run_events`).
"""

from __future__ import annotations

import logging

from symphonyd.core import audit_events as ae
from symphonyd.core.api.audit import AuditEventIn
from symphonyd.core.api.launcher import StopRun
from symphonyd.dispatcher.engine import Engine, log
from symphonyd.dispatcher.journal import run_fields
from symphonyd.dispatcher.state import RunningEntry
from symphonyd.runtime.logging import log_event

HOST_LOST_CODE = "host_lost"


async def host_lost(eng: Engine, host: str, error: str) -> None:
    """The event stream of a worker host dropped: fence every run bound to it."""
    state = eng.hosts.hosts.get(host)
    if state is None or not state.remote:
        return  # the local launcher: a restart is found by resync (0750)
    state.connected = False
    eng.mark(eng.hosts.label(host), False, f"event stream lost: {error}")
    for entry in [e for e in eng.running.values() if e.host == host]:
        await fence(eng, entry, f"host {host} lost: {error}")


async def fence(eng: Engine, entry: RunningEntry, error: str) -> None:
    """Free the run's slot, keep the issue claimed until the lease has surely ended, then
    retry it as a new attempt elsewhere; stop the run when its host answers again."""
    issue = entry.issue
    delay = eng.hosts.fence_ms
    log_event(log, "host_lost", level=logging.WARNING, outcome="fenced", **run_fields(entry),
              turns=entry.turn_count, retry_in_ms=delay, error=error)  # fmt: skip
    eng.remove_running(entry)
    hist = eng.keep_workspace_path(entry)
    hist.restart_count += 1
    hist.last_error = error
    eng.pending_stops[entry.run_id] = StopRun(entry.run_id, "orphan")
    eng.stop_hosts[entry.run_id] = entry.host
    # host=None: the retry goes to whichever host is healthy with room, not back by choice.
    eng.schedule_retry(issue, (entry.attempt or 0) + 1, "failure", error, delay_ms=delay,
                       session_id=entry.session_id, host=None)  # fmt: skip
    old = eng.retries.get(issue.id)
    if old is not None:
        old.host = None
    await eng.append_audit(run_failed_record(entry, HOST_LOST_CODE))
    eng.persist_if_dirty()


def run_failed_record(entry: RunningEntry, error_code: str) -> AuditEventIn:
    """The audit record of a run that ended without its result (lost with its launcher or
    its host): ``run_finished``/``failed`` with what the dispatcher knew of it."""
    return ae.run_finished(
        entry.issue.id,
        entry.issue.identifier,
        entry.run_id,
        "failed",
        error_code=error_code,
        session_id=entry.session_id,
        turns=entry.turn_count,
        total_tokens=entry.progress.tokens.total_tokens,
    )
