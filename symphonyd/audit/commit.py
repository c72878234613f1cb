"""Group commit: many concurrent requests, one write and one fsync per batch.

Requests queue up while the previous batch is being fsynced in the worker thread; the next
batch takes everything waiting (up to ``max_batch_records``). Each request's future resolves
only after its batch is durable, so an acknowledgement always means "on disk". There is no
artificial delay: under light load a batch is a single request, under heavy load batches
grow by themselves. ``max_batch_records=1`` gives one fsync per record (for comparison).
A request is never split across batches, so its records are contiguous in the chain.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from symphonyd.audit.store import AuditStore, AuditStoreError, Pending
from symphonyd.core.audit_chain import ChainHead


@dataclass
class _Request:
    items: Sequence[Pending]
    done: asyncio.Future[list[dict[str, Any]]] = field(repr=False)


class GroupCommitter:
    """Serialises all store access through one worker thread, batching requests."""

    def __init__(self, store: AuditStore, *, max_batch_records: int = 4096) -> None:
        self._store = store
        # Called on the event loop with each durable batch's records (the head anchorer).
        self.listeners: list[Callable[[list[dict[str, Any]]], None]] = []
        self._max = max(1, max_batch_records)
        self._queue: asyncio.Queue[_Request | None] = asyncio.Queue()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-fsync")
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.records = 0
        # Set once the store has failed: the daemon exits so systemd restarts and recovers.
        self.failed = asyncio.Event()

    async def start(self) -> list[dict[str, Any]]:
        """Open the store (recovery, genesis) and start batching."""
        loop = asyncio.get_running_loop()
        written = await loop.run_in_executor(self._pool, self._store.open)
        self._task = asyncio.create_task(self._run(), name="audit-group-commit")
        return written

    @property
    def head(self) -> ChainHead:
        return self._store.head

    async def submit(self, items: Sequence[Pending]) -> list[dict[str, Any]]:
        """Append ``items``; returns their sealed records once they are durable."""
        if self._task is None or self._task.done():
            raise AuditStoreError("audit writer is not running")
        if not items:
            return []
        done: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Request(items, done))
        return await done

    async def close(self) -> None:
        """Finish every queued request, then stop the worker and close the files."""
        if self._task is not None and not self._task.done():
            await self._queue.put(None)
            await self._task
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, self._store.close)
        self._pool.shutdown(wait=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            batch = [first]
            count = len(first.items)
            while count < self._max and not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt is None:
                    stopping = True
                    break
                if count + len(nxt.items) > self._max:
                    # Keep it for the next batch, ahead of anything queued after it.
                    self._requeue_front(nxt)
                    break
                batch.append(nxt)
                count += len(nxt.items)
            items = [item for request in batch for item in request.items]
            try:
                records = await loop.run_in_executor(self._pool, self._store.append, items)
            except AuditStoreError as exc:
                for request in batch:
                    if not request.done.done():
                        request.done.set_exception(exc)
                self.failed.set()
                # The store now refuses every append, so later batches fail fast the same way.
                continue
            self.batches += 1
            self.records += len(records)
            for listener in self.listeners:
                listener(records)
            offset = 0
            for request in batch:
                chunk = records[offset : offset + len(request.items)]
                offset += len(request.items)
                if not request.done.done():
                    request.done.set_result(chunk)

    def _requeue_front(self, request: _Request) -> None:
        rest: list[_Request | None] = [request]
        while not self._queue.empty():
            rest.append(self._queue.get_nowait())
        for item in rest:
            self._queue.put_nowait(item)
