"""DNS wire parsing: real-shaped queries and replies, hostile bytes, and the address pool."""

from __future__ import annotations

import contextlib
import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from symphonyd.launcher.sandbox import dns_wire
from symphonyd.launcher.sandbox.addresses import AddressPool
from symphonyd.launcher.sandbox.errors import SandboxError


def test_query_roundtrip_and_response() -> None:
    raw = dns_wire.build_query(0x1234, "Allowed.Test")
    q = dns_wire.parse_query(raw)
    assert (q.ident, q.name, q.qtype, q.qclass) == (0x1234, "Allowed.Test", 1, 1)
    reply = dns_wire.build_response(q, 0, [(ipaddress.IPv4Address("198.18.1.10"), 60)])
    answer = dns_wire.parse_a_answer(reply, 0x1234, "allowed.test")
    assert answer.rcode == 0
    assert answer.addresses == ((ipaddress.IPv4Address("198.18.1.10"), 60),)
    nx = dns_wire.build_response(q, dns_wire.RCODE_NXDOMAIN)
    assert dns_wire.parse_a_answer(nx, 0x1234, "allowed.test").rcode == 3


def test_reply_must_match_the_query() -> None:
    q = dns_wire.parse_query(dns_wire.build_query(7, "a.test"))
    reply = dns_wire.build_response(q, 0, [(ipaddress.IPv4Address("1.2.3.4"), 1)])
    with pytest.raises(dns_wire.DnsFormatError):
        dns_wire.parse_a_answer(reply, 8, "a.test")
    with pytest.raises(dns_wire.DnsFormatError):
        dns_wire.parse_a_answer(reply, 7, "b.test")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00" * 11,
        struct.pack("!HHHHHH", 1, 0x8000, 1, 0, 0, 0) + b"\x01a\x00\x00\x01\x00\x01",  # a reply
        struct.pack("!HHHHHH", 1, 0, 2, 0, 0, 0) + b"\x01a\x00\x00\x01\x00\x01",  # two questions
        struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01",  # self pointer
        struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\x00\x00\x01\x00\x01",  # root name
        struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\x3fa",  # label runs past the end
        struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0)
        + (b"\x3f" + b"a" * 63) * 5
        + b"\x00\x00\x01\x00\x01",
        b"\x00" * 5000,
    ],
)
def test_malformed_queries_are_refused(data: bytes) -> None:
    with pytest.raises(dns_wire.DnsFormatError):
        dns_wire.parse_query(data)


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_parsers_raise_only_format_errors(data: bytes) -> None:
    for parse in (dns_wire.parse_query, lambda d: dns_wire.parse_a_answer(d, 1, "a.test")):
        with contextlib.suppress(dns_wire.DnsFormatError):
            parse(data)


def test_address_pool_allocates_disjoint_slash30s() -> None:
    pool = AddressPool("100.127.4.0/29")
    a, b = pool.allocate("a"), pool.allocate("b")
    assert (str(a.host_ip), str(a.agent_ip), a.host_ifname) == (
        "100.127.4.1",
        "100.127.4.2",
        "symv0",
    )
    assert (str(b.host_ip), str(b.agent_ip)) == ("100.127.4.5", "100.127.4.6")
    with pytest.raises(SandboxError) as info:
        pool.allocate("c")
    assert info.value.error_code == "sandbox_address_pool_exhausted"
    pool.release(a)
    assert pool.allocate("c").index == 0
    for bad in ("10.0.0.0/31", "fd00::/64", "nonsense", "10.0.0.1/24"):
        with pytest.raises(SandboxError):
            AddressPool(bad)
