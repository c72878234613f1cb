"""Audit replication through the real pieces (docs/design/1100, "Audit").

On the "worker": the real audit writer (``python -m symphonyd.audit``) serving its client
socket and the link's read-only ``audit-link.sock``, behind a test-owned ``sshd`` whose key
runs the bridge (tests/link/conftest.py). On the "control host": the real link daemon
(``python -m symphonyd.link``) with the real ``ssh``. The test appends on the worker as a
client daemon would and reads the replica's files; ``symphonyctl audit verify`` runs as a
process.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from symphonyd.audit.verify import verify_dir
from symphonyd.core.api.audit import (
    AUDIT_APPEND,
    AUDIT_HEAD,
    AUDIT_RECORDS_AFTER,
    AuditAppend,
    AuditEventIn,
    AuditPageAfter,
)
from symphonyd.core.api.shared import Empty
from symphonyd.core.audit_layout import day_files
from symphonyd.core.errors import SymphonyError
from symphonyd.runtime.ipc_client import IpcClient
from tests.audit.daemon_proc import AuditDaemon
from tests.audit.helpers import fill
from tests.link.conftest import REPO, Worker

pytestmark = pytest.mark.root
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


@dataclass
class WorkerAudit:
    directory: Path
    client_sock: Path
    appended: int = 0

    def stored(self) -> bytes:
        return b"".join(path.read_bytes() for _d, path in day_files(self.directory))

    def append(self, count: int) -> int:
        """Append ``count`` records as a client daemon would; returns the new head seq."""

        async def run() -> None:
            async with await IpcClient.connect(self.client_sock) as client:
                for start in range(0, count, 500):
                    events = [
                        AuditEventIn(type="dispatch", payload={"n": self.appended + i})
                        for i in range(start, min(count, start + 500))
                    ]
                    await client.call(AUDIT_APPEND, AuditAppend(events), timeout=60)

        asyncio.run(run())
        self.appended += count
        return self.appended  # the genesis is seq 0, so the head seq is the count


@pytest.fixture
def worker_audit(worker: Worker, tmp_path: Path) -> Iterator[WorkerAudit]:
    """The worker's writer: its client sockets, and the link's read-only one."""
    link_sock = worker.runtime / "audit-link.sock"
    daemon = AuditDaemon(
        tmp_path / "worker-audit",
        worker.runtime,
        allow_uids=(0,),
        extra=("--listen", f"link={link_sock}", "--anchor", "none"),
    )
    daemon.start()
    try:
        _wait(link_sock.exists, daemon.proc)
        yield WorkerAudit(daemon.audit_dir, daemon.sock("launcher"))
    finally:
        assert daemon.stop() == 0, daemon.output()


class Link:
    def __init__(self, worker: Worker, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.state = tmp_path / "state"
        self.replica = self.state / "link" / "hosts" / "w1" / "audit"
        self.log = tmp_path / "link.log"
        self.config = tmp_path / "link.toml"
        self.config.write_text(
            f'[paths]\nruntime_dir = "{tmp_path}"\nstate_dir = "{self.state}"\n'
            f'[worker]\nssh_user = "root"\nknown_hosts = "{worker.known_hosts}"\n'
            f'[[worker.hosts]]\nname = "w1"\naddress = "127.0.0.1"\nport = {worker.port}\n'
        )
        self.key = worker.key
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "symphonyd.link",
                    "--host-config",
                    str(self.config),
                    "--hosts-dir",
                    str(self.tmp / "hosts"),
                    "--key",
                    str(self.key),
                    "--dispatcher-uid",
                    "0",
                    "--replicate-interval",
                    "0.2",
                ],
                env=ENV,
                stdout=log,
                stderr=log,
            )

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)

    def head(self) -> int | None:
        files = day_files(self.replica) if self.replica.is_dir() else []
        for _day, path in reversed(files):
            data = path.read_bytes()
            lines = data[: data.rfind(b"\n") + 1].splitlines()  # a line being written: not yet
            if lines:
                return int(json.loads(lines[-1])["seq"])
        return None

    def wait_head(self, seq: int) -> None:
        _wait(lambda: (self.head() or -1) >= seq, self.proc, self.log)

    def text(self) -> str:
        return self.log.read_text()


def _wait(
    ready: Callable[[], bool], proc: subprocess.Popen[bytes] | None, log: Path | None = None
) -> None:
    async def run() -> None:
        async with asyncio.timeout(120):
            while not ready():
                if proc is not None and proc.poll() is not None:
                    raise AssertionError(log.read_text() if log else f"exited {proc.returncode}")
                await asyncio.sleep(0.01)

    asyncio.run(run())


@pytest.fixture
def link(worker: Worker, tmp_path: Path) -> Iterator[Link]:
    link = Link(worker, tmp_path)
    yield link
    if link.proc is not None and link.proc.poll() is None:
        assert link.stop() == 0, link.text()


def _bridges(worker: Worker) -> list[int]:
    """The bridge processes this test's sshd started (their command line names our runtime)."""
    mine = f"--runtime-dir\x00{worker.runtime}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if b"symphonyd.link.bridge" in cmdline and mine in cmdline:
                found.append(int(entry))
    return found


