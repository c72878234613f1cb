"""Per-worker sockets for the dispatcher; each connection becomes one ``ssh`` session.

The dispatcher connects to ``<hosts_dir>/<name>.sock`` exactly as it connects to a local
launcher. The link admits only the dispatcher's uid, then hands the accepted socket to an
``ssh`` child as its stdin and stdout: OpenSSH carries the bytes to the worker's forced
command, which splices them into the worker launcher's link socket. The link never parses
or rewrites the launcher protocol on this path, and a session ends when either side closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Collection
from pathlib import Path

from symphonyd.core.worker_hosts import WorkerHost, WorkerHosts
from symphonyd.link.ssh_command import spawn_ssh, ssh_argv
from symphonyd.runtime.logging import log_event
from symphonyd.runtime.peer import peer_of

log = logging.getLogger("symphonyd.link")
PURPOSE_LAUNCHER = "launcher"
_STDERR_TAIL = 2000


class LinkService:
    def __init__(
        self, worker: WorkerHosts, *, key: Path, allowed_uids: Collection[int], ssh: str = "ssh"
    ) -> None:
        self._worker = worker
        self._key = key
        self._allowed = frozenset(allowed_uids)
        self._ssh = ssh
        self._sessions: set[asyncio.subprocess.Process] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    async def serve(self, host: WorkerHost, listener: socket.socket) -> None:
        """Accept the dispatcher's connections to ``host`` until cancelled."""
        loop = asyncio.get_running_loop()
        listener.setblocking(False)
        while True:
            conn, _ = await loop.sock_accept(listener)
            task = asyncio.create_task(self._session(host, conn), name=f"link-{host.name}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _session(self, host: WorkerHost, conn: socket.socket) -> None:
        with conn:
            try:
                peer = peer_of(conn)
            except OSError:
                log_event(
                    log, "link_refused", level=logging.WARNING, host=host.name, reason="no_peer"
                )
                return
            if peer.uid not in self._allowed:
                log_event(
                    log,
                    "link_refused",
                    level=logging.WARNING,
                    host=host.name,
                    reason="peer_not_allowed",
                    uid=peer.uid,
                    pid=peer.pid,
                )
                return
            argv = ssh_argv(
                host, self._worker, key=self._key, purpose=PURPOSE_LAUNCHER, ssh=self._ssh
            )
            conn.setblocking(True)
            try:
                proc = await spawn_ssh(argv, conn.fileno())
            except OSError as exc:
                log_event(
                    log,
                    "link_session",
                    level=logging.ERROR,
                    host=host.name,
                    outcome="spawn_failed",
                    error=str(exc),
                )
                return
        # The child holds the socket now; our copy is closed so its EOF is the session's.
        self._sessions.add(proc)
        log_event(log, "link_session", host=host.name, outcome="opened", pid=proc.pid)
        try:
            assert proc.stderr is not None
            err = await proc.stderr.read()
            code = await proc.wait()
        finally:
            self._sessions.discard(proc)
        text = err.decode(errors="replace").strip()[-_STDERR_TAIL:]
        # 255 is ssh's own failure (unreachable, host key, refused key); anything else is the
        # worker side's exit status (the bridge's sysexits code).
        level = logging.INFO if code == 0 else logging.WARNING
        outcome = "closed" if code == 0 else ("ssh_failed" if code == 255 else "worker_refused")
        log_event(
            log,
            "link_session",
            level=level,
            host=host.name,
            outcome=outcome,
            exit_code=code,
            stderr=text or None,
        )

    async def close(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """End every session: SIGTERM to each ssh, then wait, then SIGKILL what is left."""
        for proc in list(self._sessions):
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        for proc in list(self._sessions):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
