"""``tracker.hint``: symphony-webhook names one issue; re-fetch it and tell the dispatcher.

The receiver has verified the provider's signature, but the payload's state is still not
trusted: only the issue reference crosses the socket, and this daemon asks the provider for
that issue with its own credential, by the adapter's own dispatch id: Linear's issue id
(fetched within the configured project or team), GitHub's and GitLab's issue number (iid),
Jira's numeric issue id (fetched by JQL within the configured project), Asana's task gid
(kept only if it is in the configured project). Where the hint has a ``scope`` it must name
the configured place: GitHub's repository, GitLab's project (``<id>:<path>``; compared by id
or by path, as the project is configured), Jira's project key. An issue on
the board is published as ``tracker.changed`` with source ``webhook_<provider>``, exactly as
the file watch publishes its changes (docs/design/0411-webhook-receiver.md).
"""

from __future__ import annotations

import logging
import re

from symphonyd.core.api.tracker import HINT_MAX_REF, FetchByIds, HintResult, TrackerHint
from symphonyd.core.errors import SymphonyError
from symphonyd.runtime.logging import log_event
from symphonyd.tracker.change_events import ChangeFeed
from symphonyd.tracker.service import TrackerService

log = logging.getLogger(__name__)
PROVIDERS = ("github", "linear", "gitlab", "jira", "asana")
_REF = re.compile(rf"^[A-Za-z0-9_-]{{1,{HINT_MAX_REF}}}$")


def source_name(provider: str) -> str:
    return f"webhook_{provider}"


def in_scope(provider: str, scope: str | None, adapter: object) -> bool:
    """Whether the hint's scope is the configured repository, project or project key."""
    if provider == "github":
        return (scope or "").lower() == str(getattr(adapter, "repository", "")).lower()
    if provider == "gitlab":
        project = str(getattr(getattr(adapter, "cfg", None), "project", ""))
        pid, _, path = (scope or "").partition(":")
        return pid == project if project.isdigit() else path.lower() == project.lower()
    if provider == "jira":
        return scope == getattr(adapter, "project", None)
    return True  # linear, asana: the fetch itself is scoped


class WebhookHints:
    def __init__(self, service: TrackerService, feed: ChangeFeed) -> None:
        self.service = service
        self.feed = feed

    async def hint(self, params: TrackerHint) -> HintResult:
        result = await self._refresh(params)
        known = params.provider in PROVIDERS
        log_event(log, "tracker_events", source=source_name(params.provider if known else "?"),
                  outcome="refreshed" if result.refreshed else "ignored",
                  reason=result.reason)  # fmt: skip
        return result

    async def _refresh(self, params: TrackerHint) -> HintResult:
        if params.provider not in PROVIDERS or not _REF.match(params.issue_id):
            return HintResult(False, "bad_reference")
        self.service.refresh()
        adapter = self.service.adapter
        if adapter is None or adapter.kind != params.provider:
            return HintResult(False, "other_provider")
        if not in_scope(params.provider, params.scope, adapter):
            return HintResult(False, "other_scope")
        stats = self.feed.stats(source_name(params.provider))
        stats.live = True  # a receiver reaches this socket
        try:
            found = await self.service.fetch_by_ids(FetchByIds([params.issue_id]))
        except SymphonyError as exc:
            stats.failures += 1
            return HintResult(False, exc.error_code)
        ids = [issue.id for issue in found.issues]
        if not ids:
            return HintResult(False, "not_found")
        self.feed.publish(source_name(params.provider), ids)
        return HintResult(True)
