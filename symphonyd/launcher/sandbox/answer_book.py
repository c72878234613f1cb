"""Which addresses this agent's resolver gave it for which names, for intercepted connections.

An intercepted connection (docs/design/0867) arrives with the address the agent chose and a
name it claims (TLS SNI or HTTP ``Host``). The proxy accepts the claim only if the agent's own
resolver answered that name with that address, so a client cannot reach an allowed name's
connection through an address it got for another name or hard-coded. The book is per agent,
bounded (oldest binding out first), and a binding outlives its TTL by a grace period, because
stub resolvers and runtimes (the JVM, Go) keep answers a little longer than the TTL says.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

GRACE_S = 300
MIN_TTL_S = 60
MAX_BINDINGS = 4096


class AnswerBook:
    def __init__(
        self,
        *,
        max_bindings: int = MAX_BINDINGS,
        grace_s: float = GRACE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_bindings = max_bindings
        self.grace_s = grace_s
        self._clock = clock
        self._bindings: OrderedDict[tuple[str, str], float] = OrderedDict()

    def record(self, name: str, answers: Iterable[tuple[ipaddress.IPv4Address, int]]) -> None:
        """``name`` (canonical form) was answered with ``answers`` (address, TTL)."""
        now = self._clock()
        for address, ttl in answers:
            key = (name, str(address))
            self._bindings[key] = now + max(ttl, MIN_TTL_S) + self.grace_s
            self._bindings.move_to_end(key)
        while len(self._bindings) > self.max_bindings:
            self._bindings.popitem(last=False)

    def answered(self, name: str, address: str) -> bool:
        key = (name, address)
        expires = self._bindings.get(key)
        if expires is None:
            return False
        if expires <= self._clock():
            del self._bindings[key]
            return False
        return True

    def __len__(self) -> int:
        return len(self._bindings)
