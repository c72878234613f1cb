"""Hostile and malformed client input against a real proxy listener on 127.0.0.1.

No root needed: the listener is bound on loopback and the "upstream resolver" is a tiny DNS
server written here that answers every name with a loopback address, which the proxy must
refuse after resolving.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

from symphonyd.launcher.sandbox import dns_wire
from symphonyd.launcher.sandbox.dns import UpstreamResolver
from symphonyd.launcher.sandbox.egress_policy import build_policy
from symphonyd.launcher.sandbox.proxy import MAX_HEAD, EgressProxy


class LoopbackDns(asyncio.DatagramProtocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        q = dns_wire.parse_query(data)
        ans = [(ipaddress.IPv4Address("127.0.0.1"), 30)] if q.qtype == 1 else []
        self.transport.sendto(dns_wire.build_response(q, 0, ans), addr)


async def exchange(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    if not payload:
        writer.write_eof()
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(4096), 15)
    finally:
        writer.close()


async def scenario() -> tuple[list[bytes], list[dict[str, Any]]]:
    loop = asyncio.get_running_loop()
    dns_transport, _ = await loop.create_datagram_endpoint(LoopbackDns, local_addr=("127.0.0.1", 0))
    dns_port = dns_transport.get_extra_info("sockname")[1]
    audit: list[dict[str, Any]] = []
    policy = build_policy(allowed_domains=["allowed.test"])
    proxy = EgressProxy(
        "agent-x", "127.0.0.1", 0, policy, UpstreamResolver([("127.0.0.1", dns_port)]), audit.append
    )
    await proxy.start()
    port = proxy.bound_port
    payloads = [
        b"\x16\x03\x01\x00\x05garbage\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n",  # origin form: not a proxy request
        b"CONNECT allowed.test HTTP/1.1\r\n\r\n",  # no port
        b"CONNECT allowed.test:99999 HTTP/1.1\r\n\r\n",
        b"CONNECT a b c HTTP/1.1\r\n\r\n",
        b"GET ftp://allowed.test/ HTTP/1.1\r\n\r\n",
        b"GET http://user@allowed.test/ HTTP/1.1\r\n\r\n",
        b"X" * (MAX_HEAD + 10),
        b"GET http://allowed.test/ HTTP/1.1\r\nX: a\nHost: denied.test\r\n\r\n",
        b"CONNECT denied.test:443 HTTP/1.1\r\n\r\n",
        b"CONNECT 127.0.0.1:443 HTTP/1.1\r\n\r\n",
        b"CONNECT allowed.test:443 HTTP/1.1\r\n\r\n",  # resolves to 127.0.0.1
        b"GET http://allowed.test/ HTTP/1.1\r\n\r\n",
        b"",  # client that closes at once
    ]
    replies = [await exchange(port, p) for p in payloads]
    still_up = await exchange(port, b"CONNECT denied.test:443 HTTP/1.1\r\n\r\n")
    await proxy.stop()
    dns_transport.close()
    return [*replies, still_up], audit


def status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else 0


def test_malformed_and_hostile_requests_get_typed_refusals() -> None:
    replies, audit = asyncio.run(scenario())
    codes = [status(r) for r in replies]
    assert codes[:9] == [400] * 9, codes
    assert codes[9:13] == [403, 403, 403, 403], codes
    assert codes[-1] == 403  # the listener survived all of it
    reasons = [a["reason"] for a in audit if a["type"] == "egress_deny"]
    assert "not_allowlisted" in reasons
    assert "ip_literal" in reasons
    assert reasons.count("forbidden_address:loopback") == 2
    assert not [a for a in audit if a["type"] == "egress_allow"]
    assert all(a["agent_id"] == "agent-x" for a in audit)
