"""One dispatcher per state directory, through the real entry point (issue 22 item 1).

Two ``python -m symphonyd.dispatcher`` processes on the same ``--state-dir`` with different
control sockets: the second refuses before it talks to anyone (exit 75, the holder's pid in
the message), and the first keeps dispatching as if nothing happened. The tracker, launcher
and audit writer are the socket doubles the other dispatcher socket tests use.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from symphonyd.runtime.daemon import EXIT_OK, EXIT_TEMPFAIL
from tests.dispatcher.doubles import issue, run_async
from tests.dispatcher.socket_doubles import SocketWorld, eventually, socket_world
from tests.dispatcher.test_daemon_sockets import write_workflow

REPO = Path(__file__).resolve().parents[2]


class Dispatcher:
    """A real dispatcher process; its log goes to a file (a pipe nobody reads could fill)."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc = proc
        self.log = log

    async def exited(self, *, stop: bool) -> tuple[int, str]:
        """SIGTERM it (``stop``) or wait for it to exit on its own; bounded, so a hang fails."""
        if stop and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), 60)
        return code, self.log.read_text(errors="replace")


async def spawn(world: SocketWorld, ctl: str) -> Dispatcher:
    host_config = world.root / "symphonyd.toml"
    host_config.write_text(f'workflow = "{world.root / "WORKFLOW.md"}"\n')
    log = world.root / f"{ctl}.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "symphonyd.dispatcher", "--host-config", str(host_config),
            "--state-dir", str(world.root / "state"), "--runtime-dir", str(world.root),
            "--ctl-socket", str(world.root / ctl),
            cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
            stdout=out, stderr=out,
        )  # fmt: skip
    return Dispatcher(proc, log)


async def ctl_status(sock: Path) -> dict[str, object]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "symphonyd.ctl", "status", "--json", "--socket", str(sock),
        cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    data: dict[str, object] = json.loads(out)
    return data


def started(world: SocketWorld) -> list[str]:
    return [r.issue.identifier for r in world.launcher.started]


@run_async
async def test_second_dispatcher_on_the_same_state_refuses_and_the_first_keeps_working() -> None:
    async with socket_world() as world:
        write_workflow(world.root / "WORKFLOW.md", interval=100)
        world.tracker.put(issue(1))
        first = await spawn(world, "ctl-a.sock")
        try:
            await eventually(lambda: started(world) == ["MT-1"], "the first dispatches MT-1")
            second = await spawn(world, "ctl-b.sock")
            code, err = await second.exited(stop=False)
            assert code == EXIT_TEMPFAIL, err
            assert "error_code=already_running" in err
            assert f"pid {first.proc.pid}" in err and str(world.root / "state") in err
            assert "outcome=ready" not in err and "Traceback" not in err
            assert not (world.root / "ctl-b.sock").exists()  # it never served

            # The first is untouched: it answers, and dispatches new work exactly once.
            world.tracker.put(issue(2))
            await eventually(lambda: sorted(started(world)) == ["MT-1", "MT-2"], "MT-2 runs")
            counts = (await ctl_status(world.root / "ctl-a.sock"))["counts"]
            assert isinstance(counts, dict) and counts["running"] == 2
            assert first.proc.returncode is None
        finally:
            code, err = await first.exited(stop=True)
        assert code == EXIT_OK, err
        assert started(world) == ["MT-1", "MT-2"]  # nothing dispatched twice

        # The lock went with the process: the next dispatcher on this state starts.
        third = await spawn(world, "ctl-c.sock")
        try:
            await eventually(lambda: (world.root / "ctl-c.sock").exists(), "the third serves")
            counts = (await ctl_status(world.root / "ctl-c.sock"))["counts"]
            assert isinstance(counts, dict) and counts["running"] == 2  # re-adopted runs
        finally:
            code, err = await third.exited(stop=True)
        assert code == EXIT_OK, err
        lock = world.root / "state" / "dispatcher.lock"
        assert oct(lock.stat().st_mode & 0o777) == "0o600" and lock.stat().st_uid == os.getuid()
