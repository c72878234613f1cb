"""The memory adapter's contract and the kind registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from symphonyd.core.errors import TrackerError
from symphonyd.core.issue import build_issue
from symphonyd.tracker.credentials import UNIT_CREDENTIAL_NAME, resolve_secret
from symphonyd.tracker.memory import MemoryAdapter
from symphonyd.tracker.registry import build_adapter, settings_for
from tests.tracker.helpers import run


def test_memory_contract() -> None:
    a = build_adapter(settings_for("memory", {}, {}), {})
    assert isinstance(a, MemoryAdapter)
    a.put(build_issue(id="1", identifier="M-1", title="t", state="Todo", dispatchable=True))
    a.put(build_issue(id="2", identifier="M-2", title="t", state="Done", dispatchable=True))
    assert run(a.fetch_issues_by_states([])) == [] and run(a.fetch_issues_by_ids([])) == []
    assert a.requests == 0
    assert [i.id for i in run(a.fetch_issues_by_states([" todo "]))] == ["1"]
    assert [i.id for i in run(a.fetch_issues_by_ids(["2", "2", "9"]))] == ["2"]
    a.fail_next = TrackerError("down", code="tracker_request")
    with pytest.raises(TrackerError):
        run(a.fetch_issues_by_ids(["1"]))


def test_registry_defaults_kinds_and_env_refs() -> None:
    s = settings_for(
        "Linear",
        {"project_slug": "$SLUG", "api_key": "$KEY", "team_key": "$NO"},
        {"SLUG": "symph", "KEY": "secret-value"},
    )
    assert s.kind == "linear" and s.active_states == ("Todo", "In Progress")
    assert s.provider == {"project_slug": "symph", "api_key": "$KEY"}
    with pytest.raises(TrackerError) as err:
        settings_for("trello", {}, {})
    assert err.value.error_code == "unsupported_tracker_kind"
    assert settings_for("github", {}, {}, active_states=("Todo",)).active_states == ("Todo",)


def test_secret_resolution_order_and_refusals(tmp_path: Path) -> None:
    (tmp_path / "LINEAR_API_KEY").write_text("from-credential-file\n")
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path), "LINEAR_API_KEY": "from-env"}
    ref = {"api_key": "$LINEAR_API_KEY"}
    assert resolve_secret(ref, "api_key", "LINEAR_API_KEY", env).reveal() == (
        "from-credential-file"
    )
    (tmp_path / "LINEAR_API_KEY").unlink()
    (tmp_path / UNIT_CREDENTIAL_NAME).write_text("unit-credential")
    assert resolve_secret(ref, "api_key", "LINEAR_API_KEY", env).reveal() == "unit-credential"
    assert resolve_secret({}, "api_key", "LINEAR_API_KEY", {"LINEAR_API_KEY": "e"}).reveal() == "e"
    for env2 in ({}, {"LINEAR_API_KEY": "  "}):
        with pytest.raises(TrackerError) as err:
            resolve_secret(ref, "api_key", "LINEAR_API_KEY", env2)
        assert err.value.error_code == "missing_tracker_secret"
    with pytest.raises(TrackerError) as err:
        resolve_secret({"api_key": "lin_api_LITERAL123"}, "api_key", "LINEAR_API_KEY", {})
    assert err.value.error_code == "invalid_tracker_config"
    assert "lin_api_LITERAL123" not in str(err.value) and "refused" in err.value.message
    secret = resolve_secret(ref, "api_key", "LINEAR_API_KEY", env)
    assert "unit-credential" not in f"{secret} {secret!r} {[secret]} {secret:>20}"
