"""How long the link waits before it opens again a worker session that ended.

The link keeps two sessions per worker up on its own (the tracker forward and the audit
replication); each used to be reopened a fixed interval after it ended. A worker that
refuses one of them (a key enrolled without ``port-forwarding``, an sshd that is down or
misconfigured) then cost a full OpenSSH handshake on both hosts every interval, forever,
and a fleet of them kept the control host's CPUs busy: the 100-worker bench's connect phase
never converged while 100 refused forwards were retried every 2 s (bench/README.md).

So a session that ended quickly is reopened after a delay that doubles each time, up to
``cap``; one that held for ``healthy`` seconds counts as a working link and starts again
from ``base``. Each delay is drawn from its upper half, so workers that failed together
(a control-host restart, a network blip) do not all redial in the same instant.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

CAP_S = 60.0
HEALTHY_S = 60.0


@dataclass
class Redial:
    base: float
    cap: float = CAP_S
    healthy: float = HEALTHY_S
    _nominal: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self.base = max(self.base, 0.05)
        self.cap = max(self.cap, self.base)

    def after(self, lasted: float) -> float:
        """The delay before the next session, given how long the last one lasted (s)."""
        if lasted >= self.healthy or self._nominal == 0.0:
            self._nominal = self.base
        else:
            self._nominal = min(self._nominal * 2, self.cap)
        return round(random.uniform(self._nominal / 2, self._nominal), 3)
