"""WorkspaceManager against real directories, real symlinks and real bash hooks (SPEC 17.2)."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from symphonyd.core.config import HooksConfig
from symphonyd.core.config_extensions import CleanupConfig
from symphonyd.core.errors import WorkspaceError
from symphonyd.core.issue import Issue
from symphonyd.core.workspace_paths import workspace_key
from symphonyd.launcher.hooks import HookRunner, RunAs
from symphonyd.launcher.workspace import Workspace, WorkspaceManager

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout=60))


def make_issue(identifier: str = "ABC-1", **over: Any) -> Issue:
    fields: dict[str, Any] = {
        "id": f"id-{identifier}",
        "identifier": identifier,
        "title": "t",
        "state": "Todo",
        "dispatchable": True,
    }
    fields.update(over)
    return Issue(**fields)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    r.mkdir()
    return r.resolve()


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    o = tmp_path / "outside"
    o.mkdir()
    (o / "precious.txt").write_text("keep me")
    (o / "sub").mkdir()
    (o / "sub" / "deep.txt").write_text("keep me too")
    return o.resolve()


def log_hook(log: Path, name: str) -> str:
    # Scripts are trusted config: a literal path is fine here, issue data comes via env.
    return f'printf "%s %s\\n" {name} "$ISSUE_IDENTIFIER" >> {log}'


def assert_outside_intact(outside: Path) -> None:
    assert (outside / "precious.txt").read_text() == "keep me"
    assert (outside / "sub" / "deep.txt").read_text() == "keep me too"


# ---------------------------------------------------------------- create / reuse


def test_deterministic_path_per_identifier(root: Path) -> None:
    a = WorkspaceManager(root)
    b = WorkspaceManager(str(root) + "/./")
    for ident in ("ABC-1", "team/ABC 1", "../../etc/passwd"):
        assert a.path_for(ident) == b.path_for(ident) == root / workspace_key(ident)


def test_missing_workspace_is_created_then_reused(root: Path) -> None:
    mgr = WorkspaceManager(root)
    ws = run(mgr.prepare(make_issue()))
    assert ws == Workspace(path=root / "ABC-1", key="ABC-1", created_now=True)
    assert stat.S_IMODE(os.lstat(ws.path).st_mode) == 0o700
    (ws.path / "work.txt").write_text("progress")
    again = run(mgr.prepare(make_issue()))
    assert again.created_now is False
    assert again.path == ws.path
    assert (ws.path / "work.txt").read_text() == "progress"


def test_missing_root_is_created(tmp_path: Path) -> None:
    mgr = WorkspaceManager(tmp_path / "a" / "b")
    ws = run(mgr.prepare(make_issue()))
    assert ws.path == (tmp_path / "a" / "b" / "ABC-1").resolve()
    assert ws.path.is_dir()


def test_hostile_identifier_stays_inside_root(root: Path, tmp_path: Path) -> None:
    mgr = WorkspaceManager(root)
    ws = run(mgr.prepare(make_issue("../../escape")))
    assert ws.path.parent == root
    assert not (tmp_path / "escape").exists()


def test_non_directory_at_location_is_refused_and_kept(root: Path) -> None:
    (root / "ABC-1").write_text("not a workspace")
    log = root.parent / "hooks.log"
    mgr = WorkspaceManager(root, HooksConfig(after_create=log_hook(log, "after_create")))
    with pytest.raises(WorkspaceError) as err:
        run(mgr.prepare(make_issue()))
    assert err.value.error_code == "workspace_not_a_directory"
    assert (root / "ABC-1").read_text() == "not a workspace"
    assert not log.exists()


@pytest.mark.parametrize("kind", ["outside", "sibling", "dangling"])
def test_symlink_at_location_is_refused_before_anything_runs(
    root: Path, outside: Path, kind: str
) -> None:
    target = {"outside": outside, "sibling": root / "OTHER-1", "dangling": outside / "nope"}[kind]
    (root / "OTHER-1").mkdir()
    (root / "ABC-1").symlink_to(target)
    log = root.parent / "hooks.log"
    hooks = HooksConfig(
        after_create=log_hook(log, "after_create"), before_run=log_hook(log, "before_run")
    )
    mgr = WorkspaceManager(root, hooks)
    with pytest.raises(WorkspaceError) as err:
        run(mgr.prepare(make_issue()))
    assert err.value.error_code == "workspace_symlink_escape"
    assert not log.exists()
    assert not (outside / "nope").exists()
    assert_outside_intact(outside)
    assert os.listdir(root / "OTHER-1") == []


# ---------------------------------------------------------------- hooks


def test_after_create_runs_only_on_creation(root: Path) -> None:
    log = root.parent / "hooks.log"
    mgr = WorkspaceManager(root, HooksConfig(after_create=log_hook(log, "after_create")))
    run(mgr.prepare(make_issue()))
    run(mgr.prepare(make_issue()))
    run(mgr.prepare(make_issue("XYZ-9")))
    assert log.read_text().splitlines() == ["after_create ABC-1", "after_create XYZ-9"]


def test_after_create_runs_in_the_new_workspace(root: Path) -> None:
    mgr = WorkspaceManager(root, HooksConfig(after_create="git init -q . && echo ok > ready"))
    ws = run(mgr.prepare(make_issue()))
    assert (ws.path / ".git").is_dir()
    assert (ws.path / "ready").read_text() == "ok\n"


@pytest.mark.parametrize(
    ("script", "timeout_ms", "code"),
    [
        ("touch half-done; exit 7", 30_000, "hook_failed"),
        ("touch half-done; sleep 60", 300, "hook_timeout"),
    ],
)
def test_after_create_failure_removes_the_new_dir_and_fails(
    root: Path, script: str, timeout_ms: int, code: str
) -> None:
    mgr = WorkspaceManager(root, HooksConfig(after_create=script, timeout_ms=timeout_ms))
    with pytest.raises(WorkspaceError) as err:
        run(mgr.prepare(make_issue()))
    assert err.value.error_code == code
    assert err.value.details["hook"] == "after_create"
    assert not os.path.lexists(root / "ABC-1")
    # The next attempt starts from scratch and runs after_create again.
    mgr.hooks = HooksConfig(after_create="touch fresh")
    ws = run(mgr.prepare(make_issue()))
    assert ws.created_now
    assert sorted(os.listdir(ws.path)) == ["fresh"]


def test_before_run_runs_before_each_attempt(root: Path) -> None:
    log = root.parent / "hooks.log"
    mgr = WorkspaceManager(root, HooksConfig(before_run=log_hook(log, "before_run")))
    ws = run(mgr.prepare(make_issue()))
    for _ in range(3):
        run(mgr.before_run(ws, make_issue()))
    assert log.read_text().splitlines() == ["before_run ABC-1"] * 3


@pytest.mark.parametrize(
    ("script", "timeout_ms", "code"),
    [("echo nope >&2; exit 1", 30_000, "hook_failed"), ("sleep 60", 300, "hook_timeout")],
)
def test_before_run_failure_or_timeout_aborts_the_attempt(
    root: Path, script: str, timeout_ms: int, code: str
) -> None:
    mgr = WorkspaceManager(root)
    ws = run(mgr.prepare(make_issue()))
    (ws.path / "keep.txt").write_text("x")
    mgr.hooks = HooksConfig(before_run=script, timeout_ms=timeout_ms)
    with pytest.raises(WorkspaceError) as err:
        run(mgr.before_run(ws, make_issue()))
    assert err.value.error_code == code
    assert err.value.details["hook"] == "before_run"
    # A reused workspace is not reset on failure (SPEC 9.3).
    assert (ws.path / "keep.txt").read_text() == "x"


@pytest.mark.parametrize(("script", "timeout_ms"), [("exit 5", 30_000), ("sleep 60", 300)])
def test_after_run_failure_or_timeout_is_ignored(root: Path, script: str, timeout_ms: int) -> None:
    mgr = WorkspaceManager(root, HooksConfig(after_run=script, timeout_ms=timeout_ms))
    ws = run(mgr.prepare(make_issue()))
    result = run(mgr.after_run(ws, make_issue()))
    assert result is not None
    assert not result.ok
    assert ws.path.is_dir()


def test_after_run_is_skipped_when_the_workspace_is_gone(root: Path) -> None:
    log = root.parent / "hooks.log"
    mgr = WorkspaceManager(root, HooksConfig(after_run=log_hook(log, "after_run")))
    ws = run(mgr.prepare(make_issue()))
    os.rmdir(ws.path)
    assert run(mgr.after_run(ws, make_issue())) is None
    assert not log.exists()


def test_hook_changes_apply_to_the_next_run(root: Path) -> None:
    log = root.parent / "hooks.log"
    mgr = WorkspaceManager(root, HooksConfig(before_run=log_hook(log, "v1")))
    ws = run(mgr.prepare(make_issue()))
    run(mgr.before_run(ws, make_issue()))
    mgr.hooks = HooksConfig(before_run=log_hook(log, "v2"))
    run(mgr.before_run(ws, make_issue()))
    assert log.read_text().splitlines() == ["v1 ABC-1", "v2 ABC-1"]


# ---------------------------------------------------------------- launch


def test_launch_cwd_is_the_checked_workspace(root: Path, outside: Path) -> None:
    mgr = WorkspaceManager(root)
    ws = run(mgr.prepare(make_issue()))
    assert mgr.launch_cwd(ws) == root / "ABC-1"
    forged = Workspace(path=outside, key=ws.key, created_now=False)
    with pytest.raises(WorkspaceError) as err:
        mgr.launch_cwd(forged)
    assert err.value.error_code == "workspace_outside_root"
    # Swapped for a symlink after preparation: refused at launch time.
    os.rmdir(ws.path)
    ws.path.symlink_to(outside)
    with pytest.raises(WorkspaceError) as err:
        mgr.launch_cwd(ws)
    assert err.value.error_code == "workspace_symlink_escape"
    with pytest.raises(WorkspaceError):
        run(mgr.before_run(ws, make_issue()))


# ---------------------------------------------------------------- removal


def test_remove_runs_before_remove_then_deletes(root: Path) -> None:
    log = root.parent / "hooks.log"
    mgr = WorkspaceManager(root, HooksConfig(before_remove=log_hook(log, "before_remove")))
    ws = run(mgr.prepare(make_issue()))
    (ws.path / "a" / "b").mkdir(parents=True)
    assert run(mgr.remove("ABC-1", make_issue())) is True
    assert not os.path.lexists(ws.path)
    assert log.read_text().splitlines() == ["before_remove ABC-1"]
    assert run(mgr.remove("ABC-1")) is False


@pytest.mark.parametrize(("script", "timeout_ms"), [("exit 9", 30_000), ("sleep 60", 300)])
def test_before_remove_failure_or_timeout_is_ignored(
    root: Path, script: str, timeout_ms: int
) -> None:
    mgr = WorkspaceManager(root, HooksConfig(before_remove=script, timeout_ms=timeout_ms))
    ws = run(mgr.prepare(make_issue()))
    assert run(mgr.remove("ABC-1")) is True
    assert not os.path.lexists(ws.path)


def test_remove_never_follows_symlinks_out_of_the_workspace(root: Path, outside: Path) -> None:
    mgr = WorkspaceManager(root)
    other = run(mgr.prepare(make_issue("OTHER-2")))
    (other.path / "theirs.txt").write_text("other agent's work")
    ws = run(mgr.prepare(make_issue()))
    (ws.path / "nested" / "deeper").mkdir(parents=True)
    (ws.path / "to-outside-dir").symlink_to(outside)
    (ws.path / "to-outside-file").symlink_to(outside / "precious.txt")
    (ws.path / "nested" / "deeper" / "up").symlink_to("../../../../outside")
    (ws.path / "nested" / "to-other").symlink_to(other.path)
    (ws.path / "nested" / "to-root").symlink_to(root)
    (ws.path / "loop").symlink_to("loop")
    assert run(mgr.remove("ABC-1")) is True
    assert not os.path.lexists(ws.path)
    assert_outside_intact(outside)
    assert (other.path / "theirs.txt").read_text() == "other agent's work"


def test_remove_refuses_a_symlinked_location(root: Path, outside: Path) -> None:
    (root / "ABC-1").symlink_to(outside)
    mgr = WorkspaceManager(root)
    with pytest.raises(WorkspaceError) as err:
        run(mgr.remove("ABC-1"))
    assert err.value.error_code == "workspace_symlink_escape"
    assert_outside_intact(outside)
    assert (root / "ABC-1").is_symlink()


def test_remove_rechecks_after_before_remove(root: Path, outside: Path) -> None:
    # A hook that swaps the workspace for a symlink must not redirect the deletion.
    swap = f"cd .. && mv ABC-1 ABC-1.moved && ln -s {outside} ABC-1"
    mgr = WorkspaceManager(root, HooksConfig(before_remove=swap))
    run(mgr.prepare(make_issue()))
    with pytest.raises(WorkspaceError) as err:
        run(mgr.remove("ABC-1"))
    assert err.value.error_code == "workspace_symlink_escape"
    assert_outside_intact(outside)


def test_remove_refuses_a_file_at_the_location(root: Path) -> None:
    (root / "ABC-1").write_text("x")
    with pytest.raises(WorkspaceError) as err:
        run(WorkspaceManager(root).remove("ABC-1"))
    assert err.value.error_code == "workspace_not_a_directory"
    assert (root / "ABC-1").read_text() == "x"


# ---------------------------------------------------------------- housekeeping


def _age(path: Path, seconds_ago: float) -> None:
    t = os.stat(path).st_mtime - seconds_ago
    os.utime(path, (t, t), follow_symlinks=False)


def test_survey_classifies_every_entry_oldest_first(root: Path, outside: Path) -> None:
    mgr = WorkspaceManager(root)
    for ident in ("OLD-1", "NEW-3", "team/odd 4"):
        run(mgr.prepare(make_issue(ident)))
    (root / "stray-file").write_text("x")
    (root / "link-out").symlink_to(outside)
    (root / ".hidden").mkdir()
    _age(root / "OLD-1", 10 * 86400)

    survey = mgr.survey()
    problems = {e.name: e.problem for e in survey}
    assert problems == {
        "OLD-1": None,
        "NEW-3": None,
        workspace_key("team/odd 4"): None,
        "stray-file": "not a directory",
        "link-out": "symlink",
        ".hidden": "not a valid workspace key",
    }
    assert survey[0].name == "OLD-1"  # the oldest first
    assert {e.name for e in survey if e.last_used is None} == {"stray-file", "link-out"}
    assert [e.key for e in mgr.list_workspaces()] == sorted(
        ["OLD-1", "NEW-3", workspace_key("team/odd 4")]
    )
    assert_outside_intact(outside)


def test_use_refreshes_the_age(root: Path) -> None:
    mgr = WorkspaceManager(root)
    ws = run(mgr.prepare(make_issue()))
    _age(ws.path, 10 * 86400)
    run(mgr.before_run(ws, make_issue()))
    (entry,) = mgr.survey()
    assert entry.last_used is not None and time.time() - entry.last_used < 3600


def test_list_on_missing_root_is_empty(tmp_path: Path) -> None:
    assert WorkspaceManager(tmp_path / "nope").list_workspaces() == []
    assert WorkspaceManager(tmp_path / "nope").survey() == []


def test_free_disk_bytes_reports_the_root_filesystem(root: Path) -> None:
    mgr = WorkspaceManager(root)
    free = mgr.free_disk_bytes()
    st = os.statvfs(root)
    assert 0 < free <= st.f_blocks * st.f_frsize


@pytest.mark.root
def test_free_disk_bytes_drops_when_the_root_fills(tmp_path: Path) -> None:
    import subprocess

    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], check=True)
    try:
        mgr = WorkspaceManager(mnt)
        before = mgr.free_disk_bytes()
        assert before <= 8 * 1024 * 1024
        ws = run(mgr.prepare(make_issue()))
        (ws.path / "blob").write_bytes(b"\0" * (4 * 1024 * 1024))
        assert mgr.free_disk_bytes() <= before - 4 * 1024 * 1024
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.root
def test_owner_gets_the_new_workspace_and_hooks_run_as_owner(root: Path) -> None:
    # The root stays 0700 root-owned (as under StateDirectoryMode=0700): the hook enters its
    # workspace before dropping privileges, so it needs no access to the parents.
    os.chmod(root, 0o700)
    owner = RunAs(uid=65534, gid=65534)
    mgr = WorkspaceManager(
        root, HooksConfig(after_create="id -u > uid.txt"), HookRunner(run_as=owner), owner=owner
    )
    ws = run(mgr.prepare(make_issue()))
    st = os.lstat(ws.path)
    assert (st.st_uid, st.st_gid) == (65534, 65534)
    assert (ws.path / "uid.txt").read_text().strip() == "65534"
    assert os.lstat(ws.path / "uid.txt").st_uid == 65534


def test_disk_low_compares_free_space_with_the_policy(root: Path) -> None:
    mgr = WorkspaceManager(root)
    free_mb = mgr.free_disk_bytes() // (1024 * 1024)
    assert mgr.disk_low(CleanupConfig(min_free_disk_mb=free_mb + 1024))
    assert not mgr.disk_low(CleanupConfig(min_free_disk_mb=0))


def test_before_remove_env_when_only_the_identifier_or_key_is_known(root: Path) -> None:
    log = root.parent / "hooks.log"
    script = f'printf "[%s][%s][%s]\\n" "$ISSUE_IDENTIFIER" "$ISSUE_ID" "$ISSUE_TITLE" >> {log}'
    mgr = WorkspaceManager(root, HooksConfig(before_remove=script))
    run(mgr.prepare(make_issue("ABC-1")))
    run(mgr.prepare(make_issue("OLD-2")))
    assert run(mgr.remove("ABC-1")) is True
    assert run(mgr.remove_key("OLD-2")) is True
    # Removal by identifier (terminal cleanup, prune, age cleanup) knows only the
    # identifier; by key, nothing: the other issue variables are empty.
    assert log.read_text().splitlines() == ["[ABC-1][][]", "[][][]"]
