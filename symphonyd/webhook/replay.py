"""Delivery ids already seen, so a captured delivery cannot be sent again.

Bounded: the oldest ids are forgotten first. A forgotten GitHub id could be replayed; Linear's
timestamp window closes that for Linear, and for both a replay can at most ask the tracker to
re-read an issue it would read on the next poll anyway (docs/design/0411-webhook-receiver.md).
"""

from __future__ import annotations

from collections import OrderedDict

DEFAULT_SIZE = 10_000


class SeenDeliveries:
    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self._size = size
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()

    def claim(self, provider: str, delivery_id: str) -> bool:
        """True the first time; False for an id already claimed (a replay)."""
        key = (provider, delivery_id)
        if key in self._seen:
            return False
        self._seen[key] = None
        while len(self._seen) > self._size:
            self._seen.popitem(last=False)
        return True

    def release(self, provider: str, delivery_id: str) -> None:
        """Forget a claim whose refresh failed, so the provider's redelivery is accepted."""
        self._seen.pop((provider, delivery_id), None)

    def __len__(self) -> int:
        return len(self._seen)
