"""A worker's launcher stops what the link started once the link is gone for the lease.

``python -m symphonyd.launcher`` as a real process with both sockets: the dispatcher's
(local runs) and the link's (``--link-socket``). Each run sits in a slow ``before_run``
hook, so it is live until stopped. The lease is the shortest allowed, 5 s; the waits
around it are generous and only decide when the test looks, never what it asserts.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from symphonyd.core.api.launcher import (
    LAUNCHER_LIST_RUNS,
    LAUNCHER_START_RUN,
    ListRuns,
    RunInfo,
    StartRun,
    WorkflowSnapshot,
)
from symphonyd.core.issue import Issue, build_issue
from symphonyd.runtime.ipc_client import IpcClient
from tests.launcher.test_daemon_sockets import (
    launcher_layout,
    spawn,
    stop,
    tracker_double,
    wait_for_socket,
)

LEASE_S = 5


def _issue(n: int) -> Issue:
    return build_issue(
        id=f"i-{n}", identifier=f"ABC-{n}", title="t", state="Todo", dispatchable=True
    )


def _workflow(tmp_path: Path) -> WorkflowSnapshot:
    return WorkflowSnapshot(
        str(tmp_path / "WORKFLOW.md"),
        {
            "tracker": {"kind": "memory", "active_states": ["Todo"]},
            "hooks": {"before_run": "sleep 120", "timeout_ms": 300_000},
        },
        "Do {{ issue.identifier }}",
        "0" * 64,
    )


async def _runs(path: Path) -> dict[str, RunInfo]:
    async with await IpcClient.connect(path) as client:
        page = await client.call(LAUNCHER_LIST_RUNS, ListRuns(0, 100))
    return {r.run_id: r for r in page.runs}


async def _wait_finished(path: Path, run_id: str, timeout: float) -> RunInfo:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = (await _runs(path))[run_id]
        if run.outcome is not None:
            return run
        await asyncio.sleep(0.25)
    raise AssertionError(f"{run_id} still running after {timeout} s")


async def _start(path: Path, run_id: str, issue: Issue, workflow: WorkflowSnapshot) -> None:
    async with await IpcClient.connect(path) as client:
        started = await client.call(LAUNCHER_START_RUN, StartRun(run_id, issue, None, workflow))
    assert started.accepted, started


def test_link_runs_stop_after_the_lease_and_local_runs_do_not(tmp_path: Path) -> None:
    run_dir, _, _, agent_home, host_config = launcher_layout(tmp_path)
    host_config.write_text(host_config.read_text() + f"[worker]\nlease_seconds = {LEASE_S}\n")
    local, link = run_dir / "launcher.sock", run_dir / "launcher-link.sock"
    proc = spawn(
        "symphonyd.launcher",
        "--host-config",
        str(host_config),
        "--socket",
        str(local),
        "--link-socket",
        str(link),
        "--agent-home",
        str(agent_home),
        "--dispatcher-uid",
        "0",
        "--link-uid",
        "0",
    )
    workflow = _workflow(tmp_path)

    async def scenario() -> tuple[dict[str, RunInfo], RunInfo, dict[str, RunInfo]]:
        await wait_for_socket(link, proc)
        await wait_for_socket(local, proc)
        await _start(local, "local-1", _issue(1), workflow)
        # The link comes and goes within the lease (ssh reconnecting): nothing stops.
        await _start(link, "link-2", _issue(2), workflow)
        for _ in range(4):
            async with await IpcClient.connect(link):
                await asyncio.sleep(0.2)
            await asyncio.sleep(LEASE_S / 2)
        async with await IpcClient.connect(link):
            during = await _runs(local)
            # Held open past a whole lease: an open link is a live link.
            await asyncio.sleep(LEASE_S + 2)
            held = await _runs(local)
        assert held["link-2"].outcome is None, held["link-2"]
        # Now the link is gone for good: the link's run stops, the local one does not.
        finished = await _wait_finished(local, "link-2", timeout=LEASE_S + 30)
        return during, finished, await _runs(local)

    async def with_tracker() -> tuple[dict[str, RunInfo], RunInfo, dict[str, RunInfo]]:
        # A launcher serving a link is a worker's: its tracker is the control host's, at the
        # socket the link's ssh forwards to <runtime>/link/tracker.sock (design 1100).
        (run_dir / "link").mkdir(mode=0o700)
        async with tracker_double(run_dir / "link" / "tracker.sock", _issue(1), _issue(2)):
            return await scenario()

    try:
        during, finished, after = asyncio.run(with_tracker())
    finally:
        code, err = stop(proc)
    assert code == 0, err
    assert during["link-2"].outcome is None and during["local-1"].outcome is None
    assert finished.outcome is not None and finished.outcome.status == "cancelled"
    assert finished.outcome.error == "stopped: link_lost", finished.outcome
    assert after["local-1"].outcome is None
    assert "link_lease_expired" in err and "link-2" in err
