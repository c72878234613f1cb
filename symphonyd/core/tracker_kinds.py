"""Each tracker kind's documented default states (SPEC 5.3.1), shared by every daemon.

The dispatcher and the launcher need the effective active and terminal states to judge
issues, and they may not import the tracker package; the tracker daemon uses the same table.
"""

from __future__ import annotations

from dataclasses import dataclass

from symphonyd.core.config import TrackerConfig
from symphonyd.core.issue import Issue, state_key
from symphonyd.core.scheduling import issue_routable, state_is_active


@dataclass(frozen=True)
class KindDefaults:
    active_states: tuple[str, ...]
    terminal_states: tuple[str, ...]
    secret_keys: tuple[str, ...] = ()


KIND_DEFAULTS: dict[str, KindDefaults] = {
    "linear": KindDefaults(
        ("Todo", "In Progress"),
        ("Done", "Canceled", "Cancelled", "Duplicate", "Closed"),
        ("api_key",),
    ),
    "github": KindDefaults(("Open",), ("Closed",), ("api_key",)),
    "gitlab": KindDefaults(("Open",), ("Closed",), ("api_key",)),
    "jira": KindDefaults(("To Do", "In Progress"), ("Done",), ("api_key",)),
    # Asana's board template sections; completed tasks report completed_state ("Done").
    "asana": KindDefaults(("To do", "Doing"), ("Done",), ("api_key",)),
    "local": KindDefaults(("Todo", "In Progress"), ("Done", "Cancelled")),
    "memory": KindDefaults(("Todo", "In Progress"), ("Done", "Cancelled")),
}


@dataclass(frozen=True)
class StateRules:
    """Effective, keyed (trimmed + lowercased) states and required labels of one config."""

    active: frozenset[str]
    terminal: frozenset[str]
    required_labels: tuple[str, ...]

    def is_active(self, issue: Issue) -> bool:
        """Active state and still routable: a run may continue (SPEC 8.2, 16.5)."""
        return state_is_active(issue.state, self.active, self.terminal) and issue_routable(
            issue, self.required_labels
        )

    def is_terminal(self, issue: Issue) -> bool:
        return state_key(issue.state) in self.terminal


def effective_states(
    kind: str | None, active: tuple[str, ...] | None, terminal: tuple[str, ...] | None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The active and terminal states WORKFLOW.md names, else the kind's documented defaults.

    The one place the defaults are applied: the tracker daemon's adapter settings, the
    dispatcher's scheduling settings and the launcher's state rules all come through here.
    An unknown kind has no defaults (its adapter is refused elsewhere).
    """
    defaults = KIND_DEFAULTS.get((kind or "").strip().lower())
    if active is None:
        active = defaults.active_states if defaults else ()
    if terminal is None:
        terminal = defaults.terminal_states if defaults else ()
    return active, terminal


def state_rules(tracker: TrackerConfig) -> StateRules:
    active, terminal = effective_states(
        tracker.kind, tracker.active_states, tracker.terminal_states
    )
    return StateRules(
        frozenset(state_key(s) for s in active),
        frozenset(state_key(s) for s in terminal),
        tuple(tracker.required_labels),
    )
