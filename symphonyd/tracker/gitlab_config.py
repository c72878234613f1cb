"""The ``tracker.provider`` block of ``kind: gitlab``, parsed without touching the network or
the credential, so ``symphonyctl workflow check`` can run the same checks the daemon runs
(profile: docs/trackers/gitlab.md)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from symphonyd.core.issue import state_key
from symphonyd.tracker.credentials import secret_reference
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

KIND = "gitlab"
DEFAULT_ENDPOINT = "https://gitlab.com"
DEFAULT_SECRET = "GITLAB_TOKEN"  # noqa: S105 (a variable name)
KEYS = (
    *HTTP_KEYS,
    "endpoint",
    "project",
    "identifier_prefix",
    "state_labels",
    "open_state",
    "closed_state",
    "assignee",
    "blocked_label",
    "priority_label_prefix",
    "blockers",
    "pagination",
)
# A GitLab full path: namespaces and the project, each segment as GitLab allows them.
_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}"
_PATH = re.compile(rf"^{_SEGMENT}(?:/{_SEGMENT}){{1,20}}$")


@dataclass(frozen=True)
class GitLabConfig:
    endpoint: str
    project: str  # the full path or the numeric id, as configured
    project_ref: str  # the :id path segment (URL-encoded path or the number)
    prefix: str
    # (state name, label) in config order; the label compared case-insensitively.
    state_labels: tuple[tuple[str, str], ...]
    open_state: str
    closed_state: str
    assignee: str | None
    blocked_label: str | None
    priority_prefix: str | None
    blockers: str  # "links" | "none"
    pagination: str  # "keyset" | "offset"
    page_size: int
    policy: HttpPolicy
    secret_name: str
    tool_states: tuple[str, ...]

    @property
    def api(self) -> str:
        return f"{self.endpoint}/api/v4/projects/{self.project_ref}"


def parse_gitlab_provider(provider: Mapping[str, Any]) -> GitLabConfig:
    """Every check on the provider block; raises ``invalid_tracker_config``."""
    check_keys(provider, KEYS, KIND)
    raw_project = provider.get("project")
    if type(raw_project) is int and 0 < raw_project < 10**18:
        project, ref, default_prefix = str(raw_project), str(raw_project), f"project{raw_project}"
    else:
        path = opt_str(provider, "project")
        if path is not None and re.fullmatch(r"[1-9][0-9]{0,17}", path):
            project, ref, default_prefix = path, path, f"project{path}"
        elif path is None or not _PATH.match(path) or ".." in path:
            raise config_error(
                "gitlab needs tracker.provider.project as the project's full path "
                "('group/project', subgroups allowed) or its numeric id"
            )
        else:
            project, ref, default_prefix = path, quote(path, safe=""), path.rsplit("/", 1)[1]
    prefix = identifier_prefix(provider, default_prefix, " (set it when the project name does not)")
    open_state = opt_str(provider, "open_state", "Open") or "Open"
    closed_state = opt_str(provider, "closed_state", "Closed") or "Closed"
    state_labels = _state_labels(provider.get("state_labels", []))
    names = [state_key(s) for s, _ in state_labels] + [state_key(open_state)]
    if state_key(closed_state) in names or len(set(names)) != len(names):
        raise config_error(
            "tracker.provider: open_state, closed_state and the state_labels states must "
            "all be different"
        )
    blockers = opt_str(provider, "blockers", "links") or "links"
    pagination = opt_str(provider, "pagination", "keyset") or "keyset"
    if blockers not in ("links", "none"):
        raise config_error("tracker.provider.blockers must be 'links' or 'none'")
    if pagination not in ("keyset", "offset"):
        raise config_error("tracker.provider.pagination must be 'keyset' or 'offset'")
    blocked_label = opt_str(provider, "blocked_label")
    priority_prefix = provider.get("priority_label_prefix", "priority::")
    if priority_prefix is not None and (
        not isinstance(priority_prefix, str) or not priority_prefix.strip()
    ):
        raise config_error("tracker.provider.priority_label_prefix must be a string or null")
    tool_states = opt_str_list(provider, "tool_states")
    known = {
        state_key(open_state),
        state_key(closed_state),
        *(state_key(s) for s, _ in state_labels),
    }
    unknown = [s for s in tool_states if state_key(s) not in known]
    if unknown:
        raise config_error(
            f"tracker.provider.tool_states names {unknown[0][:80]!r}, which is neither "
            "open_state, closed_state nor a state_labels state"
        )
    return GitLabConfig(
        endpoint=http_endpoint(provider, "endpoint", DEFAULT_ENDPOINT),
        project=project,
        project_ref=ref,
        prefix=prefix,
        state_labels=state_labels,
        open_state=open_state,
        closed_state=closed_state,
        assignee=opt_str(provider, "assignee"),
        blocked_label=blocked_label.lower() if blocked_label else None,
        priority_prefix=priority_prefix.strip().lower() if priority_prefix else None,
        blockers=blockers,
        pagination=pagination,
        page_size=opt_int(provider, "page_size", 100, 1, 100),
        policy=http_policy(provider),
        secret_name=secret_reference(provider, "api_key", DEFAULT_SECRET),
        tool_states=tool_states,
    )


def _state_labels(raw: Any) -> tuple[tuple[str, str], ...]:
    """``[label, ...]`` (each state named like its label) or ``{state: label}``."""
    if isinstance(raw, list):
        pairs = [(v, v) for v in raw]
    elif isinstance(raw, Mapping):
        pairs = list(raw.items())
    else:
        pairs = [(None, None)]
    out: list[tuple[str, str]] = []
    for state, label in pairs:
        ok = all(isinstance(v, str) and v.strip() for v in (state, label))
        # add_labels/remove_labels are comma-separated lists: a comma cannot be written.
        if not ok or "," in str(label):
            raise config_error(
                "tracker.provider.state_labels must be a list of label names or a map of "
                "state name to label name (non-empty strings without commas)"
            )
        out.append((str(state).strip(), str(label).strip()))
    labels = [label.lower() for _, label in out]
    if len(set(labels)) != len(labels):
        raise config_error("tracker.provider.state_labels names a label twice")
    return tuple(out)
