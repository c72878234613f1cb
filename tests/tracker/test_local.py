"""The local Markdown-files tracker, its store and `symphonyctl issue` on a real directory."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from symphonyd.core.errors import TrackerError
from symphonyd.core.issue import Issue
from symphonyd.ctl.main import main as ctl
from symphonyd.tracker.local import LocalAdapter
from symphonyd.tracker.local_store import LocalStore
from symphonyd.tracker.provider_config import TrackerSettings
from tests.tracker.helpers import AuditLog, error_of, run

ROOT = Path(__file__).resolve().parents[2]


def adapter(directory: Path, **provider: Any) -> LocalAdapter:
    return LocalAdapter(
        TrackerSettings(
            "local",
            {"directory": str(directory), **provider},
            ("Todo", "In Progress"),
            ("Done", "Cancelled"),
        )
    )


def states(a: LocalAdapter, wanted: list[str]) -> list[Issue]:
    return run(a.fetch_issues_by_states(wanted))


def write(directory: Path, name: str, text: str) -> None:
    (directory / name).write_text(text)


def test_ctl_new_list_move_comment_and_adapter_sees_edits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = str(tmp_path)
    assert (
        ctl(
            [
                "issue",
                "--dir",
                d,
                "new",
                "LOC-1",
                "--title",
                "First",
                "--priority",
                "2",
                "--label",
                " Backend",
                "--label",
                "backend",
                "--description",
                "Do it",
            ]
        )
        == 0
    )
    assert (
        ctl(["issue", "--dir", d, "new", "LOC-2", "--title", "Second", "--blocked-by", "LOC-1"])
        == 0
    )
    assert ctl(["issue", "--dir", d, "new", "LOC-1", "--title", "dup"]) == 2
    a = adapter(tmp_path)
    one, two = states(a, ["todo"])
    assert (one.identifier, one.priority, one.labels, one.description) == (
        "LOC-1",
        2,
        ("backend",),
        "Do it",
    )
    assert one.created_at is not None and one.dispatchable
    assert two.blocked_by[0].identifier == "LOC-1" and two.blocked_by[0].state == "Todo"
    assert not two.dispatchable

    assert ctl(["issue", "--dir", d, "move", "LOC-1", "Done"]) == 0
    assert ctl(["issue", "--dir", d, "comment", "LOC-1", "shipped"]) == 0
    (two,) = states(a, ["Todo"])
    assert two.dispatchable and two.blocked_by[0].state == "Done"
    assert "shipped" in (tmp_path / "LOC-1.comments.md").read_text()
    capsys.readouterr()
    assert ctl(["issue", "--dir", d, "list", "--state", "todo"]) == 0
    out = capsys.readouterr().out
    assert "LOC-2" in out and "LOC-1" not in out
    assert ctl(["issue", "--dir", d, "move", "../etc/passwd", "Done"]) == 2
    assert ctl(["issue", "--dir", d, "comment", "NOPE-1", "x"]) == 2


def test_ctl_runs_as_a_program(tmp_path: Path) -> None:
    env = {**os.environ, "SYMPHONY_ISSUES_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [sys.executable, "-m", "symphonyd.ctl", "issue", "new", "Q-1", "--title", "Hello"],
        env=env,
        check=True,
        timeout=60,
    )
    out = subprocess.run(
        [sys.executable, "-m", "symphonyd.ctl", "issue", "list", "--json"],
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    )
    assert '"identifier": "Q-1"' in out.stdout


def test_hand_edited_files_malformed_skipped_and_refresh_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(
        tmp_path,
        "A-1.md",
        "---\ntitle: Good\nstate: Todo\nlabels: [X, ' ']\n"
        "created_at: 2026-03-01T10:00:00Z\npriority: high\n---\nbody\n",
    )
    write(tmp_path, "A-2.md", "---\ntitle: ''\nstate: Todo\n---\n")
    write(tmp_path, "A-3.md", "---\ntitle: [unclosed\n---\n")
    write(tmp_path, "A-4.md", "---\nidentifier: OTHER\ntitle: t\nstate: Todo\n---\n")
    write(tmp_path, "notes.txt", "ignored")
    write(tmp_path, "bad name.md", "ignored: not an identifier")
    os.symlink("/etc/passwd", tmp_path / "A-5.md")
    a = adapter(tmp_path)
    with caplog.at_level(logging.WARNING):
        (good,) = states(a, ["Todo"])
    assert (good.id, good.labels, good.priority) == ("A-1", ("x",), None)
    assert good.created_at is not None and good.created_at.month == 3
    warned = " ".join(r.getMessage() for r in caplog.records)
    for name in ("A-2", "A-3", "A-4", "A-5"):
        assert name in warned
    assert [i.id for i in run(a.fetch_issues_by_ids(["A-1", "ZZ-9"]))] == ["A-1"]
    for bad in ("A-2", "A-5"):
        with pytest.raises(TrackerError) as err:
            run(a.fetch_issues_by_ids([bad]))
        assert err.value.error_code == "tracker_response"
    assert run(a.fetch_issues_by_ids([])) == [] and run(a.fetch_issues_by_states([])) == []


@pytest.mark.parametrize(
    "name", ["../x", "a/b", "..", "", "a\x00b", ".hidden", "x" * 65, "a.md", "-rf"]
)
def test_hostile_identifiers_are_refused(tmp_path: Path, name: str) -> None:
    store = LocalStore(tmp_path)
    with pytest.raises(TrackerError) as err:
        store.create(name, title="t", state="Todo")
    assert err.value.error_code == "invalid_issue_identifier"
    with pytest.raises(TrackerError):
        store.create("OK-1", title="t", state="Todo", blocked_by=[name])
    assert list(tmp_path.iterdir()) == []


def test_writes_are_atomic_and_leave_no_temp_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.create("W-1", title="t", state="Todo", description="keep me")
    for n in range(20):
        store.update("W-1", state=f"S{n}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["W-1.md"]
    record = store.read("W-1")
    assert record is not None and record.meta["state"] == "S19"
    assert record.description == "keep me"


def test_tools_read_comment_move(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.create("T-1", title="t", state="Todo")
    a = adapter(tmp_path, tool_states=["Human Review"])
    audit = AuditLog()
    a.audit = audit

    async def go() -> list[Any]:
        (issue,) = await a.fetch_issues_by_ids(["T-1"])
        return [
            await a.execute_tool("tracker_comment", {"body": "progress"}, issue, "sess"),
            await a.execute_tool("tracker_move", {"state": "HUMAN REVIEW"}, issue),
            await a.execute_tool("tracker_read_issue", {}, issue),
            await a.execute_tool("tracker_move", {"state": "Done"}, issue),
            await a.execute_tool("tracker_comment", {"body": 5}, issue),
        ]

    results = run(go())
    assert results[2].output["issue"]["state"] == "Human Review"
    assert "progress" in results[2].output["comments"]
    assert error_of(results[3]) == "state_not_allowed"
    assert error_of(results[4]) == "invalid_arguments"
    assert [e.payload["operation"] for e in audit.events] == ["comment", "move"]
    # A run's issue that vanished: the tool fails, nothing is written.
    (tmp_path / "T-1.md").unlink()
    gone = run(a.execute_tool("tracker_comment", {"body": "x"}, results_issue(results)))
    assert error_of(gone) == "tracker_response"
    assert not (tmp_path / "T-1.md").exists()


def results_issue(results: list[Any]) -> Issue:
    return Issue.from_dict(results[2].output["issue"])


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(TrackerError) as err:
        LocalAdapter(TrackerSettings("local", {"directory": "relative"}))
    assert err.value.error_code == "invalid_tracker_config"
    with pytest.raises(TrackerError) as err:
        adapter(tmp_path, dir="typo")
    assert err.value.error_code == "invalid_tracker_config"
