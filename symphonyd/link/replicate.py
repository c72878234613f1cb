"""Replicate each worker's audit chain to the control host (docs/design/1100, "Audit").

One task per worker holds one ``ssh ... audit`` session (the bridge splices it into the
worker writer's read-only ``audit-link.sock``) and asks for pages after the replica's head.
Each page starts with the worker's copy of the head record, which must equal ours; the rest
is verified with the chain code and appended (fsynced) before the head moves. A round pulls
at most ``pages_per_round`` pages; when caught up the task waits ``interval`` seconds. A
dropped session is retried after ``interval``; resuming from the files' head means no
duplicates and no gaps. A page that does not verify stops this host's replication for
good (until the link restarts), with a journal error; what was verified stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from symphonyd.core.api.audit import (
    AUDIT_PAGE_MAX_FRAME,
    AUDIT_PAGE_MAX_RECORDS,
    AUDIT_RECORDS_AFTER,
    AuditPageAfter,
)
from symphonyd.core.audit_layout import REPLICA_SUBDIR
from symphonyd.core.errors import SymphonyError
from symphonyd.core.worker_hosts import WorkerHost, WorkerHosts
from symphonyd.link.redial import Redial
from symphonyd.link.replica_store import ReplicaBroken, ReplicaStore, verify_page
from symphonyd.link.ssh_command import spawn_ssh, ssh_argv
from symphonyd.runtime.ipc_client import IpcClient
from symphonyd.runtime.logging import log_event

log = logging.getLogger("symphonyd.link")
PURPOSE_AUDIT = "audit"
CALL_TIMEOUT_S = 60.0
_STDERR_TAIL = 2000


def replica_dir(state_dir: Path, host: str) -> Path:
    """Where a worker's replicated chain lives: ``<state_dir>/link/hosts/<name>/audit``."""
    return Path(state_dir) / "link" / "hosts" / host / REPLICA_SUBDIR


@dataclass
class ReplicaStatus:
    head_seq: int | None = None
    stopped: str | None = None  # why replication of this host stopped for good


@dataclass
class Replicator:
    worker: WorkerHosts
    key: Path
    state_dir: Path
    ssh: str = "ssh"
    interval: float = 2.0
    pages_per_round: int = 8
    page_records: int = AUDIT_PAGE_MAX_RECORDS
    status: dict[str, ReplicaStatus] = field(default_factory=dict)

    async def run(self, host: WorkerHost) -> None:
        """Replicate ``host`` until cancelled or until its chain does not verify."""
        status = self.status.setdefault(host.name, ReplicaStatus())
        store = ReplicaStore(replica_dir(self.state_dir, host.name))
        try:
            await asyncio.to_thread(store.open)
            status.head_seq = None if store.head is None else store.head.seq
            redial = Redial(self.interval)
            while True:
                started = time.monotonic()
                await self._session(host, store, status)
                delay = redial.after(time.monotonic() - started)
                # A short session's end was logged with its reason; this says when the next.
                log_event(log, "audit_replica", level=logging.DEBUG, host=host.name,
                          outcome="redial", retry_in=delay)  # fmt: skip
                await asyncio.sleep(delay)
        except ReplicaBroken as exc:
            status.stopped = exc.message
            log_event(
                log,
                "audit_replica",
                level=logging.ERROR,
                host=host.name,
                outcome="stopped",
                seq=status.head_seq,
                reason=exc.message,
            )

    async def _session(self, host: WorkerHost, store: ReplicaStore, status: ReplicaStatus) -> None:
        """One ssh session: pull pages until the link drops (returns) or a page breaks."""
        ours, theirs = socket.socketpair()
        argv = ssh_argv(host, self.worker, key=self.key, purpose=PURPOSE_AUDIT, ssh=self.ssh)
        try:
            proc = await spawn_ssh(argv, theirs.fileno())
        except OSError as exc:
            ours.close()
            log_event(
                log,
                "audit_replica",
                level=logging.ERROR,
                host=host.name,
                outcome="spawn_failed",
                error=str(exc),
            )
            return
        finally:
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours, limit=AUDIT_PAGE_MAX_FRAME)
        client = IpcClient(
            reader, writer, path=f"ssh:{host.name}:audit", max_frame=AUDIT_PAGE_MAX_FRAME
        )
        try:
            while True:
                caught_up = await self._round(client, store, status, host.name)
                await asyncio.sleep(self.interval if caught_up else 0)
        except ReplicaBroken:
            raise
        except SymphonyError as exc:
            log_event(
                log,
                "audit_replica",
                level=logging.WARNING,
                host=host.name,
                outcome="link_down",
                seq=status.head_seq,
                error=exc.message,
            )
        finally:
            await client.close()
            await _end(proc, host.name)

    async def _round(
        self, client: IpcClient, store: ReplicaStore, status: ReplicaStatus, host: str
    ) -> bool:
        """Up to ``pages_per_round`` pages; True when the replica reached the worker's head."""
        for _ in range(self.pages_per_round):
            after = -1 if store.head is None else store.head.seq - 1
            page = await client.call(
                AUDIT_RECORDS_AFTER,
                AuditPageAfter(after=after, limit=self.page_records),
                timeout=CALL_TIMEOUT_S,
            )
            lines = [line.encode("utf-8", "surrogateescape") for line in page.lines]
            verified = verify_page(lines, store.head, store.head_line)
            if verified.records:
                await asyncio.to_thread(store.append, verified)
                status.head_seq = None if store.head is None else store.head.seq
                log_event(
                    log,
                    "audit_replica",
                    level=logging.DEBUG,
                    host=host,
                    outcome="appended",
                    seq=status.head_seq,
                    records=len(verified.records),
                )
            if verified.broken is not None:
                raise ReplicaBroken(verified.broken)  # after keeping what did verify
            if store.head is not None and store.head.seq >= page.head_seq:
                return True
            if not verified.records:
                return True  # nothing new although the worker's head is further: wait
        return False


async def _end(proc: asyncio.subprocess.Process, host: str) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
    err = b""
    if proc.stderr is not None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                err = await proc.stderr.read()
    try:
        async with asyncio.timeout(10):
            code = await proc.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        code = await proc.wait()
    text = err.decode(errors="replace").strip()[-_STDERR_TAIL:]
    if code not in (0, -15) or text:
        log_event(
            log,
            "audit_replica",
            level=logging.WARNING,
            host=host,
            outcome="session_ended",
            exit_code=code,
            stderr=text or None,
        )
