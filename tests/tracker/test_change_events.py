"""The tracker daemon's ``tracker.changed`` events from the local tracker's directory watch.

The real ``python -m symphonyd.tracker`` (beside the real audit writer), subscribed to over
its dispatcher socket as the dispatcher does.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from symphonyd.core.api.shared import HEALTH, Empty
from symphonyd.core.api.tracker import (
    TRACKER_CHANGED,
    TRACKER_MAX_FRAME,
    TRACKER_SUBSCRIBE,
    TrackerChanged,
)
from symphonyd.runtime.ipc_client import IpcClient
from tests.dispatcher.suite_tree import SuiteTree


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[SuiteTree]:
    t = SuiteTree(tmp_path, poll_ms=3_600_000)
    try:
        t.start(("audit", "tracker"))
        yield t
    finally:
        t.stop()


async def next_change(client: IpcClient) -> TrackerChanged:
    async with asyncio.timeout(30):  # only prevents a hang
        async for item in client.events():
            if item.name == TRACKER_CHANGED.name:
                assert isinstance(item.data, TrackerChanged)
                return item.data
    raise AssertionError("event stream ended")


def test_file_changes_are_pushed_with_their_issue_ids(tree: SuiteTree) -> None:
    async def go() -> dict[str, Any]:
        sock = tree.run / "tracker-dispatcher.sock"
        client = await IpcClient.connect(sock, max_frame=TRACKER_MAX_FRAME)
        try:
            await client.call(TRACKER_SUBSCRIBE, Empty())
            tree.write_issue("EV-1")
            change = await next_change(client)
            assert change == TrackerChanged("local_files", ["EV-1"])

            # Neither comments, nor editor temporaries, nor other files are issue changes:
            # the next event is the one for EV-2 alone.
            (tree.issues / "EV-1.comments.md").write_text("a comment\n")
            (tree.issues / ".EV-1.md.swp").write_text("swap")
            (tree.issues / "notes.txt").write_text("x")
            tree.write_issue("EV-2", rename=True)
            assert (await next_change(client)).issue_ids == ["EV-2"]

            # A burst of writes and a removal: the issues come through (malformed or gone,
            # the dispatcher's tick sorts them out).
            (tree.issues / "EV-3.md").write_text("---\nnot: [closed\n")
            (tree.issues / "EV-1.md").unlink()
            seen: set[str] = set()
            while not {"EV-1", "EV-3"} <= seen:
                seen |= set((await next_change(client)).issue_ids)
            health = await client.call(HEALTH, Empty())
        finally:
            await client.close()
        events: dict[str, Any] = health.detail["events"]
        return events

    detail = asyncio.run(go())
    assert detail["subscribers"] == 1
    events = detail["sources"]["local_files"]
    assert events["live"] is True and events["published"] >= 3
    assert events["failures"] >= 1  # EV-3's targeted refresh found it malformed
    assert events["last_delivery"]
    assert "outcome=watching" in tree.log("tracker")


def test_a_missing_directory_is_reported_and_watched_once_it_exists(tmp_path: Path) -> None:
    tree = SuiteTree(tmp_path, poll_ms=3_600_000)
    tree.issues.rmdir()
    try:
        tree.start(("audit", "tracker"))
        check = tree.doctor("tracker-events")
        assert check["status"] == "warn" and "local_files is not live" in check["detail"]

        async def go() -> TrackerChanged:
            sock = tree.run / "tracker-dispatcher.sock"
            async with await IpcClient.connect(sock, max_frame=TRACKER_MAX_FRAME) as client:
                await client.call(TRACKER_SUBSCRIBE, Empty())
                tree.issues.mkdir()
                tree.wait("the watch on the new directory", lambda: _watching(tree))
                tree.write_issue("EV-5")
                first = await next_change(client)
                # The directory replaced (removed, made again): the watch follows it.
                shutil.rmtree(tree.issues)
                tree.issues.mkdir()
                tree.wait("the watch re-armed", lambda: _watching(tree, times=2))
                # The removal itself is reported without ids (the watch lost track), and a
                # write that lands in the same burst is folded into that report: write again
                # until a report names EV-6 (the old directory's reports are finitely many).
                for _ in range(5):
                    tree.write_issue("EV-6")
                    if "EV-6" in (await next_change(client)).issue_ids:
                        return first
                raise AssertionError("no event named EV-6 in the new directory")

        assert asyncio.run(go()).issue_ids == ["EV-5"]
    finally:
        tree.stop()


def _watching(tree: SuiteTree, times: int = 1) -> bool:
    return tree.log("tracker").count("outcome=watching") >= times
