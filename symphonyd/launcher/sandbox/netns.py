"""An agent's network namespace, held by a file descriptor of the launcher.

No ``/run/netns`` bind mount and no holder process: a dedicated thread ``unshare``s a new
network namespace (CLONE_NEWNET only changes the calling thread), opens
``/proc/thread-self/ns/net`` and configures it from inside with its own netlink socket. The
launcher keeps that fd; the namespace lives exactly as long as the fd or a process inside it.
If the launcher crashes, the kernel drops the namespace and with it both ends of the veth
pair, so a crash cannot leave a reachable interface behind. Child processes enter the
namespace with ``setns`` on the inherited fd, systemd through ``NetworkNamespacePath=`` on
``/proc/<launcher pid>/fd/<fd>``.
"""

from __future__ import annotations

import ctypes
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute

from symphonyd.launcher.sandbox.addresses import IFNAME_PREFIX, Lease
from symphonyd.launcher.sandbox.errors import NETNS_FAILED, SandboxError

CLONE_NEWNET = 0x40000000
AGENT_IFNAME = "eth0"
_HOST_IFNAME = re.compile(rf"{IFNAME_PREFIX}[0-9]+")
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(slots=True)
class AgentNetns:
    fd: int
    lease: Lease

    @property
    def path(self) -> str:
        """A path naming the namespace for nsenter/systemd while the launcher runs."""
        return f"/proc/{os.getpid()}/fd/{self.fd}"

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        delete_host_link(self.lease.host_ifname)


def setns_net(fd: int) -> None:
    """Move the calling thread (or a freshly forked child) into the namespace behind ``fd``."""
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _in_thread(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on a thread that dies afterwards, so a namespace switch cannot leak."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised in the caller
            box["error"] = exc

    thread = threading.Thread(target=run, name="netns")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _write_sysctl(path: str, value: str) -> None:
    with open(path, "w", encoding="ascii") as f:
        f.write(value)


def create_netns(lease: Lease) -> AgentNetns:
    """A configured namespace: ``lo`` up, IPv6 off, ``eth0`` = agent end of the /30."""

    def build() -> int:
        host_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            with IPRoute() as host:
                if _libc.unshare(CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, os.strerror(err))
                fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
                try:
                    _configure(host, host_fd, lease)
                except BaseException:
                    os.close(fd)
                    raise
                return fd
        finally:
            os.close(host_fd)

    try:
        fd = _in_thread(build)
        try:
            # /proc/sys/net follows the calling thread's namespace: this one is the host's.
            _write_sysctl(f"/proc/sys/net/ipv6/conf/{lease.host_ifname}/disable_ipv6", "1")
            with IPRoute() as host:
                (peer,) = host.link_lookup(ifname=lease.host_ifname)
                host.link("set", index=peer, state="up")
        except BaseException:
            os.close(fd)
            raise
    except Exception as exc:
        delete_host_link(lease.host_ifname)
        raise SandboxError(
            f"could not create the agent network namespace: {exc}", code=NETNS_FAILED
        ) from exc
    return AgentNetns(int(fd), lease)


def _configure(host: IPRoute, host_fd: int, lease: Lease) -> None:
    # IPv6 off before any interface exists, so eth0 never gets a link-local v6 address.
    for conf in ("all", "default"):
        _write_sysctl(f"/proc/sys/net/ipv6/conf/{conf}/disable_ipv6", "1")
    with IPRoute() as inner:
        (lo,) = inner.link_lookup(ifname="lo")
        inner.link("set", index=lo, state="up")
        inner.link(
            "add",
            ifname=AGENT_IFNAME,
            kind="veth",
            peer={"ifname": lease.host_ifname, "net_ns_fd": host_fd},
        )
        (eth,) = inner.link_lookup(ifname=AGENT_IFNAME)
        (peer,) = host.link_lookup(ifname=lease.host_ifname)
        host.addr("add", index=peer, address=str(lease.host_ip), prefixlen=30)
        inner.addr("add", index=eth, address=str(lease.agent_ip), prefixlen=30)
        inner.link("set", index=eth, state="up")
        inner.route("add", dst="0.0.0.0/0", gateway=str(lease.host_ip))


def delete_host_link(ifname: str) -> bool:
    """Remove a host-side interface if it is still there; True when one was removed."""
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            return False
        try:
            ipr.link("del", index=found[0])
        except Exception:  # already gone with its namespace
            return False
        return True


def leftover_host_links(keep: set[str]) -> list[str]:
    """Host interfaces named like ours that no live sandbox owns (after a crash)."""
    with IPRoute() as ipr:
        names = [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()]
    return [n for n in names if n and _HOST_IFNAME.fullmatch(n) and n not in keep]
