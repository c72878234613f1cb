"""The production GitHub adapter over real HTTP against a local REST server (SPEC 17.3)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from symphonyd.core.errors import TrackerError
from symphonyd.core.issue import Issue
from symphonyd.tracker.github import GitHubAdapter
from symphonyd.tracker.github_blockers import BlockerCache
from symphonyd.tracker.provider_config import TrackerSettings
from tests.tracker.fake_github import REPO, TOKEN, FakeGitHub, gh_issue
from tests.tracker.helpers import AuditLog, SleepLog, call, error_of, run


def adapter(srv: FakeGitHub, sleep: SleepLog | None = None, **provider: Any) -> GitHubAdapter:
    settings = TrackerSettings(
        "github",
        {
            "endpoint": srv.base_url,
            "repository": REPO,
            "state_labels": ["In Progress", "Human Review"],
            **provider,
        },
        active_states=("Open", "In Progress"),
        terminal_states=("Closed",),
    )
    return GitHubAdapter(settings, {"GITHUB_TOKEN": TOKEN}, sleep=sleep or SleepLog())


def test_states_from_open_closed_and_labels_with_pagination_order() -> None:
    issues = [gh_issue(n) for n in range(1, 6)]
    issues[1]["labels"] = [{"name": "in progress"}, {"name": "BUG "}]
    issues.append(gh_issue(6, state="closed"))
    issues.append(gh_issue(7, pull_request={"url": "x"}))
    issues.append(gh_issue(8, labels=("Human Review",)))
    with FakeGitHub(issues) as srv:
        got = call(adapter(srv, page_size=2), states=["open", "In Progress"])
        assert len(srv.requests) == 4
        closed = call(adapter(srv), states=["Closed"])
        assert call(adapter(srv), states=["Nonsense"]) == [] and len(srv.requests) == 5
    assert [(i.identifier, i.state) for i in got] == [
        ("widgets-1", "Open"),
        ("widgets-2", "In Progress"),
        ("widgets-3", "Open"),
        ("widgets-4", "Open"),
        ("widgets-5", "Open"),
    ]
    assert got[1].labels == ("in progress", "bug")
    assert got[0].native_ref == {"repository": REPO, "number": 1, "node_id": "I_kw1"}
    assert got[0].id == "1" and got[0].priority is None and got[0].url
    assert [(i.id, i.state, i.dispatchable) for i in closed] == [("6", "Closed", False)]


def test_empty_inputs_make_no_request() -> None:
    with FakeGitHub([gh_issue(1)]) as srv:
        assert call(adapter(srv), states=[]) == []
        assert call(adapter(srv), ids=[]) == []
        assert srv.requests == []


def test_refresh_by_ids_omits_invisible_and_fails_malformed() -> None:
    issues = [
        gh_issue(1),
        gh_issue(2, state="closed"),
        gh_issue(3, pull_request={}),
        gh_issue(4, title=None),
    ]
    with FakeGitHub(issues) as srv:
        got = call(adapter(srv), ids=["1", "2", "3", "99", "not-a-number", "1"])
        assert sorted(i.id for i in got) == ["1", "2"]
        with pytest.raises(TrackerError) as err:
            call(adapter(srv), ids=["1", "4"])
    assert err.value.error_code == "tracker_response"


def test_malformed_records_omitted_from_lists_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    issues = [gh_issue(1), gh_issue(2, title=""), gh_issue(3, number="3"), gh_issue(4)]
    srv = FakeGitHub(issues)
    with srv, caplog.at_level(logging.WARNING):
        got = call(adapter(srv), states=["Open"])
    assert [i.id for i in got] == ["1", "4"]
    assert sum("omitting malformed" in r.getMessage() for r in caplog.records) == 2


def test_dispatchable_from_assignee_and_blocked_label() -> None:
    issues = [
        gh_issue(1, assignee={"login": "bot"}),
        gh_issue(2, assignee={"login": "bot"}, labels=("Blocked",)),
        gh_issue(3, assignee={"login": "human"}),
    ]
    with FakeGitHub(issues) as srv:
        scoped = call(adapter(srv, assignee="bot", blocked_label="blocked"), states=["Open"])
        everyone = call(adapter(srv, blocked_label="blocked"), states=["Open"])
    assert [(i.id, i.dispatchable) for i in scoped] == [("1", True), ("2", False)]
    assert [i.dispatchable for i in everyone] == [True, False, True]


def test_open_blockers_hold_an_issue_back_and_closed_ones_cost_nothing() -> None:
    issues = [gh_issue(n) for n in range(1, 6)] + [gh_issue(6, state="closed")]
    foreign = gh_issue(90, repository_url="https://api.github.com/repos/acme/infra")
    with FakeGitHub(issues) as srv:
        srv.blocked_by = {
            2: [issues[0]],  # an open issue of this repository
            3: [issues[5]],  # closed only: no request for the list
            4: [issues[5], foreign],  # one open blocker in another repository
            5: [gh_issue(7, labels=("Human Review",))],  # open, in a non-terminal state label
        }
        got = {i.id: i for i in call(adapter(srv), states=["Open"])}
        dependency_calls = [r.path for r in srv.requests if r.path.endswith("/blocked_by")]
        refreshed = call(adapter(srv), ids=["2"])
    assert {k: i.dispatchable for k, i in got.items()} == {
        "1": True, "2": False, "3": True, "4": False, "5": False,
    }  # fmt: skip
    assert got["2"].blocked_by[0].identifier == "widgets-1"
    assert got["2"].blocked_by[0].state == "Open"
    assert [(b.identifier, b.state) for b in got["4"].blocked_by] == [
        ("widgets-6", "Closed"), ("acme/infra#90", "Open"),
    ]  # fmt: skip
    assert got["3"].blocked_by == ()  # closed blockers are not listed
    assert sorted(dependency_calls) == [
        f"/repos/{REPO}/issues/{n}/dependencies/blocked_by" for n in (2, 4, 5)
    ]
    assert refreshed[0].blocked_by == got["2"].blocked_by and not refreshed[0].dispatchable


def test_blocker_lists_are_reused_until_the_counts_change_or_they_age() -> None:
    issues = [gh_issue(1), gh_issue(2)]
    now = [0.0]
    with FakeGitHub(issues) as srv:
        srv.blocked_by = {2: [issues[0]]}
        a = adapter(srv)
        a._blockers = BlockerCache(ttl_s=300, clock=lambda: now[0])

        async def polls() -> list[list[Issue]]:
            try:
                seen = [await a.fetch_issues_by_states(["Open"]) for _ in range(3)]
                issues[0]["state"] = "closed"  # the blocker closes: the counts change
                seen.append(await a.fetch_issues_by_states(["Open"]))
                issues[0]["state"] = "open"  # reopened: the same counts as the kept list
                seen.append(await a.fetch_issues_by_states(["Open"]))
                srv.blocked_by[2].append(issues[1] | {"number": 3})  # a second blocker
                seen.append(await a.fetch_issues_by_states(["Open"]))
                seen.append(await a.fetch_issues_by_states(["Open"]))
                now[0] = 301.0  # past the TTL
                seen.append(await a.fetch_issues_by_states(["Open"]))
                return seen
            finally:
                await a.aclose()

        seen = run(polls())
        fetched = [r for r in srv.requests if r.path.endswith("/blocked_by")]
    assert len(fetched) == 3  # first poll, a new blocker counted, past the TTL
    held = [next(i for i in poll if i.id == "2").dispatchable for poll in seen]
    assert held == [False, False, False, True, False, False, False, False]
    assert [b.identifier for b in next(i for i in seen[-1] if i.id == "2").blocked_by] == [
        "widgets-1", "widgets-3",
    ]  # fmt: skip


def test_an_unreadable_blocker_list_holds_the_issue_back(caplog: pytest.LogCaptureFixture) -> None:
    issues = [gh_issue(1), gh_issue(2)]
    with FakeGitHub(issues) as srv:
        srv.blocked_by = {2: [issues[0]]}
        srv.fail_dependencies = True
        got = call(adapter(srv, max_attempts=1), states=["Open"])
    assert [(i.id, i.dispatchable) for i in got] == [("1", True), ("2", False)]
    assert got[1].blocked_by[0].state is None
    assert "cannot read the blockers of widgets-2" in caplog.text


def test_rate_limits_500s_timeouts_and_bad_bodies() -> None:
    sleep = SleepLog()
    with FakeGitHub([gh_issue(1)]) as srv:
        srv.faults.append(("status", 403, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "0"}))
        srv.faults.append(("status", 429, {"Retry-After": "4"}))
        srv.faults.append(("status", 503))
        assert len(call(adapter(srv, sleep, max_attempts=4), states=["Open"])) == 1
        assert sleep.waits[:2] == [0.0, 4.0] and len(sleep.waits) == 3
        for fault, code in [
            (("sleep", 2.0), "tracker_request"),
            (("truncated",), "tracker_request"),
            (("malformed",), "tracker_response"),
            (("body", {"not": "a list"}), "tracker_response"),
            (("status", 401), "tracker_status"),
            (("status", 429, {"Retry-After": "9999"}), "tracker_rate_limited"),
        ]:
            srv.faults.append(fault)
            with pytest.raises(TrackerError) as err:
                # Only the sleeping answer may time out: a loaded CI machine can take more
                # than 200 ms to answer any of the others.
                timeout = 200 if fault[0] == "sleep" else 10_000
                call(adapter(srv, max_attempts=1, timeout_ms=timeout), states=["Open"])
            assert err.value.error_code == code, fault


def test_pagination_link_to_another_host_is_refused() -> None:
    with FakeGitHub([gh_issue(n) for n in range(1, 5)]) as srv:
        srv.foreign_next = True
        with pytest.raises(TrackerError) as err:
            call(adapter(srv, page_size=2), states=["Open"])
        assert len(srv.requests) == 1
    assert err.value.error_code == "tracker_pagination"


def test_tools_comment_and_move_via_labels_and_state() -> None:
    audit = AuditLog()
    with FakeGitHub([gh_issue(1, labels=("Bug", "In Progress"))]) as srv:
        a = adapter(srv, tool_states=["Human Review", "Closed", "Open"])
        a.audit = audit

        async def go() -> list[Any]:
            (issue,) = await a.fetch_issues_by_ids(["1"])
            out = [
                await a.execute_tool("tracker_comment", {"body": "PR #7 is up"}, issue),
                await a.execute_tool("tracker_move", {"state": "Human Review"}, issue),
                await a.execute_tool("tracker_read_issue", None, issue),
                await a.execute_tool("tracker_move", {"state": "Closed"}, issue),
                await a.execute_tool("tracker_move", {"state": "In Progress"}, issue),
            ]
            await a.aclose()
            return out

        results = run(go())
        assert srv.comments == [(1, "PR #7 is up")]
        assert srv.issues[0]["state"] == "closed"
    assert results[1].output == {"state": "Human Review"}
    assert results[2].output["issue"]["labels"] == ["bug", "human review"]
    assert results[3].output == {"state": "Closed"}
    assert error_of(results[4]) == "state_not_allowed"
    assert [e.payload["operation"] for e in audit.events] == ["comment", "move", "move"]


def test_config_validation() -> None:
    def build(provider: dict[str, Any], env: dict[str, str] | None = None) -> str:
        with pytest.raises(TrackerError) as err:
            GitHubAdapter(
                TrackerSettings("github", provider),
                {"GITHUB_TOKEN": TOKEN} if env is None else env,
            )
        return err.value.error_code

    assert build({}) == "invalid_tracker_config"
    assert build({"repository": "../etc"}) == "invalid_tracker_config"
    assert build({"repository": "a/b", "endpoint": "http://example.com"}) == (
        "invalid_tracker_config"
    )
    assert build({"repository": "a/b", "repo": "typo"}) == "invalid_tracker_config"
    assert build({"repository": "a/b"}, {}) == "missing_tracker_secret"
    assert build({"repository": "a/b", "api_key": TOKEN}) == "invalid_tracker_config"
