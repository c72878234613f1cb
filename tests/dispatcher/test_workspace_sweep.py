"""Age cleanup and the orphan report, decided by the orchestrator against in-memory doubles.

The launcher double lists and deletes real directories whose mtimes the test sets, as the
launcher does; the production wiring (real launcher, audit writer and dispatcher processes)
is driven in tests/dispatcher/test_age_cleanup_daemons.py.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

from symphonyd.core.workspace_paths import workspace_key
from symphonyd.dispatcher.snapshot import build_snapshot
from tests.dispatcher.doubles import issue, run_async
from tests.dispatcher.harness import Harness

DAY = 86400


def workspace(root: Path, identifier: str, age_s: float) -> Path:
    path = root / workspace_key(identifier)
    path.mkdir(parents=True, exist_ok=True)
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


async def started(tmp_path: Path, **cfg: object) -> tuple[Harness, Path]:
    h = Harness(tmp_path / "state", max_age_days=7, **cfg)
    root = tmp_path / "ws"
    root.mkdir()
    h.launcher.workspace_root = root
    await h.orch.start()
    return h, root


def removals(h: Harness) -> list[tuple[str | None, str]]:
    return [
        (r.issue_identifier, r.payload["outcome"])
        for r in h.audit.records
        if r.type == "workspace_remove"
    ]


@run_async
async def test_only_old_workspaces_of_terminal_issues_go_and_each_is_audited(
    tmp_path: Path,
) -> None:
    h, root = await started(tmp_path)
    # Issues that turned Done after startup (startup cleanup already took the others).
    h.tracker.put(issue(1, "Done"), issue(2, "Done"), issue(3, "Todo", dispatchable=False))
    old, young = workspace(root, "MT-1", 8 * DAY), workspace(root, "MT-2", 6 * DAY)
    active = workspace(root, "MT-3", 30 * DAY)
    orphan = workspace(root, "MT-99", 30 * DAY)
    (root / ".not-a-key").mkdir()
    (root / "notes.txt").write_text("x")

    await h.orch.sweep_workspaces()

    assert not old.exists()
    assert young.is_dir() and active.is_dir() and orphan.is_dir()
    assert (root / ".not-a-key").is_dir() and (root / "notes.txt").exists()
    assert removals(h) == [("MT-1", "requested"), ("MT-1", "removed")]
    requested = next(r for r in h.audit.records if r.type == "workspace_remove")
    assert requested.issue_id == "id-1" and requested.payload["reason"] == "age"
    assert requested.payload["max_age_days"] == 7 and requested.payload["state"] == "Done"
    status = build_snapshot(h.orch).workspaces
    assert status is not None and status.removed == 1 and status.error is None
    assert {o.name: o.reason for o in status.orphans} == {
        "MT-99": "no issue in the workflow's active or terminal states",
        ".not-a-key": "not a valid workspace key",
        "notes.txt": "not a directory",
    }
    assert status.orphans[0].name == "MT-99"  # the oldest first


@run_async
async def test_off_when_max_age_days_is_unset(tmp_path: Path) -> None:
    h, root = await started(tmp_path)
    h.config.settings = replace(h.config.settings, max_age_days=None)
    await h.orch.reload_config()
    h.tracker.put(issue(1, "Done"))
    old = workspace(root, "MT-1", 300 * DAY)
    await h.orch.sweep_workspaces()
    assert old.is_dir() and removals(h) == []
    status = build_snapshot(h.orch).workspaces
    assert status is not None and status.max_age_days is None and status.surveyed_at


@run_async
async def test_running_retrying_and_held_issues_keep_their_old_workspaces(
    tmp_path: Path,
) -> None:
    h, root = await started(tmp_path)
    h.tracker.put(issue(1), issue(2), issue(3))
    await h.orch.tick()
    assert set(h.orch.running) == {"id-1", "id-2", "id-3"}
    await h.orch.stop("MT-2", 0)  # held
    await h.finish("id-3", "failed")  # waiting for a retry
    # All three turn Done in the tracker before any reconcile sees it.
    for n in (1, 2, 3):
        h.tracker.move(f"id-{n}", "Done")
    paths = [workspace(root, f"MT-{n}", 30 * DAY) for n in (1, 2, 3)]

    await h.orch.sweep_workspaces()

    assert all(p.is_dir() for p in paths)
    assert removals(h) == []
    assert h.launcher.removed == []


@run_async
async def test_any_doubt_keeps_the_workspace(tmp_path: Path) -> None:
    h, root = await started(tmp_path)
    h.tracker.put(issue(1, "Done"))
    old = workspace(root, "MT-1", 30 * DAY)

    h.tracker.fail = True  # tracker unreachable: nothing is judged
    await h.orch.sweep_workspaces()
    status = build_snapshot(h.orch).workspaces
    assert status is not None and status.error and "tracker unreachable" in status.error
    assert status.surveyed_at is None and status.orphan_count == 0
    h.tracker.fail = False

    h.launcher.fail = True  # the workspace root cannot be listed
    await h.orch.sweep_workspaces()
    h.launcher.fail = False

    h.audit.fail = True  # nothing is removed unaudited
    await h.orch.tick()  # the dispatcher notices: audit_unavailable
    await h.orch.sweep_workspaces()
    status = build_snapshot(h.orch).workspaces
    assert status is not None and status.error and "audit" in status.error
    h.audit.fail = False
    await h.orch.tick()

    # Two listed issues whose identifiers map to the same key: whose workspace is it?
    h.tracker.put(replace(issue(2, "Done"), identifier="MT-1"))
    await h.orch.sweep_workspaces()
    assert old.is_dir() and removals(h) == []

    # Reopened between the listing and the removal: the fresh look keeps it.
    del h.tracker.issues["id-2"]
    real_by_ids = h.tracker.fetch_by_ids

    async def reopened(ids: list[str]) -> list:  # type: ignore[type-arg]
        h.tracker.move("id-1", "Todo")
        return await real_by_ids(ids)

    h.tracker.fetch_by_ids = reopened  # type: ignore[method-assign]
    await h.orch.sweep_workspaces()
    assert old.is_dir() and removals(h) == []
    h.tracker.fetch_by_ids = real_by_ids  # type: ignore[method-assign]
    h.tracker.move("id-1", "Done")

    # Once every doubt is gone, the same workspace goes.
    await h.orch.sweep_workspaces()
    assert not old.exists()
    assert removals(h) == [("MT-1", "requested"), ("MT-1", "removed")]


@run_async
async def test_workspace_used_after_the_decision_is_kept_and_audited_as_kept(
    tmp_path: Path,
) -> None:
    h, root = await started(tmp_path)
    h.tracker.put(issue(1, "Done"))
    old = workspace(root, "MT-1", 30 * DAY)
    real_by_ids = h.tracker.fetch_by_ids

    async def touch_then_fetch(ids: list[str]) -> list:  # type: ignore[type-arg]
        os.utime(old)  # a hook or a person used it a moment ago
        return await real_by_ids(ids)

    h.tracker.fetch_by_ids = touch_then_fetch  # type: ignore[method-assign]
    await h.orch.sweep_workspaces()
    assert old.is_dir()
    assert removals(h) == [("MT-1", "requested"), ("MT-1", "kept")]
    assert "id-1" not in h.orch.claimed  # the cleanup's claim is given back
