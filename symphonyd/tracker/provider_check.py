"""``symphonyctl workflow check``'s look at ``tracker.provider``: the adapter's own rules, offline.

The check builds the adapter the tracker daemon would build from the same WORKFLOW.md, so a
misspelt key, a bad site URL or a literal secret is reported with the adapter's typed error
(``invalid_tracker_config``) before the daemon ever loads it. Only kinds that talk to a
provider are built (local and memory touch the disk or nothing). The credential itself lives
with the tracker unit, not with the operator running the check, so a secret that does not
resolve here is not an error: every key is validated before the secret is resolved.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from symphonyd.core.config import TrackerConfig
from symphonyd.core.errors import SymphonyError
from symphonyd.core.tracker_kinds import KIND_DEFAULTS
from symphonyd.tracker.errors import MISSING_SECRET
from symphonyd.tracker.registry import build_adapter, settings_for


def check_provider(tracker: TrackerConfig, env: Mapping[str, str]) -> None:
    """Raise the adapter's typed error when ``tracker.provider`` would be refused."""
    kind = (tracker.kind or "").strip().lower()
    defaults = KIND_DEFAULTS.get(kind)
    if defaults is None or not defaults.secret_keys:
        return
    settings = settings_for(kind, tracker.provider, env)
    try:
        adapter = build_adapter(settings, env)
    except SymphonyError as exc:
        if exc.error_code == MISSING_SECRET:
            return
        raise
    asyncio.run(adapter.aclose())
