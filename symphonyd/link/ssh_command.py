"""The one ``ssh`` command line the link runs: OpenSSH does transport and authentication.

Nothing of the user's or the machine's ssh configuration applies (``-F /dev/null``): the key
is the link's systemd credential, the host key must already be pinned in the link's own
known_hosts (``StrictHostKeyChecking=yes``: a changed or unknown key is a refusal, never a
prompt or a silent add), and keepalives turn a dead worker into a closed session within
about 15 s instead of a connection that hangs until TCP gives up.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from symphonyd.core.worker_hosts import WorkerHost, WorkerHosts

KEEPALIVE_INTERVAL_S = 5
KEEPALIVE_COUNT = 3
CONNECT_TIMEOUT_S = 10


def ssh_argv(
    host: WorkerHost, worker: WorkerHosts, *, key: Path, purpose: str, ssh: str = "ssh"
) -> list[str]:
    options = {
        "BatchMode": "yes",
        "StrictHostKeyChecking": "yes",
        "UserKnownHostsFile": worker.known_hosts,
        "GlobalKnownHostsFile": "/dev/null",
        "IdentitiesOnly": "yes",
        "IdentityAgent": "none",
        "ConnectTimeout": str(CONNECT_TIMEOUT_S),
        "ServerAliveInterval": str(KEEPALIVE_INTERVAL_S),
        "ServerAliveCountMax": str(KEEPALIVE_COUNT),
        "ForwardAgent": "no",
        "ForwardX11": "no",
        "ClearAllForwardings": "yes",
        "LogLevel": "ERROR",
    }
    argv = [ssh, "-F", "/dev/null", "-T", "-i", str(key), "-p", str(host.port)]
    for name, value in options.items():
        argv += ["-o", f"{name}={value}"]
    # "--" so nothing from the config can be read as an option; the purpose is the request
    # the worker's forced command (symphonyd/link/bridge.py) checks against its fixed set.
    return [*argv, "-l", worker.ssh_user, "--", host.address, purpose]


async def spawn_ssh(argv: list[str], fd: int) -> asyncio.subprocess.Process:
    """Start ``ssh`` with the socket ``fd`` as its stdin and stdout (OpenSSH moves the bytes;
    the link holds no copy loop), stderr piped for the journal, in its own session."""
    return await asyncio.create_subprocess_exec(
        *argv, stdin=fd, stdout=fd, stderr=asyncio.subprocess.PIPE, start_new_session=True
    )
