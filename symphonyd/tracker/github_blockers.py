"""Remembered GitHub blocker lists, so a backlog of blocked issues does not spend the API's
rate limit on every poll (docs/design/0406-github-blockers.md).

A list is reused while the blocked issue's ``updated_at`` and its dependency counts are
unchanged, and for at most ``ttl_s``: a blocker that closes or reopens changes the counts at
once, while a label change on a still-open blocker only shows after the TTL.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from symphonyd.core.issue import BlockerRef

DEFAULT_TTL_S = 300.0
MAX_ENTRIES = 10_000


class BlockerCache:
    def __init__(
        self, ttl_s: float = DEFAULT_TTL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl_s
        self._clock = clock
        self._entries: dict[int, tuple[Any, float, tuple[BlockerRef, ...]]] = {}

    def get(self, number: int, key: Any) -> tuple[BlockerRef, ...] | None:
        entry = self._entries.get(number)
        if entry is None or entry[0] != key or self._clock() - entry[1] > self._ttl:
            return None
        return entry[2]

    def put(self, number: int, key: Any, refs: tuple[BlockerRef, ...]) -> None:
        if len(self._entries) >= MAX_ENTRIES and number not in self._entries:
            self._entries.clear()  # crude but bounded; a full refill costs one poll
        self._entries[number] = (key, self._clock(), refs)
