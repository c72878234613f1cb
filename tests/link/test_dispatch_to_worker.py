"""The real dispatcher dispatches an issue to a worker through the real link (design 1100).

Every piece on the path is the production one: the dispatcher's wiring (``assemble`` with
the host config's ``[worker]``, its per-host event follower), the link daemon
(``python -m symphonyd.link``), the real ``ssh`` client, a test-owned ``sshd`` whose key's
forced command is the bridge, and the worker's launcher daemon (sandbox off: this is about
scheduling and transport). Only the control host's tracker and audit writer are stand-ins
(tests/dispatcher/socket_doubles.py), and a local launcher stand-in proves nothing runs
here. The run sits in a slow ``before_run`` hook, so it is live until the operator stops it.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from symphonyd.core.api.launcher import LAUNCHER_LIST_RUNS, ListRuns, RunInfo
from symphonyd.core.worker_hosts import WorkerHost, WorkerHosts
from symphonyd.runtime.ipc_client import IpcClient
from tests.dispatcher.doubles import issue
from tests.dispatcher.socket_doubles import eventually, socket_world
from tests.dispatcher.test_daemon_sockets import ctl, dispatcher, status, write_workflow
from tests.launcher.test_daemon_sockets import tracker_double
from tests.link.conftest import Worker
from tests.link.test_link_daemon import link  # noqa: F401 - the real link daemon fixture

pytestmark = pytest.mark.root

# Only a stop ends the run while the test looks (the hook outlasts every wait below).
HOOKS = "hooks:\n  before_run: sleep 3600\n  timeout_ms: 7200000\ncodex:\n  stall_timeout_ms: 0\n"


async def _worker_runs(path: Path) -> dict[str, RunInfo]:
    async with await IpcClient.connect(path) as client:
        page = await client.call(LAUNCHER_LIST_RUNS, ListRuns(0, 100), timeout=30)
    return {r.run_id: r for r in page.runs}


def test_the_dispatcher_runs_an_issue_on_a_worker_over_ssh_and_stops_it_there(
    worker: Worker,
    launcher: subprocess.Popen[bytes],
    link: tuple[Path, subprocess.Popen[bytes]],  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    link_socket, _ = link
    config = WorkerHosts(
        hosts=(WorkerHost("w1", "127.0.0.1", worker.port),), max_concurrent_agents_per_host=2
    )

    async def scenario() -> str:
        async with socket_world() as world:
            # The dispatcher finds the link's sockets under <runtime>/hosts, as installed.
            (world.root / "hosts").symlink_to(link_socket.parent)
            write_workflow(world.root / "WORKFLOW.md", extra=HOOKS)
            world.tracker.put(issue(1))
            async with dispatcher(world, config) as orch:
                await eventually(lambda: orch.engine.starts == 1, "dispatched", timeout=60)
                run_id = orch.running["id-1"].run_id
                assert orch.running["id-1"].host == "w1"
                on_worker = await _worker_runs(link_socket)
                assert on_worker[run_id].outcome is None  # live on the worker
                snap = await status(world)
                assert [(r["issue_identifier"], r["host"]) for r in snap["running"]] == [
                    ("MT-1", "w1")
                ]
                code, _, err = await ctl(world, "stop", "MT-1")
                assert code == 0, err
                # The stop goes to w1; the worker ends the run and reports it over the
                # event stream, and the dispatcher's acknowledgement removes it there.
                runs: dict[str, RunInfo] = on_worker
                for _ in range(240):
                    runs = await _worker_runs(link_socket)
                    if run_id not in runs:
                        break
                    await asyncio.sleep(0.25)
                assert run_id not in runs, runs.get(run_id)
                assert "id-1" not in orch.running and orch.holds.get("id-1") is not None
                assert world.launcher.started == []  # nothing ran on the control host
                return run_id

    async def with_worker_tracker() -> str:
        worker_tracker = tmp_path / "launcher" / "run" / "tracker-launcher.sock"
        async with tracker_double(worker_tracker, issue(1)):
            return await scenario()

    run_id = asyncio.run(with_worker_tracker())
    assert run_id.startswith("r-")
