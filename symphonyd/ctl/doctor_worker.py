"""``symphonyctl doctor`` on a worker host (docs/design/1100-worker-hosts.md).

A worker runs ``symphony-worker.target``: the launcher and its audit writer, their sockets
for the control host's link, and sshd with the package's drop-in. It has no tracker,
dispatcher or dashboard and no tracker credential, so the control host's checks of those
would only fail there. The role is found from systemd (the worker target enabled or
active) or, without systemd as PID 1, from the launcher's link socket; ``--role`` says it
outright.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

from symphonyd.core.sockets import (
    AUDIT_LAUNCHER,
    LAUNCHER_DISPATCHER,
    LAUNCHER_LINK,
    WORKER_SOCKETS,
    WORKER_TARGET_UNIT,
    WORKER_TRACKER_SOCKET,
    SocketSpec,
    service_unit,
)
from symphonyd.ctl.doctor_base import Check, Context, fail, ok, run_command, systemd_is_pid1, warn

# What a worker serves: the link's two sockets, and the launcher's and audit writer's own.
SPECS: tuple[SocketSpec, ...] = (*WORKER_SOCKETS, LAUNCHER_DISPATCHER, AUDIT_LAUNCHER)
UNITS = (WORKER_TARGET_UNIT, service_unit("audit"), service_unit("launcher"))
AUTHORIZED_KEYS = Path("/etc/symphony/workers/authorized_keys")
SSHD_DROPIN = Path("/etc/ssh/sshd_config.d/symphony-link.conf")
ENROL_FIX = "docs/install.md, 'Worker hosts': enrol the control host's key"


def is_worker(ctx: Context, role: str) -> bool:
    if role != "auto":
        return role == "worker"
    if systemd_is_pid1():
        for verb, want in (("is-enabled", "enabled"), ("is-active", "active")):
            out = run_command(["systemctl", verb, WORKER_TARGET_UNIT])
            if out is not None and out.stdout.strip() == want:
                return True
        return False
    return ctx.host is not None and (Path(ctx.host.runtime_dir) / LAUNCHER_LINK.name).exists()


def check_enrolment(ctx: Context) -> Iterator[Check]:
    """The control host's key, in root's file that the sshd drop-in reads, and the drop-in."""
    if not SSHD_DROPIN.exists():
        yield fail("link-sshd", f"{SSHD_DROPIN} is missing", "reinstall the symphonyd package")
    else:
        yield ok("link-sshd", f"{SSHD_DROPIN} forces the link bridge for symphony-link")
    try:
        st = AUTHORIZED_KEYS.stat()
        keys = [line for line in AUTHORIZED_KEYS.read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]  # fmt: skip
    except OSError as exc:
        yield fail("link-key", f"{AUTHORIZED_KEYS}: {exc.strerror or exc}", ENROL_FIX)
        return
    if st.st_uid != 0 or stat.S_IMODE(st.st_mode) & 0o022:
        yield fail(
            "link-key",
            f"{AUTHORIZED_KEYS} must be root's and writable by nobody else "
            f"(uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o})",
            f"chown root:root {AUTHORIZED_KEYS} && chmod 0644 {AUTHORIZED_KEYS}",
        )
    elif not keys:
        yield fail("link-key", f"{AUTHORIZED_KEYS} holds no key", ENROL_FIX)
    elif not all(line.startswith("restrict,port-forwarding") for line in keys):
        yield warn(
            "link-key",
            f"{AUTHORIZED_KEYS}: a key line does not start with restrict,port-forwarding "
            "(without it the tracker forward is refused and agents get no tracker tools)",
            ENROL_FIX,
        )
    else:
        yield ok("link-key", f"{len(keys)} control host key(s) enrolled in {AUTHORIZED_KEYS}")


def check_link_forward(ctx: Context) -> Iterator[Check]:
    """The tracker socket the control host's link forwards here (design 1100)."""
    if ctx.host is None:
        return
    path = Path(ctx.host.runtime_dir) / WORKER_TRACKER_SOCKET
    try:
        mode = path.lstat().st_mode
    except OSError:
        yield warn(
            "link",
            f"no control host is connected: {path} (its link's tracker forward) is absent",
            "on the control host: symphonyctl hosts; systemctl status symphony-link",
        )
        return
    if not stat.S_ISSOCK(mode):
        yield fail("link", f"{path} is not a socket", f"remove {path}")
    else:
        yield ok("link", f"a control host's link is connected ({path})")
