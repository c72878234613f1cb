"""The Asana adapter as the tracker daemon builds it (WORKFLOW.md -> TrackerService -> registry
-> AsanaAdapter), over real HTTP against a local Asana REST 1.0 server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symphonyd.core.api.shared import Empty
from symphonyd.core.api.tracker import FetchByIds, FetchByStates, ToolCall
from symphonyd.core.errors import SymphonyError
from symphonyd.tracker.asana import AsanaAdapter
from symphonyd.tracker.provider_config import TrackerSettings
from symphonyd.tracker.service import TrackerService
from symphonyd.tracker.workflow_source import workflow_source
from tests.tracker.fake_asana import PROJECT, TOKEN, WORKSPACE, FakeAsana, asana_task, gid_of
from tests.tracker.helpers import AuditLog, error_of, run

ENV = {"ASANA_TOKEN": TOKEN}
BASE = f"    workspace: '{WORKSPACE}'\n    project: '{PROJECT}'\n"


def serve(
    tmp_path: Path,
    srv: FakeAsana,
    work: Any,
    extra: str = "",
    env: dict[str, str] | None = None,
    audit: AuditLog | None = None,
) -> Any:
    """Run ``work(svc)`` on a TrackerService built from an asana WORKFLOW.md, as the daemon
    does."""
    wf = tmp_path / "WORKFLOW.md"
    wf.write_text(
        "---\ntracker:\n  kind: asana\n  provider:\n"
        f"    endpoint: {srv.base_url}/api/1.0\n{BASE}    api_key: $ASANA_TOKEN\n"
        f"    tool_states: [Review, Done, Nowhere]\n{extra}---\nprompt\n"
    )
    env = ENV if env is None else env

    async def go() -> Any:
        kwargs: dict[str, Any] = {"audit": audit} if audit is not None else {}
        svc = TrackerService(workflow_source(wf, env), env, **kwargs)
        try:
            return await work(svc)
        finally:
            await svc.close()

    return run(go())


def states(tmp_path: Path, srv: FakeAsana, wanted: list[str], extra: str = "") -> list[Any]:
    async def work(svc: TrackerService) -> Any:
        return (await svc.fetch_by_states(FetchByStates(wanted))).issues

    result: list[Any] = serve(tmp_path, srv, work, extra)
    return result


def refresh(tmp_path: Path, srv: FakeAsana, ids: list[str], extra: str = "") -> list[Any]:
    async def work(svc: TrackerService) -> Any:
        return (await svc.fetch_by_ids(FetchByIds(ids))).issues

    result: list[Any] = serve(tmp_path, srv, work, extra)
    return result


def test_poll_pages_by_offset_and_normalises(tmp_path: Path) -> None:
    tasks = [asana_task(n, section="Doing" if n % 2 else "To do") for n in range(1, 8)]
    tasks.append(asana_task(8, section="Done", completed=True))
    tasks[0]["custom_fields"] = [{"name": "priority", "enum_value": {"name": "Medium"}}]
    tasks[0]["tags"] = [{"name": "Backend"}, {"name": "ÜNICODE ✓"}]
    tasks[0]["assignee"] = {"gid": "77", "email": "a@example.com"}
    with FakeAsana(tasks) as srv:
        got = states(tmp_path, srv, ["To do", "Doing"], "    page_size: 3\n")
        lists = [r for r in srv.requests if r.path == "/api/1.0/tasks"]
    assert [i.identifier for i in got] == [f"ASANA-{gid_of(n)}" for n in range(1, 8)]
    assert len(lists) == 3  # 7 open tasks, 3 a page; the completed one is never asked for
    first = got[0]
    assert first.state == "Doing" and first.dispatchable and first.priority == 2
    assert first.labels == ("backend", "ünicode ✓")
    assert first.assignee_id == "77"
    assert first.url == f"https://app.asana.com/0/{PROJECT}/{gid_of(1)}"
    assert got[1].state == "To do" and got[1].priority is None
    with FakeAsana(tasks) as srv:
        done = states(tmp_path, srv, ["Done"])
        assert "completed_since" not in json.dumps([r.path for r in srv.requests])
    assert [(i.state, i.dispatchable) for i in done] == [("Done", False)]


def test_section_states_map_names_and_assignee_filters(tmp_path: Path) -> None:
    tasks = [asana_task(1, section="To do"), asana_task(2, section="Doing")]
    tasks[1]["assignee"] = {"gid": "5", "email": "me@example.com"}
    extra = (
        "    section_states: {Todo: To do, In Progress: Doing, Review: Review, Nowhere: Gone}\n"
        "    assignee: me@example.com\n"
    )
    with FakeAsana(tasks) as srv:
        got = states(tmp_path, srv, ["Todo", "In Progress"], extra)
    assert [(i.state, i.dispatchable) for i in got] == [("Todo", False), ("In Progress", True)]


def test_empty_inputs_make_no_request(tmp_path: Path) -> None:
    with FakeAsana([asana_task(1)]) as srv:
        assert states(tmp_path, srv, []) == []
        assert refresh(tmp_path, srv, []) == []
        assert refresh(tmp_path, srv, ["not-a-gid", "0123"]) == []
        assert srv.requests == []


def test_refresh_batches_ten_ids_a_request_and_fails_on_a_malformed_record(
    tmp_path: Path,
) -> None:
    tasks: list[Any] = [asana_task(n) for n in range(1, 13)]
    foreign = asana_task(20)
    foreign["memberships"] = [{"project": {"gid": "999"}, "section": {"name": "To do"}}]
    other_ws = asana_task(21, workspace={"gid": "42"})
    tasks += [foreign, other_ws]
    with FakeAsana(tasks) as srv:
        ids = [gid_of(n) for n in (*range(1, 13), 20, 21, 99)]
        got = refresh(tmp_path, srv, ids)
        batches = [r for r in srv.requests if r.path == "/api/1.0/batch"]
        assert [i.id for i in got] == [gid_of(n) for n in range(1, 13)]  # foreign, gone: out
        assert [len(b.body["data"]["actions"]) for b in batches] == [10, 5]
        srv.tasks[2]["completed"] = "yes"
        with pytest.raises(SymphonyError) as err:
            refresh(tmp_path, srv, [gid_of(3)])
        assert err.value.error_code == "tracker_response"
        assert [i.id for i in states(tmp_path, srv, ["To do"])] == [
            gid_of(n) for n in range(1, 13) if n != 3
        ]  # a list omits the malformed record, a refresh fails on it
        srv.tasks[2]["completed"] = False
        for inner, code in ((429, "tracker_rate_limited"), (500, "tracker_status")):
            srv.batch_faults = {gid_of(4): inner}
            with pytest.raises(SymphonyError) as err:
                refresh(tmp_path, srv, [gid_of(4)])
            assert err.value.error_code == code


def test_dependencies_hold_a_task_back(tmp_path: Path) -> None:
    done_dep = {"gid": gid_of(50), "completed": True, "memberships": []}
    in_doing = [{"project": {"gid": PROJECT}, "section": {"name": "Doing"}}]
    open_dep = {"gid": gid_of(51), "completed": False, "memberships": in_doing}
    elsewhere = {"gid": gid_of(52), "completed": False, "memberships": []}
    tasks = [
        asana_task(1, dependencies=[done_dep]),
        asana_task(2, dependencies=[done_dep, open_dep]),
        asana_task(3, dependencies=[elsewhere]),
        asana_task(4, dependencies=[{"gid": "junk"}]),
    ]
    with FakeAsana(tasks) as srv:
        got = {i.id: i for i in states(tmp_path, srv, ["To do"])}
    assert got[gid_of(1)].dispatchable and got[gid_of(1)].blocked_by[0].state == "Done"
    assert not got[gid_of(2)].dispatchable
    assert got[gid_of(2)].blocked_by[1].identifier == f"ASANA-{gid_of(51)}"
    assert got[gid_of(2)].blocked_by[1].state == "Doing"
    assert not got[gid_of(3)].dispatchable and got[gid_of(3)].blocked_by[0].state is None
    assert not got[gid_of(4)].dispatchable


def test_rate_limits_5xx_auth_and_bad_bodies_map_to_categories(tmp_path: Path) -> None:
    retry = "    max_attempts: 3\n    max_retry_wait_ms: 5000\n"
    with FakeAsana([asana_task(1)]) as srv:
        srv.faults.extend([("status", 429, {"Retry-After": "0"}), ("status", 503)])
        assert len(states(tmp_path, srv, ["To do"], retry)) == 1
        assert len(srv.requests) == 3
        cases: list[tuple[tuple[Any, ...], str]] = [
            (("status", 429, {"Retry-After": "9999"}), "tracker_rate_limited"),
            (("status", 502), "tracker_status"),
            (
                ("status-body", 401, {}, {"errors": [{"message": "Not Authorized"}]}),
                "tracker_status",
            ),
            (("status-body", 402, {}, {"errors": [{"message": "premium"}]}), "tracker_status"),
            (("sleep", 1.0), "tracker_request"),
            (("truncated",), "tracker_request"),
            (("malformed",), "tracker_response"),
            (("body", {"tasks": []}), "tracker_response"),
            (("body", {"data": [], "next_page": {"offset": 7}}), "tracker_pagination"),
        ]
        for fault, code in cases:
            srv.faults.append(fault)
            # Only the sleeping answer may time out: a loaded machine can be slow with any.
            one = f"    max_attempts: 1\n    timeout_ms: {300 if fault[0] == 'sleep' else 10_000}\n"
            with pytest.raises(SymphonyError) as err:
                states(tmp_path, srv, ["To do"], one)
            assert err.value.error_code == code, fault
        srv.repeat_offset = True
        srv.tasks.extend(asana_task(n) for n in range(2, 6))
        with pytest.raises(SymphonyError) as err:
            states(tmp_path, srv, ["To do"], "    page_size: 2\n")
        assert err.value.error_code == "tracker_pagination"

    with FakeAsana([asana_task(1)]) as srv:

        async def work(svc: TrackerService) -> Any:
            with pytest.raises(SymphonyError) as err:
                await svc.fetch_by_states(FetchByStates(["To do"]))
            return err.value

        exc = serve(tmp_path, srv, work, env={"ASANA_TOKEN": "wrong-token-value"})
    assert exc.error_code == "tracker_status" and "wrong-token-value" not in exc.message


def test_hostile_huge_and_unicode_payloads(tmp_path: Path) -> None:
    tasks: list[Any] = [
        asana_task(1, notes="n" * 3_000_000, name="ß✓" * 60_000),
        asana_task(2, notes=f"echo {TOKEN}"),
        asana_task(
            3,
            tags="nope",
            custom_fields={"x": 1},
            dependencies="x",
            memberships=[{"project": {"gid": PROJECT}, "section": None}],
        ),  # fmt: skip
        asana_task(4, tags=[{"name": 5}, None], assignee=["x"], permalink_url=7),
        {"gid": 5},
        "not an object",
        asana_task(6, gid="../../x"),
    ]
    with FakeAsana(tasks) as srv:
        got = states(tmp_path, srv, ["To do"])
    assert [i.id for i in got] == [gid_of(1), gid_of(4)]  # 2 echoes the token; 3 no section
    assert len(got[0].description or "") < 1_000_000 and len(got[0].title) < 120_000
    assert got[1].labels == () and got[1].url is None and got[1].assignee_id is None


def test_tools_comment_move_read_are_scoped_and_audited(tmp_path: Path) -> None:
    audit = AuditLog()
    with FakeAsana([asana_task(1), asana_task(2)]) as srv:

        async def work(svc: TrackerService) -> Any:
            (issue,) = (await svc.fetch_by_ids(FetchByIds([gid_of(1)]))).issues
            specs = await svc.tool_specs(Empty())
            fp = specs.tracker_fingerprint

            async def call(tool: str, args: Any) -> Any:
                return await svc.tool_call(ToolCall(issue, tool, args, "sess-1", fp))

            out = [
                await call("tracker_comment", {"body": "PR is up ✓"}),
                await call("tracker_move", {"state": "review"}),
                await call("tracker_read_issue", {}),
                await call("tracker_move", {"state": "Nowhere"}),
                await call("tracker_move", {"state": "Doing"}),
                await call("tracker_comment", {"body": "x", "issue": gid_of(2)}),
                await call("asana_rest", {"path": f"/tasks/{gid_of(2)}"}),
                [s.name for s in specs.tools],
            ]
            out.append(await call("tracker_move", {"state": "Done"}))
            return out

        out = serve(tmp_path, srv, work, audit=audit)
        assert srv.tasks[0]["completed"] is True
        assert srv.tasks[0]["memberships"][0]["section"]["name"] == "Done"
        assert srv.tasks[1]["memberships"][0]["section"]["name"] == "To do"
        assert gid_of(2) not in srv.stories
    comment, move, read, nowhere, doing, other, raw, names, done = out
    assert comment.success and comment.output["comment_id"] == "1600000000000000"
    assert move.output == {"state": "Review"}
    assert read.output["issue"]["state"] == "Review"
    assert [c["body"] for c in read.output["comments"]] == ["PR is up ✓"]
    assert error_of(nowhere) == "unknown_state"
    assert error_of(doing) == "state_not_allowed"
    assert error_of(other) == "invalid_arguments"
    assert error_of(raw) == "unsupported_tool"
    assert names == ["tracker_read_issue", "tracker_comment", "tracker_move"]
    assert done.output == {"state": "Done"}
    ops = [(e.payload["operation"], e.payload["detail"]["ok"]) for e in audit.events]
    assert ops == [("comment", True), ("move", True), ("move", False), ("move", True)]
    assert "PR is up" not in json.dumps([e.payload for e in audit.events])


def build(provider: dict[str, Any]) -> str:
    with pytest.raises(SymphonyError) as err:
        AsanaAdapter(TrackerSettings("asana", provider), ENV)
    return err.value.error_code


def test_config_validation_is_typed() -> None:
    ok = {"workspace": WORKSPACE, "project": PROJECT}
    bad: list[dict[str, Any]] = [
        {"project": PROJECT},
        {"workspace": WORKSPACE, "project": "my project"},
        {**ok, "projct": "x"},
        {**ok, "api_key": TOKEN},
        {**ok, "endpoint": "http://asana.example/api/1.0"},
        {**ok, "section_states": ["To do"]},
        {**ok, "section_states": {"A": "X", "B": "x"}},
        {**ok, "section_states": {"A": "X"}, "tool_states": ["B"]},
        {**ok, "page_size": 101},
        {**ok, "priority_field": ""},
        {**ok, "identifier_prefix": "-bad"},
    ]
    assert [build(p) for p in bad] == ["invalid_tracker_config"] * len(bad)
    with pytest.raises(SymphonyError) as err:
        AsanaAdapter(TrackerSettings("asana", ok), {})
    assert err.value.error_code == "missing_tracker_secret"


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda kids: st.lists(kids, max_size=3)
        | st.dictionaries(st.text(max_size=12), kids, max_size=4),
        max_leaves=20,
    )
)
def test_normalise_is_total(record: Any) -> None:
    """Any JSON value becomes an Issue or a typed refusal, never another exception."""
    adapter = AsanaAdapter(
        TrackerSettings("asana", {"workspace": WORKSPACE, "project": PROJECT}), ENV
    )
    try:
        adapter._normalise(record)
    except Exception as exc:
        assert type(exc).__name__ in ("ValidationError", "NotInProject"), exc
