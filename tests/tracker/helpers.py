"""Shared test plumbing: run coroutines, record sleeps, collect audit events."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from symphonyd.core.api.audit import AuditEventIn
from symphonyd.core.issue import Issue
from symphonyd.tracker.adapter import TrackerAdapter

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


def call(
    adapter: TrackerAdapter, states: list[str] | None = None, ids: list[str] | None = None
) -> list[Issue]:
    """One read on a fresh adapter (by states when given, else by ids), then close it."""

    async def go() -> list[Issue]:
        try:
            if states is not None:
                return await adapter.fetch_issues_by_states(states)
            return await adapter.fetch_issues_by_ids(ids or [])
        finally:
            await adapter.aclose()

    return run(go())


class SleepLog:
    """Stands in for the clock only: records the waits the adapter asks for."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class AuditLog:
    def __init__(self) -> None:
        self.events: list[AuditEventIn] = []

    async def __call__(self, event: AuditEventIn) -> None:
        self.events.append(event)


def error_of(result: Any) -> str:
    assert result.success is False, result
    code: str = result.output["error"]["code"]
    return code
