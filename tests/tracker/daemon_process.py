"""``python -m symphonyd.tracker`` as a process for one workflow, with its credential in a
systemd-style credentials directory and an in-test audit socket that keeps every frame, so
a test can look for the credential in everything the daemon said."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from symphonyd.core.api.audit import AUDIT_APPEND, AuditAck, AuditAppend
from symphonyd.runtime.ipc_server import IpcServer
from symphonyd.runtime.peer import Peer
from symphonyd.tracker.credentials import UNIT_CREDENTIAL_NAME
from tests.tracker.test_daemon import ROOT, _wait_for, stop_daemon


@dataclass
class TrackerProcess:
    dispatcher_socket: Path
    launcher_socket: Path
    log: Path
    audit_frames: list[bytes] = field(default_factory=list)


@contextmanager
def tracker_process(
    tmp_path: Path, workflow: str, credential: str, *, hide_env: str
) -> Iterator[TrackerProcess]:
    """The daemon on ``workflow`` (front matter and prompt), its credential ``credential``;
    environment variables containing ``hide_env`` are dropped so only the file can supply it."""
    creds = tmp_path / "creds"
    creds.mkdir(mode=0o700)
    (creds / UNIT_CREDENTIAL_NAME).write_text(credential + "\n")
    wf = tmp_path / "WORKFLOW.md"
    wf.write_text(workflow)
    host = tmp_path / "symphonyd.toml"
    host.write_text(
        f'workflow = "{wf}"\nlog_level = "debug"\n[paths]\nruntime_dir = "{tmp_path}"\n'
    )
    daemon = TrackerProcess(tmp_path / "d.sock", tmp_path / "l.sock", tmp_path / "daemon.log")

    async def on_append(req: AuditAppend, peer: Peer) -> AuditAck:
        daemon.audit_frames.append(json.dumps([r.__dict__ for r in req.records]).encode())
        return AuditAck(list(range(len(req.records))), "0" * 64)

    loop = asyncio.new_event_loop()
    audit = IpcServer("audit-test", allowed_uids=[os.getuid()], allow_root=True)
    audit.handle(AUDIT_APPEND, on_append)
    loop.run_until_complete(audit.start_path(tmp_path / "audit-tracker.sock"))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    env = {k: v for k, v in os.environ.items() if hide_env not in k}
    env.update(CREDENTIALS_DIRECTORY=str(creds), PYTHONPATH=str(ROOT))
    uid = str(os.getuid())
    with daemon.log.open("wb") as out:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "symphonyd.tracker", "--host-config", str(host)),
                *("--dispatcher-socket", str(daemon.dispatcher_socket)),
                *("--launcher-socket", str(daemon.launcher_socket)),
                *("--dispatcher-uid", uid, "--launcher-uid", uid),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for([daemon.dispatcher_socket, daemon.launcher_socket], proc, daemon.log)
        yield daemon
    finally:
        stop_daemon(proc, daemon.log, audit, loop, thread)
