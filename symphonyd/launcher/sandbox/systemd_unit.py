"""The same sandbox as a transient systemd unit, for hosts where systemd is PID 1.

:func:`unit_properties` renders an :class:`FsView`, the agent's namespace path and the
resource limits as ``systemd-run --property=`` values; :func:`systemd_run_argv` wraps them in
a full command line. systemd then builds the mount namespace itself (so the launcher needs no
bubblewrap there) and joins the namespace the launcher holds through
``NetworkNamespacePath=/proc/<launcher pid>/fd/<fd>``. Directories that are ancestors of the
workspace cannot be ``InaccessiblePaths=`` (the workspace bind would have no mount point), so
they become an empty read-only ``TemporaryFileSystem=`` instead, like bubblewrap's ``--tmpfs``.
The escape suite runs through real units in an nspawn container
(tests/e2e/test_sandbox_systemd.py, docs/design/0807).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from symphonyd.core.config_extensions import ResourcesConfig
from symphonyd.launcher.sandbox import bwrap
from symphonyd.launcher.sandbox.agent_etc import DEFAULT_HOME, etc_binds
from symphonyd.launcher.sandbox.errors import SPAWN_FAILED, SandboxError
from symphonyd.launcher.sandbox.fs_view import FsView
from symphonyd.launcher.sandbox.manager import SandboxHandle

_UNIT_NAME = re.compile(r"[A-Za-z0-9:_.\\-]{1,200}")
_SAFE_VALUE = re.compile(r"[^\x00-\x1f\x7f]*")
# A unit description is shown by systemctl and PID 1's "Started ..." lines; it may hold
# tracker text (an issue identifier), so only these characters pass: no "%" (a unit-file
# specifier), no "$", quotes, backslashes, control or non-ASCII characters.
_DESCRIPTION_UNSAFE = re.compile(r"[^A-Za-z0-9 _.:#/@+,=-]")
MAX_DESCRIPTION = 120


def unit_description(text: str) -> str:
    """``text`` made safe for ``Description=``: unusual characters become ``_``, capped."""
    return _DESCRIPTION_UNSAFE.sub("_", text)[:MAX_DESCRIPTION]


STOP_TIMEOUT = 30.0  # seconds; systemd itself escalates to SIGKILL after TimeoutStopSec


def _path(p: Path) -> str:
    text = str(p)
    # systemd splits these lists on whitespace and treats leading -, +, ! specially.
    if (
        not text.startswith("/")
        or any(c.isspace() for c in text)
        or not _SAFE_VALUE.fullmatch(text)
    ):
        raise SandboxError(f"path not usable in a unit property: {text!r}", code=SPAWN_FAILED)
    return text


# systemd mounts the nodes behind InaccessiblePaths= from here while it builds the namespace,
# so a hidden directory on the way to it (/run, from fs_view.ALWAYS_HIDDEN) is hidden entry by
# entry around it instead. It holds nothing but those inert nodes.
INACCESSIBLE_NODES = Path("/run/systemd/inaccessible")


def _hide_around(directory: Path, keep: Path = INACCESSIBLE_NODES) -> list[Path]:
    """Every entry of ``directory`` except the way to ``keep``; symlinks are skipped (what
    they point to is either hidden on its own or outside)."""
    hidden: list[Path] = []
    try:
        children = sorted(directory.iterdir())
    except OSError as exc:
        raise SandboxError(f"cannot list {directory}: {exc.strerror}", code=SPAWN_FAILED) from None
    for child in children:
        if child == keep or child.is_symlink():
            continue
        hidden.extend(_hide_around(child, keep) if child in keep.parents else [child])
    return hidden


def unit_properties(
    view: FsView,
    *,
    netns_path: str,
    resolv_conf: Path,
    memory_max: str,
    tasks_max: int,
    cpu_quota: str,
    environment: Mapping[str, str],
    reachable: Sequence[str] = (),
    cwd: Path | None = None,
    unit_slice: str | None = None,
    binds: Sequence[tuple[Path, Path]] = (),
) -> list[str]:
    """Unit properties; ``binds`` are the sandbox's own /etc files (agent_etc.py);
    ``reachable`` (the agent's host-side address) becomes a cgroup ``IPAddressAllow=``, a
    second, independent layer under the nftables rules.
    ``unit_slice``: the launcher instance's slice (instance.slice_name), which is how a
    restarted launcher finds and stops what its crashed predecessor left, and only that."""
    ws = view.workspace
    props = [
        f"NetworkNamespacePath={_path(Path(netns_path))}",
        f"User={view.uid}",
        f"Group={view.gid}",
        "ProtectSystem=strict",
        f"ReadWritePaths={_path(ws)}",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "PrivateIPC=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "AmbientCapabilities=",
        "RestrictSUIDSGID=yes",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "LockPersonality=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        # Agents share one uid and there is no PID namespace here (PrivatePIDs= needs systemd
        # 257): without a user namespace per unit, another agent's /proc/<pid>/cwd, root and
        # environ are readable (same uid) and lead into its workspace. Across sibling user
        # namespaces the kernel's ptrace check fails, and "ptraceable" then hides them too.
        "PrivateUsers=yes",
        "ProtectProc=ptraceable",
        "SystemCallArchitectures=native",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_NETLINK",
        "RemoveIPC=yes",
        "PrivateMounts=yes",
        "UMask=0027",
        # Deny-list only: agents run arbitrary build tools, so no allow-list of syscalls.
        "SystemCallFilter=~@clock @cpu-emulation @debug @module @mount @obsolete @raw-io "
        "@reboot @swap",
        "SystemCallErrorNumber=EPERM",
        "IPAddressDeny=any",
        "KillMode=control-group",
        f"WorkingDirectory={_path(cwd or ws)}",
        f"MemoryMax={memory_max}",
        f"TasksMax={tasks_max}",
        f"CPUQuota={cpu_quota}",
    ]
    for address in reachable:
        props.append(f"IPAddressAllow={ipaddress.ip_address(address)}")
    if unit_slice is not None:
        if not _UNIT_NAME.fullmatch(unit_slice) or not unit_slice.endswith(".slice"):
            raise SandboxError(f"bad slice name {unit_slice!r}", code=SPAWN_FAILED)
        props.append(f"Slice={unit_slice}")
    ancestors = [d for d in view.hidden_dirs if d in ws.parents]
    inaccessible: list[Path] = []
    for d in view.hidden_dirs:
        if d in INACCESSIBLE_NODES.parents:
            inaccessible.extend(_hide_around(d))
        elif d not in ws.parents:
            inaccessible.append(d)
    inaccessible.extend(view.hidden_files)
    if inaccessible:
        props.append("InaccessiblePaths=" + " ".join(f"-{_path(p)}" for p in inaccessible))
    for d in [*ancestors, view.workspace_root]:
        props.append(f"TemporaryFileSystem={_path(d)}:ro")
    # PrivateDevices= bind-mounts the host's /dev/shm into the private /dev: shared with the
    # host and every other agent. A private one, size-capped like bubblewrap's.
    props.append(
        f"TemporaryFileSystem=/dev/shm:rw,nosuid,nodev,noexec,mode=1777,size={view.shm_bytes}"
    )
    props.append(f"BindPaths={_path(ws)}")
    if view.readonly:
        props.append("BindReadOnlyPaths=" + " ".join(_path(p) for p in view.readonly))
    props.append(f"BindReadOnlyPaths={_path(resolv_conf)}:/etc/resolv.conf")
    for source, target in binds:
        props.append(f"BindReadOnlyPaths={_path(source)}:{_path(target)}")
    for key, value in sorted(environment.items()):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) or not _SAFE_VALUE.fullmatch(value):
            raise SandboxError(f"environment entry {key!r} not usable in a unit", code=SPAWN_FAILED)
        props.append(f"Environment={key}={value}")
    return props


def systemd_run_argv(
    unit: str,
    properties: Sequence[str],
    command: Sequence[str],
    *,
    description: str | None = None,
) -> list[str]:
    if not _UNIT_NAME.fullmatch(unit):
        raise SandboxError(f"bad unit name {unit!r}", code=SPAWN_FAILED)
    argv = [
        "systemd-run",
        f"--unit={unit}",
        # Without one, systemd-run describes the unit by its whole command line.
        f"--description={unit_description(description or unit)}",
        "--service-type=exec",
        "--collect",
        "--quiet",
        "--pipe",
    ]
    argv += [f"--property={p}" for p in properties]
    # PID 1 substitutes $VAR and ${VAR} in a unit's command line (systemd < 254 has no way
    # to turn that off); "$$" is its escape for a literal "$". Without it a hook script's
    # ${VAR}, or an issue title in an ISSUE_* value, would be rewritten before bash saw it.
    return [*argv, "--", *(arg.replace("$", "$$") for arg in command)]


def unit_argv(
    handle: SandboxHandle,
    view: FsView,
    command: Sequence[str],
    *,
    unit: str,
    resources: ResourcesConfig,
    env: Mapping[str, str],
    cwd: Path | None = None,
    unit_slice: str | None = None,
    description: str | None = None,
) -> list[str]:
    """The ``systemd-run`` command line for ``command`` in this sandbox, environment as given."""
    props = unit_properties(
        view,
        netns_path=handle.netns_path,
        resolv_conf=bwrap.write_resolv_conf(handle),
        memory_max=resources.memory_max,
        tasks_max=resources.tasks_max,
        cpu_quota=resources.cpu_quota,
        environment=env,
        reachable=[str(handle.lease.host_ip)],
        cwd=cwd,
        unit_slice=unit_slice,
        binds=etc_binds(handle, view, env.get("HOME", DEFAULT_HOME)),
    )
    return systemd_run_argv(unit, props, command, description=description)


async def spawn(
    handle: SandboxHandle,
    view: FsView,
    command: Sequence[str],
    *,
    unit: str,
    resources: ResourcesConfig,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    unit_slice: str | None = None,
    description: str | None = None,
    **kwargs: Any,
) -> asyncio.subprocess.Process:
    """Start ``command`` as transient unit ``unit`` in the agent's sandbox; the returned
    process is ``systemd-run --pipe``, which relays the unit's stdio and exits with it.

    The environment is the bubblewrap path's (:func:`bwrap.sandbox_environment`), so both
    enforcers hand the agent exactly the same variables."""
    if handle.closed or handle.netns.fd < 0:
        raise SandboxError("the sandbox is torn down", code=SPAWN_FAILED)
    environment = bwrap.sandbox_environment(handle, env or {})
    argv = unit_argv(
        handle,
        view,
        command,
        unit=unit,
        resources=resources,
        env=environment,
        cwd=cwd,
        unit_slice=unit_slice,
        description=description,
    )
    try:
        return await asyncio.create_subprocess_exec(*argv, env={"PATH": bwrap.BASE_PATH}, **kwargs)
    except OSError as exc:
        raise SandboxError(f"could not start systemd-run: {exc}", code=SPAWN_FAILED) from exc


async def _systemctl(*args: str) -> str:
    """``systemctl`` with a bounded wait; its stdout ("" when it timed out)."""
    proc = await asyncio.create_subprocess_exec(
        "systemctl",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={"PATH": bwrap.BASE_PATH, "SYSTEMD_PAGER": "", "LC_ALL": "C"},
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), STOP_TIMEOUT)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return ""
    return out.decode(errors="replace")


async def stop(unit: str) -> None:
    """Stop the unit and everything in its cgroup (``KillMode=control-group``)."""
    await _systemctl("stop", f"{unit}.service")


async def units_in_slice(unit_slice: str) -> list[str]:
    """The loaded service units whose slice is ``unit_slice``."""
    listed = await _systemctl(
        "list-units", "--all", "--plain", "--no-legend", "--full", "--type=service"
    )
    # The first word ending in .service (a failed unit's line starts with a bullet).
    names = [
        next(w for w in line.split() if w.endswith(".service"))
        for line in listed.splitlines()
        if any(w.endswith(".service") for w in line.split())
    ]
    if not names:
        return []
    shown = await _systemctl("show", "--property=Id", "--property=Slice", "--", *names)
    found: list[str] = []
    for block in shown.split("\n\n"):
        fields = dict(line.partition("=")[::2] for line in block.splitlines() if "=" in line)
        if fields.get("Slice") == unit_slice and fields.get("Id"):
            found.append(fields["Id"])
    return sorted(found)


async def stop_slice(unit_slice: str) -> list[str]:
    """Kill and stop every unit in ``unit_slice`` (a crashed launcher's agents and hooks,
    whatever they did to their environment); the units that were there.

    SIGKILL first: a leftover agent has no launcher to answer to, and waiting out an agent
    that ignores SIGTERM would delay the launcher's start by the stop timeout. Stopping the
    slice then takes anything the listing missed (every unit in it requires it)."""
    units = await units_in_slice(unit_slice)
    if units:
        await _systemctl("kill", "--signal=SIGKILL", "--kill-who=all", "--", *units)
    await _systemctl("stop", "--", unit_slice)
    return units
