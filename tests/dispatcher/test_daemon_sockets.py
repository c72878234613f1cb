"""The real dispatcher wiring against tracker/launcher/audit doubles on real Unix sockets.

Covers what only the wiring can get wrong: IPC adapters, the launcher event subscription,
the control socket with SO_PEERCRED uids, WORKFLOW.md reload, and restart re-adoption.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from symphonyd.core.api.dispatcher import RunningRow
from symphonyd.core.api.launcher import RunEvent, RunOutcome
from symphonyd.core.api.shared import TokenTotals
from symphonyd.core.codec import encode
from symphonyd.core.run_progress import RunProgress
from symphonyd.core.worker_hosts import WorkerHosts
from symphonyd.ctl.main import main as ctl_main
from symphonyd.dispatcher.clients import IDS_PER_FETCH, PAGES_IN_FLIGHT
from symphonyd.dispatcher.config_source import WorkflowConfigSource
from symphonyd.dispatcher.daemon import assemble, control_server, loops
from symphonyd.dispatcher.orchestrator import Orchestrator
from tests.dispatcher.doubles import issue, run_async
from tests.dispatcher.socket_doubles import SocketWorld, eventually, socket_world

WORKFLOW = """---
tracker:
  kind: memory
  active_states: [Todo, In Progress]
  terminal_states: [Done]
polling:
  interval_ms: {interval}
  handoff_grace_ms: {grace}
agent:
  max_concurrent_agents: {limit}
  max_retry_backoff_ms: {backoff}
workspace:
  root: {root}
{extra}---
Work on {{{{ issue.identifier }}}}.
"""


def write_workflow(
    path: Path,
    *,
    limit: int = 2,
    interval: int = 200,
    backoff: int = 300_000,
    extra: str = "",
    grace: int = 0,
) -> None:
    """``backoff``: agent.max_retry_backoff_ms; ``extra``: more front matter (``codex:``);
    ``grace``: polling.handoff_grace_ms (off unless a test is about it)."""
    root = path.parent / "ws"
    text = WORKFLOW.format(
        limit=limit, interval=interval, backoff=backoff, root=root, extra=extra, grace=grace
    )
    path.write_text(text)


@contextlib.asynccontextmanager
async def dispatcher(
    world: SocketWorld, worker: WorkerHosts | None = None
) -> AsyncIterator[Orchestrator]:
    """``worker``: the host config's [worker] section (worker hosts, docs/design/1100)."""
    workflow = world.root / "WORKFLOW.md"
    if not workflow.exists():
        write_workflow(workflow)
    source = WorkflowConfigSource(workflow, env={})
    orch, service = assemble(world.root, world.root / "state", source, worker)
    service.watch_interval_s = 0.05
    await orch.start()
    ctl = control_server("dispatcher-ctl", allowed_uids={os.getuid()}, allow_root=True)
    service.register(ctl)
    await ctl.start_path(world.root / "ctl.sock")
    tasks = [asyncio.create_task(coro) for coro in loops(service, world.root).values()]
    try:
        yield orch
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await ctl.close()


