"""Read side of the audit log for the dashboard: queries, verification and metric counts.

Served only on the dashboard's socket (see daemon.py). Every answer is bounded: a query
returns at most ``AUDIT_QUERY_MAX_LIMIT`` records and keeps no more than that in memory
while scanning. The work is file I/O, so it runs in a worker thread and the writer's event
loop keeps acknowledging appends meanwhile. The reader never writes the directory.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter, deque
from pathlib import Path
from typing import Any

from symphonyd.audit.verify import iter_records, verify_dir
from symphonyd.core import audit_events
from symphonyd.core.api.audit import (
    AUDIT_COUNTS,
    AUDIT_QUERY,
    AUDIT_QUERY_MAX_LIMIT,
    AUDIT_VERIFY,
    AuditCounts,
    AuditQuery,
    AuditRecords,
    AuditRecordView,
    AuditVerifyResult,
)
from symphonyd.core.api.shared import Empty
from symphonyd.core.audit_chain import ChainBreak, parse_stored_line
from symphonyd.core.audit_layout import day_files
from symphonyd.core.errors import ValidationError
from symphonyd.runtime.ipc_server import IpcServer
from symphonyd.runtime.peer import Peer

_SUCCESS = "succeeded"
DASHBOARD_SOCKET = "dashboard"  # the only socket whose peer may read the log back
# Reading a long log takes longer than an append; the dashboard waits this long for it.
READ_TIMEOUT_S = 120.0


def _view(record: dict[str, Any]) -> AuditRecordView:
    return AuditRecordView(
        seq=record["seq"],
        ts=record["ts"],
        type=record["type"],
        sender=dict(record.get("sender") or {}),
        issue_id=record.get("issue_id"),
        issue_identifier=record.get("issue_identifier"),
        session_id=record.get("session_id"),
        payload=dict(record.get("payload") or {}),
        record_hash=record["record_hash"],
    )


def _comparable(ts: str) -> str:
    # Stored stamps carry microseconds ("...:00.123456Z"); without them "...:00Z" would sort
    # after every record of that second, since "." < "Z".
    return ts[:-1] + ".000000Z" if ts.endswith("Z") and "." not in ts else ts


def _matches(record: dict[str, Any], q: AuditQuery, since: str | None) -> bool:
    return (
        (q.issue_id is None or record.get("issue_id") == q.issue_id)
        and (q.issue_identifier is None or record.get("issue_identifier") == q.issue_identifier)
        and (q.type is None or record.get("type") == q.type)
        and (since is None or record["ts"] >= since)
    )


def query(directory: Path, q: AuditQuery) -> AuditRecords:
    """The newest ``q.limit`` matching records, newest first."""
    if not 1 <= q.limit <= AUDIT_QUERY_MAX_LIMIT:
        raise ValidationError(
            f"limit must be between 1 and {AUDIT_QUERY_MAX_LIMIT}", code="invalid_params"
        )
    from_day = q.since[:10] if q.since else None
    since = _comparable(q.since) if q.since else None
    newest: deque[dict[str, Any]] = deque(maxlen=q.limit)
    matched = 0
    for located in iter_records(Path(directory), from_day=from_day):
        if located.record is not None and _matches(located.record, q, since):
            newest.append(located.record)
            matched += 1
    return AuditRecords([_view(r) for r in reversed(newest)], truncated=matched > q.limit)


def verify(directory: Path) -> AuditVerifyResult:
    result = verify_dir(Path(directory))
    broken = None
    if not result.ok:
        broken = f"{Path(result.broken_file or '').name}:{result.broken_line}"
    return AuditVerifyResult(
        ok=result.ok,
        records=result.records,
        files=result.files,
        head_seq=None if result.head is None else result.head.seq,
        broken_at=broken,
        reason=result.reason,
    )


class CountsCache:
    """Running totals, extended by reading only the bytes appended since the last call."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._offsets: dict[Path, int] = {}
        self._by_type: Counter[str] = Counter()
        self._failures: Counter[str] = Counter()
        self._outcomes: Counter[str] = Counter()
        self._finished = _RecentRuns()
        self._unreadable = 0
        self._denies_counted = 0
        self._lock = threading.Lock()

    def counts(self) -> AuditCounts:
        with self._lock:
            for _day, path in day_files(self.directory):
                self._consume(path)
            return AuditCounts(
                dict(self._by_type),
                dict(self._failures),
                self._unreadable,
                runs_by_outcome=dict(self._outcomes),
                egress_denies_counted=self._denies_counted,
            )

    def _consume(self, path: Path) -> None:
        start = self._offsets.get(path, 0)
        with path.open("rb") as fh:
            fh.seek(start)
            data = fh.read()
        end = data.rfind(b"\n") + 1  # a line still being written is counted next time
        for raw in data[:end].splitlines(keepends=True):
            try:
                self._count(parse_stored_line(raw))
            except ChainBreak:
                self._unreadable += 1
        self._offsets[path] = start + end

    def _count(self, record: dict[str, Any]) -> None:
        kind = record["type"]
        self._by_type[kind] += 1
        payload = record.get("payload")
        if kind == audit_events.RUN_FINISHED and isinstance(payload, dict):
            self._run_finished(payload)
        elif kind == audit_events.EGRESS_SUMMARY and isinstance(payload, dict):
            for entry in payload.get("counts") or []:
                if not isinstance(entry, dict) or entry.get("type") != audit_events.EGRESS_DENY:
                    continue
                if isinstance(entry.get("count"), int):
                    self._denies_counted += entry["count"]

    def _run_finished(self, payload: dict[str, Any]) -> None:
        # The launcher records every run's end; the dispatcher adds a second record for a
        # run it holds as blocked. One run is one outcome, whichever record comes first.
        if not self._finished.first(payload.get("run_id")):
            return
        # "status" is how launchers before the shared payload named the outcome.
        outcome = payload.get("outcome") or payload.get("status")
        label = str(outcome)[:32] if outcome else "unknown"
        self._outcomes[label] += 1
        if outcome != _SUCCESS:
            reason = payload.get("error_code") or outcome or "unknown"
            self._failures[str(reason)[:64]] += 1


