"""Running a command inside a sandbox where PID 1 is not systemd: nsenter + bubblewrap + setpriv.

The launcher is root, so bubblewrap makes no user namespace (one it made for root would map
the agent's uid back to root outside); it runs in the gate's, whose uid map is the identity.
The chain is:

``nsenter --net=/proc/self/fd/N``  join the agent's network namespace (fd inherited),
``python3 -c GATE``  a user namespace with the identity map in which no further user
namespace can be made (userns.py),
``bwrap``  new mount/pid/ipc/uts namespaces, read-only root, tmpfs over every hidden
directory and the workspace root, the one workspace bound read-write, its git metadata bound
read-only, private /tmp, own /proc and /dev, a private size-capped /dev/shm, the agent's
resolv.conf, passwd, group and ssh_config (agent_etc.py); ``--die-with-parent``,
``--assert-userns-disabled``,
``setpriv``  switch to the unprivileged uid/gid, clear groups, empty every capability set
including the bounding set, and set no_new_privs before exec'ing the command.

With resource limits (the handle has a cgroup, ``cgroups.py``) the chain starts with a root
``sh`` that moves itself into the sandbox's cgroup and execs ``nsenter``, so everything after it
is limited from its first instruction.

The environment is built from nothing: only what the caller passes plus the proxy variables.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from symphonyd.launcher.sandbox.agent_etc import etc_binds
from symphonyd.launcher.sandbox.errors import RESOURCES_FAILED, SPAWN_FAILED, SandboxError
from symphonyd.launcher.sandbox.fs_view import FsView
from symphonyd.launcher.sandbox.manager import RUN_DIR, SandboxHandle
from symphonyd.launcher.sandbox.userns import gate_prefix

BASE_PATH = "/usr/local/bin:/usr/bin:/bin"
# Private, empty temp directories inside the sandbox (bwrap mounts a fresh tmpfs on each).
PRIVATE_TMP = ("/tmp", "/var/tmp")  # noqa: S108


def bwrap_argv(
    view: FsView,
    command: Sequence[str],
    resolv_conf: Path,
    cwd: Path,
    binds: Sequence[tuple[Path, Path]] = (),
) -> list[str]:
    """``binds``: the sandbox's own files over the agent's /etc (agent_etc.py)."""
    argv = [
        "bwrap",
        "--die-with-parent",
        "--new-session",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        # The user namespace gate (userns.py) ran just before; bwrap checks that it held.
        "--assert-userns-disabled",
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        # --dev leaves /dev/shm root's: POSIX shared memory (multiprocessing, browsers)
        # needs it writable. Its own tmpfs, capped, gone with the sandbox's mount namespace.
        "--perms",
        "1777",
        "--size",
        str(view.shm_bytes),
        "--tmpfs",
        "/dev/shm",  # noqa: S108 - the sandbox's own, private
        "--proc",
        "/proc",
    ]
    for tmp in PRIVATE_TMP:
        argv += ["--perms", "1777", "--tmpfs", tmp]
    for directory in view.hidden_dirs:
        argv += ["--tmpfs", str(directory)]
    for file in view.hidden_files:
        argv += ["--ro-bind", "/dev/null", str(file)]
    argv += ["--tmpfs", str(view.workspace_root)]
    argv += ["--bind", str(view.workspace), str(view.workspace)]
    for path in view.readonly:
        argv += ["--ro-bind", str(path), str(path)]
    argv += ["--ro-bind", str(resolv_conf), "/etc/resolv.conf"]
    for source, target in binds:
        # bwrap makes a missing mount point's parents 0700 root: make them 0755 first, so
        # the agent can reach a file bound under its private /tmp (existing ones are kept).
        for parent in reversed(target.parents[:-1]):
            argv += ["--perms", "0755", "--dir", str(parent)]
        argv += ["--ro-bind", str(source), str(target)]
    argv += ["--chdir", str(cwd)]
    argv += [
        "--",
        "setpriv",
        f"--reuid={view.uid}",
        f"--regid={view.gid}",
        "--clear-groups",
        "--no-new-privs",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--",
        *command,
    ]
    return argv


def write_resolv_conf(handle: SandboxHandle) -> Path:
    """The agent's resolv.conf (its own resolver only); one file per sandbox."""
    for known in handle.files:
        if known.suffix == ".resolv":
            return known
    RUN_DIR.mkdir(mode=0o755, exist_ok=True)
    handle.run_dir.mkdir(mode=0o755, exist_ok=True)
    fd, name = tempfile.mkstemp(
        prefix=f"{handle.lease.host_ifname}-", suffix=".resolv", dir=handle.run_dir
    )
    with os.fdopen(fd, "w") as f:
        f.write(handle.resolv_conf())
    os.chmod(name, 0o644)
    handle.files.append(Path(name))  # removed by teardown
    return Path(name)


