"""launcher.workspace_ages: what prune learns about workspaces it may not read itself."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from symphonyd.core.errors import SymphonyError
from symphonyd.core.hostconfig import HostConfig
from symphonyd.launcher.service import LauncherDeps, LauncherService
from tests.launcher.test_service import TrackerDouble, issue


def service(tmp_path: Path, root: Path | None) -> LauncherService:
    host = HostConfig(workspace_root=str(root)) if root else None
    deps = LauncherDeps(
        tracker=TrackerDouble(issue()), audit=lambda _: None, agent_home=tmp_path, host=host
    )
    return LauncherService(deps)


def test_ages_of_real_workspaces(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    (root / "OLD-1").mkdir(parents=True)
    (root / "NEW-1").mkdir()
    (root / "FILE-1").write_text("not a workspace")
    then = time.time() - 10 * 86400
    os.utime(root / "OLD-1", (then, then))
    ages = service(tmp_path, root).workspace_ages(
        ["OLD-1", "NEW-1", "GONE-1", "FILE-1", "../escape", ""]
    )
    # Invalid identifiers and non-directories are left out (unknown); a hostile identifier
    # only ever names a sanitised key inside the root, where nothing exists.
    assert set(ages) == {"OLD-1", "NEW-1", "GONE-1", "../escape"}
    assert ages["GONE-1"] is None and ages["../escape"] is None
    old, new = ages["OLD-1"], ages["NEW-1"]
    assert old is not None and 9.9 * 86400 < old < 10.1 * 86400
    assert new is not None and 0 <= new < 3600


def test_no_root_known_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(SymphonyError) as info:
        service(tmp_path, None).workspace_ages(["A-1"])
    assert info.value.error_code == "unavailable"


def test_list_workspaces_names_every_entry_oldest_first(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    (root / "OLD-1").mkdir(parents=True)
    (root / "NEW-1").mkdir()
    (root / "bad name").mkdir()
    (root / "FILE-1").write_text("not a workspace")
    (root / "LINK-1").symlink_to(tmp_path)
    then = time.time() - 10 * 86400
    os.utime(root / "OLD-1", (then, then))
    listing = service(tmp_path, root).list_workspaces(None)
    assert listing.root == str(root) and listing.omitted == 0
    assert listing.entries[0].name == "OLD-1" and listing.entries[0].problem is None
    problems = {e.name: e.problem for e in listing.entries}
    assert problems == {
        "OLD-1": None,
        "NEW-1": None,
        "bad name": "not a valid workspace key",
        "FILE-1": "not a directory",
        "LINK-1": "symlink",
    }


def test_a_root_that_cannot_be_listed_is_an_error_not_an_empty_listing(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.write_text("a file where the root should be")
    with pytest.raises(SymphonyError) as info:
        service(tmp_path, root).list_workspaces(None)
    assert info.value.error_code == "invalid_workspace_root"