class _RecentRuns:
    """Run ids seen lately, bounded: a run's records are written seconds apart, not days."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._order: deque[str] = deque()
        self._seen: set[str] = set()

    def first(self, run_id: Any) -> bool:
        """True the first time ``run_id`` is seen (always for a record without one)."""
        if not isinstance(run_id, str) or not run_id:
            return True
        if run_id in self._seen:
            return False
        self._seen.add(run_id)
        self._order.append(run_id)
        if len(self._order) > self._size:
            self._seen.discard(self._order.popleft())
        return True


class AuditReader:
    """The async face the IPC handlers call."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._counts = CountsCache(self.directory)
        # One scan at a time: a burst of verify clicks must not start a burst of full reads.
        self._busy = asyncio.Lock()

    async def query(self, q: AuditQuery) -> AuditRecords:
        async with self._busy:
            return await asyncio.to_thread(query, self.directory, q)

    async def verify(self) -> AuditVerifyResult:
        async with self._busy:
            return await asyncio.to_thread(verify, self.directory)

    async def counts(self) -> AuditCounts:
        async with self._busy:
            return await asyncio.to_thread(self._counts.counts)


def register_reader(server: IpcServer, reader: AuditReader) -> None:
    async def query_(params: AuditQuery, _peer: Peer) -> AuditRecords:
        return await reader.query(params)

    async def verify_(_params: Empty, _peer: Peer) -> AuditVerifyResult:
        return await reader.verify()

    async def counts_(_params: Empty, _peer: Peer) -> AuditCounts:
        return await reader.counts()

    server.handle(AUDIT_QUERY, query_, timeout=READ_TIMEOUT_S)
    server.handle(AUDIT_VERIFY, verify_, timeout=READ_TIMEOUT_S)
    server.handle(AUDIT_COUNTS, counts_, timeout=READ_TIMEOUT_S)
