"""Garbage from the outside world never crashes an adapter: it is a typed error or a skip."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symphonyd.core.errors import SymphonyError, ValidationError
from symphonyd.tracker.github import GitHubAdapter
from symphonyd.tracker.linear import LinearAdapter
from symphonyd.tracker.local import LocalAdapter
from symphonyd.tracker.provider_config import TrackerSettings
from tests.tracker.helpers import run

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=30,
)
FIELDS = [
    "id",
    "identifier",
    "title",
    "description",
    "priority",
    "branchName",
    "url",
    "createdAt",
    "updatedAt",
    "state",
    "assignee",
    "team",
    "project",
    "labels",
    "inverseRelations",
    "number",
    "body",
    "html_url",
    "created_at",
    "node_id",
]
RECORD = st.one_of(JSON, st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=12))


def linear() -> LinearAdapter:
    return LinearAdapter(
        TrackerSettings("linear", {"team_key": "ENG"}, (), ("Done",)), {"LINEAR_API_KEY": "k"}
    )


def github() -> GitHubAdapter:
    return GitHubAdapter(
        TrackerSettings("github", {"repository": "a/b"}, (), ("Closed",)), {"GITHUB_TOKEN": "k"}
    )


LINEAR, GITHUB = linear(), github()


@given(RECORD)
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_linear_normalise_is_total(record: Any) -> None:
    try:
        issue = LINEAR._normalise(record, None)
    except ValidationError:
        return
    json.dumps(issue.to_dict())  # whatever comes out is a valid, JSON-safe Issue
    assert issue.id and issue.identifier and issue.title and issue.state


@given(RECORD)
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_github_normalise_is_total(record: Any) -> None:
    try:
        issue = GITHUB._normalise(record)
    except ValidationError:
        return
    json.dumps(issue.to_dict())
    assert issue.id.isdigit() and issue.title


@given(
    st.binary(max_size=400)
    | st.text(max_size=400).map(lambda t: f"---\n{t}\n---\nx".encode("utf-8", "surrogatepass"))
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_local_scan_survives_any_file(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "X-1.md").write_bytes(content)
        (Path(d) / "OK-1.md").write_text("---\ntitle: fine\nstate: Todo\n---\n")
        a = LocalAdapter(TrackerSettings("local", {"directory": d}, (), ("Done",)))
        issues = run(a.fetch_issues_by_states(["Todo", "todo", "x"]))
        assert "OK-1" in [i.id for i in issues]
        try:
            run(a.fetch_issues_by_ids(["X-1"]))
        except SymphonyError as exc:
            assert exc.error_code == "tracker_response"