def sandbox_environment(handle: SandboxHandle, extra: Mapping[str, str]) -> dict[str, str]:
    env = {"PATH": BASE_PATH, "HOME": PRIVATE_TMP[0], "LANG": "C.UTF-8"}
    env.update(extra)
    env.update(handle.environment())
    return env


def hook_wrapper(handle: SandboxHandle, view: FsView) -> Callable[[list[str]], list[str]]:
    """A ``HookRunner`` command wrapper: the hook runs in this sandbox, as the agent user.

    The runner pins the hook's environment with ``env -i -- K=V ... <shell>``; the proxy
    variables are added inside that, so the hook sees them and nothing of the launcher's.
    Use it with ``run_as=None`` (setpriv drops privileges inside) and ``home="/tmp"``.
    """
    resolv = write_resolv_conf(handle)
    binds = etc_binds(handle, view)

    def wrap(inner: list[str]) -> list[str]:
        command = with_sandbox_env(inner, handle.environment())
        return [
            *_join_cgroup(handle),
            "nsenter",
            f"--net={handle.netns_path}",
            "--",
            *gate_prefix(),
            *bwrap_argv(view, command, resolv, view.workspace, binds),
        ]

    return wrap


def _join_cgroup(handle: SandboxHandle) -> list[str]:
    """The prefix that puts the sandbox in its cgroup; refuses a cgroup that is gone."""
    if handle.cgroup is None:
        return []
    if not all(d.is_dir() for d in handle.cgroup.dirs):
        raise SandboxError(
            f"the sandbox's cgroup {handle.cgroup.name} is gone; limits cannot be enforced",
            code=RESOURCES_FAILED,
        )
    return handle.cgroup.join_prefix()


def with_sandbox_env(inner: list[str], extra: Mapping[str, str]) -> list[str]:
    """``inner`` with ``extra`` set inside its pinned ``env -i --`` (or a new ``env``)."""
    items = [f"{k}={v}" for k, v in extra.items()]
    if inner[1:3] == ["-i", "--"] and inner[0].endswith("/env"):
        return [*inner[:3], *items, *inner[3:]]
    return ["/usr/bin/env", *items, *inner]


async def spawn(
    handle: SandboxHandle,
    view: FsView,
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    **kwargs: Any,
) -> asyncio.subprocess.Process:
    """Start ``command`` in the agent's sandbox; refuses a closed handle."""
    if handle.closed or handle.netns.fd < 0:
        raise SandboxError("the sandbox is torn down", code=SPAWN_FAILED)
    resolv = write_resolv_conf(handle)
    environment = sandbox_environment(handle, env or {})
    binds = etc_binds(handle, view, environment["HOME"])
    fd = handle.netns.fd
    argv = [
        *_join_cgroup(handle),
        "nsenter",
        f"--net=/proc/self/fd/{fd}",
        "--",
        *gate_prefix(),
        *bwrap_argv(view, command, resolv, cwd or view.workspace, binds),
    ]
    try:
        return await asyncio.create_subprocess_exec(
            *argv, env=environment, pass_fds=(fd,), **kwargs
        )
    except OSError as exc:
        raise SandboxError(
            f"could not start the sandboxed process: {exc}", code=SPAWN_FAILED
        ) from exc
