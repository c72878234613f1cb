"""Files the sandbox lays over the agent's /etc: who it is, and how its ssh leaves.

- ``/etc/passwd`` and ``/etc/group``: root, nobody and the agent's own uid and gid, whose
  home is the process's ``$HOME`` (inside the sandbox's private /tmp). Programs that look up
  their own uid (OpenSSH exits "No user exists for uid N" without an entry, and takes ``~``
  from it, not from ``$HOME``) work whether or not the host has a user for the agent's uid,
  and the agent no longer reads the host's account list.
- ``/etc/ssh/ssh_config`` (only where the host has an ssh client): every ssh connection goes
  through ``ssh_connect.py``, a ``CONNECT host:port`` to the agent's own egress proxy, which
  checks it like any CONNECT (docs/design/0868). Host keys: the host's
  ``/etc/ssh/ssh_known_hosts`` (where an operator pins forge keys), then the agent's own
  ``~/.ssh/known_hosts``, where a first key is accepted and a changed one refused.

One set of files per sandbox and uid, in the sandbox's run directory, removed at teardown.
"""

from __future__ import annotations

import grp
import os
import pwd
import sys
from pathlib import Path

from symphonyd.launcher.sandbox.fs_view import FsView
from symphonyd.launcher.sandbox.manager import SandboxHandle

DEFAULT_HOME = "/tmp"  # noqa: S108 - the sandbox's private tmpfs, bwrap.sandbox_environment
SSH_CONFIG = Path("/etc/ssh/ssh_config")
CONNECTOR = Path(__file__).resolve().with_name("ssh_connect.py")
SYSTEM_PYTHON = Path("/usr/bin/python3")


def _name(lookup: str, number: int) -> str:
    try:
        if lookup == "user":
            return pwd.getpwuid(number).pw_name
        return grp.getgrgid(number).gr_name
    except KeyError:
        return "agent"


def passwd_text(uid: int, gid: int, home: str) -> str:
    return (
        "root:x:0:0:root:/root:/usr/sbin/nologin\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        f"{_name('user', uid)}:x:{uid}:{gid}:symphonyd agent:{home}:/bin/sh\n"
    )


def group_text(gid: int) -> str:
    return f"root:x:0:\nnogroup:x:65534:\n{_name('group', gid)}:x:{gid}:\n"


def ssh_config_text(proxy_ip: str, proxy_port: int) -> str:
    python = SYSTEM_PYTHON if SYSTEM_PYTHON.exists() else Path(sys.executable)
    return (
        "# Written by symphonyd for this sandbox: ssh leaves only through the egress proxy.\n"
        "Host *\n"
        f"    ProxyCommand {python} {CONNECTOR} {proxy_ip} {proxy_port} %h %p\n"
        "    GlobalKnownHostsFile /etc/ssh/ssh_known_hosts\n"
        "    UserKnownHostsFile ~/.ssh/known_hosts\n"
        "    StrictHostKeyChecking accept-new\n"
        "    BatchMode yes\n"
    )


def _write(handle: SandboxHandle, name: str, text: str) -> Path:
    handle.run_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    path = handle.run_dir / f"{handle.lease.host_ifname}-{name}"
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    if path not in handle.files:
        handle.files.append(path)  # removed by teardown
    return path


def etc_binds(
    handle: SandboxHandle, view: FsView, home: str = DEFAULT_HOME
) -> list[tuple[Path, Path]]:
    """(file in the run directory, path in the agent's view) pairs to bind read-only.
    ``home``: the ``$HOME`` the process gets (the agent's seeded home, or /tmp for a hook)."""
    uid, gid = view.uid, view.gid
    if not home.startswith("/") or ":" in home or "\n" in home:
        home = DEFAULT_HOME
    passwd = f"{uid}{home.replace('/', '_')}.passwd"
    binds = [
        (_write(handle, passwd, passwd_text(uid, gid, home)), Path("/etc/passwd")),
        (_write(handle, f"{gid}.group", group_text(gid)), Path("/etc/group")),
    ]
    # A bind needs its mount point: without an ssh client there is nothing to configure.
    if SSH_CONFIG.exists():
        text = ssh_config_text(str(handle.lease.host_ip), handle.proxy.port)
        binds.append((_write(handle, "ssh_config", text), SSH_CONFIG))
        # The connector at its own path, whatever the view hides there: installed, it is
        # already visible; run from a checkout under /tmp it would be under the private /tmp.
        binds.append((CONNECTOR, CONNECTOR))
    return binds
