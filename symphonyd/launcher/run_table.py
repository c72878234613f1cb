"""The launcher's table of runs: live ones, and finished ones until the dispatcher acknowledges.

Kept in start order with a sequence number per run, which is the ``launcher.list_runs`` page
cursor (acknowledgements between pages do not shift it); live runs are indexed by issue so
"does this issue have a live run" costs no scan; unacknowledged finished runs are bounded.
See docs/design/0606-launcher-run-table.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Generic, Protocol, TypeVar

from symphonyd.core.run_progress import RunProgress

log = logging.getLogger("symphonyd.launcher")

# Finished runs nobody acknowledged yet. The dispatcher acknowledges each one within a moment
# of its run_finished event, but a burst of thousands of runs ending at once can outpace it
# for a while (bench/pipeline_throughput.py with 10 000 agents left ~9 000 waiting), and a
# dropped outcome costs that issue a stall timeout. So the bound is far above any burst and
# only bites when the dispatcher is gone for good: then the oldest outcomes are dropped
# (their run_finished audit records stay; about 2 KiB each is what this bounds) and the
# dispatcher's poll finds their issues again, as it does for retries lost in a restart.
MAX_UNACKED_FINISHED = 50_000
MAX_PAGE = 500


class Entry(Protocol):
    run_id: str
    issue_id: str
    progress: RunProgress  # its outcome says whether the run has finished
    seq: int


E = TypeVar("E", bound=Entry)


class RunTable(Generic[E]):
    def __init__(self) -> None:
        self._runs: dict[str, E] = {}  # in start order (seq ascending)
        self._live_by_issue: dict[str, str] = {}  # issue id -> run id of its live run
        self._finished: dict[str, None] = {}  # unacknowledged finished run ids, oldest first
        self._seq = 0
        self._over_bound = False  # warned about dropping outcomes; once per episode

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def add(self, run: E) -> None:
        self._runs[run.run_id] = run
        self._live_by_issue[run.issue_id] = run.run_id

    def get(self, run_id: str) -> E | None:
        return self._runs.get(run_id)

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._runs

    def __iter__(self) -> Iterator[E]:
        return iter(list(self._runs.values()))

    def live_run_id(self, issue_id: str) -> str | None:
        return self._live_by_issue.get(issue_id)

    def live(self) -> list[E]:
        return [self._runs[run_id] for run_id in self._live_by_issue.values()]

    @property
    def live_count(self) -> int:
        return len(self._live_by_issue)

    def page(self, after: int, limit: int | None) -> tuple[list[E], int | None]:
        """Runs started after cursor ``after`` and the next cursor (None: that was all)."""
        runs = (r for r in self._runs.values() if r.seq > after)
        if limit is None:
            return list(runs), None
        size = max(1, min(limit, MAX_PAGE))
        page: list[E] = []
        for run in runs:
            if len(page) == size:
                return page, page[-1].seq
            page.append(run)
        return page, None

    def ack(self, run_ids: list[str]) -> None:
        for run_id in run_ids:
            run = self._runs.get(run_id)
            if run is not None and run.progress.outcome is not None:
                del self._runs[run_id]
                self._finished.pop(run_id, None)

    def mark_finished(self, run: E) -> None:
        """A run got its outcome: no longer live; bound what waits for acknowledgement."""
        run_id = run.run_id
        if self._live_by_issue.get(run.issue_id) == run_id:
            del self._live_by_issue[run.issue_id]
        if run_id not in self._runs or run_id in self._finished:
            return
        self._finished[run_id] = None
        if len(self._finished) <= MAX_UNACKED_FINISHED:
            self._over_bound = False
            return
        oldest = next(iter(self._finished))
        del self._finished[oldest]
        self._runs.pop(oldest, None)
        if not self._over_bound:
            self._over_bound = True
            log.warning(
                "more than %d finished runs unacknowledged (is the dispatcher running?); "
                "forgetting the oldest outcomes, starting with %s",
                MAX_UNACKED_FINISHED,
                oldest,
            )
