"""The hosts runs go to: the local launcher and/or worker hosts behind the link (design 1100).

Each host is one launcher client (a worker's is its link socket,
``<runtime>/hosts/<name>.sock``, which speaks the local launcher's protocol). The pool says
which host may take a run now: a worker host only while its event stream is subscribed and
resynced, outside the backoff after an unreachable ``start_run``, under
``max_concurrent_agents_per_host``, and not drained. When none may, dispatch waits: there is
no fallback to the local launcher unless ``[worker] local = true`` made it a host.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass

from symphonyd.core.worker_hosts import LOCAL_HOST
from symphonyd.dispatcher.ports import LauncherPort

# After host_lost the worker may still run the agent until its lease ends; the margin (half
# the lease again: 15 s for the default 30) covers the time the link takes to notice the drop
# and the difference between the two hosts' clock rates.
FENCE_MARGIN = 0.5
UNREACHABLE_BACKOFF_MS = (2_000, 60_000)  # first, cap; doubles per failure in a row


class HostUnreachableError(Exception):
    """``start_run`` was not delivered: the host could not be reached before the request."""


@dataclass
class Host:
    name: str
    launcher: LauncherPort
    remote: bool
    connected: bool = False  # event stream subscribed and run table resynced
    down_until_ms: int = 0
    failures: int = 0  # unreachable start_runs in a row
    drained: bool = False
    blind_until_ms: int = 0  # its runs were not listed at start: fence until the lease ends

    @property
    def reachable(self) -> bool:
        """Worth a call: the local launcher, or a worker whose event stream is up."""
        return not self.remote or self.connected

    def usable(self, now_ms: int) -> bool:
        """May take a new run now."""
        if self.drained:
            return False
        if not self.remote:
            return True  # the local launcher: its failures are handled as before (0750)
        return self.connected and now_ms >= self.down_until_ms


class HostPool:
    def __init__(
        self, hosts: list[Host], *, per_host: int | None = None, lease_seconds: int = 30
    ) -> None:
        self.hosts = {h.name: h for h in hosts}
        self.per_host = per_host
        self.fence_ms = int(lease_seconds * (1 + FENCE_MARGIN) * 1000)
        self.load: Counter[str] = Counter()  # running entries per host

    @classmethod
    def local_only(cls, launcher: LauncherPort) -> HostPool:
        return cls([Host(LOCAL_HOST, launcher, remote=False, connected=True)])

    @property
    def remote(self) -> bool:
        """Whether any worker host is configured (rows and state then name hosts)."""
        return any(h.remote for h in self.hosts.values())

    def launcher(self, name: str) -> LauncherPort:
        return self.hosts[name].launcher

    def remote_host(self, name: str) -> bool:
        host = self.hosts.get(name)
        return host is not None and host.remote

    def label(self, name: str) -> str:
        """The health/journal name of a host's launcher: ``launcher`` for the local one."""
        return "launcher" if name == LOCAL_HOST else f"host {name}"

    def blind(self, now_ms: int) -> bool:
        """A worker whose runs are unknown (not listed at start) may still run agents."""
        return any(h.blind_until_ms > now_ms for h in self.hosts.values())

    def placement(self, now_ms: int) -> Placement:
        """Where one batch of new runs goes (a tick's dispatches or a round of retries)."""
        usable = [h.name for h in self.hosts.values() if h.usable(now_ms)]
        return Placement(usable, self.load, self.per_host)

    def unreachable(self, name: str, now_ms: int) -> int:
        """Back off from a host that could not take a start_run; the backoff in ms."""
        host = self.hosts[name]
        host.failures += 1
        first, cap = UNREACHABLE_BACKOFF_MS
        delay: int = min(first << min(host.failures - 1, 16), cap)
        host.down_until_ms = now_ms + delay
        return delay

    def reached(self, name: str) -> None:
        host = self.hosts[name]
        host.failures, host.down_until_ms = 0, 0


class Placement:
    """Hosts for one batch of runs: the preferred host when it may take one more, else the
    least loaded usable host with room (the first configured among equals).

    A heap of the usable hosts keyed by (runs, configured order) makes each choice cost
    O(log hosts), not a scan of every host per run: with 100 workers and thousands of runs
    in one batch the scan was most of the batch (bench/remote_dispatch.py). Entries go stale
    when the preferred host takes a run; they are corrected when they reach the top.
    """

    def __init__(self, usable: list[str], load: Counter[str], per_host: int | None) -> None:
        self._used = {name: load[name] for name in usable}
        self._per_host = per_host
        self._heap = [(n, i, name) for i, (name, n) in enumerate(self._used.items())
                      if self._room(name)]  # fmt: skip
        heapq.heapify(self._heap)

    def _room(self, name: str) -> bool:
        return self._per_host is None or self._used[name] < self._per_host

    def take(self, prefer: str | None = None) -> str | None:
        """Reserve a slot for one run; None when no usable host has room."""
        if prefer is not None and prefer in self._used and self._room(prefer):
            self._used[prefer] += 1
            return prefer
        heap = self._heap
        while heap:
            used, order, name = heap[0]
            if used != self._used[name]:  # stale: the host took preferred runs meanwhile
                if self._room(name):
                    heapq.heapreplace(heap, (self._used[name], order, name))
                else:
                    heapq.heappop(heap)
                continue
            self._used[name] = used + 1
            if self._room(name):
                heapq.heapreplace(heap, (used + 1, order, name))
            else:
                heapq.heappop(heap)
            return name
        return None
