"""Per-agent DNS: an in-launcher resolver that answers allowlisted names and forwards nothing else.

Why in the launcher and not a dnsmasq per agent (docs/design/0801): the decision must be the
proxy's decision (same matcher, same ``*.suffix`` semantics, same denied-wins rule) and each
answer must be audited under the agent's id. dnsmasq's ``--server=/x/`` matches the apex and
all subdomains, has no audit hook, and would be 50 more processes with 50 configs to keep in
step. Here a query for a name the policy refuses is answered NXDOMAIN locally; only names the
policy allows are ever sent upstream, and only as a fresh A query built by us (the agent's own
bytes never leave). AAAA and every other type get an empty answer, since IPv6 is off inside.

Per agent (``EgressLimits``, docs/design/0855): lookups go through the agent's own cache and
upstream queue (``dns_cache.AgentLookup``, shared with its proxy); UDP queries past
``dns_queries_per_s`` are dropped unread, past ``dns_pending`` waiting ones answered REFUSED;
DNS-over-TCP connections past ``dns_tcp_connections`` are closed (``listener.py``). Every such
refusal is counted and audited.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from symphonyd.core.egress_policy import EgressPolicy, classify_address, decide_name
from symphonyd.launcher.sandbox import dns_wire
from symphonyd.launcher.sandbox.dns_cache import MAX_TTL, AgentLookup
from symphonyd.launcher.sandbox.egress_limits import EgressLimits
from symphonyd.launcher.sandbox.errors import DNS_FAILED, SandboxError
from symphonyd.launcher.sandbox.listener import CappedListener

AuditSink = Callable[[dict[str, Any]], None]
MAX_ANSWERS = 16  # keeps every reply well under 512 bytes
TCP_QUERIES = 16  # pipelined queries per TCP connection, then it is closed
TCP_READ_TIMEOUT = 5.0


class UpstreamError(Exception):
    pass


def system_upstreams(resolv_conf: str = "/etc/resolv.conf") -> list[tuple[str, int]]:
    servers: list[tuple[str, int]] = []
    with contextlib.suppress(OSError):
        for line in Path(resolv_conf).read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                with contextlib.suppress(ValueError):
                    servers.append((str(ipaddress.ip_address(parts[1])), 53))
    return servers


class _OneShot(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.reply.done():
            self.reply.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.reply.done():
            self.reply.set_exception(exc)


class UpstreamResolver:
    """A-record lookups against the host's upstream servers (UDP, random id, strict match)."""

    def __init__(self, servers: list[tuple[str, int]], timeout: float = 2.0) -> None:
        self.servers = servers
        self.timeout = timeout

    async def resolve_a(self, name: str) -> tuple[int, list[tuple[ipaddress.IPv4Address, int]]]:
        loop = asyncio.get_running_loop()
        last: Exception | None = None
        for host, port in self.servers:
            ident = secrets.randbelow(65536)
            transport, proto = await loop.create_datagram_endpoint(
                _OneShot, remote_addr=(host, port)
            )
            try:
                transport.sendto(dns_wire.build_query(ident, name))
                data = await asyncio.wait_for(proto.reply, self.timeout)
                answer = dns_wire.parse_a_answer(data, ident, name)
                return answer.rcode, list(answer.addresses)
            except (TimeoutError, OSError, dns_wire.DnsFormatError) as exc:
                last = exc
            finally:
                transport.close()
        raise UpstreamError(f"no upstream answered for the name: {last!r}")


@dataclass(slots=True)
class _Counters:
    answered: int = 0
    refused: int = 0
    # Past this agent's caps (EgressLimits): queries answered REFUSED at once, TCP
    # connections closed at once.
    over_pending: int = 0
    over_tcp: int = 0
    over_rate: int = 0  # dropped unanswered: past dns_queries_per_s


