"""The IPC sockets of the suite: one table for the daemons, symphonyctl and the unit tests.

docs/design/0003-units-and-sockets.md explains the scheme: systemd creates every socket in
the runtime directory with mode 0600, owned by the one user allowed to connect.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SOCKET_MODE = 0o600

# Static system users created by debian/symphonyd.sysusers.
SYSTEM_USERS = (
    "symphony-audit",
    "symphony-dispatch",
    "symphony-tracker",
    "symphony-dashboard",
    "symphony-agent",
    "symphony-webhook",
    "symphony-link",
)


@dataclass(frozen=True, slots=True)
class SocketSpec:
    name: str  # file name under the runtime directory
    server: str  # daemon serving it (its unit is symphony-<server>.service)
    owner: str  # the one client user allowed to connect (SocketUser=)
    fdname: str  # FileDescriptorName= the server tells its clients apart by

    @property
    def stem(self) -> str:
        """The name without ``.sock``: the IPC server's name in logs and refusals."""
        return self.name.removesuffix(".sock")

    @property
    def unit(self) -> str:
        return f"symphony-{self.stem}.socket"

    def path(self, runtime_dir: str | os.PathLike[str]) -> Path:
        """Where the socket is under ``runtime_dir`` (no filesystem access)."""
        return Path(runtime_dir) / self.name


# One name per socket, used by the daemons that serve and dial it and by symphonyctl: no
# socket file name is spelled anywhere else.
AUDIT_DISPATCHER = SocketSpec("audit-dispatcher.sock", "audit", "symphony-dispatch", "dispatcher")
AUDIT_TRACKER = SocketSpec("audit-tracker.sock", "audit", "symphony-tracker", "tracker")
AUDIT_LAUNCHER = SocketSpec("audit-launcher.sock", "audit", "root", "launcher")
AUDIT_DASHBOARD = SocketSpec("audit-dashboard.sock", "audit", "symphony-dashboard", "dashboard")
AUDIT_WEBHOOK = SocketSpec("audit-webhook.sock", "audit", "symphony-webhook", "webhook")
TRACKER_DISPATCHER = SocketSpec(
    "tracker-dispatcher.sock", "tracker", "symphony-dispatch", "dispatcher"
)
TRACKER_LAUNCHER = SocketSpec("tracker-launcher.sock", "tracker", "root", "launcher")
# symphony-webhook's targeted refresh requests (tracker.hint only).
TRACKER_WEBHOOK = SocketSpec("tracker-webhook.sock", "tracker", "symphony-webhook", "webhook")
LAUNCHER_DISPATCHER = SocketSpec(
    "launcher-dispatcher.sock", "launcher", "symphony-dispatch", "dispatcher"
)
DISPATCHER_CTL = SocketSpec("dispatcher-ctl.sock", "dispatcher", "root", "ctl")
DISPATCHER_DASHBOARD = SocketSpec(
    "dispatcher-dashboard.sock", "dispatcher", "symphony-dashboard", "dashboard"
)

# Worker hosts (docs/design/1100-worker-hosts.md): the link daemon's way to the tracker's
# agent tools and to the dispatcher's run bindings, on a control host with workers. Pulled
# in by symphony-link.service (so only where [worker.hosts] are configured).
TRACKER_LINK = SocketSpec("tracker-link.sock", "tracker", "symphony-link", "link")
DISPATCHER_LINK = SocketSpec("dispatcher-link.sock", "dispatcher", "symphony-link", "link")
LINK_SOCKETS = (TRACKER_LINK, DISPATCHER_LINK)

SOCKETS: tuple[SocketSpec, ...] = (
    AUDIT_DISPATCHER,
    AUDIT_TRACKER,
    AUDIT_LAUNCHER,
    AUDIT_DASHBOARD,
    AUDIT_WEBHOOK,
    TRACKER_DISPATCHER,
    TRACKER_LAUNCHER,
    TRACKER_WEBHOOK,
    LAUNCHER_DISPATCHER,
    DISPATCHER_CTL,
    DISPATCHER_DASHBOARD,
)

# A worker host's sockets for the control host's link (docs/design/1100): started by
# symphony-worker.target only, so they are not among the control host's SOCKETS.
AUDIT_LINK = SocketSpec("audit-link.sock", "audit", "symphony-link", "link")
LAUNCHER_LINK = SocketSpec("launcher-link.sock", "launcher", "symphony-link", "link")
WORKER_SOCKETS: tuple[SocketSpec, ...] = (AUDIT_LINK, LAUNCHER_LINK)
# On a worker, sshd creates this (the link's `ssh -R`, as the link user, in the tmpfiles
# directory <runtime>/link): the worker launcher's way to the control host's tracker.
WORKER_TRACKER_SOCKET = "link/tracker.sock"  # relative to the worker's runtime directory
WORKER_TARGET_UNIT = "symphony-worker.target"

SERVICES = ("audit", "tracker", "launcher", "dispatcher", "dashboard")
TARGET_UNIT = "symphony.target"


def service_unit(daemon: str) -> str:
    return f"symphony-{daemon}.service"
