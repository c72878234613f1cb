"""Files root writes into the issues directory belong to the directory's owner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from symphonyd.tracker.local_store import LocalStore

pytestmark = pytest.mark.root


def test_root_writes_are_owned_by_the_directory_owner(tmp_path: Path) -> None:
    directory = tmp_path / "issues"
    directory.mkdir(mode=0o700)
    os.chown(directory, 65534, 65534)
    store = LocalStore(directory)
    store.create("ABC-1", title="t", state="Todo")
    store.add_comment("ABC-1", "hello", "root")
    for path in directory.iterdir():
        st = path.stat()
        assert (st.st_uid, st.st_gid) == (65534, 65534), path
