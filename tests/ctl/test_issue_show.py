"""`symphonyctl issue show`: the dispatcher's view merged with the local issue file.

The dispatcher is an in-test double on a real socket; the issue file is written by
`symphonyctl issue new`, so both halves come through the real code paths.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from symphonyd.core.api.dispatcher import (
    DISPATCHER_ISSUE,
    IssueAttempts,
    IssueRefParams,
    IssueView,
    RecentEvent,
)
from symphonyd.core.errors import SymphonyError
from symphonyd.runtime.peer import Peer
from tests.ctl.dispatcher_double import FakeDispatcher

REPO = Path(__file__).resolve().parents[2]


async def _issue(params: IssueRefParams, peer: Peer) -> IssueView:
    if params.identifier != "ABC-7":
        raise SymphonyError(f"{params.identifier} is unknown", code="issue_not_found")
    return IssueView(
        issue_identifier="ABC-7",
        issue_id="id-7",
        status="retrying",
        workspace_path="/var/lib/symphony/workspaces/ABC-7",
        attempts=IssueAttempts(restart_count=2, current_retry_attempt=3),
        running=None,
        retry=None,
        hold=None,
        recent_events=[RecentEvent("2026-11-22T07:00:00Z", "run_finished", "failed")],
        last_error="turn_failed: model said no",
        tokens_used=1234,
    )


@pytest.fixture
def dispatcher(tmp_path: Path) -> Iterator[FakeDispatcher]:
    handlers: list[tuple[Any, Any]] = [(DISPATCHER_ISSUE, _issue)]
    with FakeDispatcher(tmp_path / "ctl.sock", handlers) as fake:
        yield fake


def ctl(tmp_path: Path, socket: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPO),
        "SYMPHONY_ISSUES_DIR": str(tmp_path / "issues"),
        "SYMPHONY_DISPATCHER_SOCKET": str(socket),
    }
    return subprocess.run(
        [sys.executable, "-m", "symphonyd.ctl", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def new_issue(tmp_path: Path, socket: Path, ident: str) -> None:
    made = ctl(tmp_path, socket, "issue", "new", ident, "--title", "Fix the \x1b[2J parser",
               "--label", "bug", "--priority", "2")  # fmt: skip
    assert made.returncode == 0, made.stderr


def test_both_halves_are_merged(tmp_path: Path, dispatcher: FakeDispatcher) -> None:
    new_issue(tmp_path, dispatcher.path, "ABC-7")
    out = ctl(tmp_path, dispatcher.path, "issue", "show", "ABC-7")
    assert out.returncode == 0, out.stderr
    assert "ABC-7 (id-7): retrying" in out.stdout
    assert "restarts 2, tokens used 1234" in out.stdout
    assert "last error: turn_failed: model said no" in out.stdout
    assert "workspace /var/lib/symphony/workspaces/ABC-7" in out.stdout
    assert "title: Fix the ?[2J parser" in out.stdout and "\x1b" not in out.stdout
    assert "labels: bug" in out.stdout
    assert dispatcher.calls == [IssueRefParams("ABC-7")]

    data = json.loads(ctl(tmp_path, dispatcher.path, "issue", "show", "ABC-7", "--json").stdout)
    assert data["dispatcher"]["last_error"] == "turn_failed: model said no"
    assert data["tracker"]["state"] == "Todo" and data["tracker"]["priority"] == 2


def test_idle_issue_shows_the_file_only(tmp_path: Path, dispatcher: FakeDispatcher) -> None:
    new_issue(tmp_path, dispatcher.path, "ABC-8")
    out = ctl(tmp_path, dispatcher.path, "issue", "show", "ABC-8")
    assert out.returncode == 0, out.stderr
    assert "not known to the dispatcher" in out.stdout and "state: Todo" in out.stdout


def test_dispatcher_only_for_non_local_identifiers(
    tmp_path: Path, dispatcher: FakeDispatcher
) -> None:
    out = ctl(tmp_path, dispatcher.path, "issue", "show", "ABC-7", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["tracker"] is None and data["dispatcher"]["issue_id"] == "id-7"
    # A GitHub-style identifier is not a local file name: no file lookup, no error.
    out = ctl(tmp_path, dispatcher.path, "issue", "show", "owner/repo#12")
    assert out.returncode == 1
    assert "unknown to the dispatcher and no issue file" in out.stderr


def test_dispatcher_down_shows_the_file_and_exits_3(tmp_path: Path) -> None:
    sock = tmp_path / "nobody.sock"
    new_issue(tmp_path, sock, "ABC-9")
    out = ctl(tmp_path, sock, "issue", "show", "ABC-9")
    assert out.returncode == 3
    assert "state: Todo" in out.stdout and "not reachable" in out.stdout
