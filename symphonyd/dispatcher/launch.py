"""Starting a batch of runs, each on the host it was bound to (SPEC 16.4, design 1100).

Audit first (fail closed), then ``start_run`` on each run's host concurrently. What a failed
start means depends on where it failed: a worker that could not be reached before the
request was sent (:class:`~symphonyd.dispatcher.hosts.HostUnreachableError`) started
nothing, so the issue goes to another host and no attempt counts; a worker whose connection
failed after the request was sent may have started it, so the run is fenced like a lost
host's (:mod:`failover`); the local launcher keeps its behaviour (a failed attempt, and a
stop in case it did start).
"""

from __future__ import annotations

import asyncio
import logging

from symphonyd.core import audit_events as ae
from symphonyd.core.api.launcher import StartRun, StartRunResult, StopRun
from symphonyd.core.issue import Issue
from symphonyd.dispatcher.engine import Engine, brief_error, log
from symphonyd.dispatcher.failover import fence
from symphonyd.dispatcher.hosts import HostUnreachableError
from symphonyd.dispatcher.journal import run_fields
from symphonyd.dispatcher.state import RunningEntry
from symphonyd.runtime.logging import log_event

START_WINDOW = 64  # start_run calls in flight at once


class RunStarter:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def launch(self, batch: list[tuple[Issue, int | None, str]]) -> None:
        """Audit first (fail closed), then start every run of the batch concurrently."""
        eng = self.engine
        if not batch or eng.cfg is None:
            return
        workflow = eng.cfg.workflow
        now, now_ms = eng.clock.now(), eng.clock.monotonic_ms()
        entries = [
            RunningEntry(eng.new_run_id(), issue, attempt, now, now_ms, host=host)
            for issue, attempt, host in batch
        ]
        records = [
            ae.dispatch(e.issue.id, e.issue.identifier, e.run_id, e.attempt) for e in entries
        ]
        if not await eng.append_audit(*records, queue=False):
            log_event(log, "dispatch", level=logging.WARNING, outcome="not_started",
                      runs=len(entries), error="audit writer unreachable")  # fmt: skip
            for e in entries:
                if e.attempt is not None:
                    eng.schedule_retry(e.issue, e.attempt, "requeue", "audit writer unreachable")
            return
        for e in entries:
            eng.add_running(e)
        results = await self._start_all(
            [(e.host, StartRun(e.run_id, e.issue, e.attempt, workflow)) for e in entries]
        )
        for e, res in zip(entries, results, strict=True):
            await self._settle(e, res)
        eng.persist_if_dirty()

    async def _settle(self, e: RunningEntry, res: StartRunResult | BaseException) -> None:
        eng = self.engine
        label = eng.hosts.label(e.host)
        remote = eng.hosts.remote_host(e.host)
        if isinstance(res, HostUnreachableError):
            await self._unreachable(e, res)
            return
        if isinstance(res, BaseException):
            eng.mark(label, False, brief_error(res))
            if remote:
                # Sent, then the connection failed: it may run; fenced until the lease ends.
                await fence(eng, e, f"host {e.host}: start_run unanswered: {brief_error(res)}")
                return
            # The launcher may have started it before failing to answer: make sure.
            eng.pending_stops[e.run_id] = StopRun(e.run_id, "orphan")
            eng.stop_hosts[e.run_id] = e.host
            error = f"failed to spawn agent: {brief_error(res)}"
        else:
            eng.mark(label, True)
            if remote:
                eng.hosts.reached(e.host)
            if res.accepted:
                eng.starts += 1
                eng.owners.own(e.issue.identifier, e.host)
                log_event(log, "dispatch", outcome="started", **run_fields(e),
                          state=e.issue.state)  # fmt: skip
                return
            error = f"failed to spawn agent: {res.error or 'rejected'}"
        log_event(log, "dispatch", level=logging.WARNING, outcome="failed", **run_fields(e),
                  error=error)  # fmt: skip
        eng.remove_running(e)
        eng.history_of(e.issue.id, e.issue.identifier).last_error = error
        eng.schedule_retry(e.issue, (e.attempt or 0) + 1, "failure", error, host=e.host)

    async def _unreachable(self, e: RunningEntry, exc: HostUnreachableError) -> None:
        """Nothing started: the host backs off and the issue goes elsewhere, same attempt."""
        eng = self.engine
        backoff = eng.hosts.unreachable(e.host, eng.clock.monotonic_ms())
        eng.mark(eng.hosts.label(e.host), False, brief_error(exc))
        log_event(log, "dispatch", level=logging.WARNING, outcome="host_unreachable",
                  **run_fields(e), host_backoff_ms=backoff, error=brief_error(exc))  # fmt: skip
        eng.remove_running(e)
        if e.attempt is None:
            eng.claimed.discard(e.issue.id)  # the next poll dispatches it to another host
        else:
            eng.schedule_retry(e.issue, e.attempt, "requeue", f"host {e.host} unreachable",
                               delay_ms=0, host=None)  # fmt: skip
            retry = eng.retries.get(e.issue.id)
            if retry is not None:
                retry.host = None

    async def _start_all(
        self, reqs: list[tuple[str, StartRun]]
    ) -> list[StartRunResult | BaseException]:
        """start_run for each request with at most START_WINDOW in flight.

        A small pool of workers instead of a task per run: the IPC connection pipelines
        requests anyway, and 10 000 tasks would cost more than the calls themselves.
        """
        hosts = self.engine.hosts
        results: list[StartRunResult | BaseException] = [RuntimeError("not started")] * len(reqs)
        position = iter(range(len(reqs)))

        async def worker() -> None:
            for i in position:
                host, req = reqs[i]
                try:
                    results[i] = await hosts.launcher(host).start_run(req)
                except Exception as exc:
                    results[i] = exc

        await asyncio.gather(*(worker() for _ in range(min(START_WINDOW, len(reqs)))))
        return results
