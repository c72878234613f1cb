"""The launcher's run table at scale: paged listing over the real socket, bounded memory.

Runs here end at once (the tracker double refuses ``tool_specs``), which is all the table
needs: a finished run waits in it until the dispatcher acknowledges it.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from symphonyd.core.api.launcher import LAUNCHER_LIST_RUNS, ListRuns, StartRun, WorkflowSnapshot
from symphonyd.core.api.tracker import ToolCall, ToolResult, ToolSpecList, TrackerProfile
from symphonyd.core.codec import encode
from symphonyd.core.errors import SymphonyError
from symphonyd.core.issue import Issue, build_issue
from symphonyd.core.wire import DEFAULT_MAX_FRAME
from symphonyd.dispatcher.clients import LauncherClient, Link
from symphonyd.launcher import run_table
from symphonyd.launcher.daemon import launcher_server
from symphonyd.launcher.service import LauncherDeps, LauncherService
from symphonyd.runtime.ipc_client import IpcClient


class DownTracker:
    async def fetch_by_ids(self, ids: list[str]) -> list[Issue]:
        return []

    async def tool_specs(self) -> ToolSpecList:
        raise SymphonyError("tracker down", code="tracker_unavailable")

    async def tool_call(self, call: ToolCall) -> ToolResult:
        raise AssertionError("no run gets this far")

    async def profile(self) -> TrackerProfile:
        raise AssertionError("no run gets this far")

    async def redact(self, text: str) -> str:
        raise AssertionError("no run gets this far")


def make_service(tmp_path: Path) -> LauncherService:
    return LauncherService(
        LauncherDeps(tracker=DownTracker(), audit=lambda _: None, agent_home=tmp_path)
    )


def workflow(tmp_path: Path) -> WorkflowSnapshot:
    config = {"tracker": {"kind": "memory"}, "workspace": {"root": str(tmp_path / "ws")}}
    return WorkflowSnapshot(str(tmp_path / "WORKFLOW.md"), config, "Work", "f" * 64)


async def start_finished_runs(service: LauncherService, wf: WorkflowSnapshot, n: int) -> None:
    for i in range(n):
        issue = build_issue(
            id=f"issue-{i}", identifier=f"LONG-IDENTIFIER-{i}", title="t", state="Todo",
            dispatchable=True,
        )  # fmt: skip
        res = await service.start_run(StartRun(f"run-{i:06d}-{'x' * 40}", issue, None, wf))
        assert res.accepted
    while service.live_count:
        await asyncio.sleep(0.01)


async def _test_list_runs_pages_past_the_frame_limit(tmp_path: Path) -> None:
    """4 000 finished runs are ~1.4 MiB of RunInfo: one reply would exceed the 1 MiB frame
    limit and the dispatcher could neither resynchronise nor restart (0704)."""
    service = make_service(tmp_path)
    await start_finished_runs(service, workflow(tmp_path), 4000)
    whole = json.dumps(encode(service.list_runs()), separators=(",", ":"))
    assert len(whole) > DEFAULT_MAX_FRAME  # one reply could not carry it
    sock = Path(os.environ.get("TMPDIR", "/tmp")) / f"syrt{os.getpid()}.sock"
    server = launcher_server(service, [os.getuid()])
    await server.start_path(sock)
    try:
        runs = await LauncherClient(Link(sock)).list_runs()
        assert [r.run_id for r in runs] == [r.run_id for r in service.list_runs().runs]
        assert len(runs) == 4000 and all(r.outcome is not None for r in runs)
        client = await IpcClient.connect(sock)
        try:
            first = await client.call(LAUNCHER_LIST_RUNS, ListRuns(0, 10))
            assert len(first.runs) == 10 and first.next_after is not None
            rest = await client.call(LAUNCHER_LIST_RUNS, ListRuns(first.next_after, 10))
            assert rest.runs[0].run_id == runs[10].run_id
        finally:
            await client.close()
    finally:
        await server.close()
        sock.unlink(missing_ok=True)


async def _test_page_cursor_survives_acknowledgements_between_pages(tmp_path: Path) -> None:
    service = make_service(tmp_path)
    await start_finished_runs(service, workflow(tmp_path), 30)
    first = service.list_runs(0, 10)
    assert first.next_after is not None
    service.ack_runs([r.run_id for r in first.runs] + [f"run-{15:06d}-{'x' * 40}"])
    rest = service.list_runs(first.next_after, 100)
    assert rest.next_after is None
    assert len(rest.runs) == 19  # 20 after the cursor, one of them acknowledged


async def _test_unacknowledged_finished_runs_are_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_table, "MAX_UNACKED_FINISHED", 50)
    service = make_service(tmp_path)
    await start_finished_runs(service, workflow(tmp_path), 120)
    runs = service.list_runs().runs
    assert len(runs) == 50
    # The most recent outcomes are kept, the oldest dropped.
    assert runs[0].run_id.startswith("run-000070") and runs[-1].run_id.startswith("run-000119")
    service.ack_runs([r.run_id for r in runs])
    assert service.list_runs().runs == []


async def _test_one_live_run_per_issue_is_still_enforced(tmp_path: Path) -> None:
    class SlowTracker(DownTracker):
        async def tool_specs(self) -> ToolSpecList:
            await asyncio.sleep(30)
            raise AssertionError

    service = LauncherService(
        LauncherDeps(tracker=SlowTracker(), audit=lambda _: None, agent_home=tmp_path)
    )
    wf = workflow(tmp_path)
    issue = build_issue(id="i", identifier="I-1", title="t", state="Todo", dispatchable=True)
    assert (await service.start_run(StartRun("a", issue, None, wf))).accepted
    second = await service.start_run(StartRun("b", issue, None, wf))
    assert not second.accepted and second.error == "a is running"
    await service.shutdown()
    assert service.live_count == 0
    assert (await service.start_run(StartRun("c", issue, None, wf))).accepted
    await service.shutdown()


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout=120))


def test_list_runs_pages_past_the_frame_limit(tmp_path: Path) -> None:
    run(_test_list_runs_pages_past_the_frame_limit(tmp_path))


def test_page_cursor_survives_acknowledgements_between_pages(tmp_path: Path) -> None:
    run(_test_page_cursor_survives_acknowledgements_between_pages(tmp_path))


def test_unacknowledged_finished_runs_are_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(_test_unacknowledged_finished_runs_are_bounded(tmp_path, monkeypatch))


def test_one_live_run_per_issue_is_still_enforced(tmp_path: Path) -> None:
    run(_test_one_live_run_per_issue_is_still_enforced(tmp_path))
