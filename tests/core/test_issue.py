from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from symphonyd.core.errors import ValidationError
from symphonyd.core.issue import BlockerRef, Issue, build_issue, normalize_labels, parse_timestamp


def test_labels_trimmed_lowercased_deduplicated_blank_dropped() -> None:
    assert normalize_labels([" Bug", "bug", "", "  ", "UI", 3, None]) == ("bug", "ui")
    assert normalize_labels("bug") == ()
    assert normalize_labels(None) == ()


def test_optional_fields_fall_back_without_hiding_required_ones() -> None:
    issue = build_issue(
        id="1",
        identifier="A-1",
        title="T",
        state=" Todo ",
        dispatchable=True,
        priority="high",
        created_at="not a date",
        updated_at="2026-02-24T20:15:30Z",
        url=42,
        native_ref={"bad": object()},
    )
    assert issue.priority is None
    assert issue.created_at is None
    assert issue.updated_at is not None and issue.updated_at.year == 2026
    assert issue.url is None
    assert issue.native_ref is None
    assert issue.state == "Todo"


@pytest.mark.parametrize(
    "override",
    [{"id": ""}, {"identifier": None}, {"title": "  "}, {"state": 3}, {"dispatchable": "yes"}],
)
def test_required_fields_raise(override: dict[str, object]) -> None:
    fields: dict[str, object] = {
        "id": "1",
        "identifier": "A-1",
        "title": "T",
        "state": "Todo",
        "dispatchable": True,
    }
    fields.update(override)
    with pytest.raises(ValidationError):
        build_issue(**fields)  # type: ignore[arg-type]


def test_timestamps_need_an_offset() -> None:
    assert parse_timestamp("2026-01-01T00:00:00") is None
    assert parse_timestamp("2026-01-01T01:00:00+01:00") == parse_timestamp("2026-01-01T00:00:00Z")


def test_dict_round_trip_keeps_every_field() -> None:
    issue = build_issue(
        id="1",
        identifier="A-1",
        title="T",
        state="Todo",
        dispatchable=False,
        labels=["x"],
        blocked_by=[BlockerRef(id="2", identifier="A-2", state="Done")],
        created_at="2026-01-01T00:00:00Z",
        native_ref={"node": "abc"},
    )
    data = issue.to_dict()
    assert set(data) >= {
        "id",
        "identifier",
        "title",
        "description",
        "priority",
        "state",
        "branch_name",
        "url",
        "assignee_id",
        "labels",
        "blocked_by",
        "dispatchable",
        "created_at",
        "updated_at",
        "native_ref",
    }
    back = Issue.from_dict(data)
    assert back == issue and back.native_ref == issue.native_ref


@given(st.dictionaries(st.text(max_size=8), st.none() | st.integers() | st.text(max_size=8)))
def test_from_dict_never_raises_anything_but_validation_error(data: dict[str, object]) -> None:
    with contextlib.suppress(ValidationError):
        Issue.from_dict(data)
