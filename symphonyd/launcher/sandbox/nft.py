"""The host-side firewall: one ``inet symphonyd`` table, changed only in atomic transactions.

Traffic arriving from any agent interface (``symv*``) is dropped unless its
(interface, destination address, protocol, port) tuple is in ``agent_in``, which holds exactly
the agent's own resolver (udp+tcp 53) and proxy on its own host-side address. Nothing from an
agent interface is forwarded, except tuples in ``direct_v4`` (the optional non-HTTP allowlist,
filled from resolver answers, with a timeout). Keying every element by interface name means
agent A's packets can never match agent B's elements, and adding or removing an agent is one
element transaction that cannot leave a half-built chain.

Transparent interception (docs/design/0867): a TCP connection from an agent interface to an
allowed port anywhere is redirected, before routing, to that agent's interception listener on
its own host-side address (``intercept`` maps interface . port to the listener's port). Its
own resolver and proxy, and ``direct_v4`` tuples, are never redirected. An agent without
entries in the map (``block`` mode, interception off) is not redirected and meets the drop.

The table is rebuilt from scratch when the launcher starts (``reconcile``): ``add table;
delete table; <table>`` in one transaction, so leftovers from a crash disappear and there is
no instant without the drop rules once they exist.
"""

from __future__ import annotations

import ipaddress
import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import nftables

from symphonyd.launcher.sandbox.addresses import IFNAME_PREFIX, Lease
from symphonyd.launcher.sandbox.errors import NFT_FAILED, SandboxError

TABLE = "symphonyd"
FAMILY = "inet"
DNS_PORT = 53
DROP_RULES = ("agent_input_drop", "agent_forward_drop", "agent_forward_in_drop")


def ruleset() -> str:
    wild = f'"{IFNAME_PREFIX}*"'
    key = "iifname . ip daddr . meta l4proto . th dport"
    return f"""
table {FAMILY} {TABLE} {{
  set agent_in {{
    type ifname . ipv4_addr . inet_proto . inet_service
  }}
  set direct_v4 {{
    type ifname . ipv4_addr . inet_proto . inet_service
    flags timeout
  }}
  map intercept {{
    type ifname . inet_service : inet_service
  }}
  chain prerouting {{
    type nat hook prerouting priority dstnat - 10; policy accept;
    iifname {wild} meta l4proto tcp {key} @agent_in accept
    iifname {wild} meta l4proto tcp {key} @direct_v4 accept
    iifname {wild} meta l4proto tcp redirect to : iifname . tcp dport map @intercept
  }}
  chain input {{
    type filter hook input priority filter - 10; policy accept;
    iifname {wild} meta l4proto {{ tcp, udp }} {key} @agent_in accept
    iifname {wild} counter drop comment "agent_input_drop"
  }}
  chain forward {{
    type filter hook forward priority filter - 10; policy accept;
    iifname {wild} meta l4proto {{ tcp, udp }} {key} @direct_v4 accept
    iifname {wild} counter drop comment "agent_forward_drop"
    oifname {wild} ct state established,related accept
    oifname {wild} counter drop comment "agent_forward_in_drop"
  }}
}}
"""


@dataclass(frozen=True, slots=True)
class Intercept:
    """Redirect an agent's TCP connections to ``ports`` to its listener on ``listener_port``."""

    listener_port: int
    ports: frozenset[int]


@dataclass(frozen=True, slots=True)
class DirectElement:
    address: ipaddress.IPv4Address
    port: int
    proto: str = "tcp"
    timeout_s: int = 300


