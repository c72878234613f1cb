"""The launcher's run table driving the real codex app-server against a mock model API."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from pathlib import Path
from typing import Any

import pytest

from symphonyd.core.api.audit import AuditEventIn
from symphonyd.core.api.launcher import RunEvent, StartRun, StopRun, WorkflowSnapshot
from symphonyd.core.api.tracker import ToolCall, ToolResult, ToolSpec, ToolSpecList, TrackerProfile
from symphonyd.core.errors import SymphonyError
from symphonyd.core.issue import Issue, build_issue
from symphonyd.core.redact import Redactor
from symphonyd.launcher.service import LauncherDeps, LauncherService
from tests.launcher.agents.conftest import codex_command
from tests.launcher.agents.mock_models import MockServer, Reply, responses_call, responses_text

pytestmark = pytest.mark.agents

COMMENT_TOOL = ToolSpec(
    "tracker_comment",
    "Comment on the issue",
    {"type": "object", "properties": {"body": {"type": "string"}}, "required": ["body"]},
)


class TrackerDouble:
    """The tracker daemon as seen over its socket: issues by id and one tool."""

    def __init__(self, issue: Issue) -> None:
        self.issues = {issue.id: issue}
        self.calls: list[ToolCall] = []

    async def fetch_by_ids(self, ids: list[str]) -> list[Issue]:
        return [self.issues[i] for i in ids if i in self.issues]

    async def tool_specs(self) -> ToolSpecList:
        return ToolSpecList([COMMENT_TOOL], tracker_fingerprint="fp-1")

    async def tool_call(self, call: ToolCall) -> ToolResult:
        self.calls.append(call)
        # Commenting is the hand-off in this scenario: the issue leaves the active states.
        issue = self.issues[call.issue.id]
        self.issues[issue.id] = dataclasses.replace(issue, state="Human Review")
        return ToolResult(True, {"comment_id": "c1"})

    async def profile(self) -> TrackerProfile:
        return TrackerProfile("memory", ["Todo"], ["Done"], [], "fp-1")

    async def redact(self, text: str) -> str:
        return Redactor().text(text)


class Sink:
    def __init__(self) -> None:
        self.events: list[RunEvent] = []
        self.closed = False

    def send(self, spec: Any, data: Any) -> bool:
        self.events.append(data)
        return True


def issue() -> Issue:
    return build_issue(
        id="i-1", identifier="ABC-1", title="Fix it", state="Todo", dispatchable=True
    )


def snapshot(tmp_path: Path, root: Path, **extra: Any) -> WorkflowSnapshot:
    config: dict[str, Any] = {
        "tracker": {"kind": "memory"},
        "workspace": {"root": str(root)},
        "codex": {"command": codex_command(), "approval_policy": "never"},
        "agent": {"max_turns": 3},
    }
    config.update(extra)
    return WorkflowSnapshot(
        str(tmp_path / "WORKFLOW.md"),
        config,
        "Work on {{ issue.identifier }}: {{ issue.title }}",
        "f" * 64,
    )


def make_service(
    tmp_path: Path, tracker: TrackerDouble, port: int
) -> tuple[LauncherService, list[AuditEventIn]]:
    home, codex_home, tmp = tmp_path / "home", tmp_path / "codex-home", tmp_path / "agent-tmp"
    for d in (home, codex_home, tmp):
        d.mkdir()
    (codex_home / "config.toml").write_text(
        'model = "mock-model"\nmodel_provider = "mock"\n'
        "suppress_unstable_features_warning = true\n[model_providers.mock]\n"
        f'name = "mock"\nbase_url = "http://127.0.0.1:{port}/v1"\nwire_api = "responses"\n'
        "request_max_retries = 0\nstream_max_retries = 0\nsupports_websockets = false\n"
    )
    audit: list[AuditEventIn] = []
    deps = LauncherDeps(
        tracker=tracker,
        audit=audit.append,
        agent_home=home,
        agent_env={"CODEX_HOME": str(codex_home), "TMPDIR": str(tmp)},
    )
    return LauncherService(deps), audit


async def wait_finished(service: LauncherService, run_id: str, timeout: float = 90) -> None:
    async with asyncio.timeout(timeout):
        while True:
            runs = {r.run_id: r for r in service.list_runs().runs}
            if runs[run_id].outcome is not None:
                return
            await asyncio.sleep(0.05)


def test_run_uses_tracker_tool_hands_off_and_reports_everything(tmp_path: Path) -> None:
    def script(n: int, body: dict[str, Any]) -> Reply:
        if n == 1:
            return responses_call("tracker_comment", {"body": "ready for review"})
        return responses_text("handed off")

    tracker = TrackerDouble(issue())
    sink = Sink()
    with MockServer(script) as mock:
        service, audit = make_service(tmp_path, tracker, mock.port)
        service.subscribe(sink)

        async def scenario() -> None:
            started = await service.start_run(
                StartRun("r1", issue(), None, snapshot(tmp_path, tmp_path / "ws"))
            )
            assert started.accepted
            again = await service.start_run(
                StartRun("r2", issue(), None, snapshot(tmp_path, tmp_path / "ws"))
            )
            assert not again.accepted and "r1" in (again.error or "")
            await wait_finished(service, "r1")

        asyncio.run(scenario())

    (info,) = service.list_runs().runs
    assert info.outcome is not None and info.outcome.status == "succeeded", info.outcome
    assert info.session_id and info.turn_count == 1 and info.tokens.total_tokens > 0
    assert info.workspace_path == str(tmp_path / "ws" / "ABC-1")
    assert (tmp_path / "ws" / "ABC-1").is_dir()
    assert [c.tool for c in tracker.calls] == ["tracker_comment"]
    assert tracker.calls[0].issue.id == "i-1"  # tools are scoped to the run's issue
    assert tracker.calls[0].tracker_fingerprint == "fp-1"  # bound to what was advertised
    names = [e.event for e in sink.events]
    assert names[0] == "session_started" and names[-1] == "run_finished"
    assert [a.type for a in audit if a.type != "tool_call"][:1] == ["prompt_sent"]
    assert {"prompt_sent", "tool_call", "run_finished"} <= {a.type for a in audit}
    assert all(a.issue_id == "i-1" for a in audit)
    service.ack_runs(["r1"])
    assert service.list_runs().runs == []


def test_stop_cancels_the_run_and_cleans_the_workspace(tmp_path: Path) -> None:
    release = threading.Event()

    def slow(n: int, body: dict[str, Any]) -> Reply:
        release.wait(30)
        return responses_text("late")

    tracker = TrackerDouble(issue())
    with MockServer(slow) as mock:
        service, audit = make_service(tmp_path, tracker, mock.port)

        async def scenario() -> bool:
            await service.start_run(
                StartRun("r1", issue(), None, snapshot(tmp_path, tmp_path / "ws"))
            )
            async with asyncio.timeout(60):
                while not mock.requests:
                    await asyncio.sleep(0.05)
            stopped = await service.stop_run(StopRun("r1", "operator", cleanup_workspace=True))
            release.set()
            return stopped.stopped

        try:
            assert asyncio.run(scenario())
        finally:
            release.set()
    (info,) = service.list_runs().runs
    assert info.outcome is not None and info.outcome.status == "cancelled"
    assert info.outcome.error == "stopped: operator"
    assert not (tmp_path / "ws" / "ABC-1").exists()
    assert audit[-1].type == "run_finished" and audit[-1].payload["outcome"] == "cancelled"


def test_bad_workflow_config_fails_the_run_with_its_error(tmp_path: Path) -> None:
    tracker = TrackerDouble(issue())
    service, _ = make_service(tmp_path, tracker, 9)
    bad = snapshot(tmp_path, tmp_path / "ws", agent={"max_turns": 0})

    async def scenario() -> None:
        assert (await service.start_run(StartRun("r1", issue(), 2, bad))).accepted
        await wait_finished(service, "r1", timeout=10)

    asyncio.run(scenario())
    (info,) = service.list_runs().runs
    assert info.outcome is not None and info.outcome.status == "failed"
    assert info.outcome.error_code == "invalid_config" and "max_turns" in (info.outcome.error or "")


def test_run_fails_closed_when_the_tracker_cannot_name_its_secrets(tmp_path: Path) -> None:
    """An unusable tracker config means unknown secret names: nothing runs (0552)."""

    class Unusable(TrackerDouble):
        async def profile(self) -> TrackerProfile:
            error = {"code": "missing_tracker_secret", "message": "tracker secret $X is not set"}
            return TrackerProfile(None, [], [], [], None, error)

    service, audit = make_service(tmp_path, Unusable(issue()), 9)

    async def scenario() -> None:
        wf = snapshot(tmp_path, tmp_path / "ws")
        assert (await service.start_run(StartRun("r1", issue(), None, wf))).accepted
        await wait_finished(service, "r1")

    asyncio.run(scenario())
    (info,) = service.list_runs().runs
    assert info.outcome is not None and info.outcome.error_code == "missing_tracker_secret"
    assert not (tmp_path / "ws" / "ABC-1").exists()
    assert [a.payload.get("error_code") for a in audit if a.type == "run_finished"] == [
        "missing_tracker_secret"
    ]


def test_tool_specs_and_profile_are_asked_at_once(tmp_path: Path) -> None:
    """Both round trips to the tracker are in flight together (bench/README.md,
    run_stages.py): these tool specs answer only once the profile has been asked for, and
    then fail. The run still ends with the tool specs' error before anything is created."""

    class Together(TrackerDouble):
        def __init__(self, issue: Issue) -> None:
            super().__init__(issue)
            self.profile_asked = asyncio.Event()

        async def profile(self) -> TrackerProfile:
            self.profile_asked.set()
            return await super().profile()

        async def tool_specs(self) -> ToolSpecList:
            await self.profile_asked.wait()  # one after the other, this never returns
            raise SymphonyError("tracker daemon unreachable", code="tracker_unavailable")

    service, audit = make_service(tmp_path, Together(issue()), 9)

    async def scenario() -> None:
        wf = snapshot(tmp_path, tmp_path / "ws")
        assert (await service.start_run(StartRun("r1", issue(), None, wf))).accepted
        await wait_finished(service, "r1", timeout=30)

    asyncio.run(scenario())
    (info,) = service.list_runs().runs
    assert info.outcome is not None and info.outcome.error_code == "tracker_unavailable"
    assert not (tmp_path / "ws" / "ABC-1").exists()
    assert [a.payload.get("error_code") for a in audit if a.type == "run_finished"] == [
        "tracker_unavailable"
    ]
