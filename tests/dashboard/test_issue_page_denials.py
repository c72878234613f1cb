"""The issue view's line for a sandbox teardown names the run's refused names and the fix."""

from __future__ import annotations

from typing import Any

from symphonyd.core import audit_events as ev
from symphonyd.core.api.audit import AuditRecordView
from symphonyd.dashboard.issue_page import describe, transcript


def teardown(payload: dict[str, Any]) -> AuditRecordView:
    return AuditRecordView(
        1, "2026-12-07T03:00:00Z", ev.SANDBOX_TEARDOWN, {}, "i-1", "ABC-1", None, payload, "h"
    )


def test_teardown_shows_refused_names_and_the_suggested_line() -> None:
    record = teardown(
        {
            "agent_id": "r1",
            "denied": [
                {"host": "pkg.example", "reason": "not_allowlisted", "count": 2},
                {"host": "<b>x</b>", "reason": "denied_domain", "count": 1},
            ],
            "suggest": "allowed_domains: [pkg.example]",
        }
    )
    kind, text = describe(record)
    assert kind == "sandbox removed"
    assert text == (
        "clean; refused: pkg.example x2 (not_allowlisted), <b>x</b> x1 (denied_domain); "
        "suggest: allowed_domains: [pkg.example]"
    )
    html = transcript([record], "none")
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html


def test_teardown_without_denials_is_unchanged() -> None:
    assert describe(teardown({"agent_id": "r1"})) == ("sandbox removed", "clean")
    assert describe(teardown({"problems": ["netns: busy"], "denied": "junk"}))[1] == (
        '["netns: busy"]'
    )
