"""The production Linear adapter over real HTTP against a local GraphQL server (SPEC 17.3)."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from symphonyd.core.errors import TrackerError
from symphonyd.core.issue import Issue
from symphonyd.tracker import linear_queries as q
from symphonyd.tracker.linear import LinearAdapter
from symphonyd.tracker.provider_config import TrackerSettings
from tests.tracker.fake_linear import TOKEN, FakeLinear, linear_node
from tests.tracker.helpers import AuditLog, SleepLog, error_of, run


def adapter(server: FakeLinear, sleep: SleepLog | None = None, **provider: Any) -> LinearAdapter:
    settings = TrackerSettings(
        "linear",
        {
            "endpoint": f"{server.base_url}/graphql",
            "api_key": "$LINEAR_API_KEY",
            "project_slug": "symph",
            **provider,
        },
        active_states=("Todo", "In Progress"),
        terminal_states=("Done", "Canceled"),
    )
    return LinearAdapter(settings, {"LINEAR_API_KEY": TOKEN}, sleep=sleep or SleepLog())


def fetch_states(a: LinearAdapter, states: list[str]) -> list[Issue]:
    async def go() -> list[Issue]:
        try:
            return await a.fetch_issues_by_states(states)
        finally:
            await a.aclose()

    return run(go())


def fetch_ids(a: LinearAdapter, ids: list[str]) -> list[Issue]:
    async def go() -> list[Issue]:
        try:
            return await a.fetch_issues_by_ids(ids)
        finally:
            await a.aclose()

    return run(go())


def test_pagination_preserves_order_and_scope() -> None:
    nodes = [linear_node(n) for n in range(1, 8)]
    nodes.insert(3, linear_node(99, project={"id": "p2", "slugId": "other"}))
    nodes.append(linear_node(50, state="Done"))
    with FakeLinear(nodes) as srv:
        issues = fetch_states(adapter(srv, page_size=3), ["Todo", "In Progress"])
        assert [i.identifier for i in issues] == [f"ENG-{n}" for n in range(1, 8)]
        assert len(srv.requests) == 3
        assert all(r.body["query"] in q.ALL_DOCUMENTS for r in srv.requests)
        afters = [r.body["variables"]["after"] for r in srv.requests]
        assert afters == [None, "c:3", "c:6"]


def test_empty_inputs_make_no_request() -> None:
    with FakeLinear([linear_node(1)]) as srv:
        assert fetch_states(adapter(srv), []) == []
        assert fetch_ids(adapter(srv), []) == []
        assert srv.requests == []


def test_normalisation_labels_priority_timestamps_native_ref() -> None:
    with FakeLinear([linear_node(1), linear_node(5)]) as srv:
        one, five = fetch_states(adapter(srv), ["Todo"])
    assert one.labels == ("backend", "ui")
    assert one.priority == 1 and five.priority is None  # Linear 0 = no priority
    assert one.created_at is not None and one.created_at.year == 2026
    assert one.native_ref == {
        "team_id": "team-1",
        "team_key": "ENG",
        "project_id": "proj-1",
        "state_id": "st-todo",
    }
    assert one.to_dict()["updated_at"] == "2026-01-02T03:04:05Z"
    assert one.state == "Todo" and one.branch_name == "eng-1" and one.dispatchable


def test_unusable_optional_metadata_becomes_null_not_malformed() -> None:
    node = linear_node(
        2,
        priority="high",
        createdAt="yesterday",
        branchName=7,
        labels="backend",
        assignee=[],
        inverseRelations={"nodes": "x"},
        url="",
    )
    with FakeLinear([node]) as srv:
        (issue,) = fetch_states(adapter(srv), ["Todo"])
    assert issue.identifier == "ENG-2"
    assert (issue.priority, issue.created_at, issue.branch_name, issue.url) == (None,) * 4
    assert issue.labels == () and issue.blocked_by == () and issue.assignee_id is None


def test_malformed_records_omitted_from_state_lists_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad = [linear_node(2, title=""), linear_node(3, identifier=None), "garbage"]
    srv = FakeLinear([linear_node(1), *bad, linear_node(4)])  # type: ignore[list-item]
    with srv, caplog.at_level(logging.WARNING):
        issues = fetch_states(adapter(srv), ["Todo"])
    assert [i.identifier for i in issues] == ["ENG-1", "ENG-4"]
    assert sum("omitting malformed" in r.getMessage() for r in caplog.records) == 3


def test_id_refresh_fails_on_malformed_requested_record() -> None:
    srv = FakeLinear([linear_node(1), linear_node(2, title=None)])
    with srv, pytest.raises(TrackerError) as err:
        fetch_ids(adapter(srv), ["lin-1", "lin-2"])
    assert err.value.error_code == "tracker_response"


def test_id_refresh_batches_without_cap_and_omits_invisible() -> None:
    nodes = [linear_node(n) for n in range(1, 131)]
    with FakeLinear(nodes) as srv:
        ids = [f"lin-{n}" for n in range(1, 131)] + ["lin-404", "lin-1"]
        issues = fetch_ids(adapter(srv, id_batch_size=50), ids)
        assert sorted(i.id for i in issues) == sorted(f"lin-{n}" for n in range(1, 131))
        batches = [r.body["variables"]["filter"]["id"]["in"] for r in srv.requests]
        assert [len(b) for b in batches] == [50, 50, 31]
        assert all(r.body["variables"]["filter"]["project"] for r in srv.requests)


def test_429_retry_after_is_honoured() -> None:
    sleep = SleepLog()
    with FakeLinear([linear_node(1)]) as srv:
        srv.faults.append(("status", 429, {"Retry-After": "7"}))
        reset_ms = int((time.time() + 3) * 1000)
        srv.faults.append(("status", 429, {"X-RateLimit-Requests-Reset": str(reset_ms)}))
        issues = fetch_states(adapter(srv, sleep, max_attempts=3), ["Todo"])
    assert [i.id for i in issues] == ["lin-1"]
    assert sleep.waits[0] == 7.0
    assert 0 < sleep.waits[1] <= 3.0


def test_rate_limit_longer_than_cap_fails_with_retry_after() -> None:
    sleep = SleepLog()
    with FakeLinear([linear_node(1)]) as srv:
        srv.faults.append(("status", 429, {"Retry-After": "600"}))
        with pytest.raises(TrackerError) as err:
            fetch_states(adapter(srv, sleep, max_retry_wait_ms=1000), ["Todo"])
    assert err.value.error_code == "tracker_rate_limited"
    assert err.value.details["retry_after_ms"] == 600_000 and sleep.waits == []


def test_graphql_ratelimited_error_is_a_rate_limit() -> None:
    sleep = SleepLog()
    body = {"errors": [{"message": "slow down", "extensions": {"code": "RATELIMITED"}}]}
    with FakeLinear([linear_node(1)]) as srv:
        srv.faults.append(("body", body))
        issues = fetch_states(adapter(srv, sleep), ["Todo"])
    assert len(issues) == 1 and len(sleep.waits) == 1


def test_500_is_retried_then_reported() -> None:
    with FakeLinear([linear_node(1)]) as srv:
        srv.faults.append(("status", 500))
        assert len(fetch_states(adapter(srv), ["Todo"])) == 1
        srv.faults.extend([("status", 502)] * 3)
        with pytest.raises(TrackerError) as err:
            fetch_states(adapter(srv, max_attempts=3), ["Todo"])
    assert err.value.error_code == "tracker_status" and err.value.details["status"] == 502


def test_timeout_is_a_request_error() -> None:
    with FakeLinear([linear_node(1)]) as srv:
        srv.faults.append(("sleep", 2.0))
        with pytest.raises(TrackerError) as err:
            fetch_states(adapter(srv, timeout_ms=200, max_attempts=1), ["Todo"])
    assert err.value.error_code == "tracker_request"
    assert "timed out" in err.value.message


@pytest.mark.parametrize(
    ("fault", "code"),
    [(("truncated",), "tracker_request"), (("malformed",), "tracker_response")],
)
def test_truncated_and_malformed_json(fault: tuple[str], code: str) -> None:
    with FakeLinear([linear_node(1)]) as srv:
        srv.faults.append(fault)
        with pytest.raises(TrackerError) as err:
            fetch_states(adapter(srv, max_attempts=1), ["Todo"])
    assert err.value.error_code == code


def test_broken_pagination_is_refused() -> None:
    page = {
        "data": {
            "issues": {
                "nodes": [linear_node(1)],
                "pageInfo": {"hasNextPage": True, "endCursor": None},
            }
        }
    }
    with FakeLinear([linear_node(1)]) as srv:
        srv.faults.append(("body", page))
        with pytest.raises(TrackerError) as err:
            fetch_states(adapter(srv), ["Todo"])
    assert err.value.error_code == "tracker_pagination"


def test_graphql_errors_and_auth_failures() -> None:
    with FakeLinear([linear_node(1)]) as srv:
        srv.faults.append(("body", {"errors": [{"message": "Field 'x' unknown"}]}))
        with pytest.raises(TrackerError) as err:
            fetch_states(adapter(srv), ["Todo"])
        assert err.value.error_code == "tracker_response"
        settings = TrackerSettings(
            "linear", {"endpoint": f"{srv.base_url}/graphql", "team_key": "ENG"}
        )
        wrong = LinearAdapter(settings, {"LINEAR_API_KEY": "lin_api_wrong"})
        with pytest.raises(TrackerError) as err:
            fetch_states(wrong, ["Todo"])
    assert err.value.error_code == "tracker_status" and err.value.details["status"] == 401


def test_blockers_drive_dispatchable_and_assignee_scope() -> None:
    def rel(state: str, type_: str) -> dict[str, Any]:
        return {
            "nodes": [
                {
                    "type": "blocks",
                    "issue": {
                        "id": "lin-9",
                        "identifier": "ENG-9",
                        "state": {"name": state, "type": type_},
                    },
                },
                {
                    "type": "related",
                    "issue": {
                        "id": "lin-8",
                        "identifier": "ENG-8",
                        "state": {"name": "Todo", "type": "unstarted"},
                    },
                },
            ]
        }

    nodes = [
        linear_node(1, inverseRelations=rel("In Progress", "started")),
        linear_node(2, inverseRelations=rel("Done", "completed")),
        linear_node(3, inverseRelations=rel("Won't do", "canceled")),
        linear_node(4, assignee={"id": "user-me"}),
    ]
    with FakeLinear(nodes) as srv:
        issues = fetch_states(adapter(srv), ["Todo"])
        mine = fetch_states(adapter(srv, assignee="me"), ["Todo"])
    assert [i.dispatchable for i in issues] == [False, True, True, True]
    assert issues[0].blocked_by[0].identifier == "ENG-9" and len(issues[0].blocked_by) == 1
    assert [i.dispatchable for i in mine] == [False, False, False, True]


def test_tools_comment_move_read_scoped_and_audited() -> None:
    audit = AuditLog()
    with FakeLinear([linear_node(1), linear_node(2)]) as srv:
        a = adapter(srv, tool_states=["Human Review"])
        a.audit = audit

        async def go() -> list[Any]:
            (issue,) = await a.fetch_issues_by_ids(["lin-1"])
            out = [
                await a.execute_tool("tracker_comment", {"body": "done, see PR"}, issue, "s1"),
                await a.execute_tool("tracker_move", {"state": "human review"}, issue),
                await a.execute_tool("tracker_move", {"state": "Done"}, issue),
                await a.execute_tool("tracker_read_issue", {}, issue),
                await a.execute_tool("tracker_comment", {"body": ""}, issue),
                await a.execute_tool("tracker_comment", {"body": "x", "issue": "lin-2"}, issue),
                await a.execute_tool("tracker_comment", "not an object", issue),
                await a.execute_tool("linear_graphql", {"query": "{ viewer { id } }"}, issue),
                await a.execute_tool("nope", {}, issue),
            ]
            await a.aclose()
            return out

        results = run(go())
        assert srv.comments == [("lin-1", "done, see PR")]
        assert srv.nodes[0]["state"]["name"] == "Human Review"
    assert results[0].success and results[1].output == {"state": "Human Review"}
    assert error_of(results[2]) == "state_not_allowed"
    assert results[3].output["issue"]["state"] == "Human Review"
    assert [error_of(r) for r in results[4:]] == [
        "invalid_arguments",
        "invalid_arguments",
        "invalid_arguments",
        "unsupported_tool",
        "unsupported_tool",
    ]
    assert [(e.type, e.payload["operation"], e.issue_id) for e in audit.events] == [
        ("tracker_write", "comment", "lin-1"),
        ("tracker_write", "move", "lin-1"),
    ]
    assert "done, see PR" not in str(audit.events[0].payload)
    assert audit.events[0].session_id == "s1"


def test_graphql_tool_only_documented_reads_of_own_issue() -> None:
    doc = q.GRAPHQL_TOOL_DOCUMENTS["issue_comments"]
    with FakeLinear([linear_node(1)]) as srv:
        a = adapter(srv, graphql_tool=True)

        async def go() -> list[Any]:
            (issue,) = await a.fetch_issues_by_ids(["lin-1"])
            out = [
                await a.execute_tool("linear_graphql", {"query": "  " + doc}, issue),
                await a.execute_tool(
                    "linear_graphql", {"query": doc, "variables": {"issueId": "lin-2"}}, issue
                ),
                await a.execute_tool("linear_graphql", {"query": q.COMMENT_CREATE}, issue),
                await a.execute_tool(
                    "linear_graphql", {"query": doc, "variables": {"id": "lin-2"}}, issue
                ),
                await a.execute_tool(
                    "linear_graphql",
                    {"operation": "issue_history", "variables": {"first": 5}},
                    issue,
                ),
                await a.execute_tool("linear_graphql", {"operation": "viewer"}, issue),
                await a.execute_tool(
                    "linear_graphql", {"operation": "issue_history", "query": doc}, issue
                ),
            ]
            await a.aclose()
            return out

        results = run(go())
        sent = [r.body["variables"] for r in srv.requests if r.body["query"] == doc]
    assert results[0].success and results[0].output["data"]["issue"]["id"] == "lin-1"
    assert sent == [{"issueId": "lin-1", "first": 50}]
    assert [error_of(r) for r in results[1:4]] == [
        "issue_out_of_scope",
        "operation_not_allowed",
        "invalid_arguments",
    ]
    history = q.GRAPHQL_TOOL_DOCUMENTS["issue_history"]
    assert results[4].success
    assert [r.body["variables"] for r in srv.requests if r.body["query"] == history] == [
        {"issueId": "lin-1", "first": 5}
    ]
    assert [error_of(r) for r in results[5:]] == ["operation_not_allowed", "invalid_arguments"]
