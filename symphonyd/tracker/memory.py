"""The ``memory`` tracker: issues held in the process, for tests and demos.

It follows the same contract as the real adapters (empty input makes no "request", refresh
returns only requested ids) and counts requests so tests can check that.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from symphonyd.core.errors import TrackerError
from symphonyd.core.issue import Issue, state_key
from symphonyd.tracker.adapter import TrackerAdapter
from symphonyd.tracker.provider_config import TrackerSettings, check_keys, opt_str_list

KEYS = ("tool_states",)


class MemoryAdapter(TrackerAdapter):
    kind = "memory"

    def __init__(self, settings: TrackerSettings, issues: Iterable[Issue] = ()) -> None:
        check_keys(settings.provider, KEYS, self.kind)
        super().__init__(settings, opt_str_list(settings.provider, "tool_states"))
        self.issues: dict[str, Issue] = {i.id: i for i in issues}
        self.comments: list[tuple[str, str]] = []
        self.requests = 0
        # Set to make the next provider call fail, e.g. to exercise error paths.
        self.fail_next: TrackerError | None = None

    def put(self, issue: Issue) -> None:
        self.issues[issue.id] = issue

    def _request(self) -> None:
        self.requests += 1
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error

    async def _fetch_by_states(self, states: list[str]) -> list[Issue]:
        self._request()
        keys = {state_key(s) for s in states}
        return [i for i in self.issues.values() if state_key(i.state) in keys]

    async def _fetch_by_ids(self, ids: list[str]) -> list[Issue]:
        self._request()
        return [self.issues[i] for i in ids if i in self.issues]

    async def _comment(self, issue: Issue, body: str) -> dict[str, Any]:
        self._request()
        self.comments.append((issue.id, body))
        return {"comment": len(self.comments)}

    async def _move(self, issue: Issue, state: str) -> dict[str, Any]:
        self._request()
        current = self.issues.get(issue.id)
        if current is not None:
            self.issues[issue.id] = dataclasses.replace(current, state=state)
        return {"state": state}
