"""The ``tracker.provider`` block of ``kind: asana``, parsed without touching the network or the
credential, so ``symphonyctl workflow check`` runs the daemon's own checks (profile:
docs/trackers/asana.md, decision: docs/design/0457-asana-sections-as-states.md)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from symphonyd.core.issue import state_key
from symphonyd.tracker.errors import config_error
from symphonyd.tracker.http import HttpPolicy
from symphonyd.tracker.provider_config import (
    HTTP_KEYS,
    check_keys,
    http_endpoint,
    http_policy,
    identifier_prefix,
    opt_int,
    opt_str,
    opt_str_list,
)

KIND = "asana"
DEFAULT_ENDPOINT = "https://app.asana.com/api/1.0"
DEFAULT_SECRET = "ASANA_TOKEN"  # noqa: S105 (a variable name)
DEFAULT_PRIORITIES = ("High", "Medium", "Low")
KEYS = (
    *HTTP_KEYS,
    "endpoint",
    "workspace",
    "project",
    "identifier_prefix",
    "section_states",
    "completed_state",
    "assignee",
    "priority_field",
    "priorities",
)
# Asana gids are decimal strings; 1..30 digits covers every id it hands out with room to spare.
GID = re.compile(r"^[1-9][0-9]{0,29}\Z")


@dataclass(frozen=True)
class AsanaConfig:
    endpoint: str
    workspace: str
    project: str
    prefix: str
    # (state name, section name) pairs in config order; empty: each section is its own state.
    section_states: tuple[tuple[str, str], ...]
    completed_state: str
    assignee: str | None  # an assignee gid or email
    priority_field: str | None  # an enum custom field's name, compared case-insensitively
    priorities: tuple[str, ...]  # its option names, most urgent first (lowercased)
    page_size: int
    policy: HttpPolicy
    tool_states: tuple[str, ...]

    def state_of_section(self, section: str | None) -> str | None:
        if section is None:
            return None
        if not self.section_states:
            return section.strip() or None
        key = state_key(section)
        for state, name in self.section_states:
            if state_key(name) == key:
                return state
        return None

    def section_of_state(self, state: str) -> str:
        for name, section in self.section_states:
            if state_key(name) == state_key(state):
                return section
        return state


def parse_asana_provider(provider: Mapping[str, Any]) -> AsanaConfig:
    """Every check on the provider block; raises ``invalid_tracker_config``."""
    check_keys(provider, KEYS, KIND)
    workspace, project = _gid(provider, "workspace"), _gid(provider, "project")
    prefix = identifier_prefix(provider, "ASANA")
    completed = opt_str(provider, "completed_state", "Done") or "Done"
    pairs = _section_states(provider.get("section_states", {}))
    if pairs and state_key(completed) not in {state_key(s) for s, _ in pairs}:
        pairs += ((completed, completed),)
    field = provider.get("priority_field", "Priority")
    if field is not None and (not isinstance(field, str) or not field.strip()):
        raise config_error("tracker.provider.priority_field must be a custom field name or null")
    priorities = opt_str_list(provider, "priorities") or DEFAULT_PRIORITIES
    tool_states = opt_str_list(provider, "tool_states")
    if pairs:
        known = {state_key(s) for s, _ in pairs}
        unknown = [s for s in tool_states if state_key(s) not in known]
        if unknown:
            raise config_error(
                f"tracker.provider.tool_states names {unknown[0][:80]!r}, which is not a "
                "section_states state nor completed_state"
            )
    return AsanaConfig(
        endpoint=http_endpoint(provider, "endpoint", DEFAULT_ENDPOINT),
        workspace=workspace,
        project=project,
        prefix=prefix,
        section_states=pairs,
        completed_state=completed,
        assignee=opt_str(provider, "assignee"),
        priority_field=field.strip().lower() if field else None,
        priorities=tuple(p.lower() for p in priorities),
        page_size=opt_int(provider, "page_size", 100, 1, 100),
        policy=http_policy(provider),
        tool_states=tool_states,
    )


def _gid(provider: Mapping[str, Any], key: str) -> str:
    raw = provider.get(key)
    value = str(raw) if type(raw) is int else raw
    if not isinstance(value, str) or not GID.match(value.strip()):
        raise config_error(
            f"asana needs tracker.provider.{key} as the {key}'s gid (a decimal string, "
            f"from its URL or GET /{key}s)"
        )
    return value.strip()


def _section_states(raw: Any) -> tuple[tuple[str, str], ...]:
    """``{state: section}``: the states the adapter reports and the sections behind them."""
    if not isinstance(raw, Mapping) or not all(
        isinstance(k, str) and k.strip() and isinstance(v, str) and v.strip()
        for k, v in raw.items()
    ):
        raise config_error(
            "tracker.provider.section_states must map state names to section names "
            "(non-empty strings)"
        )
    pairs = tuple((k.strip(), v.strip()) for k, v in raw.items())
    states = [state_key(s) for s, _ in pairs]
    sections = [state_key(v) for _, v in pairs]
    if len(set(states)) != len(states) or len(set(sections)) != len(sections):
        raise config_error("tracker.provider.section_states names a state or a section twice")
    return pairs
