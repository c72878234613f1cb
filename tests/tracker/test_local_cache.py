"""The local tracker's parse cache (docs/design/0405-local-tracker-parse-cache.md)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from symphonyd.tracker import local_store
from symphonyd.tracker.local import LocalAdapter
from symphonyd.tracker.local_store import LocalStore
from tests.tracker.helpers import run
from tests.tracker.test_local import adapter, states


def rewrite_in_place(path: Path, old: bytes, new: bytes) -> None:
    data = path.read_bytes()
    assert len(old) == len(new) and old in data
    with path.open("r+b") as fh:
        fh.write(data.replace(old, new))


def test_same_signature_other_bytes_is_not_served_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Coarse timestamps: a file replaced within one clock tick, reusing the freed inode number
    with the same size, has the signature of the bytes parsed before. The kernel does this
    rarely and not on demand, so the signature is pinned here to what it was."""
    store = LocalStore(tmp_path)
    store.create("A-1", title="t", state="Todo")
    assert store.read("A-1") is not None
    fd = os.open(store.path_for("A-1"), os.O_RDONLY)
    st = os.fstat(fd)
    os.close(fd)
    pinned = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    real_open = local_store._open_regular

    def open_with_old_signature(path: Path) -> tuple[int, tuple[int, ...]] | None:
        opened = real_open(path)
        return None if opened is None else (opened[0], pinned)

    monkeypatch.setattr(local_store, "_open_regular", open_with_old_signature)
    rewrite_in_place(store.path_for("A-1"), b"state: Todo", b"state: Done")
    record = store.read("A-1")
    assert record is not None and record.meta["state"] == "Done"


def test_settled_signature_is_trusted_and_a_change_still_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_store, "SETTLED_NS", -(10**18))  # everything counts as settled
    store = LocalStore(tmp_path)
    store.create("A-1", title="t", state="Todo")
    first = store.read("A-1")
    assert store.read("A-1") is first  # served from the cache
    rewrite_in_place(store.path_for("A-1"), b"state: Todo", b"state: Done")  # new ctime
    changed = store.read("A-1")
    assert changed is not None and changed.meta["state"] == "Done"


def test_moves_show_up_in_polls_and_refreshes(tmp_path: Path) -> None:
    a = adapter(tmp_path)
    store = LocalStore(tmp_path)
    for i in range(3):
        store.create(f"A-{i}", title="t", state="Todo")
    assert len(states(a, ["Todo"])) == 3
    run(a.fetch_issues_by_ids(["A-1"]))
    a.store.update("A-1", state="In Progress")
    assert sorted(i.identifier for i in states(a, ["Todo"])) == ["A-0", "A-2"]
    (refreshed,) = run(a.fetch_issues_by_ids(["A-1"]))
    assert refreshed.state == "In Progress"
    store.path_for("A-2").unlink()
    assert [i.identifier for i in states(a, ["Todo"])] == ["A-0"]


def test_refresh_by_id_returns_the_file_named_after_it(tmp_path: Path) -> None:
    """Two files claiming one id: a poll lists both, a refresh by id reads ``<id>.md``."""
    store = LocalStore(tmp_path)
    store.create("A-1", title="named", state="Todo")
    (tmp_path / "B-1.md").write_text("---\nid: A-1\ntitle: impostor\nstate: Todo\n---\n")
    a: LocalAdapter = adapter(tmp_path)
    assert sorted(i.title for i in states(a, ["Todo"])) == ["impostor", "named"]
    (only,) = run(a.fetch_issues_by_ids(["A-1"]))
    assert only.title == "named" and only.identifier == "A-1"
