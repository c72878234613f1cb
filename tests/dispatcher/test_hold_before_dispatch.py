"""``symphonyctl stop`` holds an issue that is waiting to run (issue 22 item 4, note 0751).

The socket test drives the dispatcher as production assembles it, through its control
socket with the real symphonyctl, against tracker/launcher/audit doubles on Unix sockets.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from symphonyd.core.issue import Issue
from tests.dispatcher.doubles import MemoryTracker, issue, run_async
from tests.dispatcher.harness import Harness
from tests.dispatcher.socket_doubles import eventually, socket_world
from tests.dispatcher.test_daemon_sockets import (
    ctl,
    dispatcher,
    started,
    status,
    write_workflow,
)


@run_async
async def test_stop_holds_a_waiting_issue_across_restart_until_release() -> None:
    async with socket_world() as world:
        write_workflow(world.root / "WORKFLOW.md", limit=5)
        async with dispatcher(world):
            assert (await ctl(world, "pause", "--reason", "triage"))[0] == 0
            world.tracker.put(issue(1), issue(2), issue(3), issue(4, "Backlog"))
            code, out, _ = await ctl(world, "stop", "MT-1")
            assert code == 0 and "MT-1 held before dispatch" in out
            code, out, _ = await ctl(world, "stop", "id-2")  # the tracker's id works too
            assert code == 0 and "MT-2 held before dispatch" in out
            code, out, _ = await ctl(world, "stop", "MT-1")
            assert code == 0 and "already held" in out
            code, _, err = await ctl(world, "stop", "MT-4")  # listed, but not active
            assert code == 1 and "issue_not_found" in err
            code, _, err = await ctl(world, "stop", "MT-99")
            assert code == 1 and "issue_not_found" in err
        # The holds outlive the dispatcher, like every other hold (0701).
        async with dispatcher(world):
            holds = {h["issue_identifier"]: h for h in (await status(world))["held"]}
            assert set(holds) == {"MT-1", "MT-2"}
            assert all(h["kind"] == "stopped" and h["by_uid"] == os.getuid()
                       for h in holds.values())  # fmt: skip
            assert (await ctl(world, "resume"))[0] == 0
            await eventually(lambda: started(world) == [("MT-3", None)], "MT-3 dispatched")
            await asyncio.sleep(0.6)  # several ticks: the held ones stay out
            assert started(world) == [("MT-3", None)]
            code, out, _ = await ctl(world, "release", "MT-1")
            assert code == 0 and "MT-1 released" in out
            await eventually(lambda: ("MT-1", None) in started(world), "MT-1 after release")
            code, out, _ = await ctl(world, "release", "id-2")
            assert code == 0 and "MT-2 released" in out
            await eventually(lambda: ("MT-2", None) in started(world), "MT-2 after release")
    stops = [r for r in world.audit.records if r.type == "stop"]
    assert [(r.issue_id, r.payload["operator_uid"]) for r in stops] == [
        ("id-1", os.getuid()),
        ("id-2", os.getuid()),
    ]
    assert [r.issue_id for r in world.audit.records if r.type == "release"] == ["id-1", "id-2"]


class DispatchingTracker(MemoryTracker):
    """A tick gets in while stop is asking the tracker: the issue is dispatched meanwhile."""

    def __init__(self, h: Harness) -> None:
        super().__init__()
        self.h = h
        self.interleave = False

    async def fetch_by_states(self, states: list[str]) -> list[Issue]:
        issues = await super().fetch_by_states(states)
        if self.interleave:
            self.interleave = False
            await self.h.orch.tick()
        return issues


@run_async
async def test_an_issue_dispatched_while_stop_looks_it_up_is_stopped(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    tracker = DispatchingTracker(h)
    h.tracker = tracker
    h.orch = h.new_orchestrator()
    tracker.put(issue(1))
    await h.orch.start()
    tracker.interleave = True
    message = await h.orch.stop("MT-1", uid=0)
    assert "MT-1 stopped" in message
    [run] = h.launcher.started
    assert [(s.run_id, s.reason) for s in h.launcher.stopped] == [(run.run_id, "operator")]
    assert h.orch.holds.get("id-1") is not None and "id-1" not in h.orch.running
    await h.orch.tick()
    assert len(h.launcher.started) == 1
