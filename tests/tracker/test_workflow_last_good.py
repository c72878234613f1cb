"""A refused WORKFLOW.md edit never takes the tracker daemon down (issue 22 item 2).

The real daemon (``python -m symphonyd.tracker``, its own argument parsing and wiring) on real
sockets with the local tracker. Each bad edit is one the dispatcher refuses too (checked with
the dispatcher's own ``loaded_config``), or one only the tracker's adapter refuses; in every
case the tracker keeps serving the last good version and says so in its log, its health and
its profile, and a good edit afterwards is adopted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from symphonyd.core.api.shared import HEALTH, Empty, Health
from symphonyd.core.api.tracker import (
    TRACKER_FETCH_BY_STATES,
    TRACKER_PROFILE,
    FetchByStates,
    TrackerProfile,
)
from symphonyd.core.errors import SymphonyError
from symphonyd.dispatcher.config_source import loaded_config
from symphonyd.runtime.ipc_client import IpcClient
from symphonyd.runtime.workflow_file import load_workflow
from symphonyd.tracker.local_store import LocalStore

ROOT = Path(__file__).resolve().parents[2]


def workflow(states: str = "[Todo]", provider: str = "", prompt: str = "Do it") -> str:
    return (
        "---\ntracker:\n  kind: local\n  provider:\n"
        f"    directory: issues\n{provider}  active_states: {states}\n---\n{prompt}\n"
    )


GOOD = workflow()
# Refused by the dispatcher: the tracker section alone would be fine (new states!), but the
# template does not compile, so the whole version is refused and the states must not apply.
BAD_TEMPLATE = workflow(states="[Todo, Doing]", prompt="{% if %}")
BAD_KIND = "---\ntracker: {kind: trello}\n---\nDo it\n"  # dispatcher: unsupported_tracker_kind
BAD_YAML = "---\ntracker: [oops\n---\n"
NEXT_GOOD = workflow(states="[Todo, Doing]")


@dataclass
class Tracker:
    dispatcher: Path
    launcher: Path
    log: Path
    wf: Path
    host: Path

    def doctor(self) -> dict[str, str]:
        """``symphonyctl doctor``'s tracker-workflow check, as root runs it."""
        out = subprocess.run(
            [sys.executable, "-m", "symphonyd.ctl", "doctor", "--host-config", str(self.host),
             "--json"],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        checks = json.loads(out.stdout)
        (check,) = [c for c in checks if c["name"] == "tracker-workflow"]
        return dict(check)

    def call(self, method: object, params: object, sock: Path | None = None) -> object:
        async def go() -> object:
            async with await IpcClient.connect(sock or self.dispatcher) as client:
                return await client.call(method, params)  # type: ignore[arg-type]

        return asyncio.run(asyncio.wait_for(go(), 30))

    def profile(self) -> TrackerProfile:
        reply = self.call(TRACKER_PROFILE, Empty())
        assert isinstance(reply, TrackerProfile)
        return reply

    def health(self, sock: Path | None = None) -> Health:
        reply = self.call(HEALTH, Empty(), sock)
        assert isinstance(reply, Health)
        return reply

    def todo(self) -> list[str]:
        reply = self.call(TRACKER_FETCH_BY_STATES, FetchByStates(["Todo"]))
        return [i.identifier for i in reply.issues]  # type: ignore[attr-defined]

    def edit(self, text: str) -> str:
        # A new inode each time, like an editor's save; the daemon's stat check sees it.
        tmp = self.wf.with_suffix(".new")
        tmp.write_text(text)
        os.replace(tmp, self.wf)
        return hashlib.sha256(text.encode()).hexdigest()


@contextlib.contextmanager
def running(rig: Tracker, host: Path, state: Path) -> Iterator[Tracker]:
    uid = str(os.getuid())
    for sock in (rig.dispatcher, rig.launcher):
        sock.unlink(missing_ok=True)
    # As under systemd: StateDirectory=symphony/tracker symphony/issues sets this.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "STATE_DIRECTORY": f"{state}:{state}-issues"}
    with rig.log.open("ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "symphonyd.tracker", "--host-config", str(host),
                "--dispatcher-socket", str(rig.dispatcher), "--launcher-socket", str(rig.launcher),
                "--audit-socket", "none", "--dispatcher-uid", uid, "--launcher-uid", uid,
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not (rig.dispatcher.exists() and rig.launcher.exists()):
            assert proc.poll() is None and time.monotonic() < deadline, rig.log.read_text()
            time.sleep(0.05)
        yield rig
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=30) == 0, rig.log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()


@dataclass
class Setup:
    rig: Tracker
    host: Path
    state: Path


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    LocalStore(tmp_path / "issues").create("L-1", title="first", state="Todo")
    wf = tmp_path / "WORKFLOW.md"
    wf.write_text(GOOD)
    host = tmp_path / "symphonyd.toml"
    host.write_text(f'workflow = "{wf}"\n[paths]\nruntime_dir = "{tmp_path}"\n')
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    # The sockets' production names in the host's runtime_dir, where doctor looks for them.
    socks = (tmp_path / "tracker-dispatcher.sock", tmp_path / "tracker-launcher.sock")
    rig = Tracker(*socks, tmp_path / "tracker.log", wf, host)
    return Setup(rig, host, state)


@pytest.fixture
def tracker(setup: Setup) -> Iterator[Tracker]:
    with running(setup.rig, setup.host, setup.state) as rig:
        yield rig


def dispatcher_refuses(wf: Path) -> str:
    try:
        loaded_config(load_workflow(wf), env={})
    except SymphonyError as exc:
        return exc.error_code
    return "accepted"


def test_refused_edits_keep_the_last_good_workflow_serving(tracker: Tracker) -> None:
    good_sha = hashlib.sha256(GOOD.encode()).hexdigest()
    assert tracker.todo() == ["L-1"]
    first = tracker.profile()
    assert first.workflow_sha256 == good_sha and first.config_error is None
    assert first.active_states == ["Todo"]

    for text, code in [
        (BAD_TEMPLATE, "template_parse_error"),
        (BAD_KIND, "unsupported_tracker_kind"),
        (BAD_YAML, "workflow_parse_error"),
    ]:
        tracker.edit(text)
        assert dispatcher_refuses(tracker.wf) == code  # the authority refuses it as well
        assert tracker.todo() == ["L-1"], text  # still serving, not down
        profile = tracker.profile()
        assert profile.config_error is not None and profile.config_error["code"] == code
        assert profile.workflow_sha256 == good_sha  # the same last good the dispatcher keeps
        assert profile.active_states == ["Todo"] and profile.kind == "local"
        for sock in (tracker.dispatcher, tracker.launcher):  # dispatcher's and root's view
            health = tracker.health(sock)
            assert health.ok, health
            assert health.detail["workflow_refused"] is True
            assert health.detail["error"] == code
            assert health.detail["workflow_sha256"] == good_sha

    seen = tracker.doctor()  # the operator's view of the same status
    assert seen["status"] == "warn", seen
    assert f"last good workflow {good_sha[:12]}" in seen["detail"]
    assert "workflow_parse_error" in seen["detail"]

    log = tracker.log.read_text()
    assert log.count("keeps serving the last good workflow") == 3, log
    assert "unusable" not in log

    next_sha = tracker.edit(NEXT_GOOD)
    assert dispatcher_refuses(tracker.wf) == "accepted"
    assert tracker.todo() == ["L-1"]
    adopted = tracker.profile()
    assert adopted.config_error is None and adopted.workflow_sha256 == next_sha
    assert adopted.active_states == ["Todo", "Doing"]
    health = tracker.health()
    assert health.ok and "error" not in health.detail and "workflow_refused" not in health.detail
    assert "tracker config usable again" in tracker.log.read_text()
    seen = tracker.doctor()
    assert seen["status"] == "ok" and next_sha[:12] in seen["detail"], seen


def test_an_edit_only_the_adapter_refuses_keeps_the_old_adapter(tracker: Tracker) -> None:
    # The dispatcher's rule does not judge provider settings (that is the tracker's check):
    # an unknown provider key passes it, the local adapter refuses it. Before, the tracker
    # dropped its adapter here and every poll failed (a second pause reason).
    good_sha = hashlib.sha256(GOOD.encode()).hexdigest()
    tracker.edit(workflow(provider="    colour: blue\n"))
    assert dispatcher_refuses(tracker.wf) == "accepted"
    assert tracker.todo() == ["L-1"]
    profile = tracker.profile()
    assert profile.config_error is not None and profile.workflow_sha256 == good_sha
    assert profile.config_error["code"] == "invalid_tracker_config", profile
    assert tracker.health().ok
    assert "keeps serving the last good workflow" in tracker.log.read_text()
    tracker.edit(GOOD)  # the old file back: the refusal is over
    assert tracker.profile().config_error is None


def test_a_restart_during_a_refused_edit_serves_the_saved_last_good(setup: Setup) -> None:
    good_sha = hashlib.sha256(GOOD.encode()).hexdigest()
    with running(setup.rig, setup.host, setup.state) as rig:
        assert rig.todo() == ["L-1"]
    saved = setup.state / "last-good-workflow.json"
    assert saved.stat().st_mode & 0o777 == 0o600
    rig.edit(BAD_KIND)  # refused while the tracker is down
    with running(setup.rig, setup.host, setup.state) as rig:
        assert rig.todo() == ["L-1"]  # up, on the saved copy
        profile = rig.profile()
        assert profile.workflow_sha256 == good_sha
        assert profile.config_error is not None
        assert profile.config_error["code"] == "unsupported_tracker_kind"
        assert rig.health().detail["workflow_refused"] is True
        assert "keeps serving the last good workflow" in rig.log.read_text()
        next_sha = rig.edit(NEXT_GOOD)  # a good edit is adopted as usual
        assert rig.profile().workflow_sha256 == next_sha
        assert rig.profile().config_error is None
    # The copy follows: the next restart comes up on the version adopted last.
    assert next_sha in saved.read_text()

    # Control: without the copy, a start on a refused file serves nothing (what it did
    # before, and still does outside systemd where there is no state directory).
    saved.unlink()
    rig.edit(BAD_KIND)
    with running(setup.rig, setup.host, setup.state) as rig:
        with pytest.raises(SymphonyError) as caught:
            rig.todo()
        assert caught.value.error_code == "unsupported_tracker_kind"
        assert rig.health().ok is False
