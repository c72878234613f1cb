"""Build the adapter for ``tracker.kind`` (SPEC 11.2) and publish each kind's defaults.

Non-secret provider values written as ``$NAME`` resolve from the environment here; secret
keys stay references and are resolved by the adapter from systemd credentials first.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from symphonyd.core.config_values import env_ref_name
from symphonyd.core.tracker_kinds import KIND_DEFAULTS, effective_states
from symphonyd.tracker.adapter import TrackerAdapter
from symphonyd.tracker.credentials import UNIT_CREDENTIAL_NAME
from symphonyd.tracker.errors import UNSUPPORTED_KIND, tracker_error
from symphonyd.tracker.provider_config import TrackerSettings


def settings_for(
    kind: str | None,
    provider: Mapping[str, Any],
    env: Mapping[str, str],
    *,
    active_states: tuple[str, ...] | None = None,
    terminal_states: tuple[str, ...] | None = None,
    unit_credential: str = UNIT_CREDENTIAL_NAME,
) -> TrackerSettings:
    """Effective settings: the kind's documented state defaults (``core.tracker_kinds``, shared
    with the dispatcher and launcher) fill what WORKFLOW.md omits."""
    name = (kind or "").strip().lower()
    profile = KIND_DEFAULTS.get(name)
    if profile is None:
        raise tracker_error(
            UNSUPPORTED_KIND,
            f"tracker.kind {str(kind)[:40]!r} is not supported (supported: "
            f"{', '.join(sorted(KIND_DEFAULTS))})",
        )
    resolved: dict[str, Any] = {}
    for key, value in provider.items():
        ref = env_ref_name(value)
        if ref is not None and key not in profile.secret_keys:
            resolved[key] = env.get(ref) or None
            if resolved[key] is None:
                del resolved[key]  # an empty $NAME counts as not set (SPEC 5.3.1)
        else:
            resolved[key] = value
    active, terminal = effective_states(name, active_states, terminal_states)
    return TrackerSettings(
        name,
        resolved,
        active_states=active,
        terminal_states=terminal,
        unit_credential=unit_credential,
    )


def build_adapter(
    settings: TrackerSettings,
    env: Mapping[str, str],
    *,
    base_dir: Path | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> TrackerAdapter:
    if settings.kind == "linear":
        from symphonyd.tracker.linear import LinearAdapter

        return LinearAdapter(settings, env, transport=transport)
    if settings.kind == "github":
        from symphonyd.tracker.github import GitHubAdapter

        return GitHubAdapter(settings, env, transport=transport)
    if settings.kind == "gitlab":
        from symphonyd.tracker.gitlab import GitLabAdapter

        return GitLabAdapter(settings, env, transport=transport)
    if settings.kind == "jira":
        from symphonyd.tracker.jira import JiraAdapter

        return JiraAdapter(settings, env, transport=transport)
    if settings.kind == "asana":
        from symphonyd.tracker.asana import AsanaAdapter

        return AsanaAdapter(settings, env, transport=transport)
    if settings.kind == "local":
        from symphonyd.tracker.local import LocalAdapter

        return LocalAdapter(settings, base_dir)
    if settings.kind == "memory":
        from symphonyd.tracker.memory import MemoryAdapter

        return MemoryAdapter(settings)
    raise tracker_error(UNSUPPORTED_KIND, f"tracker.kind {settings.kind!r} is not supported")
