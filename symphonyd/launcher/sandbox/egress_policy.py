"""Who an agent may talk to: the pure allow/deny decision behind the egress proxy and resolver.

Names are compared in one canonical form (IDNA ASCII, lower case, no trailing dot) so that
``Example.COM.``, ``example.com`` and ``bücher.de``/``xn--bcher-kva.de`` cannot be played off
against each other. A rule is either an exact name or ``*.suffix``; the wildcard matches
subdomains only, never the apex, so allowing ``*.github.com`` does not allow ``github.com``
(list both when both are meant). Denied rules always win over allowed ones.

IP literals are refused in every mode: an address names no host, so neither the operator's
list nor the audit log could say what was reached. Resolved addresses go through
:func:`classify_address`; loopback, link-local (which holds the cloud metadata address),
multicast and unspecified addresses are never reachable, and private, shared (CGNAT) and
reserved ranges only when the operator lists the network in ``permitted_networks``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from symphonyd.core.errors import ValidationError

MODES = ("allowlist", "block", "open")
DEFAULT_PORTS: frozenset[int] = frozenset({80, 443})
MAX_NAME = 253
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
# inet_aton accepts "2130706433", "0x7f.1" and "0177.0.0.1"; any name whose last label looks
# numeric is treated as an address so those spellings cannot slip past the literal check.
_NUMERIC_LABEL = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud metadata endpoints, named so a decision says why; both are also link-local or ULA.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
_SHARED = ipaddress.ip_network("100.64.0.0/10")


class EgressPolicyError(ValidationError):
    """A host name or rule that cannot be normalised."""

    code = "invalid_egress_host"


@dataclass(frozen=True, slots=True)
class HostRule:
    """An exact name, or ``*.suffix`` (``wildcard`` true, ``name`` the suffix)."""

    name: str
    wildcard: bool = False

    def matches(self, host: str) -> bool:
        if self.wildcard:
            return host.endswith("." + self.name)
        return host == self.name

    def __str__(self) -> str:
        return f"*.{self.name}" if self.wildcard else self.name


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    mode: str = "allowlist"
    allowed: tuple[HostRule, ...] = ()
    denied: tuple[HostRule, ...] = ()
    ports: frozenset[int] = DEFAULT_PORTS
    # Private/shared/reserved networks the operator explicitly lets names resolve into.
    permitted_networks: tuple[IPNetwork, ...] = ()
    # Ports on which the first client bytes must be a TLS ClientHello naming the host.
    tls_ports: frozenset[int] = frozenset({443})
    # Optional, off by default: ports an allowed name may be reached on *without* the proxy,
    # through nftables elements filled from the resolver's answers (docs/sandbox.md caveats).
    direct_ports: frozenset[int] = frozenset()
    # Host configuration only: (name, port) pairs the proxy connects to on 127.0.0.1, for a
    # model server on this host (the quick start's demo endpoint, a local inference server).
    local_services: frozenset[tuple[str, int]] = frozenset()
    # Connections that skip the proxy are redirected to it and decided by TLS server name or
    # HTTP Host (intercept.py); never in block mode, where there is nothing to allow.
    intercept: bool = True

    @property
    def intercepts(self) -> bool:
        return self.intercept and self.mode != "block"


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str
    host: str
    port: int | None = None
    rule: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


def normalize_host(raw: str) -> str:
    """Canonical ASCII form of a DNS name, or :class:`EgressPolicyError`."""
    if not isinstance(raw, str):
        raise EgressPolicyError("host must be a string")
    name = raw.strip().rstrip(".")
    if not name or len(raw) > 1024:
        raise EgressPolicyError("empty or oversized host name")
    try:
        ascii_name = name.encode("idna").decode("ascii") if not name.isascii() else name
    except UnicodeError as exc:
        raise EgressPolicyError("host name is not valid IDNA") from exc
    ascii_name = ascii_name.lower()
    if len(ascii_name) > MAX_NAME:
        raise EgressPolicyError("host name longer than 253 characters")
    for label in ascii_name.split("."):
        if not _LABEL.fullmatch(label):
            raise EgressPolicyError("host name has an invalid label")
    return ascii_name


def parse_ip_literal(raw: str) -> IPAddress | None:
    """The address if ``raw`` is any spelling of an IP literal (also ``[v6]``), else None."""
    text = raw.strip().rstrip(".")
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        pass
    last = text.lower().rsplit(".", 1)[-1]
    if _NUMERIC_LABEL.fullmatch(last):
        # Not a valid dotted quad, but the resolver library would treat it as one.
        return ipaddress.IPv4Address(0)
    return None


def parse_rule(raw: str) -> HostRule:
    text = raw.strip()
    if text.startswith("*."):
        return HostRule(normalize_host(text[2:]), wildcard=True)
    if parse_ip_literal(text) is not None:
        raise EgressPolicyError("IP addresses cannot be allowlisted; use a DNS name")
    return HostRule(normalize_host(text))


def build_policy(
    *,
    mode: str = "allowlist",
    allowed_domains: Iterable[str] = (),
    denied_domains: Iterable[str] = (),
    builtin_domains: Iterable[str] = (),
    ports: Iterable[int] = (),
    permitted_networks: Iterable[str] = (),
    direct_ports: Iterable[int] = (),
    local_services: Iterable[str] = (),
    intercept: bool = True,
) -> EgressPolicy:
    """Policy from config values: built-in names for the runtime plus the operator's list."""
    if mode not in MODES:
        raise EgressPolicyError(f"unknown egress mode {mode!r}")
    allowed = _unique(parse_rule(r) for r in (*builtin_domains, *allowed_domains))
    denied = _unique(parse_rule(r) for r in denied_domains)
    port_set = frozenset(ports) or DEFAULT_PORTS
    direct = frozenset(direct_ports)
    if any(not 0 < p < 65536 for p in port_set | direct):
        raise EgressPolicyError("ports must be in 1..65535")
    nets: list[IPNetwork] = []
    for text in permitted_networks:
        try:
            nets.append(ipaddress.ip_network(text, strict=True))
        except ValueError as exc:
            raise EgressPolicyError(f"permitted network {text!r} is not a network") from exc
    local = frozenset(parse_local_service(text) for text in local_services)
    return EgressPolicy(
        mode,
        allowed,
        denied,
        port_set,
        tuple(nets),
        direct_ports=direct,
        local_services=local,
        intercept=intercept,
    )


