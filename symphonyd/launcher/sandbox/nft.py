"""The host-side firewall: one ``inet symphonyd`` table, changed only in atomic transactions.

Traffic arriving from any agent interface (``symv*``) is dropped unless its
(interface, destination address, protocol, port) tuple is in ``agent_in``, which holds exactly
the agent's own resolver (udp+tcp 53) and proxy on its own host-side address. Nothing from an
agent interface is forwarded, except tuples in ``direct_v4`` (the optional non-HTTP allowlist,
filled from resolver answers, with a timeout). Keying every element by interface name means
agent A's packets can never match agent B's elements, and adding or removing an agent is one
element transaction that cannot leave a half-built chain.

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
    def _agent_elements(lease: Lease, proxy_port: int) -> str:
        ifn, ip = lease.host_ifname, lease.host_ip
        items = [
            f'"{ifn}" . {ip} . udp . {DNS_PORT}',
            f'"{ifn}" . {ip} . tcp . {DNS_PORT}',
            f'"{ifn}" . {ip} . tcp . {proxy_port}',
        ]
        return ", ".join(items)

    def add_agent(self, lease: Lease, proxy_port: int) -> None:
        elements = self._agent_elements(lease, proxy_port)
        self._run(f"add element {FAMILY} {TABLE} agent_in {{ {elements} }}", "add agent")

    def remove_agent(self, lease: Lease, proxy_port: int) -> None:
        """Drop the agent's elements; tolerant of ones already gone (teardown is idempotent)."""
        ifn = lease.host_ifname
        text = ""
        if any(e[0] == ifn for e in self._elements("agent_in")):
            mine = self._agent_elements(lease, proxy_port)
            text = f"delete element {FAMILY} {TABLE} agent_in {{ {mine} }}\n"
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

    def elements(self, set_name: str) -> list[list[Any]]:
        return self._elements(set_name)

    def counter(self, comment: str) -> int:
        """Packets counted by the drop rule with this comment (for tests and metrics)."""
        out = self._run(f"list table {FAMILY} {TABLE}", "list")
        for item in json.loads(out).get("nftables", []):
            rule = item.get("rule")
            if rule and rule.get("comment") == comment:
                for expr in rule.get("expr", []):
                    if "counter" in expr:
                        return int(expr["counter"]["packets"])
        raise SandboxError(f"no rule {comment!r} in table {TABLE}", code=NFT_FAILED)
