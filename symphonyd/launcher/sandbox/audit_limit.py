"""Bounded egress audit per agent: the first of each decision in full, repeats as counts.

An agent decides how many queries and connections it makes, so without a bound it decides
how many audit records the host writes (a UDP flood of denied names was 700 records/s). Per
agent and per interval (``audit_interval_s``):

- a record not seen before in this interval is written in full, up to ``audit_full_records``;
- an identical record (same type, host, port, reason, ... ) is only counted;
- past the budget, a new record is counted under its (type, via, reason) with the first host
  seen, at most ``MAX_COARSE`` such groups (then one ``other`` group);
- at the end of the interval, and when the sandbox is torn down, the counts go into the
  chain as one ``egress_summary`` record, so every decision is either a record or a count.

So an agent writes at most ``audit_full_records + 1`` egress records per interval, each
bounded in size (docs/audit.md gives the bytes per hour). Design: docs/design/0856.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Hashable
from typing import Any

from symphonyd.core import audit_events

AuditSink = Callable[[dict[str, Any]], None]
MAX_COARSE = 32
# Counts per summary record: keeps one well under the writer's record cap (64 KiB) even with
# 253-character names, so a summary is never cut.
COUNTS_PER_RECORD = 32
# Fields of a counted record that say which decision it was (never answers or addresses
# lists, which are the same for a repeat by construction).
_SUMMARY_FIELDS = ("type", "via", "host", "port", "reason", "qtype", "sni", "rule")


class AgentAuditLimiter:
    def __init__(
        self,
        agent_id: str,
        sink: AuditSink,
        *,
        interval_s: float = 60.0,
        full_records: int = 60,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.agent_id = agent_id
        self.sink = sink
        self.interval_s = interval_s
        self.full_records = full_records
        self._clock = clock
        self._window_end = clock() + interval_s
        self._full = 0
        self._seen: dict[Hashable, tuple[dict[str, Any], int]] = {}  # key -> (record, repeats)
        self._coarse: dict[tuple[str, str, str], tuple[str, int]] = {}  # -> (first host, n)
        self._timer: asyncio.TimerHandle | None = None
        self.written = 0  # full records and summaries handed to the sink
        self.counted = 0  # decisions that went into a summary instead

    def __call__(self, record: dict[str, Any]) -> None:
        if self._clock() >= self._window_end:
            self.flush()
        key = _key(record)
        seen = self._seen.get(key)
        if seen is not None:
            self._seen[key] = (seen[0], seen[1] + 1)
            self._count()
        elif self._full < self.full_records:
            self._full += 1
            self._seen[key] = (record, 0)
            self._emit(record)
        else:
            group = (str(record.get("type")), str(record.get("via")), str(record.get("reason")))
            if group not in self._coarse and len(self._coarse) >= MAX_COARSE:
                group = (group[0], "other", "other")
            first, n = self._coarse.get(group, (str(record.get("host", "")), 0))
            self._coarse[group] = (first, n + 1)
            self._count()

    def _emit(self, record: dict[str, Any]) -> None:
        self.written += 1
        self.sink(record)

    def _count(self) -> None:
        self.counted += 1
        if self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop (a unit test): the next record or close() flushes
            delay = max(self._window_end - self._clock(), 0.0)
            self._timer = loop.call_later(delay, self.flush)

    def flush(self) -> None:
        """Write the counts of the interval that ends now (if any) and start a new one."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        counts: list[dict[str, Any]] = []
        for record, repeats in self._seen.values():
            if repeats:
                entry = {k: record[k] for k in _SUMMARY_FIELDS if k in record}
                counts.append({**entry, "count": repeats})
        for (kind, via, reason), (first, n) in self._coarse.items():
            entry = {"type": kind, "via": via, "reason": reason, "first_host": first[:255]}
            counts.append({**entry, "count": n, "not_in_full": True})
        now = self._clock()
        seconds = round(now - (self._window_end - self.interval_s))
        for start in range(0, len(counts), COUNTS_PER_RECORD):
            part = counts[start : start + COUNTS_PER_RECORD]
            self._emit(
                {
                    "type": audit_events.EGRESS_SUMMARY,
                    "agent_id": self.agent_id,
                    "interval_s": round(self.interval_s),
                    "seconds": seconds,
                    "total": sum(c["count"] for c in part),
                    "counts": part,
                }
            )
        self._window_end = now + self.interval_s
        self._full = 0
        self._seen.clear()
        self._coarse.clear()

    def close(self) -> None:
        self.flush()


def _key(record: dict[str, Any]) -> Hashable:
    """Identical records, identical keys (cheap: this runs for every decision of a flood)."""
    try:
        return frozenset(record.items())
    except TypeError:  # a list or dict among the values
        return json.dumps(record, sort_keys=True, default=str)
