"""Git metadata write-protection list, built from real repositories made with real git."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from symphonyd.core.errors import WorkspaceError
from symphonyd.launcher.git_protect import (
    create_placeholders,
    git_protected_paths,
    scan_git_metadata,
)


@pytest.fixture
def git_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }


def git(env: dict[str, str], cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "init.defaultBranch=main", "-c", "protocol.file.allow=always", *args],
        cwd=cwd,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )


def make_repo(env: dict[str, str], path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(env, path, "init", "-q")
    (path / "README").write_text("hi\n")
    git(env, path, "add", "README")
    git(env, path, "commit", "-qm", "init")
    return path


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    w = tmp_path / "ws"
    w.mkdir()
    return w.resolve()


def assert_all_inside(paths: list[Path], ws: Path) -> None:
    for p in paths:
        assert p.is_relative_to(ws), p


def test_plain_repository(ws: Path, git_env: dict[str, str]) -> None:
    make_repo(git_env, ws)
    git(git_env, ws, "pack-refs", "--all")
    protected = git_protected_paths(ws)
    dot = ws / ".git"
    assert {dot / "config", dot / "hooks", dot / "info", dot / "packed-refs"} <= set(protected)
    assert dot / "objects" not in protected
    assert not any(p.name == "refs" for p in protected)
    scan = scan_git_metadata(ws)
    assert dot / "config.worktree" in scan.missing
    assert scan.roots == [dot]
    assert scan.outside == []


def test_nested_repositories_are_found(ws: Path, git_env: dict[str, str]) -> None:
    make_repo(git_env, ws)
    make_repo(git_env, ws / "vendor" / "lib")
    make_repo(git_env, ws / "a" / "b" / "c" / "deep")
    protected = git_protected_paths(ws)
    for root in (ws, ws / "vendor" / "lib", ws / "a" / "b" / "c" / "deep"):
        assert root / ".git" / "config" in protected
        assert root / ".git" / "hooks" in protected
    assert_all_inside(protected, ws)


def test_linked_worktree_inside_the_workspace(ws: Path, git_env: dict[str, str]) -> None:
    main = make_repo(git_env, ws / "main")
    git(git_env, main, "worktree", "add", "-q", str(ws / "wt1"))
    git(git_env, main, "config", "extensions.worktreeConfig", "true")
    git(git_env, ws / "wt1", "config", "--worktree", "core.editor", "true")
    assert (ws / "wt1" / ".git").is_file()
    scan = scan_git_metadata(ws)
    wt_gitdir = main / ".git" / "worktrees" / "wt1"
    assert wt_gitdir / "config.worktree" in scan.protected
    assert main / ".git" / "config" in scan.protected
    assert wt_gitdir in scan.roots
    assert scan.outside == []


def test_gitdir_outside_the_workspace_is_reported_not_followed(
    ws: Path, tmp_path: Path, git_env: dict[str, str]
) -> None:
    source = make_repo(git_env, tmp_path / "source")
    git(git_env, source, "worktree", "add", "-q", str(ws / "checkout"))
    scan = scan_git_metadata(ws)
    assert scan.outside == [ws / "checkout" / ".git"]
    assert scan.protected == []
    assert scan.roots == []


def test_submodule_gitdirs_are_protected(ws: Path, tmp_path: Path, git_env: dict[str, str]) -> None:
    upstream = make_repo(git_env, tmp_path / "upstream")
    main = make_repo(git_env, ws / "main")
    git(git_env, main, "submodule", "add", "-q", str(upstream), "sub")
    module = main / ".git" / "modules" / "sub"
    assert module.is_dir()
    protected = git_protected_paths(ws)
    assert module / "config" in protected
    assert module / "hooks" in protected
    assert_all_inside(protected, ws)


def test_dot_git_symlinks(ws: Path, tmp_path: Path, git_env: dict[str, str]) -> None:
    outside_repo = make_repo(git_env, tmp_path / "elsewhere")
    inside_store = make_repo(git_env, ws / "store")
    (ws / "a").mkdir()
    (ws / "a" / ".git").symlink_to(outside_repo / ".git")
    (ws / "b").mkdir()
    (ws / "b" / ".git").symlink_to(inside_store / ".git")
    scan = scan_git_metadata(ws)
    assert scan.outside == [ws / "a" / ".git"]
    assert inside_store / ".git" / "config" in scan.protected
    assert_all_inside(scan.protected, ws)


def test_symlinked_protected_entries_are_flagged(ws: Path, git_env: dict[str, str]) -> None:
    make_repo(git_env, ws)
    (ws / "myhooks").mkdir()
    hooks = ws / ".git" / "hooks"
    subprocess.run(["rm", "-rf", str(hooks)], check=True)
    hooks.symlink_to("../myhooks")
    scan = scan_git_metadata(ws)
    assert hooks in scan.symlinked
    assert hooks not in scan.protected


def test_symlinked_directories_are_not_walked(
    ws: Path, tmp_path: Path, git_env: dict[str, str]
) -> None:
    other = make_repo(git_env, tmp_path / "other")
    (ws / "link").symlink_to(other)
    assert git_protected_paths(ws) == []


def test_hostile_gitdir_pointers(ws: Path, tmp_path: Path) -> None:
    (ws / "x").mkdir()
    (ws / "x" / ".git").write_text("gitdir: ../../../../etc\n")
    (ws / "y").mkdir()
    (ws / "y" / ".git").write_bytes(b"gitdir: " + b"A" * 100_000)
    (ws / "z").mkdir()
    (ws / "z" / ".git").write_text("not a pointer")
    scan = scan_git_metadata(ws)
    assert sorted(scan.outside) == [ws / "x" / ".git", ws / "y" / ".git"]
    assert scan.protected == []


def test_no_git_no_paths(ws: Path) -> None:
    (ws / "src").mkdir()
    (ws / "src" / "main.py").write_text("print(1)\n")
    assert git_protected_paths(ws) == []


def test_missing_metadata_gets_placeholders_git_ignores(ws: Path, git_env: dict[str, str]) -> None:
    make_repo(git_env, ws)
    dot = ws / ".git"
    subprocess.run(["rm", "-rf", str(dot / "hooks"), str(dot / "info")], check=True)
    scan = scan_git_metadata(ws)
    assert {dot / "hooks", dot / "info", dot / "config.worktree", dot / "packed-refs"} <= set(
        scan.missing
    )
    created = create_placeholders(scan)
    assert sorted(created) == sorted(scan.missing)
    assert (dot / "hooks").is_dir() and not os.listdir(dot / "hooks")
    assert (dot / "info").is_dir()
    assert (dot / "config.worktree").read_bytes() == b""
    assert (dot / "packed-refs").read_bytes() == b""
    if os.geteuid() == 0:
        assert all(os.lstat(p).st_uid == 0 for p in created)
    # git reads the empty placeholders exactly as it read their absence
    (ws / "second").write_text("2\n")
    git(git_env, ws, "add", "second")
    git(git_env, ws, "commit", "-qm", "second")
    git(git_env, ws, "status", "--porcelain")
    assert scan_git_metadata(ws).missing == []


def test_placeholders_never_write_through_a_planted_link(
    ws: Path, tmp_path: Path, git_env: dict[str, str]
) -> None:
    make_repo(git_env, ws)
    scan = scan_git_metadata(ws)
    # after the scan, the metadata root is swapped for a link to somewhere else
    target = tmp_path / "elsewhere"
    target.mkdir()
    os.rename(ws / ".git", ws / "real-git")
    (ws / ".git").symlink_to(target)
    with pytest.raises(WorkspaceError):
        create_placeholders(scan)
    assert os.listdir(target) == []
