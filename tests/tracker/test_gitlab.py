"""The production GitLab adapter, built by the tracker registry as the daemon builds it, over
real HTTP against a local GitLab REST v4 server (SPEC 17.3)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symphonyd.core.errors import TrackerError, ValidationError
from symphonyd.core.issue import MAX_DESCRIPTION_CHARS, MAX_TITLE_CHARS
from symphonyd.tracker.gitlab import GitLabAdapter
from symphonyd.tracker.registry import build_adapter, settings_for
from tests.tracker.fake_gitlab import PROJECT, PROJECT_ID, TOKEN, FakeGitLab, gl_issue, link
from tests.tracker.helpers import AuditLog, SleepLog, call, error_of, run

STATES = {"Todo": "status::todo", "In Progress": "status::in-progress", "Review": "status::review"}


def adapter(srv: FakeGitLab, sleep: SleepLog | None = None, **provider: Any) -> GitLabAdapter:
    settings = settings_for(
        "gitlab",
        {"endpoint": srv.base_url, "project": PROJECT, "state_labels": STATES, **provider},
        {},
        active_states=("Todo", "In Progress"),
        terminal_states=("Closed",),
    )
    built = build_adapter(settings, {"GITLAB_TOKEN": TOKEN})
    assert isinstance(built, GitLabAdapter)
    built._sleep = sleep or SleepLog()
    return built


def lists(srv: FakeGitLab) -> list[Any]:
    return [r for r in srv.requests if r.path.endswith("/issues")]


def test_scoped_label_states_keyset_pages_and_normalisation() -> None:
    issues = [gl_issue(n, labels=("status::todo", "Bug")) for n in range(1, 6)]
    issues[1]["labels"] = ["Status::In-Progress", "priority::2", "priority::4", "BUG "]
    issues[2]["labels"] = ["status::review"]
    issues[3]["labels"] = []  # open without a state label: open_state, not active here
    issues.append(gl_issue(6, state="closed", labels=("status::todo",)))
    with FakeGitLab(issues) as srv:
        got = call(adapter(srv, page_size=2), states=["todo", "In Progress"])
        assert len(lists(srv)) == 3  # 5 open issues, 2 per page, cursors from Link
        first = srv.requests[0]
        closed = call(adapter(srv), states=["Closed"])
        assert len(srv.requests) == 3 + 3 + 1  # pages, links of the 3 candidates, closed
        assert call(adapter(srv), states=["Nonsense"]) == [] and len(srv.requests) == 7
    assert first.headers["PRIVATE-TOKEN"] == TOKEN and "Authorization" not in first.headers
    assert [(i.identifier, i.state) for i in got] == [
        ("widgets-1", "Todo"), ("widgets-2", "In Progress"), ("widgets-5", "Todo"),
    ]  # fmt: skip
    two = got[1]
    assert two.labels == ("status::in-progress", "priority::2", "priority::4", "bug")
    assert two.priority == 2 and got[0].priority is None
    assert two.url == f"https://gitlab.example/{PROJECT}/-/issues/2"
    assert two.native_ref == {
        "project": PROJECT, "iid": 2, "id": 900_002, "reference": f"{PROJECT}#2",
    }  # fmt: skip
    assert [(i.id, i.state, i.dispatchable) for i in closed] == [("6", "Closed", False)]


def test_requests_carry_keyset_parameters_and_offset_servers_still_page() -> None:
    seen: list[str] = []

    class Recording(FakeGitLab):
        def answer(self, method, path, query, body, headers):
            seen.append(json.dumps(query, sort_keys=True))
            return super().answer(method, path, query, body, headers)

    issues = [gl_issue(n, labels=("status::todo",)) for n in range(1, 6)]
    with Recording(issues) as srv:
        assert len(call(adapter(srv, page_size=2, blockers="none"), states=["Todo"])) == 5
        srv.keyset_supported = False  # an older GitLab: ignores keyset, pages by offset
        assert len(call(adapter(srv, page_size=2, blockers="none"), states=["Todo"])) == 5
        offset = adapter(srv, page_size=2, blockers="none", pagination="offset")
        assert len(call(offset, states=["Todo"])) == 5
    first = json.loads(seen[0])
    assert first["pagination"] == ["keyset"] and first["order_by"] == ["created_at"]
    assert first["state"] == ["opened"] and first["per_page"] == ["2"]
    assert "cursor" in json.loads(seen[1])
    assert "page" in json.loads(seen[4]) and "pagination" not in json.loads(seen[-1])
    assert len(seen) == 9


def test_empty_inputs_make_no_request() -> None:
    with FakeGitLab([gl_issue(1)]) as srv:
        assert call(adapter(srv), states=[]) == []
        assert call(adapter(srv), ids=[]) == []
        never_given = ["not-an-iid", "-3", "0", "012", "\u0661\u0662", "1" * 13]
        assert call(adapter(srv), ids=never_given) == []
        assert srv.requests == []


def test_refresh_by_ids_is_one_batch_request_and_fails_on_a_malformed_record() -> None:
    issues = [gl_issue(n, labels=("status::todo",)) for n in range(1, 151)]
    issues[1]["state"] = "closed"
    issues.append(gl_issue(151, title=None))
    with FakeGitLab(issues) as srv:
        got = call(adapter(srv, blockers="none"), ids=["1", "2", "999", "x", "1"])
        assert [(i.id, i.state) for i in got] == [("1", "Todo"), ("2", "Closed")]
        assert len(srv.requests) == 1
        many = call(adapter(srv, blockers="none"), ids=[str(n) for n in range(1, 151)])
        assert len(many) == 150 and len(srv.requests) == 3  # 100 ids per request
        with pytest.raises(TrackerError) as err:
            call(adapter(srv), ids=["1", "151"])
    assert err.value.error_code == "tracker_response"


def test_refresh_refuses_an_issue_that_was_not_asked_for() -> None:
    class Sloppy(FakeGitLab):
        def _matching(self, query):
            return self.issues  # ignores iids[]

    with Sloppy([gl_issue(1), gl_issue(2)]) as srv, pytest.raises(TrackerError) as err:
        call(adapter(srv, blockers="none"), ids=["1"])
    assert err.value.error_code == "tracker_response"


def test_malformed_hostile_huge_and_unicode_records(caplog: pytest.LogCaptureFixture) -> None:
    huge = "é" * (MAX_DESCRIPTION_CHARS + 5000)
    issues = [
        gl_issue(1, title="Ünïcødé 🚀 \u200b title", labels=("status::todo", "ラベル")),
        gl_issue(2, title=""),
        gl_issue(3) | {"iid": "3"},
        gl_issue(4) | {"iid": True},
        gl_issue(5, state="locked"),
        gl_issue(6, title="t" * (MAX_TITLE_CHARS * 3), description=huge, labels=[{"x": 1}, 7]),
        gl_issue(7, references="nope", assignees="nope", web_url=["x"], created_at="yesterday"),
        "not an object",
        gl_issue(8) | {"iid": 10**13},
    ]
    srv = FakeGitLab(issues)  # type: ignore[arg-type]
    with srv, caplog.at_level(logging.WARNING):
        got = call(adapter(srv), states=["Todo", "Open", "Closed"])  # no state filter
    assert [i.id for i in got] == ["1", "6", "7"]
    assert sum("omitting malformed" in r.getMessage() for r in caplog.records) == 6
    assert got[0].title == "Ünïcødé 🚀 \u200b title" and got[0].labels == ("status::todo", "ラベル")
    assert len(got[1].title) < MAX_TITLE_CHARS + 100 and "truncated" in (got[1].description or "")
    assert got[1].labels == () and got[1].state == "Open"
    assert got[2].url is None and got[2].created_at is None and got[2].native_ref is not None
    json.dumps([i.to_dict() for i in got])


def test_assignee_and_blocked_label_decide_dispatchable() -> None:
    bot = [{"username": "bot"}, {"username": "carol"}]
    issues = [
        gl_issue(1, labels=("status::todo",), assignees=bot),
        gl_issue(2, labels=("status::todo", "Blocked"), assignees=bot),
        gl_issue(3, labels=("status::todo",), assignees=[{"username": "human"}]),
    ]
    with FakeGitLab(issues) as srv:
        # Issue 3 is not even listed: the assignee filter is GitLab's (assignee_username).
        scoped = call(adapter(srv, assignee="bot", blocked_label="blocked"), states=["Todo"])
        everyone = call(adapter(srv, blocked_label="blocked"), states=["Todo"])
    assert [(i.id, i.dispatchable, i.assignee_id) for i in scoped] == [
        ("1", True, "bot"), ("2", False, "bot"),
    ]  # fmt: skip
    assert [i.dispatchable for i in everyone] == [True, False, True]


def test_blockers_from_is_blocked_by_links() -> None:
    issues = [gl_issue(n, labels=("status::todo",)) for n in range(1, 6)]
    closed = gl_issue(9, state="closed")
    foreign = gl_issue(
        90, project_id=77, references={"full": "acme/infra#90"}, labels=("status::review",)
    )
    with FakeGitLab([*issues, closed]) as srv:
        srv.links = {
            2: [link(issues[0])],  # an open issue of this project
            3: [link(closed)],  # closed: terminal, does not hold
            4: [link(closed), link(foreign)],  # one open blocker in another project
            5: [link(issues[0], "relates_to"), link(issues[1], "blocks")],  # not blockers
        }
        got = {i.id: i for i in call(adapter(srv), states=["Todo"])}
        link_calls = sorted(r.path for r in srv.requests if r.path.endswith("/links"))
        refreshed = call(adapter(srv), ids=["2"])
        srv.requests.clear()
        assert len(call(adapter(srv, blockers="none"), states=["Todo"])) == 5
        assert not [r for r in srv.requests if r.path.endswith("/links")]
    assert {k: i.dispatchable for k, i in got.items()} == {
        "1": True, "2": False, "3": True, "4": False, "5": True,
    }  # fmt: skip
    assert [(b.id, b.identifier, b.state) for b in got["2"].blocked_by] == [
        ("1", "widgets-1", "Todo"),
    ]
    assert [(b.identifier, b.state) for b in got["4"].blocked_by] == [
        ("widgets-9", "Closed"), ("acme/infra#90", "Review"),
    ]  # fmt: skip
    assert got["5"].blocked_by == ()
    assert len(link_calls) == 5  # one per open candidate issue
    assert refreshed[0].blocked_by == got["2"].blocked_by and not refreshed[0].dispatchable


def test_unreadable_links_hold_the_issue_back(caplog: pytest.LogCaptureFixture) -> None:
    with FakeGitLab([gl_issue(1, labels=("status::todo",))]) as srv:
        srv.fail_links = True
        got = call(adapter(srv, max_attempts=1), states=["Todo"])
    assert [(i.id, i.dispatchable) for i in got] == [("1", False)]
    assert got[0].blocked_by[0].state is None
    assert "cannot read the links of widgets-1" in caplog.text


def test_rate_limits_5xx_timeouts_auth_and_bad_bodies() -> None:
    sleep = SleepLog()
    with FakeGitLab([gl_issue(1, labels=("status::todo",))]) as srv:
        srv.faults.append(("status", 429, {"Retry-After": "4", "RateLimit-Remaining": "0"}))
        srv.faults.append(("status", 429, {"RateLimit-Reset": "0", "RateLimit-Limit": "600"}))
        srv.faults.append(("status", 503))
        assert len(call(adapter(srv, sleep, max_attempts=4, blockers="none"), ["Todo"])) == 1
        assert sleep.waits[:2] == [4.0, 0.0] and len(sleep.waits) == 3
        for fault, code in [
            (("sleep", 2.0), "tracker_request"),
            (("truncated",), "tracker_request"),
            (("malformed",), "tracker_response"),
            (("body", {"message": "not a list"}), "tracker_response"),
            (("status", 401), "tracker_status"),
            (("status", 403), "tracker_status"),
            (("status", 404), "tracker_status"),
            (("status", 500), "tracker_status"),
            (("status", 429, {"Retry-After": "9999"}), "tracker_rate_limited"),
        ]:
            srv.faults.append(fault)
            with pytest.raises(TrackerError) as err:
                # Only the sleeping answer may time out: a loaded CI machine can take more
                # than 200 ms to answer any of the others.
                timeout = 200 if fault[0] == "sleep" else 10_000
                call(adapter(srv, max_attempts=1, timeout_ms=timeout), states=["Todo"])
            assert err.value.error_code == code, fault
            assert TOKEN not in str(err.value)
        srv.faults.append(("status", 429, {"Retry-After": "9999"}))
        with pytest.raises(TrackerError) as err:
            call(adapter(srv), states=["Todo"])
        assert err.value.details.get("retry_after_ms") == 9_999_000


def test_wrong_token_is_a_status_error() -> None:
    with FakeGitLab([gl_issue(1)]) as srv:
        a = build_adapter(
            settings_for("gitlab", {"endpoint": srv.base_url, "project": PROJECT}, {}),
            {"GITLAB_TOKEN": "glpat-wrong"},
        )
        with pytest.raises(TrackerError) as err:
            run(a.fetch_issues_by_states(["Open"]))
    assert err.value.error_code == "tracker_status" and err.value.details["status"] == 401


def test_pagination_that_leaves_the_project_api_or_repeats_is_refused() -> None:
    with FakeGitLab([gl_issue(n) for n in range(1, 5)]) as srv:
        srv.foreign_next = True
        with pytest.raises(TrackerError) as err:
            call(adapter(srv, page_size=2), states=["Open"])
        assert len(srv.requests) == 1
    assert err.value.error_code == "tracker_pagination"

    class Looping(FakeGitLab):
        def _list(self, query):  # always serves the first page, whatever the cursor
            return super()._list({k: v for k, v in query.items() if k != "cursor"})

    with Looping([gl_issue(n) for n in range(1, 5)]) as srv, pytest.raises(TrackerError) as err:
        call(adapter(srv, page_size=2), states=["Open"])
    assert err.value.error_code == "tracker_pagination"


def test_tools_comment_move_read_with_notes_and_refusals() -> None:
    audit = AuditLog()
    start = gl_issue(1, labels=("Bug", "status::in-progress", "team::web"))
    with FakeGitLab([start]) as srv:
        srv.notes[1] = [
            {"id": 1, "body": "x" * 50_000, "author": {"username": "bob"}, "system": False},
            {"id": 2, "body": "changed the description", "system": True, "author": None},
        ]
        a = adapter(srv, tool_states=["Review", "Closed", "Todo"])
        a.audit = audit

        async def go() -> list[Any]:
            (issue,) = await a.fetch_issues_by_ids(["1"])
            out = [
                await a.execute_tool("tracker_comment", {"body": "MR !7 is up 🚀"}, issue),
                await a.execute_tool("tracker_move", {"state": "review"}, issue),
                await a.execute_tool("tracker_read_issue", None, issue),
                await a.execute_tool("tracker_move", {"state": "Closed"}, issue),
                await a.execute_tool("tracker_move", {"state": "Todo"}, issue),
                await a.execute_tool("tracker_move", {"state": "In Progress"}, issue),
                await a.execute_tool("tracker_comment", {"body": "x", "iid": 2}, issue),
                await a.execute_tool("gitlab_api", {"path": "/users"}, issue),
            ]
            await a.aclose()
            return out

        results = run(go())
        assert srv.notes[1][-1]["body"] == "MR !7 is up 🚀"
        puts = [r.body for r in srv.requests if r.method == "PUT"]
        assert srv.issues[0]["labels"] == ["Bug", "team::web", "status::todo"]
        assert srv.issues[0]["state"] == "opened"
    assert results[0].output["comment_id"] == 7002
    assert results[1].output == {"state": "Review"}
    assert puts[0] == {
        "state_event": "reopen",
        "remove_labels": "status::todo,status::in-progress",
        "add_labels": "status::review",
    }
    read = results[2].output
    assert read["issue"]["labels"] == ["bug", "team::web", "status::review"]
    assert [n["id"] for n in read["comments"]] == [1, 2, 7002]
    assert "truncated" in read["comments"][0]["body"] and read["comments"][1]["system"] is True
    assert results[3].output == {"state": "Closed"} and puts[1] == {"state_event": "close"}
    assert results[4].output == {"state": "Todo"}
    assert error_of(results[5]) == "state_not_allowed"
    assert error_of(results[6]) == "invalid_arguments"
    assert error_of(results[7]) == "unsupported_tool"
    ops = [(e.payload["operation"], e.payload["detail"]["ok"]) for e in audit.events]
    assert ops == [("comment", True), ("move", True), ("move", True), ("move", True)]
    assert "MR !7" not in json.dumps([e.payload for e in audit.events])


def test_a_write_refused_by_gitlab_is_audited_and_not_retried() -> None:
    audit = AuditLog()
    with FakeGitLab([gl_issue(1, labels=("status::todo",))]) as srv:
        a = adapter(srv, tool_states=["Closed"], blockers="none")
        a.audit = audit

        async def go() -> Any:
            (issue,) = await a.fetch_issues_by_ids(["1"])
            srv.faults.append(("status", 503))
            out = await a.execute_tool("tracker_comment", {"body": "hi"}, issue)
            await a.aclose()
            return out

        result = run(go())
        posts = [r for r in srv.requests if r.method == "POST"]
    assert error_of(result) == "tracker_status" and len(posts) == 1
    assert audit.events[0].payload["detail"]["ok"] is False


def test_config_validation_is_typed() -> None:
    def build(provider: dict[str, Any], env: dict[str, str] | None = None) -> str:
        with pytest.raises(TrackerError) as err:
            GitLabAdapter(
                settings_for("gitlab", provider, {}),
                {"GITLAB_TOKEN": TOKEN} if env is None else env,
            )
        return err.value.error_code

    ok = {"project": PROJECT}
    assert build({}) == "invalid_tracker_config"
    bads: list[dict[str, Any]] = [
        {"project": "../etc/passwd"},
        {"project": "noslash"},
        {**ok, "endpoint": "http://gitlab.example"},
        {**ok, "projekt": "typo"},
        {**ok, "api_key": TOKEN},
        {**ok, "state_labels": {"Todo": "a,b"}},
        {**ok, "state_labels": ["x", "X"]},
        {**ok, "state_labels": ["Closed"]},
        {**ok, "blockers": "maybe"},
        {**ok, "pagination": "cursor"},
        {**ok, "page_size": 500},
        {**ok, "tool_states": ["Nowhere"]},
        {"project": "acme/_x"},  # a name that is no identifier prefix
    ]
    for bad in bads:
        assert build(bad) == "invalid_tracker_config", bad
    assert build(ok, {}) == "missing_tracker_secret"
    numeric = GitLabAdapter(settings_for("gitlab", {"project": 4242}, {}), {"GITLAB_TOKEN": "t"})
    assert numeric.cfg.api == "https://gitlab.com/api/v4/projects/4242"
    assert numeric.cfg.prefix == "project4242" and numeric._project_id == PROJECT_ID
    assert numeric.secret_environment_names() == ["GITLAB_TOKEN"]
    run(numeric.aclose())


HOSTILE = GitLabAdapter(
    settings_for("gitlab", {"project": "a/b", "state_labels": ["x::y"]}, {}), {"GITLAB_TOKEN": "k"}
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=30,
)
FIELDS = ["iid", "id", "project_id", "title", "description", "state", "labels", "assignees",
          "web_url", "references", "created_at", "updated_at"]  # fmt: skip


@given(st.one_of(JSON, st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=12)))
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_normalise_is_total(record: Any) -> None:
    try:
        issue = HOSTILE._normalise(record)
    except ValidationError:
        return
    json.dumps(issue.to_dict())
    assert issue.id.isdigit() and issue.title and issue.identifier.startswith("b-")