class AgentResolver:
    """UDP and TCP listeners on the agent's host-side address, port 53."""

    def __init__(
        self,
        agent_id: str,
        bind_ip: str,
        policy: EgressPolicy,
        upstream: UpstreamResolver,
        audit: AuditSink,
        on_answer: Callable[[str, list[tuple[ipaddress.IPv4Address, int]]], None] | None = None,
        port: int = 53,
        *,
        limits: EgressLimits | None = None,
        lookup: AgentLookup | None = None,
    ) -> None:
        self.agent_id = agent_id
        self.bind_ip = bind_ip
        self.policy = policy
        self.limits = limits or EgressLimits()
        # The agent's own cache and upstream queue, shared with its proxy (dns_cache.py).
        self.lookup = lookup or AgentLookup(
            upstream,
            inflight=self.limits.dns_upstream_inflight,
            cache_entries=self.limits.dns_cache_entries,
        )
        self.audit = audit
        self.on_answer = on_answer
        self.port = port
        self.counters = _Counters()
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp = CappedListener(
            bind_ip, port, self.limits.dns_tcp_connections, self._serve_tcp, self._refuse_tcp
        )
        self._tasks: set[asyncio.Task[None]] = set()
        # Token bucket for UDP queries (dns_queries_per_s, burst of one second's worth).
        self._tokens = float(self.limits.dns_queries_per_s)
        self._refilled = 0.0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: _UdpServer(self), local_addr=(self.bind_ip, self.port)
            )
            await self._tcp.start()
        except OSError as exc:
            await self.stop()
            raise SandboxError(f"agent resolver could not listen: {exc}", code=DNS_FAILED) from exc

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        await self._tcp.stop()
        for task in list(self._tasks):
            task.cancel()

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def busy(self) -> bool:
        """Too many of this agent's queries are waiting: answer the next one REFUSED."""
        return len(self._tasks) >= self.limits.dns_pending

    def over_rate(self) -> bool:
        """Past dns_queries_per_s: the query is dropped unread (a flood's cheapest path)."""
        now = asyncio.get_running_loop().time()
        rate = self.limits.dns_queries_per_s
        self._tokens = min(rate, self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        if self._tokens >= 1:
            self._tokens -= 1
            return False
        return True

    def tcp_open(self) -> int:
        return self._tcp.open

    def over_limit(self, what: str) -> None:
        if what == "dns_tcp_limit":
            self.counters.over_tcp += 1
        elif what == "dns_rate_limit":
            self.counters.over_rate += 1
        else:
            self.counters.over_pending += 1
        self.audit({"type": "egress_deny", "agent_id": self.agent_id, "via": "dns", "reason": what})

    async def answer(self, data: bytes) -> bytes | None:
        try:
            query = dns_wire.parse_query(data)
        except dns_wire.DnsFormatError:
            return dns_wire.build_error(data, dns_wire.RCODE_FORMERR)
        if query.flags & 0x7800:  # only standard queries (opcode 0)
            return dns_wire.build_response(query, dns_wire.RCODE_NOTIMP)
        decision = decide_name(self.policy, query.name)
        record = {
            "agent_id": self.agent_id,
            "via": "dns",
            "host": decision.host,
            "qtype": query.qtype,
            "reason": decision.reason,
        }
        if not decision.allowed or query.qclass != dns_wire.CLASS_IN:
            self.counters.refused += 1
            self.audit({"type": "egress_deny", **record})
            return dns_wire.build_response(query, dns_wire.RCODE_NXDOMAIN)
        if query.qtype != dns_wire.TYPE_A:
            self.audit({"type": "egress_allow", **record, "answers": 0})
            return dns_wire.build_response(query, dns_wire.RCODE_OK)
        try:
            rcode, answers = await self.lookup.resolve_a(decision.host)
        except UpstreamError:
            self.audit({"type": "egress_deny", **record, "reason": "upstream_failed"})
            return dns_wire.build_response(query, dns_wire.RCODE_SERVFAIL)
        kept = [
            (a, min(ttl, MAX_TTL))
            for a, ttl in answers
            if classify_address(a, self.policy.permitted_networks) is None
        ][:MAX_ANSWERS]
        self.counters.answered += 1
        self.audit(
            {
                "type": "egress_allow",
                **record,
                "answers": len(kept),
                "dropped": len(answers) - len(kept),
            }
        )
        if kept and self.on_answer is not None:
            self.on_answer(decision.host, kept)
        return dns_wire.build_response(query, rcode if not kept else dns_wire.RCODE_OK, kept)

    async def _refuse_tcp(self, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Closed before reading anything (listener.py bounds how often this can happen).
        self.over_limit("dns_tcp_limit")
        writer.transport.abort()

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for _ in range(TCP_QUERIES):
                head = await asyncio.wait_for(reader.readexactly(2), TCP_READ_TIMEOUT)
                size = int.from_bytes(head, "big")
                if size > dns_wire.MAX_MESSAGE:
                    break
                body = await asyncio.wait_for(reader.readexactly(size), TCP_READ_TIMEOUT)
                reply = await self.answer(body)
                if reply is None:
                    break
                writer.write(len(reply).to_bytes(2, "big") + reply)
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, OSError):
            pass
        finally:
            writer.close()


class _UdpServer(asyncio.DatagramProtocol):
    def __init__(self, resolver: AgentResolver) -> None:
        self.resolver = resolver
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.resolver.over_rate():
            self.resolver.over_limit("dns_rate_limit")
            return
        if self.resolver.busy():
            # No task, no upstream query: the flood is answered from here, and counted.
            self.resolver.over_limit("dns_query_limit")
            reply = dns_wire.build_error(data, dns_wire.RCODE_REFUSED)
            if reply is not None and self.transport is not None:
                self.transport.sendto(reply, addr)
            return
        self.resolver.spawn(self._reply(data, addr))

    async def _reply(self, data: bytes, addr: Any) -> None:
        reply = await self.resolver.answer(data)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)
