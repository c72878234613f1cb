"""dispatcher.prune against tracker and launcher doubles on real Unix sockets.

The orchestrator is the production wiring (``assemble``) talking over IPC; workspaces are
real directories whose mtimes the test sets.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from symphonyd.core.api.dispatcher import PruneParams
from symphonyd.core.errors import SymphonyError
from symphonyd.core.workspace_paths import workspace_key
from symphonyd.dispatcher.prune import prune
from symphonyd.dispatcher.service import DispatcherService
from symphonyd.dispatcher.store import PersistedState, StateStore
from symphonyd.runtime.peer import Peer
from tests.dispatcher.doubles import issue, run_async
from tests.dispatcher.socket_doubles import SocketWorld, eventually, socket_world
from tests.dispatcher.test_daemon_sockets import ctl, dispatcher, write_workflow

DAY = 86400


def workspace(world: SocketWorld, identifier: str, age_s: float) -> Path:
    path = world.root / "ws" / workspace_key(identifier)
    path.mkdir(parents=True, exist_ok=True)
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


@run_async
async def test_removes_only_old_terminal_workspaces_without_live_runs() -> None:
    async with socket_world() as world:
        # One poll an hour: the live run below stays live after its issue turns Done.
        write_workflow(world.root / "WORKFLOW.md", interval=3_600_000)
        world.tracker.put(issue(1, "Todo"))
        async with dispatcher(world) as orch:
            await eventually(lambda: "id-1" in orch.running, "issue 1 running")
            world.tracker.move("id-1", "Done")
            world.tracker.put(issue(2, "Done"), issue(3, "Done"), issue(4, "Todo"))
            world.tracker.put(issue(5, "Done"))
            world.launcher.removed.clear()
            for n, age in ((1, 40 * DAY), (2, 40 * DAY), (3, 2 * DAY), (4, 40 * DAY)):
                workspace(world, f"MT-{n}", age)

            dry = await prune(orch, PruneParams(older_than_s=30 * DAY, dry_run=True))
            assert [e.identifier for e in dry.removed] == ["MT-2"]
            assert world.launcher.removed == []

            result = await prune(orch, PruneParams(older_than_s=30 * DAY, dry_run=False))
            assert [e.identifier for e in result.removed] == ["MT-2"]
            assert "terminal (Done)" in result.removed[0].reason
            kept = {e.identifier: e.reason for e in result.kept}
            assert kept == {"MT-1": "a run is still live", "MT-3": "touched 2 days ago"}
            # MT-4 is active, MT-5 has no workspace: neither is a candidate.
            assert world.launcher.removed == ["MT-2"]
            assert ("states", ["Done"]) in world.tracker.calls


@run_async
async def test_launcher_failure_keeps_the_workspace() -> None:
    async with socket_world() as world:
        write_workflow(world.root / "WORKFLOW.md", interval=3_600_000)
        async with dispatcher(world) as orch:
            world.tracker.put(issue(7, "Done"))
            workspace(world, "MT-7", 10 * DAY)
            world.launcher.fail = True
            result = await prune(orch, PruneParams(older_than_s=DAY, dry_run=False))
            assert result.removed == []
            assert [(e.identifier, e.reason) for e in result.kept] == [
                ("MT-7", "the launcher did not remove it")
            ]


@pytest.mark.parametrize("older_than_s", [0, -1, 10 * 365 * DAY + 1])
def test_out_of_range_durations_are_refused(older_than_s: int) -> None:
    @run_async
    async def go() -> None:
        async with socket_world() as world, dispatcher(world) as orch:
            world.tracker.put(issue(8, "Done"))
            workspace(world, "MT-8", 100 * DAY)
            with pytest.raises(SymphonyError) as info:
                await prune(orch, PruneParams(older_than_s=older_than_s, dry_run=False))
            assert info.value.error_code == "invalid_params"
            assert "MT-8" not in world.launcher.removed

    go()


@run_async
async def test_a_workspace_the_launcher_cannot_judge_is_kept_and_said_so() -> None:
    async with socket_world() as world:
        write_workflow(world.root / "WORKFLOW.md", interval=3_600_000)
        async with dispatcher(world) as orch:
            world.tracker.put(issue(9, "Done"))
            workspace(world, "MT-9", 100 * DAY)
            world.launcher.unjudgeable.add("MT-9")
            world.launcher.removed.clear()
            result = await prune(orch, PruneParams(DAY, dry_run=False))
            assert result.removed == [] and world.launcher.removed == []
            assert [(e.identifier, e.reason) for e in result.kept] == [
                ("MT-9", "age unknown: the launcher could not judge")
            ]


@run_async
async def test_symphonyctl_prune_through_the_control_socket() -> None:
    async with socket_world() as world:
        write_workflow(world.root / "WORKFLOW.md", interval=3_600_000)
        async with dispatcher(world):
            world.tracker.put(issue(11, "Done"))
            workspace(world, "MT-11", 40 * DAY)
            world.launcher.removed.clear()
            code, out, err = await ctl(world, "prune", "--older-than", "30d", "--dry-run")
            assert code == 0, err
            assert "would remove MT-11: terminal (Done)" in out and world.launcher.removed == []
            code, out, err = await ctl(world, "prune", "--older-than", "30d")
            assert code == 0, err
            assert "removed MT-11" in out and world.launcher.removed == ["MT-11"]


@run_async
async def test_prune_is_refused_to_non_root_peers() -> None:
    async with socket_world() as world, dispatcher(world) as orch:
        service = DispatcherService(orch)
        with pytest.raises(SymphonyError) as info:
            await service._prune(PruneParams(DAY, dry_run=True), Peer(uid=1000, gid=1000, pid=1))
        assert info.value.error_code == "peer_not_allowed"


def seed_tokens(world: SocketWorld, tokens: dict[str, tuple[int, str | None]]) -> Path:
    """A state file as an earlier dispatcher left it: totals, and when each last grew."""
    state = PersistedState(
        issue_tokens={i: total for i, (total, _) in tokens.items()},
        issue_tokens_at={i: at for i, (_, at) in tokens.items() if at is not None},
    )
    store = StateStore(world.root / "state")
    store.save(state)
    return store.path


@run_async
async def test_run_data_of_long_finished_issues_goes_once_their_workspace_is_gone() -> None:
    old, recent = "2026-01-01T00:00:00Z", _ago(2 * DAY)
    async with socket_world() as world:
        write_workflow(world.root / "WORKFLOW.md", interval=3_600_000)
        path = seed_tokens(
            world,
            {
                "id-21": (900, old),  # Done, no workspace: forgotten
                "id-22": (800, old),  # Done, old workspace: removed, then forgotten
                "id-23": (700, old),  # Done, young workspace: kept, so its total stays
                "id-24": (600, recent),  # Done, no workspace, used 2 days ago: stays
                "id-25": (500, old),  # Todo: not terminal, stays
                "id-26": (400, None),  # saved before times were kept: counts from now
                "id-27": (300, old),  # Done but held by the operator: stays
            },
        )
        world.tracker.put(*(issue(n, "Done") for n in (21, 22, 23, 24, 26, 27)))
        world.tracker.put(issue(25, "Todo"))
        async with dispatcher(world) as orch:
            orch.holds.place(issue(27, "Done"), "stopped", "operator", orch.clock.now(), 0)
            workspace(world, "MT-22", 40 * DAY)
            workspace(world, "MT-23", 1 * DAY)

            dry = await prune(orch, PruneParams(older_than_s=30 * DAY, dry_run=True))
            assert sorted(e.identifier for e in dry.forgotten) == ["MT-21", "MT-22"]
            assert orch.ledger.issue_total("id-21") == 900  # a dry run changes nothing

            result = await prune(orch, PruneParams(older_than_s=30 * DAY, dry_run=False))
            assert [e.identifier for e in result.removed] == ["MT-22"]
            forgotten = {e.identifier: e.reason for e in result.forgotten}
            assert sorted(forgotten) == ["MT-21", "MT-22"]
            assert "token total 900" in forgotten["MT-21"] and "2026-01-01" in forgotten["MT-21"]

        saved = StateStore(path.parent).load()
        assert saved.issue_tokens == {
            "id-23": 700, "id-24": 600, "id-25": 500, "id-26": 400, "id-27": 300,
        }  # fmt: skip
        assert saved.issue_tokens.keys() == saved.issue_tokens_at.keys()


def _ago(seconds: float) -> str:
    then = datetime.now(UTC) - timedelta(seconds=seconds)
    return then.strftime("%Y-%m-%dT%H:%M:%SZ")
