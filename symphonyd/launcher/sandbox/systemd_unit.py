"""The same sandbox as a transient systemd unit, for hosts where systemd is PID 1.

:func:`unit_properties` renders an :class:`FsView`, the agent's namespace path and the
resource limits as ``systemd-run --property=`` values; :func:`systemd_run_argv` wraps them in
a full command line. systemd then builds the mount namespace itself (so the launcher needs no
bubblewrap there) and joins the namespace the launcher holds through
``NetworkNamespacePath=/proc/<launcher pid>/fd/<fd>``. Directories that are ancestors of the
workspace cannot be ``InaccessiblePaths=`` (the workspace bind would have no mount point), so
they become an empty read-only ``TemporaryFileSystem=`` instead, like bubblewrap's ``--tmpfs``.
The real-systemd check runs in the packaging suite's nspawn container.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from symphonyd.launcher.sandbox.errors import SPAWN_FAILED, SandboxError
from symphonyd.launcher.sandbox.fs_view import FsView

_UNIT_NAME = re.compile(r"[A-Za-z0-9:_.\\-]{1,200}")
_SAFE_VALUE = re.compile(r"[^\x00-\x1f\x7f]*")


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
) -> list[str]:
    """Unit properties; ``reachable`` (the agent's host-side address) becomes a cgroup
    ``IPAddressAllow=``, a second, independent layer under the nftables rules."""
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
        "ProtectProc=invisible",
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
        f"WorkingDirectory={_path(ws)}",
        f"MemoryMax={memory_max}",
        f"TasksMax={tasks_max}",
        f"CPUQuota={cpu_quota}",
    ]
    for address in reachable:
        props.append(f"IPAddressAllow={ipaddress.ip_address(address)}")
    ancestors = [d for d in view.hidden_dirs if d in ws.parents]
    inaccessible = [d for d in view.hidden_dirs if d not in ws.parents] + list(view.hidden_files)
    if inaccessible:
        props.append("InaccessiblePaths=" + " ".join(f"-{_path(p)}" for p in inaccessible))
    for d in [*ancestors, view.workspace_root]:
        props.append(f"TemporaryFileSystem={_path(d)}:ro")
    props.append(f"BindPaths={_path(ws)}")
    if view.readonly:
        props.append("BindReadOnlyPaths=" + " ".join(_path(p) for p in view.readonly))
    props.append(f"BindReadOnlyPaths={_path(resolv_conf)}:/etc/resolv.conf")
    for key, value in sorted(environment.items()):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) or not _SAFE_VALUE.fullmatch(value):
            raise SandboxError(f"environment entry {key!r} not usable in a unit", code=SPAWN_FAILED)
        props.append(f"Environment={key}={value}")
    return props


def systemd_run_argv(unit: str, properties: Sequence[str], command: Sequence[str]) -> list[str]:
    if not _UNIT_NAME.fullmatch(unit):
        raise SandboxError(f"bad unit name {unit!r}", code=SPAWN_FAILED)
    argv = [
        "systemd-run",
        f"--unit={unit}",
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