class Firewall:
    """Thin, serialised access to libnftables; every method is one atomic transaction."""

    def __init__(self) -> None:
        self._nft = nftables.Nftables()
        self._nft.set_json_output(True)
        self._lock = threading.Lock()

    def _run(self, text: str, what: str) -> str:
        with self._lock:
            try:
                rc, out, err = self._nft.cmd(text)
            except Exception as exc:
                raise SandboxError(f"nftables {what} failed: {exc}", code=NFT_FAILED) from exc
        if rc != 0:
            detail = (err or "").strip().splitlines()[:3]
            raise SandboxError(f"nftables {what} failed: {' / '.join(detail)}", code=NFT_FAILED)
        return str(out)

    def reconcile(self) -> None:
        """Replace the whole table, dropping whatever a previous launcher left."""
        self._run(f"add table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n{ruleset()}", "load")

    def remove_table(self) -> None:
        self._run(f"add table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}", "remove")

    def table_exists(self) -> bool:
        with self._lock:
            rc, _, _ = self._nft.cmd(f"list table {FAMILY} {TABLE}")
        return bool(rc == 0)

    @staticmethod
    def _agent_elements(lease: Lease, proxy_port: int, intercept: Intercept | None) -> str:
        ifn, ip = lease.host_ifname, lease.host_ip
        items = [
            f'"{ifn}" . {ip} . udp . {DNS_PORT}',
            f'"{ifn}" . {ip} . tcp . {DNS_PORT}',
            f'"{ifn}" . {ip} . tcp . {proxy_port}',
        ]
        if intercept is not None:
            items.append(f'"{ifn}" . {ip} . tcp . {intercept.listener_port}')
        return ", ".join(items)

    def add_agent(self, lease: Lease, proxy_port: int, intercept: Intercept | None = None) -> None:
        """Open the agent's resolver and proxy; with ``intercept``, redirect its connections
        to those ports (anywhere) to the interception listener, in the same transaction."""
        elements = self._agent_elements(lease, proxy_port, intercept)
        text = f"add element {FAMILY} {TABLE} agent_in {{ {elements} }}\n"
        if intercept is not None and intercept.ports:
            redirects = ", ".join(
                f'"{lease.host_ifname}" . {port} : {intercept.listener_port}'
                for port in sorted(intercept.ports)
            )
            text += f"add element {FAMILY} {TABLE} intercept {{ {redirects} }}\n"
        self._run(text, "add agent")

    def remove_agent(self, lease: Lease, proxy_port: int) -> None:
        """Drop the agent's elements; tolerant of ones already gone (teardown is idempotent)."""
        ifn = lease.host_ifname
        text = ""
        mine = [e for e in self._elements("agent_in") if e[0] == ifn]
        if mine:
            listed = ", ".join(f'"{i}" . {a} . {p} . {port}' for i, a, p, port in mine)
            text = f"delete element {FAMILY} {TABLE} agent_in {{ {listed} }}\n"
        redirects = [key for key, _ in self._map_elements("intercept") if key[0] == ifn]
        if redirects:
            listed = ", ".join(f'"{i}" . {port}' for i, port in redirects)
            text += f"delete element {FAMILY} {TABLE} intercept {{ {listed} }}\n"
        stale = [e for e in self._elements("direct_v4") if e[0] == ifn]
        if stale:
            direct = ", ".join(f'"{i}" . {a} . {p} . {port}' for i, a, p, port in stale)
            text += f"delete element {FAMILY} {TABLE} direct_v4 {{ {direct} }}\n"
        if text:
            self._run(text, "remove agent")

    def add_direct(self, lease: Lease, elements: Iterable[DirectElement]) -> None:
        items = ", ".join(
            f'"{lease.host_ifname}" . {e.address} . {e.proto} . {e.port} timeout {e.timeout_s}s'
            for e in elements
        )
        if items:
            self._run(f"add element {FAMILY} {TABLE} direct_v4 {{ {items} }}", "add direct")

    def _elements(self, set_name: str) -> list[list[Any]]:
        out = self._run(f"list set {FAMILY} {TABLE} {set_name}", "list")
        found: list[list[Any]] = []
        for item in json.loads(out).get("nftables", []):
            for elem in item.get("set", {}).get("elem", []) or []:
                value = elem.get("elem", {}).get("val", elem) if isinstance(elem, dict) else elem
                concat = value.get("concat") if isinstance(value, dict) else None
                if concat:
                    found.append(list(concat))
        return found

    def _map_elements(self, map_name: str) -> list[tuple[list[Any], Any]]:
        out = self._run(f"list map {FAMILY} {TABLE} {map_name}", "list")
        found: list[tuple[list[Any], Any]] = []
        for item in json.loads(out).get("nftables", []):
            for elem in item.get("map", {}).get("elem", []) or []:
                if isinstance(elem, list) and len(elem) == 2 and isinstance(elem[0], dict):
                    concat = elem[0].get("concat")
                    if concat:
                        found.append((list(concat), elem[1]))
        return found

    def redirects(self) -> list[tuple[list[Any], Any]]:
        """The ``intercept`` map: ([interface, port], listener port) pairs (for tests)."""
        return self._map_elements("intercept")

    def elements(self, set_name: str) -> list[list[Any]]:
        return self._elements(set_name)

    def verify(self) -> None:
        """The drop rules are in place (someone may have flushed a chain since the load)."""
        counters = self._drop_counters()
        for comment in DROP_RULES:
            if comment not in counters:
                raise SandboxError(f"no rule {comment!r} in table {TABLE}", code=NFT_FAILED)

    def counter(self, comment: str) -> int:
        """Packets counted by the drop rule with this comment (for tests and metrics)."""
        counters = self._drop_counters()
        if comment not in counters:
            raise SandboxError(f"no rule {comment!r} in table {TABLE}", code=NFT_FAILED)
        return counters[comment]

    def _drop_counters(self) -> dict[str, int]:
        # The two filter chains only: listing the table would also list every agent's set and
        # map elements, which made each agent's setup cost grow with the number of agents.
        found: dict[str, int] = {}
        for chain in ("input", "forward"):
            out = self._run(f"list chain {FAMILY} {TABLE} {chain}", "list")
            for item in json.loads(out).get("nftables", []):
                rule = item.get("rule")
                if not rule or "comment" not in rule:
                    continue
                for expr in rule.get("expr", []):
                    if "counter" in expr:
                        found[str(rule["comment"])] = int(expr["counter"]["packets"])
        return found
