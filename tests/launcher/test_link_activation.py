"""A worker's launcher under socket activation serves both activated sockets.

systemd hands the launcher ``dispatcher`` and, on a worker host (symphony-worker.target),
``link`` (symphony-launcher-link.socket). Both must be served by the one process that
received them: the environment that names them can be read only once. Found by the
three-container test (tests/e2e/test_worker_hosts.py), pinned here with
``systemd-socket-activate`` and the real ``python -m symphonyd.launcher``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from symphonyd.core.api.launcher import LAUNCHER_LIST_RUNS, ListRuns
from symphonyd.runtime.ipc_client import IpcClient
from tests.launcher.test_daemon_sockets import launcher_layout, stop, wait_for_socket

REPO = Path(__file__).resolve().parents[2]


async def _list_runs(path: Path) -> int:
    async with await IpcClient.connect(path) as client:
        page = await client.call(LAUNCHER_LIST_RUNS, ListRuns(0, 10), timeout=30)
    return len(page.runs)


@pytest.mark.root
def test_the_dispatcher_and_the_link_socket_are_both_served(tmp_path: Path) -> None:
    run_dir, _, _, agent_home, host_config = launcher_layout(tmp_path)
    dispatcher, link = run_dir / "launcher-dispatcher.sock", run_dir / "launcher-link.sock"
    proc = subprocess.Popen(
        [
            "systemd-socket-activate",
            f"--listen={dispatcher}",
            f"--listen={link}",
            "--fdname=dispatcher:link",
            f"--setenv=PYTHONPATH={REPO}",
            sys.executable,
            "-m",
            "symphonyd.launcher",
            "--host-config",
            str(host_config),
            "--agent-home",
            str(agent_home),
            "--dispatcher-uid",
            "0",
            "--link-uid",
            "0",
        ],
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        for path in (dispatcher, link):  # bound by systemd-socket-activate before the exec
            asyncio.run(wait_for_socket(path, proc))
        # The dispatcher's socket is served once the launcher is up; the link's after it.
        assert asyncio.run(_list_runs(dispatcher)) == 0
        assert asyncio.run(_list_runs(link)) == 0
    finally:
        code, err = stop(proc)
    assert code == 0, err
