"""The Jira Cloud adapter as the tracker daemon builds it (WORKFLOW.md -> TrackerService ->
registry -> JiraAdapter), over real HTTP against a local Jira REST v3 server."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symphonyd.core.api.shared import Empty
from symphonyd.core.api.tracker import FetchByIds, FetchByStates, ToolCall
from symphonyd.core.errors import SymphonyError, ValidationError
from symphonyd.core.redact import Redactor
from symphonyd.tracker.credentials import UNIT_CREDENTIAL_NAME
from symphonyd.tracker.jira import JiraAdapter
from symphonyd.tracker.jira_format import adf_text
from symphonyd.tracker.provider_config import TrackerSettings
from symphonyd.tracker.service import TrackerService
from symphonyd.tracker.workflow_source import workflow_source
from tests.tracker.fake_jira import CREDENTIAL, EMAIL, TOKEN, FakeJira, blocked_by, jira_issue
from tests.tracker.helpers import AuditLog, error_of, run

ENV = {"JIRA_API_TOKEN": CREDENTIAL}


def workflow(tmp_path: Path, site: str, extra: str = "", api_key: str = "$JIRA_API_TOKEN") -> Path:
    wf = tmp_path / "WORKFLOW.md"
    wf.write_text(
        "---\ntracker:\n  kind: jira\n  provider:\n"
        f"    site: {site}\n    project: ENG\n    api_key: {json.dumps(api_key)}\n"
        "    tool_states: [Human Review, Done, Nowhere]\n"
        f"{extra}---\nprompt\n"
    )
    return wf


def serve(
    tmp_path: Path,
    srv: FakeJira,
    work: Any,
    extra: str = "",
    env: dict[str, str] | None = None,
    audit: AuditLog | None = None,
) -> Any:
    """Run ``work(svc)`` on a TrackerService built from a jira WORKFLOW.md, as the daemon does."""
    wf = workflow(tmp_path, srv.base_url, extra)
    env = ENV if env is None else env

    async def go() -> Any:
        kwargs: dict[str, Any] = {"audit": audit} if audit is not None else {}
        svc = TrackerService(workflow_source(wf, env), env, **kwargs)
        try:
            return await work(svc)
        finally:
            await svc.close()

    return run(go())


def states(tmp_path: Path, srv: FakeJira, wanted: list[str], extra: str = "") -> list[Any]:
    async def work(svc: TrackerService) -> Any:
        return (await svc.fetch_by_states(FetchByStates(wanted))).issues

    result: list[Any] = serve(tmp_path, srv, work, extra)
    return result


def refresh(tmp_path: Path, srv: FakeJira, ids: list[str]) -> list[Any]:
    async def work(svc: TrackerService) -> Any:
        return (await svc.fetch_by_ids(FetchByIds(ids))).issues

    result: list[Any] = serve(tmp_path, srv, work)
    return result


def searches(srv: FakeJira) -> list[Any]:
    return [r for r in srv.requests if r.path == "/rest/api/3/search/jql"]


def test_poll_follows_page_tokens_in_order_and_normalises(tmp_path: Path) -> None:
    issues = [jira_issue(n) for n in range(1, 8)]
    issues[1]["fields"].update(
        status={"name": "In Progress", "statusCategory": {"key": "indeterminate"}},
        labels=["Agent", " agent", "Ünïcode-标签"],
        priority={"name": "Highest"},
        summary="Fix the 🚀 launcher — ünïcode",
        assignee={"accountId": "5b10a2844c20165700ede21g"},
    )
    issues[2]["fields"]["priority"] = {"name": "P0 (custom scheme)"}
    issues.append(jira_issue(8, state="Done"))
    issues.append({**jira_issue(9), "key": "OPS-9"})  # another project: not ours
    with FakeJira(issues) as srv:
        got = states(tmp_path, srv, ["To Do", "in progress"], "    page_size: 2\n")
        sent = searches(srv)
    assert [i.identifier for i in got] == [f"ENG-{n}" for n in range(1, 8)]
    assert len(sent) == 4  # ceil(7 / 2) pages, each asking with the previous page's token
    assert "nextPageToken" not in sent[0].body
    assert [s.body["nextPageToken"] for s in sent[1:]] == [
        base64.b64encode(str(k).encode()).decode() for k in (2, 4, 6)
    ]
    assert sent[0].body["jql"] == (
        'project = "ENG" AND status in ("To Do", "in progress") ORDER BY created ASC, key ASC'
    )
    first, second = got[0], got[1]
    assert first.id == "10001" and first.url == f"{srv.base_url}/browse/ENG-1"
    assert first.state == "To Do" and first.dispatchable and first.priority == 3
    assert first.description == "Body 1" and first.labels == ("backend",)
    assert first.created_at is not None and first.created_at.isoformat() == (
        "2026-01-01T09:00:00+00:00"
    )
    assert first.native_ref == {"id": "10001", "key": "ENG-1", "project": "ENG"}
    assert second.state == "In Progress" and second.priority == 1
    assert second.title == "Fix the 🚀 launcher — ünïcode"
    assert second.labels == ("agent", "ünïcode-标签")
    assert second.assignee_id == "5b10a2844c20165700ede21g"
    assert got[2].priority is None


def test_operator_jql_narrows_the_scope(tmp_path: Path) -> None:
    issues = [jira_issue(1), jira_issue(2, labels=["agent"])]
    with FakeJira(issues) as srv:
        got = states(tmp_path, srv, ["To Do"], '    jql: labels = "agent"\n')
        jql = srv.jql[0]
    assert [i.identifier for i in got] == ["ENG-2"]
    assert jql.endswith('AND (labels = "agent") ORDER BY created ASC, key ASC')


def test_empty_inputs_make_no_request(tmp_path: Path) -> None:
    async def work(svc: TrackerService) -> Any:
        return (
            await svc.fetch_by_states(FetchByStates([])),
            await svc.fetch_by_ids(FetchByIds([])),
        )

    with FakeJira([jira_issue(1)]) as srv:
        a, b = serve(tmp_path, srv, work)
        assert srv.requests == []
    assert a.issues == [] and b.issues == []


def test_refresh_is_one_batch_and_a_vanished_issue_is_left_out(tmp_path: Path) -> None:
    issues = [jira_issue(n) for n in range(1, 4)]
    issues[2]["fields"]["status"] = {"name": "Done", "statusCategory": {"key": "done"}}
    with FakeJira(issues) as srv:
        got = refresh(tmp_path, srv, ["10001", "10003", "ENG-2", "10001"])
        assert len(srv.requests) == 1  # ids not handed out here cost nothing
        assert srv.jql[0] == 'project = "ENG" AND id in (10001, 10003)'
        srv.requests.clear()
        gone = refresh(tmp_path, srv, ["10001", "10099"])
        assert len(srv.requests) == 3  # the batch is refused (400), then one query per id
    assert [(i.id, i.state, i.dispatchable) for i in got] == [
        ("10001", "To Do", True),
        ("10003", "Done", False),
    ]
    assert [i.id for i in gone] == ["10001"]


def test_refresh_fails_on_a_malformed_requested_record_and_lists_omit_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    issues = [jira_issue(1), jira_issue(2), jira_issue(3)]
    del issues[1]["fields"]["summary"]
    issues[2]["fields"]["status"] = "To Do"  # not an object: no state
    with FakeJira(issues) as srv, caplog.at_level(logging.WARNING):
        listed = states(tmp_path, srv, ["To Do"])
        with pytest.raises(SymphonyError) as err:
            refresh(tmp_path, srv, ["10001", "10002"])
    assert [i.id for i in listed] == ["10001"]
    assert sum("omitting malformed" in r.getMessage() for r in caplog.records) == 2
    assert err.value.error_code == "tracker_response"


def test_blockers_from_is_blocked_by_links(tmp_path: Path) -> None:
    todo, done = jira_issue(1), jira_issue(2, state="Done")
    wont = jira_issue(3, state="Won't Do")
    issues = [todo, done, wont]
    issues.append(jira_issue(4, issuelinks=[blocked_by(todo)]))
    issues.append(jira_issue(5, issuelinks=[blocked_by(done), blocked_by(wont)]))
    outward = {**blocked_by(todo)}
    outward["outwardIssue"] = outward.pop("inwardIssue")  # ENG-6 blocks ENG-1: not blocked
    issues.append(jira_issue(6, issuelinks=[outward]))
    issues.append(jira_issue(7, issuelinks=[blocked_by(todo, "Relates")]))
    issues.append(jira_issue(8, issuelinks=[{**blocked_by(todo), "inwardIssue": "garbage"}]))
    with FakeJira(issues) as srv:
        got = {i.identifier: i for i in states(tmp_path, srv, ["To Do"])}
        assert len(srv.requests) == 1  # links come with the search: no request per issue
    assert {k: i.dispatchable for k, i in got.items()} == {
        "ENG-1": True, "ENG-4": False, "ENG-5": True, "ENG-6": True, "ENG-7": True,
        "ENG-8": False,
    }  # fmt: skip
    assert [(b.identifier, b.state) for b in got["ENG-4"].blocked_by] == [("ENG-1", "To Do")]
    assert [(b.id, b.state) for b in got["ENG-5"].blocked_by] == [
        ("10002", "Done"), ("10003", "Won't Do"),
    ]  # fmt: skip
    assert got["ENG-6"].blocked_by == () and got["ENG-8"].blocked_by[0].state is None


def test_rate_limits_5xx_and_bad_bodies_map_to_categories(tmp_path: Path) -> None:
    retry = "    max_attempts: 3\n    max_retry_wait_ms: 5000\n    timeout_ms: 300\n"
    with FakeJira([jira_issue(1)]) as srv:
        srv.faults.extend([("status", 429, {"Retry-After": "0"}), ("status", 503)])
        assert len(states(tmp_path, srv, ["To Do"], retry)) == 1
        assert len(srv.requests) == 3
        cases: list[tuple[tuple[Any, ...], str]] = [
            (("status", 429, {"Retry-After": "9999"}), "tracker_rate_limited"),
            (("status", 502), "tracker_status"),
            (("status-body", 400, {}, {"errorMessages": ["no status 'X'"]}), "tracker_status"),
            (("status-body", 401, {}, {"errorMessages": ["auth"]}), "tracker_status"),
            (("sleep", 1.0), "tracker_request"),
            (("truncated",), "tracker_request"),
            (("malformed",), "tracker_response"),
            (("body", {"values": []}), "tracker_response"),
            (("body", {"issues": [], "isLast": False}), "tracker_pagination"),
        ]
        for fault, code in cases:
            srv.faults.append(fault)
            # Only the sleeping answer may time out: a loaded machine can be slow with any.
            timeout = 300 if fault[0] == "sleep" else 10_000
            with pytest.raises(SymphonyError) as err:
                states(
                    tmp_path, srv, ["To Do"], f"    max_attempts: 1\n    timeout_ms: {timeout}\n"
                )
            assert err.value.error_code == code, fault
        srv.repeat_token = True
        srv.issues.extend(jira_issue(n) for n in range(2, 6))
        with pytest.raises(SymphonyError) as err:
            states(tmp_path, srv, ["To Do"], "    page_size: 2\n")
        assert err.value.error_code == "tracker_pagination"


def test_wrong_credential_is_refused_and_never_echoed(tmp_path: Path) -> None:
    with FakeJira([jira_issue(1)]) as srv:
        env = {"JIRA_API_TOKEN": f"{EMAIL}:not-the-token"}

        async def work(svc: TrackerService) -> Any:
            with pytest.raises(SymphonyError) as err:
                await svc.fetch_by_states(FetchByStates(["To Do"]))
            return err.value

        exc = serve(tmp_path, srv, work, env=env)
    assert exc.error_code == "tracker_status"
    assert "not-the-token" not in exc.message


def test_credential_from_the_unit_credential_file(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / UNIT_CREDENTIAL_NAME).write_text(CREDENTIAL + "\n")
    env = {"CREDENTIALS_DIRECTORY": str(creds)}

    async def work(svc: TrackerService) -> Any:
        issues = (await svc.fetch_by_states(FetchByStates(["To Do"]))).issues
        return issues, await svc.profile(Empty())

    with FakeJira([jira_issue(1)]) as srv:
        issues, profile = serve(tmp_path, srv, work, env=env)
        auth = srv.requests[0].headers["Authorization"]
    assert [i.identifier for i in issues] == ["ENG-1"]
    assert auth == "Basic " + base64.b64encode(CREDENTIAL.encode()).decode()
    assert profile.kind == "jira" and profile.secret_env_names == ["JIRA_API_TOKEN"]
    assert profile.active_states == ["To Do", "In Progress"]
    assert profile.terminal_states == ["Done"]


def test_hostile_payloads_are_bounded_and_a_token_echo_is_dropped(tmp_path: Path) -> None:
    deep: dict[str, Any] = {"type": "text", "text": "bottom"}
    for _ in range(200_000):
        deep = {"type": "paragraph", "content": [deep]}
    huge = {"type": "doc", "content": [{"type": "text", "text": "x" * 3_000_000}]}
    issues = [
        jira_issue(1, description=huge, summary="s" * 100_000),
        jira_issue(2, description={"type": "doc", "content": [{"type": "text", "text": TOKEN}]}),
        jira_issue(3, labels="not-a-list", priority=["High"], issuelinks={"x": 1}),
    ]
    with FakeJira(issues) as srv:
        got = states(tmp_path, srv, ["To Do"])
    assert [i.identifier for i in got] == ["ENG-1", "ENG-3"]  # ENG-2 carries the token
    assert len(got[0].description or "") < 1_000_000 and len(got[0].title) < 100_000
    assert got[1].labels == () and got[1].priority is None and got[1].blocked_by == ()
    assert adf_text(deep) is not None  # 200 000 levels: no recursion, bounded work


def test_tools_comment_move_read_are_scoped_and_audited(tmp_path: Path) -> None:
    audit = AuditLog()
    with FakeJira([jira_issue(1), jira_issue(2)]) as srv:

        async def work(svc: TrackerService) -> Any:
            (issue,) = (await svc.fetch_by_ids(FetchByIds(["10001"]))).issues
            specs = await svc.tool_specs(Empty())
            fp = specs.tracker_fingerprint

            async def call(tool: str, args: Any) -> Any:
                return await svc.tool_call(ToolCall(issue, tool, args, "sess-1", fp))

            return [
                await call("tracker_comment", {"body": "PR is up\n\nsecond para ✓"}),
                await call("tracker_move", {"state": "human review"}),
                await call("tracker_read_issue", {}),
                await call("tracker_move", {"state": "Nowhere"}),
                await call("tracker_move", {"state": "Closed"}),
                await call("tracker_comment", {"body": "x", "issue": "ENG-2"}),
                await call("jira_rest", {"path": "/rest/api/3/issue/ENG-2"}),
                [s.name for s in specs.tools],
            ]

        out = serve(tmp_path, srv, work, audit=audit)
        posted = srv.comments["10001"][0]["body"]
        assert srv.issues[0]["fields"]["status"]["name"] == "Human Review"
        assert srv.issues[1]["fields"]["status"]["name"] == "To Do"
        assert "10002" not in srv.comments
    comment, move, read, nowhere, closed, other, raw, names = out
    assert comment.success and comment.output["comment_id"] == "20000"
    assert comment.output["url"].endswith("/browse/ENG-1?focusedCommentId=20000")
    assert posted["type"] == "doc" and [p["content"][0]["text"] for p in posted["content"]] == [
        "PR is up", "second para ✓",
    ]  # fmt: skip
    assert move.output == {"state": "Human Review"}
    assert read.output["issue"]["state"] == "Human Review"
    assert read.output["comments"] == [
        {
            "id": "20000",
            "author": "Symphony Bot",
            "created": "2026-01-03T00:00:00.000+0000",
            "body": "PR is up\nsecond para ✓",
        }
    ]
    assert error_of(nowhere) == "unknown_state"
    assert error_of(closed) == "state_not_allowed"
    assert error_of(other) == "invalid_arguments"
    assert error_of(raw) == "unsupported_tool"
    assert names == ["tracker_read_issue", "tracker_comment", "tracker_move"]
    ops = [(e.payload["operation"], e.payload["detail"]["ok"]) for e in audit.events]
    assert ops == [("comment", True), ("move", True), ("move", False)]
    assert audit.events[0].session_id == "sess-1"
    assert "PR is up" not in json.dumps([e.payload for e in audit.events])


def build(provider: dict[str, Any], env: dict[str, str] | None = None) -> str:
    with pytest.raises(SymphonyError) as err:
        JiraAdapter(TrackerSettings("jira", provider), ENV if env is None else env)
    return err.value.error_code


def test_config_validation_is_typed() -> None:
    ok = {"site": "https://acme.atlassian.net", "project": "ENG"}
    assert build({"project": "ENG"}) == "invalid_tracker_config"
    assert build({**ok, "site": "http://acme.atlassian.net"}) == "invalid_tracker_config"
    assert build({**ok, "site": "https://u:p@acme.atlassian.net"}) == "invalid_tracker_config"
    assert build({**ok, "project": "eng; drop"}) == "invalid_tracker_config"
    assert build({"site": ok["site"]}) == "invalid_tracker_config"
    assert build({**ok, "projcet": "ENG"}) == "invalid_tracker_config"
    assert build({**ok, "jql": 'labels = "a") OR (project = OPS'}) == "invalid_tracker_config"
    assert build({**ok, "jql": "labels = a ORDER  by created"}) == "invalid_tracker_config"
    assert build({**ok, "page_size": 500}) == "invalid_tracker_config"
    assert build({**ok, "api_key": CREDENTIAL}) == "invalid_tracker_config"
    assert build(ok, {}) == "missing_tracker_secret"
    for bad in ("just-a-token", "no-at-sign:token", f"{EMAIL}:", f"{EMAIL}:a\nb"):
        assert build(ok, {"JIRA_API_TOKEN": bad}) == "missing_tracker_secret"
    with pytest.raises(SymphonyError) as err:
        JiraAdapter(TrackerSettings("jira", {**ok, "api_key": CREDENTIAL}), ENV)
    assert TOKEN not in err.value.message
    adapter = JiraAdapter(TrackerSettings("jira", {**ok, "jql": 'summary ~ "a (b"'}), ENV)
    assert adapter.email == EMAIL and adapter.redact(f"x {TOKEN} y") == "x [redacted] y"
    run(adapter.aclose())


ADAPTER = JiraAdapter(
    TrackerSettings("jira", {"site": "https://a.atlassian.net", "project": "ENG"}, (), ("Done",)),
    ENV,
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=30,
)
FIELD_NAMES = [
    "summary", "status", "labels", "priority", "issuelinks", "description", "assignee",
    "created", "updated", "name", "statusCategory", "key", "inwardIssue", "type", "content",
]  # fmt: skip


@given(
    st.one_of(JSON, st.dictionaries(st.sampled_from(FIELD_NAMES), JSON, max_size=10)),
    st.sampled_from(["10001", "x", None]),
    st.sampled_from(["ENG-1", "OPS-1", None]),
)
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_normalise_is_total(fields: Any, issue_id: Any, key: Any) -> None:
    try:
        issue = ADAPTER._normalise({"id": issue_id, "key": key, "fields": fields})
    except ValidationError:
        return
    json.dumps(issue.to_dict())
    assert issue.id == "10001" and issue.identifier == "ENG-1" and issue.title


def test_an_atlassian_token_is_scrubbed_by_shape_without_being_told() -> None:
    # The audit writer and log filter know the unit credential (email:token) as a whole;
    # a bare token quoted on its own is caught by its shape.
    out = Redactor([]).text(f"agent says {TOKEN} here")
    assert TOKEN not in out and "agent says" in out
