"""Effective tracker states: WORKFLOW.md's names win, else the kind's documented defaults,
resolved in one place for the tracker daemon, the dispatcher and the launcher."""

from __future__ import annotations

from pathlib import Path

from symphonyd.core.config import build_service_config
from symphonyd.core.issue import Issue
from symphonyd.core.tracker_kinds import effective_states, state_rules
from symphonyd.core.workflow import WorkflowDefinition
from symphonyd.dispatcher.config_source import dispatch_settings
from symphonyd.tracker.registry import settings_for


def test_named_states_win_over_the_kind_defaults() -> None:
    assert effective_states("jira", ("Ready",), None) == (("Ready",), ("Done",))
    assert effective_states(" GitHub ", None, ("Shipped",)) == (("Open",), ("Shipped",))


def test_an_unknown_kind_has_no_defaults() -> None:
    assert effective_states("nope", None, None) == ((), ())
    assert effective_states(None, ("A",), None) == (("A",), ())


def test_tracker_launcher_and_dispatcher_agree(tmp_path: Path) -> None:
    definition = WorkflowDefinition(config={"tracker": {"kind": "linear"}}, prompt_template="x")
    config = build_service_config(definition, env={}, workflow_dir=tmp_path)
    adapter = settings_for("linear", {}, {})  # the tracker daemon
    rules = state_rules(config.tracker)  # the launcher
    dispatch = dispatch_settings(config)  # the dispatcher
    assert adapter.active_states == dispatch.active_states_raw == ("Todo", "In Progress")
    assert adapter.terminal_states == dispatch.terminal_states_raw
    assert rules.active == dispatch.active_states == {"todo", "in progress"}
    assert rules.terminal == dispatch.terminal_states
    assert rules.terminal == {"done", "canceled", "cancelled", "duplicate", "closed"}
    assert rules.is_active(Issue("1", "A-1", "t", "In Progress", dispatchable=True))
