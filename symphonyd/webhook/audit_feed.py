"""Each delivery's outcome, sent to the audit writer without letting a flood block replies.

Records queue here (at most ``MAX_PENDING``) and one task sends them in batches with
``audit.append``. Anyone on the internet can post forged deliveries, so a full queue drops
the newest record and counts it rather than slowing the receiver or growing without bound;
the journal line and the metrics count of every delivery remain.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from symphonyd.core.api.audit import AUDIT_APPEND, AuditAppend, AuditEventIn
from symphonyd.core.errors import SymphonyError
from symphonyd.runtime.ipc_client import ReconnectingClient
from symphonyd.runtime.logging import log_event

log = logging.getLogger("symphonyd.webhook")
MAX_PENDING = 1000
MAX_BATCH = 100


class AuditFeed:
    def __init__(self, path: str | Path | None) -> None:
        self._client = ReconnectingClient(path) if path is not None else None
        self._queue: asyncio.Queue[AuditEventIn] = asyncio.Queue(MAX_PENDING)
        self.dropped = 0
        self.failed = 0

    def record(self, event: AuditEventIn) -> None:
        if self._client is None:
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1

    async def run(self) -> None:
        if self._client is None:
            return
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._client.call(AUDIT_APPEND, AuditAppend(batch), timeout=10.0)
            except SymphonyError as exc:
                self.failed += len(batch)
                log_event(log, "webhook_audit", level=logging.WARNING, outcome="not_recorded",
                          records=len(batch), error_code=exc.error_code)  # fmt: skip

    async def close(self) -> None:
        """Send what is still queued (one try), then disconnect."""
        if self._client is None:
            return
        pending = []
        while not self._queue.empty():
            pending.append(self._queue.get_nowait())
        try:
            if pending:
                await self._client.call(AUDIT_APPEND, AuditAppend(pending), timeout=5.0)
        except SymphonyError:
            self.failed += len(pending)
        finally:
            await self._client.close()