def test_replication_resumes_after_a_link_kill_and_a_dropped_session_without_dups_or_gaps(
    worker: Worker, worker_audit: WorkerAudit, link: Link
) -> None:
    head = worker_audit.append(6000)  # six pages and a bit
    link.start()
    link.wait_head(1)
    link.stop(signal.SIGKILL)  # wherever it was: mid-page, mid-write or done
    killed_at = link.head()
    head = worker_audit.append(700)
    link.start()
    link.wait_head(head)
    assert link.head() == head and killed_at is not None and killed_at <= head
    assert b"".join(p.read_bytes() for _d, p in day_files(link.replica)) == worker_audit.stored()
    # The ssh session drops under the replicator (the worker side dies): it reconnects.
    bridges = _bridges(worker)
    assert bridges
    for pid in bridges:
        os.kill(pid, signal.SIGKILL)
    head = worker_audit.append(300)
    link.wait_head(head)
    assert b"".join(p.read_bytes() for _d, p in day_files(link.replica)) == worker_audit.stored()
    assert "link_down" in link.text() or "session_ended" in link.text()
    result = verify_dir(link.replica)
    assert result.ok and result.records == head + 1
    assert link.stop() == 0


@pytest.mark.parametrize(
    ("seq", "kept", "reason"),
    [
        (120, 119, "record 120: record_hash does not match"),  # not yet replicated
        (100, 100, "record 100 on the worker differs from the replicated copy"),  # the head
    ],
)
def test_a_tampered_worker_record_stops_replication_and_keeps_what_was_verified(
    worker_audit: WorkerAudit, link: Link, seq: int, kept: int, reason: str
) -> None:
    worker_audit.append(100)
    link.start()
    link.wait_head(100)
    assert link.stop() == 0
    worker_audit.append(50)  # record seq carries payload n = seq - 1
    path = day_files(worker_audit.directory)[-1][1]
    data = path.read_bytes()
    field = b'"n":%d}' % (seq - 1)
    assert data.count(field) == 1
    path.write_bytes(data.replace(field, b'"n":999}'))
    link.start()
    stopped = f"event=audit_replica host=w1 outcome=stopped seq={kept}"
    _wait(lambda: stopped in link.text(), link.proc, link.log)
    assert reason in link.text()
    assert link.head() == kept
    assert verify_dir(link.replica).ok
    assert link.proc is not None and link.proc.poll() is None  # the link itself carries on


async def _forge(worker: Worker) -> tuple[str, str, int]:
    ours, theirs = socket.socketpair()
    ssh = subprocess.Popen([*worker.ssh(), "audit"], stdin=theirs.fileno(), stdout=theirs.fileno())
    theirs.close()
    reader, writer = await asyncio.open_unix_connection(sock=ours)
    client = IpcClient(reader, writer, path="ssh:audit")
    try:
        with pytest.raises(SymphonyError) as append:
            forged = AuditAppend([AuditEventIn(type="dispatch", payload={"forged": True})])
            await client.call(AUDIT_APPEND, forged, timeout=30)
        with pytest.raises(SymphonyError) as head:
            await client.call(AUDIT_HEAD, Empty(), timeout=30)
        page = await client.call(AUDIT_RECORDS_AFTER, AuditPageAfter(after=-1), timeout=30)
    finally:
        await client.close()
    ssh.wait(timeout=30)
    return append.value.error_code, head.value.error_code, len(page.lines)


def test_the_link_can_read_the_worker_chain_but_never_append(
    worker: Worker, worker_audit: WorkerAudit
) -> None:
    worker_audit.append(3)
    before = worker_audit.stored()
    assert asyncio.run(_forge(worker)) == ("unknown_method", "unknown_method", 4)
    assert worker_audit.stored() == before


def _verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "symphonyd.ctl", "audit", "verify", "--no-anchor", *args],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_audit_verify_checks_the_local_chain_and_every_replica(
    worker_audit: WorkerAudit, link: Link, tmp_path: Path
) -> None:
    fill(tmp_path / "local", ["2026-11-20"], per_day=5)
    worker_audit.append(20)
    link.start()
    link.wait_head(20)
    assert link.stop() == 0
    (link.state / "link" / "hosts" / "w2" / "audit").mkdir(parents=True)
    hosts = str(link.state / "link" / "hosts")
    ok = _verify("--dir", str(tmp_path / "local"), "--replicas", hosts)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.splitlines() == [
        "ok 6 records",
        "host w1: ok 21 records",
        "host w2: nothing replicated yet",
    ]
    replica = day_files(link.replica)[-1][1]
    replica.write_bytes(replica.read_bytes().replace(b'"n":7}', b'"n":8}'))
    broken = _verify("--dir", str(tmp_path / "local"), "--replicas", hosts)
    assert broken.returncode == 1
    assert broken.stdout.splitlines()[0] == "ok 6 records"
    assert broken.stdout.splitlines()[1].startswith(f"host w1: broken at {replica}:9: ")
    only_local = _verify("--dir", str(tmp_path / "local"), "--replicas", hosts, "--no-replicas")
    assert only_local.returncode == 2  # the two options exclude each other (usage)
