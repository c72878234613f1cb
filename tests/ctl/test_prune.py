"""`symphonyctl prune`: the duration parser (exhaustively) and the command over a real socket.

The dispatcher is an in-test double serving ``dispatcher.prune`` on a real Unix socket; the
dispatcher's own prune logic is tested in tests/dispatcher/test_prune.py.
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
from hypothesis import given
from hypothesis import strategies as st

from symphonyd.core.api.dispatcher import DISPATCHER_PRUNE, PruneEntry, PruneParams, PruneResult
from symphonyd.core.errors import ValidationError
from symphonyd.ctl.prune_cmd import MAX_DURATION_S, UNIT_SECONDS, parse_duration
from symphonyd.runtime.peer import Peer
from tests.ctl.dispatcher_double import FakeDispatcher

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90m", 5400), ("12h", 43200), ("30d", 2592000), ("2w", 1209600), ("1m", 60)],
)
def test_examples(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@given(st.integers(min_value=1, max_value=10**10), st.sampled_from(sorted(UNIT_SECONDS)))
def test_every_well_formed_duration(n: int, unit: str) -> None:
    text = f"{n}{unit}"
    if n * UNIT_SECONDS[unit] <= MAX_DURATION_S:
        assert parse_duration(text) == n * UNIT_SECONDS[unit]
    else:
        with pytest.raises(ValidationError) as info:
            parse_duration(text)
        assert info.value.error_code == "invalid_duration"


@given(st.text(max_size=30))
def test_anything_else_is_refused_or_exact(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except ValidationError as exc:
        assert exc.error_code == "invalid_duration"
        return
    # Accepted text is exactly digits (no leading zero) and one unit, in range.
    assert text[:-1].isascii() and text[:-1].isdigit() and text[0] != "0"
    assert 0 < seconds <= MAX_DURATION_S


@pytest.mark.parametrize(
    "text",
    ["", "0d", "-1d", "+1d", "30", "d", "30 d", " 30d", "30d ", "1.5h", "030d", "30D", "30s",
     "1y", "99999999999d", "5221w", "3d4h", "٣d", "30d\n", "1e3m"],
)  # fmt: skip
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_duration(text)
    assert info.value.error_code == "invalid_duration"


async def _prune(params: PruneParams, peer: Peer) -> PruneResult:
    return PruneResult(
        removed=[PruneEntry("ABC-1", "terminal (Done), idle 40 days")],
        kept=[PruneEntry("ABC-2", "run in progress"), PruneEntry("ABC-3\x1b[2J", "young")],
        forgotten=[PruneEntry("ABC-1", "token total 900, last used 40 days ago (2026-10-01)")],
    )


@pytest.fixture
def dispatcher(tmp_path: Path) -> Iterator[FakeDispatcher]:
    handlers: list[tuple[Any, Any]] = [(DISPATCHER_PRUNE, _prune)]
    with FakeDispatcher(tmp_path / "dispatcher-ctl.sock", handlers) as fake:
        yield fake


def prune(socket: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "symphonyd.ctl", "prune", "--socket", str(socket), *args],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_prune_reports_removed_and_kept(dispatcher: FakeDispatcher) -> None:
    out = prune(dispatcher.path, "--older-than", "30d")
    assert out.returncode == 0, out.stderr
    assert dispatcher.calls == [PruneParams(older_than_s=30 * 86400, dry_run=False)]
    assert "removed ABC-1: terminal (Done), idle 40 days" in out.stdout
    assert "kept ABC-2: run in progress" in out.stdout
    assert "\x1b" not in out.stdout
    assert "forgot the run data of ABC-1: token total 900" in out.stdout
    assert out.stdout.rstrip().endswith("1 removed, 2 kept, 1 run data forgotten")


def test_dry_run_and_json(dispatcher: FakeDispatcher) -> None:
    out = prune(dispatcher.path, "--older-than", "12h", "--dry-run", "--json")
    assert out.returncode == 0, out.stderr
    assert dispatcher.calls == [PruneParams(older_than_s=43200, dry_run=True)]
    data = json.loads(out.stdout)
    assert [e["identifier"] for e in data["removed"]] == ["ABC-1"]
    text = prune(dispatcher.path, "--older-than", "12h", "--dry-run")
    assert "would remove ABC-1" in text.stdout
    assert "would forget the run data of ABC-1" in text.stdout
    assert [e["identifier"] for e in data["forgotten"]] == ["ABC-1"]


@pytest.mark.parametrize("bad", ["0d", "-3d", "garbage", "99999999999w", "30"])
def test_bad_duration_exits_2_and_sends_nothing(dispatcher: FakeDispatcher, bad: str) -> None:
    out = prune(dispatcher.path, f"--older-than={bad}")
    assert out.returncode == 2
    assert "error: invalid_duration:" in out.stderr
    assert dispatcher.calls == []


def test_daemon_down_exits_3(tmp_path: Path) -> None:
    out = prune(tmp_path / "nobody.sock", "--older-than", "30d")
    assert out.returncode == 3
    assert "not reachable" in out.stderr