async def ctl(world: SocketWorld, *args: str) -> tuple[int, str, str]:
    """Run symphonyctl in a thread (it runs its own event loop), capturing its output."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    out, err = io.StringIO(), io.StringIO()

    def go() -> int:
        with redirect_stdout(out), redirect_stderr(err):
            return ctl_main([args[0], "--socket", str(world.root / "ctl.sock"), *args[1:]])

    code = await asyncio.to_thread(go)
    return code, out.getvalue(), err.getvalue()


async def status(world: SocketWorld) -> dict[str, Any]:
    code, out, _ = await ctl(world, "status", "--json")
    assert code == 0
    data: dict[str, Any] = json.loads(out)
    return data


async def wait_status(world: SocketWorld, pred: Any, what: str) -> dict[str, Any]:
    """Poll ``status --json`` until ``pred(snapshot)``; the timeout only prevents a hang."""
    for _ in range(400):
        snap = await status(world)
        if pred(snap):
            return snap
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {what}; last status {snap}")


def started(world: SocketWorld) -> list[tuple[str, int | None]]:
    return [(r.issue.identifier, r.attempt) for r in world.launcher.started]


@run_async
async def test_dispatch_run_events_and_continuation_over_sockets() -> None:
    async with socket_world() as world, dispatcher(world) as orch:
        world.tracker.put(issue(1))
        await eventually(lambda: started(world) == [("MT-1", None)], "first dispatch")
        # The dispatch record was durable before the launcher was asked to start.
        assert world.audit_at_start[0] >= 1
        assert "dispatch" in world.audit.types()
        run_id = world.launcher.started[0].run_id
        world.emit(RunEvent(run_id, "id-1", "turn_completed", "2026-03-01T12:00:00Z", turn_count=1))
        await eventually(lambda: orch.running["id-1"].turn_count == 1, "event applied")
        world.launcher.finish(run_id, RunOutcome("succeeded"))
        world.emit_pending()
        await eventually(lambda: ("MT-1", 1) in started(world), "continuation retry")
        assert run_id not in world.launcher.runs  # the finished run was acknowledged


@run_async
async def test_a_running_row_is_the_fold_of_its_run_events_by_the_shared_rule() -> None:
    # The launcher folds the same stream by the same rule (core/run_progress.py), so
    # `symphonyctl status` and the launcher's list_runs cannot disagree on what a run did.
    async with socket_world() as world, dispatcher(world):
        world.tracker.put(issue(1))
        await eventually(lambda: started(world) == [("MT-1", None)], "first dispatch")
        run_id = world.launcher.started[0].run_id
        events = [
            RunEvent(run_id, "id-1", "session_started", "2026-03-01T12:00:01Z",
                     session_id="thread-1", pid=41, message="session started"),
            RunEvent(run_id, "id-1", "turn_completed", "2026-03-01T12:00:02Z", turn_count=1,
                     tokens=TokenTotals(10, 5, 15), message="turn 1 done"),
            # A lower total and no message or session: nothing goes down or is forgotten.
            RunEvent(run_id, "id-1", "notification", "2026-03-01T12:00:03Z",
                     tokens=TokenTotals(2, 1, 3), session_id=""),
        ]  # fmt: skip
        for ev in events:
            world.emit(ev)
        snap = await wait_status(
            world,
            lambda s: [r["last_event"] for r in s["running"]] == ["notification"],
            "every event applied",
        )
    folded = RunProgress()
    for ev in events:
        folded.apply(ev)
    (row,) = snap["running"]
    assert {k: row[k] for k in folded.fields_for(RunningRow)} == encode(
        folded.fields_for(RunningRow)
    )
    assert row["tokens"]["total_tokens"] == 15 and row["last_message"] == "turn 1 done"
    assert snap["codex_totals"]["total_tokens"] == 15  # each token counted once


@run_async
async def test_ctl_pause_status_stop_release_over_the_control_socket() -> None:
    async with socket_world() as world, dispatcher(world):
        world.tracker.put(issue(1), issue(2))
        await eventually(lambda: len(world.launcher.started) == 2, "two runs")
        code, out, _ = await ctl(world, "pause", "--reason", "deploy window")
        assert code == 0 and "paused" in out
        snap = await status(world)
        [reason] = snap["pause"]["reasons"]
        assert reason["code"] == "operator" and reason["by_uid"] == os.getuid()
        assert reason["message"] == "deploy window"
        assert snap["counts"]["running"] == 2  # in-flight runs continue

        code, out, _ = await ctl(world, "status")
        assert code == 0 and "dispatch: PAUSED" in out and "deploy window" in out

        code, out, _ = await ctl(world, "stop", "MT-1")
        assert code == 0
        await eventually(
            lambda: any(s.reason == "operator" for s in world.launcher.stopped), "stop"
        )
        code, out, _ = await ctl(world, "status", "MT-1")
        assert code == 0 and "stopped" in out
        code, _, err = await ctl(world, "stop", "MT-99")
        assert code == 1 and "issue_not_found" in err

        code, _, _ = await ctl(world, "resume")
        assert code == 0
        code, _, _ = await ctl(world, "refresh")
        assert code == 0
        await asyncio.sleep(0.5)
        assert [i for i, _ in started(world)].count("MT-1") == 1  # stop holds it
        code, _, _ = await ctl(world, "release", "MT-1")
        assert code == 0
        await eventually(lambda: [i for i, _ in started(world)].count("MT-1") == 2, "release")


@run_async
async def test_broken_workflow_edit_keeps_last_good_and_is_reported() -> None:
    async with socket_world() as world, dispatcher(world):
        workflow = world.root / "WORKFLOW.md"
        good = (await status(world))["config"]["fingerprint"]
        workflow.write_text("---\ntracker: [unclosed\n---\nprompt\n")
        snap = await wait_status(world, lambda s: not s["config"]["ok"], "rejection")
        assert snap["config"]["fingerprint"] == good and snap["config"]["error"]
        assert [r["code"] for r in snap["pause"]["reasons"]] == ["invalid_config"]
        code, out, _ = await ctl(world, "status")
        assert "REJECTED" in out
        world.tracker.put(issue(1))
        await asyncio.sleep(0.5)
        assert world.launcher.started == []  # nothing starts on a config we cannot read

        write_workflow(workflow, limit=5)
        snap = await wait_status(world, lambda s: s["config"]["ok"], "reload")
        assert snap["max_concurrent_agents"] == 5 and snap["config"]["fingerprint"] != good
        await eventually(lambda: started(world) == [("MT-1", None)], "dispatch after fix")


@run_async
async def test_restart_readopts_runs_over_sockets() -> None:
    async with socket_world() as world:
        world.tracker.put(issue(1), issue(2), issue(3))
        async with dispatcher(world):
            await eventually(lambda: len(world.launcher.started) == 2, "two runs")
        # The dispatcher is gone; its runs live on in the launcher.
        async with dispatcher(world) as orch:
            assert set(orch.running) == {r.info.issue_id for r in world.launcher.live()}
            await asyncio.sleep(0.6)  # several ticks
            assert len(world.launcher.started) == 2
            for run in world.launcher.live():
                world.launcher.finish(run.info.run_id, RunOutcome("failed"))
            world.emit_pending()
            await eventually(lambda: len(world.launcher.started) == 3, "freed slot used")
        ids = [r.issue.id for r in world.launcher.started]
        assert len(ids) == len(set(ids))


@run_async
async def test_audit_outage_pauses_dispatch_until_it_returns() -> None:
    async with socket_world() as world, dispatcher(world):
        await world.stop_server("audit")
        world.tracker.put(issue(1))
        snap = await wait_status(world, lambda s: s["pause"]["paused"], "audit pause")
        assert [r["code"] for r in snap["pause"]["reasons"]] == ["audit_unavailable"]
        assert world.launcher.started == []
        await world.start_audit()
        await eventually(lambda: len(world.launcher.started) == 1, "dispatch after recovery")


@run_async
async def test_status_of_a_board_larger_than_one_frame() -> None:
    # A busy board's snapshot is over 1 MiB (the default frame); symphonyctl still shows it.
    async with socket_world() as world, dispatcher(world) as orch:
        world.tracker.put(issue(1), issue(2))
        await eventually(lambda: len(world.launcher.started) == 2, "two runs")
        for run in world.launcher.started:
            message = f"{run.issue.identifier} " + "x" * 700_000
            world.emit(RunEvent(run.run_id, run.issue.id, "notification", "2026-03-01T12:00:00Z",
                                message=message))  # fmt: skip
        await eventually(
            lambda: all(e.last_message and len(e.last_message) > 700_000
                        for e in orch.running.values()), "messages applied"
        )  # fmt: skip
        snap = await status(world)
        rows = snap["running"]
        assert sorted(len(r["last_message"]) for r in rows) == [700_005, 700_005]


@run_async
async def test_a_hand_off_grace_ends_with_a_tick_not_with_the_poll() -> None:
    # An hour's poll: only the dispatcher's own wake at the grace's end can explain the stop.
    async with socket_world() as world:
        write_workflow(world.root / "WORKFLOW.md", interval=3_600_000, grace=400)
        world.tracker.put(issue(1), issue(2))
        async with dispatcher(world) as orch:
            await eventually(lambda: len(world.launcher.started) == 2, "two runs")
            world.tracker.move("id-1", "Backlog")  # someone else moved it
            world.tracker.move("id-2", "Human Review")  # its agent handed it off
            code, _, _ = await ctl(world, "refresh")
            assert code == 0
            await eventually(lambda: all(e.handoff_deadline_ms for e in orch.running.values()),
                             "grace started")  # fmt: skip
            assert world.launcher.stopped == []
            # MT-2's run ends on its own inside the grace: nothing is cancelled.
            run2 = next(r.run_id for r in world.launcher.started if r.issue.id == "id-2")
            world.launcher.finish(run2, RunOutcome("succeeded"))
            world.emit_pending()
            await eventually(lambda: world.launcher.stopped != [], "stop at the grace's end")
            assert [(s.reason, s.run_id) for s in world.launcher.stopped] == [
                ("inactive", next(r.run_id for r in world.launcher.started if r.issue.id == "id-1"))
            ]


@run_async
async def test_reconcile_refreshes_running_issues_from_the_board_and_the_rest_by_id() -> None:
    # 250 running issues, all on the board: a tick reads the board once and asks for no
    # issue by id; an issue that left the board is fetched by id. Outcomes as before: a
    # state change inside the active states is applied, an issue that is no longer
    # dispatchable stops as unroutable, one in a terminal state stops with cleanup.
    async with running_issues(250) as (world, orch):
        world.id_pages.clear()
        polls = world.fetches
        for n in (1, 2):  # ticks run one at a time: the second's read ends the first
            assert (await ctl(world, "refresh"))[0] == 0
            await eventually(lambda n=n: world.fetches >= polls + n, f"tick {n}")
        assert world.id_pages == []

        world.tracker.move("id-7", "In Progress")
        world.tracker.put(replace(world.tracker.issues["id-8"], dispatchable=False))
        world.tracker.move("id-9", "Done")
        assert (await ctl(world, "refresh"))[0] == 0
        await eventually(lambda: len(world.launcher.stopped) == 2, "two stops")
        assert world.id_pages == [["id-9"]]  # the one running issue not on the board
        assert sorted((s.reason, s.run_id, s.cleanup_workspace)
                      for s in world.launcher.stopped) == sorted(
            [("unroutable", run_of(world, "id-8"), False),
             ("terminal", run_of(world, "id-9"), True)]
        )  # fmt: skip
        assert orch.running["id-7"].issue.state == "In Progress"
        assert len(orch.running) == 248


@run_async
async def test_reconcile_refreshes_many_runs_in_concurrent_pages() -> None:
    # The board read fails: reconciliation fetches every running issue by id, as before,
    # in pages of IDS_PER_FETCH with several in flight; one failed page fails the whole
    # refresh (nothing stops), as when the pages went one after the other.
    async with running_issues(250) as (world, orch):
        world.refuse_states = True
        world.ids_delay_s = 0.01
        world.tracker.move("id-5", "Done")
        world.tracker.move("id-240", "Backlog")
        world.refuse_ids = {"id-150"}
        polls = world.fetches
        assert (await ctl(world, "refresh"))[0] == 0
        # One board read per tick, failed or not; the poll reports the failed read.
        await eventually(lambda: world.fetches > polls, "a tick with a refused page")
        await eventually(lambda: orch.pauses.has("tracker_unavailable"), "poll failed")
        assert world.launcher.stopped == []
        assert len(orch.running) == 250

        world.refuse_ids = set()
        world.id_pages.clear()
        assert (await ctl(world, "refresh"))[0] == 0
        await eventually(lambda: len(world.launcher.stopped) == 2, "two stops")
        assert sorted((s.reason, s.run_id) for s in world.launcher.stopped) == sorted(
            [("inactive", run_of(world, "id-240")), ("terminal", run_of(world, "id-5"))]
        )
        assert all(len(page) <= IDS_PER_FETCH for page in world.id_pages)
        assert sorted(i for page in world.id_pages for i in page) == sorted(
            f"id-{n}" for n in range(1, 251)
        )
        assert 2 <= world.ids_in_flight_max <= PAGES_IN_FLIGHT
        snap = await status(world)
        assert "tracker_unavailable" in {r["code"] for r in snap["pause"]["reasons"]}


@contextlib.asynccontextmanager
async def running_issues(n: int) -> AsyncIterator[tuple[SocketWorld, Orchestrator]]:
    """The dispatcher with ``n`` issues running and an hour's poll (ticks come from
    ``symphonyctl refresh``)."""
    async with socket_world() as world:
        write_workflow(world.root / "WORKFLOW.md", limit=n, interval=3_600_000)
        world.tracker.put(*(issue(k) for k in range(1, n + 1)))
        async with dispatcher(world) as orch:
            await eventually(lambda: len(orch.running) == n, f"{n} runs")
            yield world, orch


def run_of(world: SocketWorld, issue_id: str) -> str:
    return next(r.run_id for r in world.launcher.started if r.issue.id == issue_id)
