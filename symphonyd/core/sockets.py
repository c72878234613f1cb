"""The IPC sockets of the suite: one table read by the unit tests and ``symphonyctl doctor``.

docs/design/0003-units-and-sockets.md explains the scheme: systemd creates every socket in
the runtime directory with mode 0600, owned by the one user allowed to connect.
"""

from __future__ import annotations

from dataclasses import dataclass

SOCKET_MODE = 0o600

# Static system users created by debian/symphonyd.sysusers.
SYSTEM_USERS = (
    "symphony-audit",
    "symphony-dispatch",
    "symphony-tracker",
    "symphony-dashboard",
    "symphony-agent",
)


@dataclass(frozen=True, slots=True)
class SocketSpec:
    name: str  # file name under the runtime directory
    server: str  # daemon serving it (its unit is symphony-<server>.service)
    owner: str  # the one client user allowed to connect (SocketUser=)
    fdname: str  # FileDescriptorName= the server tells its clients apart by

    @property
    def unit(self) -> str:
        return f"symphony-{self.name.removesuffix('.sock')}.socket"


SOCKETS: tuple[SocketSpec, ...] = (
    SocketSpec("audit-dispatcher.sock", "audit", "symphony-dispatch", "dispatcher"),
    SocketSpec("audit-tracker.sock", "audit", "symphony-tracker", "tracker"),
    SocketSpec("audit-launcher.sock", "audit", "root", "launcher"),
    SocketSpec("audit-dashboard.sock", "audit", "symphony-dashboard", "dashboard"),
    SocketSpec("tracker-dispatcher.sock", "tracker", "symphony-dispatch", "dispatcher"),
    SocketSpec("tracker-launcher.sock", "tracker", "root", "launcher"),
    SocketSpec("launcher-dispatcher.sock", "launcher", "symphony-dispatch", "dispatcher"),
    SocketSpec("dispatcher-ctl.sock", "dispatcher", "root", "ctl"),
    SocketSpec("dispatcher-dashboard.sock", "dispatcher", "symphony-dashboard", "dashboard"),
)

SERVICES = ("audit", "tracker", "launcher", "dispatcher", "dashboard")
TARGET_UNIT = "symphony.target"


def service_unit(daemon: str) -> str:
    return f"symphony-{daemon}.service"
