"""The FsView both enforcers render: wildcard deny entries and git placeholders (no root)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from symphonyd.launcher.sandbox.errors import SandboxError
from symphonyd.launcher.sandbox.fs_view import MAX_GLOB_MATCHES, build_fs_view, expand
from symphonyd.launcher.sandbox.policy_files import fs_deny_entries


def make_home(path: Path) -> Path:
    (path / ".ssh").mkdir(parents=True)
    (path / "deploy.pem").write_text("key")
    (path / ".hidden.key").write_text("key")
    (path / "notes.txt").write_text("notes")
    (path / "sub").mkdir()
    (path / "sub" / "deeper.pem").write_text("not matched: one component only")
    return path


def test_home_wildcards_match_every_home_including_dotfiles(tmp_path: Path) -> None:
    a = make_home(tmp_path / "a")
    b = make_home(tmp_path / "b[1]")  # glob metacharacters in a home are literal
    got = expand(["~/*.pem", "~/*.key", "~/.ssh"], [a, b])
    assert sorted(got) == sorted(
        [
            a / "deploy.pem",
            b / "deploy.pem",
            a / ".hidden.key",
            b / ".hidden.key",
            a / ".ssh",
            b / ".ssh",
        ]
    )


def test_absolute_wildcards(tmp_path: Path) -> None:
    for name in ("ssh_host_rsa_key", "ssh_host_dsa_key", "ssh_host_rsa_key.pub"):
        (tmp_path / name).write_text("x")
    got = expand([f"{tmp_path}/ssh_host_*_key"], [])
    assert sorted(got) == [tmp_path / "ssh_host_dsa_key", tmp_path / "ssh_host_rsa_key"]


def test_entries_that_are_not_paths_are_refused(tmp_path: Path) -> None:
    for entry in ("*.pem", "relative/path", "~user/.ssh"):
        with pytest.raises(SandboxError) as info:
            expand([entry], [tmp_path])
        assert info.value.error_code == "sandbox_fs_failed"


def test_a_pattern_matching_too_much_fails_closed(tmp_path: Path) -> None:
    for i in range(MAX_GLOB_MATCHES + 1):
        (tmp_path / f"k{i}.key").write_text("")
    with pytest.raises(SandboxError) as info:
        expand(["~/*.key"], [tmp_path])
    assert info.value.error_code == "sandbox_fs_failed"


def test_view_hides_matches_and_protects_missing_git_metadata(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home" / "op")
    root = tmp_path / "ws"
    ws = root / "a"
    (ws / ".git" / "objects").mkdir(parents=True)
    (ws / ".git" / "config").write_text("[core]\n")
    view = build_fs_view(ws, root, uid=9, gid=9, deny_entries=["~/*.pem", "~/.ssh"], homes=[home])
    assert home / "deploy.pem" in view.hidden_files
    assert home / ".ssh" in view.hidden_dirs
    assert home / "notes.txt" not in view.hidden_files
    dot = ws.resolve() / ".git"
    for name in ("config", "config.worktree", "hooks", "info", "packed-refs"):
        assert dot / name in view.readonly
        assert os.path.lexists(dot / name)
    assert dot / "objects" not in view.readonly


SEED_001 = ["~/.ssh", "~/.aws", "~/.config/gh", "~/*.pem", "~/*.key", "~/.codex", "~/.claude"]


def test_shipped_list_covers_seed_001_and_hides_homes_wholesale() -> None:
    entries = fs_deny_entries()
    for required in [*SEED_001, "/etc/symphony", "/root", "/home"]:
        assert required in entries, required
    expand(entries, [Path("/root")])  # every shipped line is a usable entry
