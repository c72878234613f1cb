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

from symphonyd.core.errors import ConfigError
from symphonyd.core.worker_hosts import WorkerHost, WorkerHosts

KEEPALIVE_INTERVAL_S = 5
KEEPALIVE_COUNT = 3
CONNECT_TIMEOUT_S = 10


def _client(
    host: WorkerHost, worker: WorkerHosts, *, key: Path, ssh: str, **extra: str
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
        "LogLevel": "ERROR",
        **extra,
    }
    argv = [ssh, "-F", "/dev/null", "-T", "-i", str(key), "-p", str(host.port)]
    for name, value in options.items():
        argv += ["-o", f"{name}={value}"]
    return [*argv, "-l", worker.ssh_user]


def ssh_argv(
    host: WorkerHost, worker: WorkerHosts, *, key: Path, purpose: str, ssh: str = "ssh"
) -> list[str]:
    argv = _client(host, worker, key=key, ssh=ssh, ClearAllForwardings="yes")
    # "--" so nothing from the config can be read as an option; the purpose is the request
    # the worker's forced command (symphonyd/link/bridge.py) checks against its fixed set.
    return [*argv, "--", host.address, purpose]


def forward_argv(
    host: WorkerHost, worker: WorkerHosts, *, key: Path, remote: str, local: str, ssh: str = "ssh"
) -> list[str]:
    """The tracker session: no command (``-N``), one remote Unix-socket forward.

    sshd on the worker listens on ``remote`` (as the link's login user, mode 0600 by its
    StreamLocalBindMask) and each connection there comes back over this session to
    ``local`` on the control host. ``ExitOnForwardFailure`` turns a refused or failed bind
    into an exit the link sees and retries, not a session that forwards nothing. The only
    channel this client accepts from the worker is that one forward: agent and X11
    forwarding are off, so a compromised worker reaches nothing else on the control host.
    """
    for path in (remote, local):
        if ":" in path or not path.startswith("/"):
            raise ConfigError(
                f"{path!r}: a forwarded socket path must be absolute and contain no ':'"
            )
    argv = _client(host, worker, key=key, ssh=ssh, ExitOnForwardFailure="yes")
    return [*argv, "-N", "-R", f"{remote}:{local}", "--", host.address]


async def spawn_ssh(argv: list[str], fd: int) -> asyncio.subprocess.Process:
    """Start ``ssh`` with the socket ``fd`` as its stdin and stdout (OpenSSH moves the bytes;
    the link holds no copy loop), stderr piped for the journal, in its own session."""
    return await asyncio.create_subprocess_exec(
        *argv, stdin=fd, stdout=fd, stderr=asyncio.subprocess.PIPE, start_new_session=True
    )
