"""Per-agent /30 links carved from one configurable prefix.

Each agent gets a /30: ``.1`` is the host side (where its resolver and proxy listen), ``.2``
the agent side. The default prefix is 100.64.0.0/16 (shared address space, RFC 6598): it is
not routed on the internet, rarely used on a LAN, and holds 16384 agents. The index of the
/30 also names the host-side interface (``symv<index>``), so a leftover interface can be
matched to nothing but this pool.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from symphonyd.launcher.sandbox.errors import ADDRESS_FAILED, SandboxError

DEFAULT_PREFIX = "100.64.0.0/16"
IFNAME_PREFIX = "symv"


@dataclass(frozen=True, slots=True)
class Lease:
    index: int
    network: ipaddress.IPv4Network
    host_ip: ipaddress.IPv4Address
    agent_ip: ipaddress.IPv4Address

    @property
    def host_ifname(self) -> str:
        return f"{IFNAME_PREFIX}{self.index}"


class AddressPool:
    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        try:
            network = ipaddress.ip_network(prefix, strict=True)
        except ValueError as exc:
            raise SandboxError(
                f"address pool {prefix!r} is not a network", code=ADDRESS_FAILED
            ) from exc
        if not isinstance(network, ipaddress.IPv4Network) or network.prefixlen > 30:
            raise SandboxError(
                "address pool must be an IPv4 prefix of /30 or wider", code=ADDRESS_FAILED
            )
        self.network = network
        self.size = 2 ** (30 - network.prefixlen)
        self._used: dict[int, str] = {}

    def allocate(self, owner: str) -> Lease:
        for index in range(self.size):
            if index not in self._used:
                self._used[index] = owner
                return self.lease(index)
        raise SandboxError("no free agent address in the pool", code=ADDRESS_FAILED)

    def lease(self, index: int) -> Lease:
        base = int(self.network.network_address) + 4 * index
        return Lease(
            index,
            ipaddress.IPv4Network((base, 30)),
            ipaddress.IPv4Address(base + 1),
            ipaddress.IPv4Address(base + 2),
        )

    def release(self, lease: Lease) -> None:
        self._used.pop(lease.index, None)

    def in_use(self) -> int:
        return len(self._used)
