"""symphonyctl status/pause/resume/stop/release/refresh: exit codes and rendering."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from symphonyd.ctl.control_cmd import render_issue, render_status
from symphonyd.ctl.main import main as ctl_main
from symphonyd.dispatcher.snapshot import build_issue_view, build_snapshot
from tests.dispatcher.doubles import issue, run_async
from tests.dispatcher.harness import Harness
from tests.dispatcher.socket_doubles import socket_world
from tests.dispatcher.test_daemon_sockets import ctl, dispatcher


@pytest.mark.parametrize("argv", [["status"], ["pause", "--reason", "x"], ["stop", "MT-1"]])
def test_missing_dispatcher_is_exit_3_with_a_clear_message(
    tmp_path: Path, capsys: Any, argv: list[str]
) -> None:
    code = ctl_main([argv[0], "--socket", str(tmp_path / "nope.sock"), *argv[1:]])
    err = capsys.readouterr().err
    assert code == 3
    assert str(tmp_path / "nope.sock") in err and "not reachable" in err
    assert "systemctl status symphony-dispatcher" in err


def test_socket_comes_from_the_environment(
    tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYMPHONY_DISPATCHER_SOCKET", str(tmp_path / "env.sock"))
    assert ctl_main(["resume"]) == 3
    assert "env.sock" in capsys.readouterr().err


@run_async
async def test_rendering_neutralises_terminal_escapes(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    hostile = replace(issue(1), identifier="MT-1\x1b[2J", state="Todo")
    h.tracker.put(hostile, issue(2))
    await h.orch.start()
    await h.orch.tick()
    await h.send("id-2", "notification", message="ok \x1b]0;pwned\x07")
    await h.orch.stop("MT-1\x1b[2J", uid=0)
    await h.orch.pause("maintenance \x1b[31mred", uid=0)
    text = render_status(build_snapshot(h.orch))
    assert "\x1b" not in text and "\x07" not in text
    assert "dispatch: PAUSED" in text and "operator: maintenance" in text
    assert "MT-1?[2J" in text and "stopped" in text
    detail = render_issue(build_issue_view(h.orch, "MT-2"))
    assert "\x1b" not in detail and "notification" in detail


@run_async
async def test_usage_errors_and_refusals_have_their_own_exit_codes() -> None:
    async with socket_world() as world, dispatcher(world):
        code, _, err = await ctl(world, "pause", "--reason", "   ")
        assert code == 2 and "invalid_params" in err
        code, _, err = await ctl(world, "release", "MT-7")
        assert code == 1 and "not_held" in err
        code, _, err = await ctl(world, "status", "MT-7")
        assert code == 1 and "issue_not_found" in err
        code, out, _ = await ctl(world, "refresh")
        assert code == 0 and "refresh queued" in out
        assert os.path.exists(world.root / "ctl.sock")
        # stop looks a waiting issue up in the tracker; when it cannot, it says so.
        world.tracker.fail = True
        code, _, err = await ctl(world, "stop", "MT-7")
        assert code == 1 and "tracker_unavailable" in err and "tracker down" in err


@run_async
async def test_daemon_errors_say_when_they_were_seen_and_clear_when_fixed(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    text = render_status(build_snapshot(h.orch))
    # Nothing contacted yet: not an error (issue 22, item 7).
    assert "tracker not checked yet" in text and "DOWN" not in text, text
    h.tracker.fail = True
    await h.orch.start()
    await h.orch.tick()
    text = render_status(build_snapshot(h.orch))
    assert "tracker DOWN (tracker_transport: tracker down; as of 2026-" in text, text
    h.tracker.fail = False
    await h.orch.tick()
    text = render_status(build_snapshot(h.orch))
    assert "tracker ok" in text and "DOWN" not in text, text
