"""One agent's upstream lookups: a bounded answer cache, one query per name at a time, and a
per-agent cap on queries in flight.

The resolver and the proxy of an agent share one :class:`AgentLookup`, so an agent that
floods either gets its own answers from the cache and waits in its own queue: it cannot fill
the upstream servers or the launcher with queries and delay another agent's lookups
(docs/design/0855). The cache is per agent, never shared: one agent cannot learn from the
timing of an answer which names another agent looked up, and each agent's policy filters the
cached answers on the way out, as it filters fresh ones.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

Answers = list[tuple[ipaddress.IPv4Address, int]]
MAX_TTL = 300
# An empty answer (NXDOMAIN, or no A record) is kept this long; upstream failures never are.
NEGATIVE_TTL = 30


class Lookup(Protocol):
    async def resolve_a(self, name: str) -> tuple[int, Answers]: ...


@dataclass(slots=True)
class _Entry:
    rcode: int
    answers: Answers
    stored: float
    expires: float


@dataclass(slots=True)
class LookupCounters:
    cache_hits: int = 0
    upstream: int = 0
    joined: int = 0  # waited for the same name's query already in flight


class AgentLookup:
    def __init__(
        self,
        upstream: Lookup,
        *,
        inflight: int = 8,
        cache_entries: int = 512,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.upstream = upstream
        self.cache_entries = cache_entries
        self.counters = LookupCounters()
        self._clock = clock
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._slots = asyncio.Semaphore(inflight)
        self._pending: dict[str, asyncio.Task[tuple[int, Answers]]] = {}

    async def resolve_a(self, name: str) -> tuple[int, Answers]:
        key = name.lower()
        now = self._clock()
        entry = self._cache.get(key)
        if entry is not None:
            if entry.expires > now:
                self._cache.move_to_end(key)
                self.counters.cache_hits += 1
                age = int(now - entry.stored)
                left = int(entry.expires - now)
                return entry.rcode, [(a, max(min(ttl - age, left), 1)) for a, ttl in entry.answers]
            del self._cache[key]
        task = self._pending.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._fetch(key, name))
            self._pending[key] = task
            task.add_done_callback(lambda t: self._done(key, t))
        else:
            self.counters.joined += 1
        # A waiter that gives up must not cancel the query the others are waiting for.
        return await asyncio.shield(task)

    def _done(self, key: str, task: asyncio.Task[tuple[int, Answers]]) -> None:
        if self._pending.get(key) is task:
            del self._pending[key]
        if not task.cancelled():
            task.exception()  # retrieved here, so an unawaited failure is not logged as lost

    async def _fetch(self, key: str, name: str) -> tuple[int, Answers]:
        async with self._slots:
            self.counters.upstream += 1
            rcode, answers = await self.upstream.resolve_a(name)
        self._store(key, rcode, answers)
        return rcode, answers

    def _store(self, key: str, rcode: int, answers: Answers) -> None:
        if self.cache_entries <= 0 or rcode not in (0, 3):
            return  # only answers are cached (NOERROR, NXDOMAIN), never a server's failure
        ttl = min((t for _, t in answers), default=NEGATIVE_TTL)
        ttl = min(ttl, MAX_TTL if answers else NEGATIVE_TTL)
        if ttl <= 0:
            return  # TTL 0 means "do not cache"
        now = self._clock()
        self._cache[key] = _Entry(rcode, list(answers), now, now + ttl)
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_entries:
            self._cache.popitem(last=False)

    def cached(self) -> int:
        return len(self._cache)
