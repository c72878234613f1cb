"""symphony-link: the control host's only way to its worker hosts (docs/design/1100).

``startup`` is the wiring ``python -m symphonyd.link`` runs under the shared run loop: it
reads the host config's ``[worker]`` section, checks the key credential and the pinned
host keys exist, binds one 0600 socket per worker for the dispatcher, and starts one audit
replicator per worker (``replicate.py``) and one tracker relay with its forwarding ``ssh``
session per worker (``tracker_relay.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
from pathlib import Path

from symphonyd.core.errors import ConfigError
from symphonyd.core.sockets import DISPATCHER_LINK, TRACKER_LINK
from symphonyd.core.sockets import WORKER_TRACKER_SOCKET as WORKER_TRACKER_SOCKET_NAME
from symphonyd.core.worker_hosts import WorkerHosts
from symphonyd.link.replicate import Replicator
from symphonyd.link.service import LinkService
from symphonyd.link.ssh_command import forward_argv
from symphonyd.link.tracker_relay import TrackerRelay, keep_forwarding
from symphonyd.runtime.daemon import Daemon, system_uid
from symphonyd.runtime.durable import private_dir
from symphonyd.runtime.ipc_server import IpcServer

DISPATCHER_USER = "symphony-dispatch"
# On every worker: where sshd listens for the launcher's tracker client (the worker
# launcher's --tracker-socket); the directory belongs to the link's login user there.
# The worker launcher's tracker socket, as every worker installs it (RUNTIME_DIR default).
WORKER_TRACKER_SOCKET = f"/run/symphony/{WORKER_TRACKER_SOCKET_NAME}"


def key_path(worker: WorkerHosts, explicit: str | None) -> Path:
    """The private key: ``--key`` for development, else the unit's systemd credential."""
    if explicit:
        path = Path(explicit)
    else:
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise ConfigError(
                f"no key: the unit must load the {worker.ssh_key_credential!r} credential "
                "(LoadCredential=) or pass --key",
                code="missing_credential",
            )
        path = Path(directory) / worker.ssh_key_credential
    if not path.is_file():
        raise ConfigError(f"the link's key {path} does not exist", code="missing_credential")
    return path


def bind_host_socket(path: Path, owner_uid: int) -> socket.socket:
    """A 0600 listening socket only ``owner_uid`` (the dispatcher) can connect to."""
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    if owner_uid != os.geteuid():
        # Under systemd the link is its own user with CAP_CHOWN for exactly this.
        try:
            os.chown(path, owner_uid, -1)
        except PermissionError:
            sock.close()
            raise ConfigError(
                f"cannot give {path} to uid {owner_uid}: the link needs CAP_CHOWN "
                "(AmbientCapabilities= in its unit) or must run as that user",
                code="socket_owner",
            ) from None
    sock.listen(64)
    return sock


async def startup(daemon: Daemon, *, args: argparse.Namespace) -> None:
    host = daemon.load_host_config(args.host_config)
    worker = host.worker
    if not worker.hosts:
        raise ConfigError(
            "no worker hosts: add [[worker.hosts]] to the host config", code="no_worker_hosts"
        )
    if not Path(worker.known_hosts).is_file():
        raise ConfigError(
            f"worker.known_hosts: {worker.known_hosts} does not exist; pin each worker's host "
            "key there before starting the link",
            code="missing_known_hosts",
        )
    key = key_path(worker, args.key)
    uids = args.dispatcher_uid or [system_uid(DISPATCHER_USER)]
    hosts_dir = Path(args.hosts_dir or Path(host.runtime_dir) / "hosts")
    relay_dir = Path(args.relay_dir or Path(host.runtime_dir) / "link")
    # Each worker's agents reach the tracker's tools back through the link (tracker_relay):
    # one ``ssh -R`` session per worker, checked before anything is bound.
    forwards = {
        h.name: forward_argv(
            h,
            worker,
            key=key,
            remote=args.worker_tracker_socket,
            local=str(relay_dir / f"tracker-{h.name}.sock"),
            ssh=args.ssh,
        )
        for h in worker.hosts
    }
    hosts_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    private_dir(relay_dir)
    service = LinkService(worker, key=key, allowed_uids=uids, ssh=args.ssh)
    relay = TrackerRelay(
        args.tracker_socket or TRACKER_LINK.path(host.runtime_dir),
        args.dispatcher_socket or DISPATCHER_LINK.path(host.runtime_dir),
    )
    listeners: dict[str, socket.socket] = {}
    relays: list[IpcServer] = []
    tasks: list[asyncio.Task[None]] = []

    async def shutdown() -> None:
        for task in tasks:
            task.cancel()
        for name, sock in listeners.items():
            sock.close()
            (hosts_dir / f"{name}.sock").unlink(missing_ok=True)
        for server in relays:
            await server.close()
        await relay.close()
        await service.close()

    daemon.on_shutdown("link", shutdown)
    for h in worker.hosts:
        listeners[h.name] = bind_host_socket(hosts_dir / f"{h.name}.sock", uids[0])
        tasks.append(daemon.spawn(service.serve(h, listeners[h.name]), f"serve-{h.name}"))
        server = relay.server(h.name)
        relays.append(server)
        await server.start_path(relay_dir / f"tracker-{h.name}.sock")
        tasks.append(
            daemon.spawn(
                keep_forwarding(h.name, forwards[h.name], args.replicate_interval),
                f"tracker-{h.name}",
            )
        )
    # Each worker's audit chain, replicated under <state_dir>/link/hosts/<name>/audit.
    replicator = Replicator(
        worker,
        key=key,
        state_dir=Path(args.state_dir or host.state_dir),
        ssh=args.ssh,
        interval=args.replicate_interval,
    )
    tasks += [daemon.spawn(replicator.run(h), f"audit-{h.name}") for h in worker.hosts]
    daemon.on_shutdown("link", shutdown)
    daemon.status(f"linking {len(worker.hosts)} worker host(s)")
