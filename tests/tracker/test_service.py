"""The daemon's handlers over a real WORKFLOW.md: reload, config errors, session binding."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from symphonyd.core.api.shared import Empty
from symphonyd.core.api.tracker import FetchByIds, FetchByStates, RedactText, ToolCall
from symphonyd.core.errors import SymphonyError
from symphonyd.tracker.local_store import LocalStore
from symphonyd.tracker.service import TrackerService
from symphonyd.tracker.workflow_source import workflow_source
from tests.tracker.fake_linear import TOKEN, FakeLinear, linear_node
from tests.tracker.helpers import error_of, run

LOCAL = """---
tracker:
  kind: local
  provider:
    directory: issues
    tool_states: [Done]
  active_states: [Todo]
---
Work on {{ issue.title }}
"""


def linear_workflow(endpoint: str, api_key: str = "$LINEAR_API_KEY") -> str:
    return f"""---
tracker:
  kind: linear
  provider:
    endpoint: {endpoint}
    api_key: "{api_key}"
    project_slug: $SLUG
---
prompt
"""


def test_reload_switches_adapter_and_bad_edit_keeps_last_good(tmp_path: Path) -> None:
    wf = tmp_path / "WORKFLOW.md"
    wf.write_text(LOCAL)
    LocalStore(tmp_path / "issues").create("L-1", title="t", state="Todo")
    env = {"LINEAR_API_KEY": TOKEN, "SLUG": "symph"}

    with FakeLinear([linear_node(1)]) as srv:

        async def go() -> list[Any]:
            svc = TrackerService(workflow_source(wf, env), env)
            out: list[Any] = [
                await svc.fetch_by_states(FetchByStates(["todo"])),
                await svc.profile(Empty()),
            ]
            wf.write_text(linear_workflow(f"{srv.base_url}/graphql"))
            out.append(await svc.fetch_by_states(FetchByStates(["Todo"])))
            out.append(await svc.profile(Empty()))
            wf.write_text("---\ntracker: [broken\n---\n")
            out.append(await svc.fetch_by_ids(FetchByIds(["lin-1"])))
            out.append(await svc.health(Empty()))
            await svc.close()
            return out

        local, prof1, lin, prof2, still, health = run(go())
    assert [i.id for i in local.issues] == ["L-1"]
    assert prof1.kind == "local" and prof1.terminal_states == ["Done", "Cancelled"]
    assert [i.id for i in lin.issues] == ["lin-1"]
    assert prof2.kind == "linear" and prof2.secret_env_names == ["LINEAR_API_KEY"]
    assert prof1.tracker_fingerprint != prof2.tracker_fingerprint
    assert [i.id for i in still.issues] == ["lin-1"] and health.ok


def test_unusable_config_is_reported_not_fatal(tmp_path: Path) -> None:
    wf = tmp_path / "WORKFLOW.md"
    wf.write_text(linear_workflow("https://api.linear.app/graphql"))

    async def go() -> list[Any]:
        env = {"SLUG": "symph"}
        svc = TrackerService(workflow_source(wf, env), env)
        with pytest.raises(SymphonyError) as err:
            await svc.fetch_by_states(FetchByStates(["Todo"]))
        out: list[Any] = [
            err.value.error_code,
            await svc.profile(Empty()),
            await svc.health(Empty()),
        ]
        wf.write_text(linear_workflow("https://api.linear.app/graphql", "lin_api_LITERAL"))
        with pytest.raises(SymphonyError) as err:
            await svc.fetch_by_states(FetchByStates(["Todo"]))
        out.append(err.value)
        wf.write_text("---\ntracker: {kind: trello}\n---\n")
        with pytest.raises(SymphonyError) as err:
            await svc.tool_specs(Empty())
        out.append(err.value.error_code)
        await svc.close()
        return out

    code, profile, health, literal, kind_code = run(go())
    assert code == "missing_tracker_secret"
    assert profile.config_error["code"] == "missing_tracker_secret"
    assert health.ok is False and health.detail["error"] == "missing_tracker_secret"
    assert literal.error_code == "invalid_tracker_config"
    assert "lin_api_LITERAL" not in literal.message and "refused" in literal.message
    assert kind_code == "unsupported_tracker_kind"


def test_tool_calls_bound_to_the_session_fingerprint(tmp_path: Path) -> None:
    wf = tmp_path / "WORKFLOW.md"
    wf.write_text(LOCAL)
    LocalStore(tmp_path / "issues").create("L-1", title="t", state="Todo")

    async def go() -> list[Any]:
        svc = TrackerService(workflow_source(wf, {}), {})
        specs = await svc.tool_specs(Empty())
        (issue,) = (await svc.fetch_by_ids(FetchByIds(["L-1"]))).issues
        fp = specs.tracker_fingerprint
        ok = await svc.tool_call(ToolCall(issue, "tracker_move", {"state": "done"}, "s", fp))
        wf.write_text(LOCAL.replace("[Done]", "[Done, Todo]"))
        stale = await svc.tool_call(ToolCall(issue, "tracker_comment", {"body": "x"}, "s", fp))
        await svc.close()
        return [specs, ok, stale]

    specs, ok, stale = run(go())
    assert [t.name for t in specs.tools] == [
        "tracker_read_issue",
        "tracker_comment",
        "tracker_move",
    ]
    assert ok.success and ok.output == {"state": "Done"}
    assert error_of(stale) == "tracker_config_changed"


def test_hostile_workflow_bytes_are_a_config_error(tmp_path: Path) -> None:
    wf = tmp_path / "WORKFLOW.md"
    wf.write_bytes(b"---\ntracker:\n  kind: \x00local\n---\n")

    async def go() -> tuple[str, bool]:
        svc = TrackerService(workflow_source(wf, {}), {})
        with pytest.raises(SymphonyError) as err:
            await svc.fetch_by_states(FetchByStates(["Todo"]))
        health = await svc.health(Empty())
        await svc.close()
        return err.value.error_code, health.ok

    assert run(go()) == ("workflow_parse_error", False)


def test_unit_credential_is_scrubbed_even_when_the_adapter_needs_none(tmp_path: Path) -> None:
    """The local tracker holds no token, but the credential systemd loaded is still secret."""
    wf = tmp_path / "WORKFLOW.md"
    wf.write_text(LOCAL)
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "tracker").write_text("unit-canary-0b1c2d3e4f5a6b7c\n")
    env = {"CREDENTIALS_DIRECTORY": str(creds)}

    async def go() -> tuple[str, str]:
        svc = TrackerService(workflow_source(wf, env), env)
        text = "body: unit-canary-0b1c2d3e4f5a6b7c ok"
        scrubbed = (await svc.redact(RedactText(text))).text
        bare = TrackerService(workflow_source(wf, {}), {})
        kept = (await bare.redact(RedactText(text))).text
        await svc.close()
        await bare.close()
        return scrubbed, kept

    scrubbed, kept = run(go())
    assert scrubbed == "body: [REDACTED:secret] ok"
    assert kept == "body: unit-canary-0b1c2d3e4f5a6b7c ok"  # nothing configured, nothing known
