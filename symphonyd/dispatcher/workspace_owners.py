"""Which hosts have a workspace for an issue, so cleanup goes there (design 1100).

Kept in the durable state (``workspace_hosts``): a workspace outlives its run, and a restarted
dispatcher must still send terminal cleanup, prune and age cleanup to the host that has it,
never to a guessed one. With the local launcher alone there is one place to look and
nothing is recorded.
"""

from __future__ import annotations

from symphonyd.core.worker_hosts import LOCAL_HOST
from symphonyd.dispatcher.store import PersistedState


class WorkspaceOwners:
    def __init__(self, persisted: PersistedState, *, remote: bool) -> None:
        self._map = persisted.workspace_hosts
        self.remote = remote
        self.dirty = False  # changed since the last save

    def own(self, identifier: str, host: str) -> None:
        """``host`` now has a workspace for ``identifier`` (a run was started there)."""
        if not self.remote:
            return
        owners = self._map.setdefault(identifier, [])
        if host not in owners:
            owners.append(host)
            self.dirty = True

    def hosts_of(self, identifier: str) -> list[str]:
        if not self.remote:
            return [LOCAL_HOST]
        return list(self._map.get(identifier, ()))

    def disown(self, identifier: str, host: str) -> None:
        """``host`` no longer has it (removed there, or it found none)."""
        owners = self._map.get(identifier)
        if owners and host in owners:
            owners.remove(host)
            if not owners:
                del self._map[identifier]
            self.dirty = True
