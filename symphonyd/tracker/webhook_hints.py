"""``tracker.hint``: symphony-webhook names one issue; re-fetch it and tell the dispatcher.

The receiver has verified the provider's signature, but the payload's state is still not
trusted: only the issue reference crosses the socket, and this daemon asks the provider for
that issue with its own credential. Linear's fetch is scoped to the configured project or
team; GitHub's to the configured repository (the hint's ``scope`` must name it). An issue on
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
PROVIDERS = ("github", "linear")
_REF = re.compile(rf"^[A-Za-z0-9_-]{{1,{HINT_MAX_REF}}}$")


def source_name(provider: str) -> str:
    return f"webhook_{provider}"


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
        if params.provider == "github":
            repository = str(getattr(adapter, "repository", ""))
            if (params.scope or "").lower() != repository.lower():
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