def parse_local_service(text: str) -> tuple[str, int]:
    """``name:port`` (a DNS name, never an address) for :attr:`EgressPolicy.local_services`."""
    name, sep, port_text = text.strip().rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise EgressPolicyError(f"local service {text!r} must be NAME:PORT")
    if parse_ip_literal(name) is not None:
        raise EgressPolicyError(f"local service {text!r} must be named, not an address")
    return normalize_host(name), int(port_text)


def decide_local(policy: EgressPolicy, raw_host: str, port: int) -> Decision | None:
    """An allow for a configured local service, or None (the normal rules apply)."""
    if policy.mode == "block" or not policy.local_services:
        return None
    try:
        host = normalize_host(raw_host)
    except EgressPolicyError:
        return None
    if (host, port) not in policy.local_services:
        return None
    for rule in policy.denied:
        if rule.matches(host):
            return Decision(False, "denied_domain", host, port, str(rule))
    return Decision(True, "local_service", host, port)


def _unique(rules: Iterable[HostRule]) -> tuple[HostRule, ...]:
    return tuple(dict.fromkeys(rules))


def decide_name(policy: EgressPolicy, raw_host: str) -> Decision:
    """May this name be resolved or reached at all (ports aside)?"""
    if parse_ip_literal(raw_host) is not None:
        return Decision(False, "ip_literal", raw_host.strip())
    try:
        host = normalize_host(raw_host)
    except EgressPolicyError:
        return Decision(False, "invalid_host", raw_host[:MAX_NAME])
    if policy.mode == "block":
        return Decision(False, "mode_block", host)
    for rule in policy.denied:
        if rule.matches(host):
            return Decision(False, "denied_domain", host, rule=str(rule))
    if policy.mode == "open":
        return Decision(True, "mode_open", host)
    for rule in policy.allowed:
        if rule.matches(host):
            return Decision(True, "allowlisted", host, rule=str(rule))
    return Decision(False, "not_allowlisted", host)


def decide(policy: EgressPolicy, raw_host: str, port: int) -> Decision:
    """The proxy's decision for ``host:port``, before any resolution."""
    by_name = decide_name(policy, raw_host)
    if not by_name.allowed:
        return Decision(False, by_name.reason, by_name.host, port, by_name.rule)
    if port not in policy.ports:
        return Decision(False, "port_not_allowed", by_name.host, port)
    return Decision(True, by_name.reason, by_name.host, port, by_name.rule)


def classify_address(address: IPAddress, permitted: Iterable[IPNetwork] = ()) -> str | None:
    """Why connecting to ``address`` is forbidden, or None when it is a public address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return classify_address(address.ipv4_mapped, permitted)
    if address in METADATA_ADDRESSES:
        return "metadata"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link_local"
    if address.is_multicast:
        return "multicast"
    if address.is_unspecified:
        return "unspecified"
    if isinstance(address, ipaddress.IPv4Address) and address == ipaddress.IPv4Address(
        "255.255.255.255"
    ):
        return "broadcast"
    soft: str | None = None
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED:
        soft = "shared"
    elif address.is_reserved:
        soft = "reserved"
    elif address.is_private or not address.is_global:
        soft = "private"
    if soft is not None and any(address in net for net in permitted):
        return None
    return soft


def pick_address(
    addresses: Iterable[IPAddress], permitted: Iterable[IPNetwork] = ()
) -> tuple[IPAddress | None, str | None]:
    """The address to pin, or (None, reason). Any forbidden answer poisons the whole set,
    so a name that resolves to one public and one internal address cannot be aimed inward."""
    nets = tuple(permitted)
    chosen: IPAddress | None = None
    for address in addresses:
        reason = classify_address(address, nets)
        if reason is not None:
            return None, f"forbidden_address:{reason}"
        if chosen is None:
            chosen = address
    if chosen is None:
        return None, "no_address"
    return chosen, None


def sni_matches(connect_host: str, sni: str) -> bool:
    """TLS SNI must name the CONNECT host (same canonical form)."""
    try:
        return normalize_host(sni) == normalize_host(connect_host)
    except EgressPolicyError:
        return False
