"""Titles and tracker links of issues the dashboard has seen, for rows that lack them.

Only a running issue's row carries its title and URL; a retry, a hold or an audit record
names just the identifier. The dashboard remembers what the snapshots told it (bounded, the
oldest forgotten first), so those rows can show the title too. After a dashboard restart an
issue not running since shows its identifier alone.
"""

from __future__ import annotations

from collections import OrderedDict

from symphonyd.core.api.dispatcher import StateSnapshot

MAX_NAMES = 5000


class IssueNames:
    def __init__(self, limit: int = MAX_NAMES) -> None:
        self.limit = limit
        self._names: OrderedDict[str, tuple[str | None, str | None]] = OrderedDict()

    def learn(self, snap: StateSnapshot | None) -> None:
        if snap is None:
            return
        for row in snap.running:
            self.put(row.issue_identifier, row.issue_title, row.issue_url)
        for retry in snap.retrying:
            if retry.issue_url:
                old_title = self.get(retry.issue_identifier)[0]
                self.put(retry.issue_identifier, old_title, retry.issue_url)

    def put(self, identifier: str, title: str | None, url: str | None) -> None:
        self._names[identifier] = (title, url)
        self._names.move_to_end(identifier)
        while len(self._names) > self.limit:
            self._names.popitem(last=False)

    def get(self, identifier: str) -> tuple[str | None, str | None]:
        return self._names.get(identifier, (None, None))
