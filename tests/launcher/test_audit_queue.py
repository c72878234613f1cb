"""The launcher's audit queue against the real audit writer: a refused record never blocks."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from symphonyd.core.api.audit import AuditEventIn
from symphonyd.launcher.daemon import AuditQueue
from tests.launcher.test_daemon_sockets import spawn, stop, wait_for_socket


def test_a_refused_record_is_logged_and_the_rest_still_arrive(tmp_path: Path) -> None:
    sock = tmp_path / "audit.sock"
    writer = spawn(
        "symphonyd.audit",
        "--dir",
        str(tmp_path / "audit"),
        "--listen",
        f"launcher={sock}",
        "--allow-uid",
        str(os.getuid()),
    )
    queue = AuditQueue(sock)

    async def scenario() -> None:
        await wait_for_socket(sock, writer)
        for n in range(3):
            queue.put(AuditEventIn(type="tool_call", payload={"n": n}))
        queue.put(AuditEventIn(type="no_such_type", payload={}))  # refused by the writer
        queue.put(AuditEventIn(type="tool_call", payload={"n": 3}))
        task = asyncio.create_task(queue.run())
        await asyncio.wait_for(queue._queue.join(), 30)
        task.cancel()
        await queue.close()

    try:
        asyncio.run(scenario())
    finally:
        code, err = stop(writer)
    assert code == 0, err
    assert (queue.delivered, queue.rejected) == (4, 1)
    shown = subprocess.run(
        [
            sys.executable,
            "-m",
            "symphonyd.ctl",
            "audit",
            "show",
            "--dir",
            str(tmp_path / "audit"),
            "--type",
            "tool_call",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert [json.loads(line)["payload"]["n"] for line in shown.splitlines()] == [0, 1, 2, 3]
