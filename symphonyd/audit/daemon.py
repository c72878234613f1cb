"""The audit writer daemon: one IPC server per client socket in front of the group committer.

Under systemd every client daemon has its own activated socket (``FileDescriptorName=`` =
the client's name, owned by the client's user); the only uid allowed on it is the socket
file's owner, and the name is stamped into each record as ``sender.socket``. On a worker
host the socket named ``link`` (owned by the link user) serves only replication's read
(``replication.py``): it cannot append. The uid and
pid come from ``SO_PEERCRED`` through the runtime's ``Peer``, never from a message.

``startup`` runs under the shared run loop (``python -m symphonyd.audit``). Exit status: 0
after SIGTERM/SIGINT, 1 when the store fails (systemd restarts the unit and start-up recovery
repairs the tail), 78 on bad configuration (bad arguments, an unreadable secret file, no
socket, or sockets whose owner is the overflow uid: under ``PrivateUsers=`` the kernel hides
every client's identity).
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
from pathlib import Path
from typing import Any

from symphonyd import __version__
from symphonyd.audit.anchor import SINKS, Anchorer
from symphonyd.audit.commit import GroupCommitter
from symphonyd.audit.config import AuditWriterConfig, audit_config, load_secrets
from symphonyd.audit.reader import DASHBOARD_SOCKET, AuditReader, register_reader
from symphonyd.audit.replication import LINK_SOCKET, PageReader, register_replication
from symphonyd.audit.service import AuditService
from symphonyd.audit.store import AuditStore, AuditStoreError, Sender
from symphonyd.core.api.audit import AUDIT_APPEND, AUDIT_HEAD, AuditAck, AuditAppend, AuditHead
from symphonyd.core.api.shared import HEALTH, Empty, Health
from symphonyd.core.errors import ConfigError
from symphonyd.core.redact import Redactor
from symphonyd.runtime.activation import listen_fds
from symphonyd.runtime.daemon import Daemon
from symphonyd.runtime.ipc_server import IpcServer
from symphonyd.runtime.logging import log_event
from symphonyd.runtime.peer import Peer, unit_of_pid

log = logging.getLogger("symphonyd.audit")


def _overflow_uid() -> int:
    try:
        return int(Path("/proc/sys/fs/overflowuid").read_text())
    except (OSError, ValueError):
        return 65534


def _socket_owner(sock: socket.socket, name: str) -> int:
    """The one uid allowed on an activated socket: the owner systemd gave its file."""
    path = sock.getsockname()
    if not isinstance(path, str) or not path:
        raise ConfigError(f"activated audit socket {name!r} has no filesystem path")
    owner = os.stat(path).st_uid
    if owner == _overflow_uid():
        # Inside a user namespace (PrivateUsers=yes) every other user looks like this uid,
        # so neither the allowlist nor the stamped sender would mean anything: refuse.
        raise ConfigError(
            f"audit socket {name!r} appears owned by the overflow uid {owner}; client "
            "identities are hidden (is PrivateUsers= set on the unit?)"
        )
    return owner


def _server(
    name: str,
    uids: frozenset[int],
    service: AuditService,
    committer: GroupCommitter,
    reader: AuditReader | None = None,
    anchorer: Anchorer | None = None,
    pages: PageReader | None = None,
) -> IpcServer:
    server = IpcServer(f"audit-{name}", allowed_uids=uids, allow_root=0 in uids)
    if name == LINK_SOCKET:
        # The link's socket reads the chain and does nothing else: no append, no head.
        if pages is not None:
            register_replication(server, pages)
        return server

    async def append(params: AuditAppend, peer: Peer) -> AuditAck:
        sender = Sender(uid=peer.uid, pid=peer.pid, unit=peer.unit, socket=name)
        return await service.append(params, sender)

    async def head(_params: Empty, _peer: Peer) -> AuditHead:
        return service.head()

    async def healthz(_params: Empty, _peer: Peer) -> Health:
        detail: dict[str, Any] = {
            "head_seq": committer.head.seq,
            "batches": committer.batches,
            "records": committer.records,
        }
        if anchorer is not None:
            anchored = anchorer.anchored
            detail["anchored_seq"] = None if anchored is None else anchored.seq
            detail["anchor_failures"] = anchorer.failures
        ok = not committer.failed.is_set()
        return Health(daemon="audit", version=__version__, ok=ok, detail=detail)

    server.handle(AUDIT_APPEND, append)
    server.handle(AUDIT_HEAD, head)
    server.handle(HEALTH, healthz)
    if name == DASHBOARD_SOCKET and reader is not None:
        register_reader(server, reader)
    return server


async def startup(daemon: Daemon, *, args: argparse.Namespace) -> None:
    config = audit_config(args, os.environ)
    redactor = Redactor(load_secrets(config.secret_files))
    me = Sender(uid=os.getuid(), pid=os.getpid(), unit=unit_of_pid(os.getpid()), socket=None)
    store = AuditStore(config.directory, writer=me)
    committer = GroupCommitter(store, max_batch_records=config.max_batch_records)
    anchorers: list[Anchorer] = []

    async def close_store() -> None:
        await committer.close()
        for anchorer in anchorers:
            await anchorer.close()  # after the drain: the final head is on disk

    daemon.on_shutdown("committer", close_store)  # registered first: closes last
    written = await committer.start()
    for record in written:
        log_event(log, "audit_" + record["type"], seq=record["seq"], **_recovery(record))
    anchorer = _anchorer(config, store, committer)
    service = AuditService(committer, redactor, max_record_bytes=config.max_record_bytes)
    reader = AuditReader(config.directory)
    pages = PageReader(config.directory, lambda: committer.head.seq)
    servers: list[IpcServer] = []

    async def close_servers() -> None:
        for server in servers:
            await server.close()

    daemon.on_shutdown("sockets", close_servers)
    if anchorer is not None:
        committer.listeners.append(anchorer.observe)
        anchorers.append(anchorer)
        await anchorer.start()
    # Every socket's owner is checked before any of them serves: a refused configuration
    # must not have answered a single request first.
    activated = [
        (name, sock, frozenset({_socket_owner(sock, name)}))
        for name, socks in listen_fds().items()
        for sock in socks
    ]
    for name, sock, owner in activated:
        server = _server(name, owner, service, committer, reader, anchorer, pages)
        await server.start(sock)
        servers.append(server)
    for name, path in config.listen.items():
        server = _server(name, config.allow_uids, service, committer, reader, anchorer, pages)
        await server.start_path(path)
        servers.append(server)
    if not servers:
        raise ConfigError(
            "no socket to serve: run under symphony-audit-*.socket activation or pass "
            "--listen NAME=PATH",
            code="no_sockets",
        )
    # A failed store withholds the watchdog ping as well as stopping the daemon (exit 1).
    daemon.add_health_check(lambda: not committer.failed.is_set())
    daemon.spawn(_store_watch(committer), "store-watch")
    head = committer.head
    log_event(log, "audit_start", outcome="ready", seq=head.seq, sockets=len(servers))


async def _store_watch(committer: GroupCommitter) -> None:
    await committer.failed.wait()
    log_event(log, "audit_stop", level=logging.ERROR, outcome="store_failed")
    raise AuditStoreError("the audit store failed; stopping so systemd restarts the writer")


def _anchorer(
    config: AuditWriterConfig, store: AuditStore, committer: GroupCommitter
) -> Anchorer | None:
    """The head anchor the configuration asks for (the journal unless ``--anchor none``)."""
    if config.anchor == "none":
        log_event(log, "audit_anchor", level=logging.WARNING, outcome="disabled")
        return None
    return Anchorer(
        SINKS[config.anchor](),
        directory=config.directory,
        chain=store.chain_id,
        head=lambda: committer.head,
        interval=config.anchor_interval,
    )


def _recovery(record: dict[str, Any]) -> dict[str, Any]:
    payload = record["payload"]
    return dict(payload) if record["type"] == "recovered" and isinstance(payload, dict) else {}
