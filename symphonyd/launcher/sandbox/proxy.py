"""Per-agent egress proxy: HTTP CONNECT and plain (absolute-form) HTTP on the host-side address.

One listener per agent, bound on that agent's host-side veth address, so the listening
socket itself says whose traffic it is (no credentials, no source-address guessing). For each
request: the policy decides on the host and port; the name is resolved once through the
launcher's upstream resolver; every answer is classified (one forbidden answer refuses the
lot); the proxy connects to that pinned address, never re-resolving. Through a CONNECT tunnel
on a TLS port the first client bytes must be a ClientHello whose SNI equals the CONNECT host;
on other ports a ClientHello, if one is sent, must match too. Plain HTTP is rewritten to
origin form with ``Host`` set from the URL and ``Connection: close``, so one upstream
connection carries exactly one decided request. Each connection gets exactly one decision
record, written once the last check has passed or failed (for a tunnel: after the client's
first bytes), handed to ``audit``.

Per agent (``EgressLimits``): at most ``proxy_connections`` at once (503 past it, counted and
audited); a tunnel closes after ``tunnel_idle_s`` without a byte in either direction and
after ``tunnel_lifetime_s`` in any case.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from symphonyd.launcher.sandbox.denials import explain
from symphonyd.launcher.sandbox.dns import UpstreamError
from symphonyd.launcher.sandbox.dns_cache import Lookup
from symphonyd.launcher.sandbox.egress_limits import EgressLimits
from symphonyd.launcher.sandbox.egress_policy import (
    EgressPolicy,
    decide,
    decide_local,
    pick_address,
    sni_matches,
)
from symphonyd.launcher.sandbox.errors import PROXY_FAILED, SandboxError
from symphonyd.launcher.sandbox.listener import CappedListener, Handler
from symphonyd.launcher.sandbox.tls_sni import MAX_HELLO, SniStatus, parse_client_hello

AuditSink = Callable[[dict[str, Any]], None]
MAX_HEAD = 16 * 1024
LOOPBACK = "127.0.0.1"
HEAD_TIMEOUT = 10.0
HELLO_TIMEOUT = 10.0
CHUNK = 65536
_HOP_HEADERS = {
    "connection",
    "proxy-connection",
    "proxy-authorization",
    "keep-alive",
    "te",
    "upgrade",
}


class Deny(Exception):
    def __init__(self, reason: str, status: int = 403) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(slots=True)
class ProxyCounters:
    over_limit: int = 0  # refused with 503: the agent had proxy_connections open
    idle_closed: int = 0  # tunnels closed after tunnel_idle_s without a byte
    lifetime_closed: int = 0  # tunnels closed at tunnel_lifetime_s


class EgressProxy:
    def __init__(
        self,
        agent_id: str,
        bind_ip: str,
        port: int,
        policy: EgressPolicy,
        upstream: Lookup,
        audit: AuditSink,
        connect_timeout: float = 5.0,
        *,
        limits: EgressLimits | None = None,
    ) -> None:
        self.agent_id = agent_id
        self.bind_ip = bind_ip
        self.port = port
        self.policy = policy
        self.upstream = upstream
        self.audit = audit
        self.connect_timeout = connect_timeout
        self.limits = limits or EgressLimits()
        self.counters = ProxyCounters()
        self._listener = self.listener(port, self._serve, self._refuse)

    def listener(self, port: int, serve: Handler, refuse: Handler) -> CappedListener:
        """A listener on this agent's address with its connection cap (also interception's)."""
        return CappedListener(
            self.bind_ip, port, self.limits.proxy_connections, serve, refuse, limit=MAX_HEAD
        )

    async def start(self) -> None:
        await start_listener(self._listener, "egress proxy")

    @property
    def bound_port(self) -> int:
        """The listening port (differs from ``port`` only when asked for port 0)."""
        return self._listener.bound_port

    async def stop(self) -> None:
        await self._listener.stop()

    def record(self, kind: str, **fields: Any) -> None:
        self.audit({"type": kind, "agent_id": self.agent_id, **fields})

    def open_connections(self) -> int:
        return self._listener.open

    async def _refuse(self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counters.over_limit += 1
        self.record("egress_deny", via="proxy", reason="proxy_connection_limit")
        await reply(writer, 503, "too_many_connections")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            await reply(writer, 400, "bad_request")
            return
        text = head.decode("latin-1")
        lines = text.split("\r\n")
        parts = lines[0].split(" ")
        # Bare CR or LF inside the head would let a second Host header past our rewrite.
        bare = text.count("\n") != text.count("\r\n") or text.count("\r") != text.count("\r\n")
        if bare or len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            await reply(writer, 400, "bad_request")
            return
        method, target, _version = parts
        via = "connect" if method == "CONNECT" else "http"
        try:
            host, port, path = _target(method, target)
        except ValueError:
            self.record("egress_deny", via=via, host=target[:255], reason="bad_target")
            await reply(writer, 400, "bad_target")
            return
        fields: dict[str, Any] = {"via": via, "host": host, "port": port}
        try:
            address = await self.admit(host, port, fields)
            up_reader, up_writer = await self.connect(address, port, fields)
        except Deny as deny:
            self.record("egress_deny", **fields, reason=deny.reason)
            await reply(writer, deny.status, explain(deny.reason, fields.get("host"), port))
            return
        pipe = Pipe(self.limits)
        down: asyncio.Task[None] | None = None
        try:
            if method == "CONNECT":
                try:
                    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    await writer.drain()
                    if port not in self.policy.tls_ports:
                        # Server-speaks-first protocols (ssh) need the reply path open while we
                        # wait for the client's first bytes.
                        down = asyncio.get_running_loop().create_task(pipe.copy(up_reader, writer))
                    first = await self._first_bytes(reader, host, port, fields)
                except OSError as exc:
                    raise Deny("client_closed") from exc
            else:
                first = origin_request(method, path, fields["host"], port, lines[1:])
        except Deny as deny:
            self.record("egress_deny", **fields, reason=deny.reason)
            if down is not None:
                down.cancel()
            up_writer.close()
            writer.close()
            return
        await self.relay(reader, writer, (up_reader, up_writer), first, fields, pipe, down)

    async def relay(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        first: bytes,
        fields: dict[str, Any],
        pipe: Pipe | None = None,
        down: asyncio.Task[None] | None = None,
    ) -> None:
        """The last check has passed: write the connection's one decision record, send the
        client's first bytes upstream and copy both ways until the connection ends."""
        up_reader, up_writer = upstream
        pipe = pipe or Pipe(self.limits)
        self.record("egress_allow", **fields)
        try:
            up_writer.write(first)
            ended = await pipe.run(reader, writer, up_reader, up_writer, down)
            if ended == "idle":
                self.counters.idle_closed += 1
            elif ended == "lifetime":
                self.counters.lifetime_closed += 1
        finally:
            if down is not None:
                down.cancel()
            up_writer.close()
            writer.close()

    async def admit(
        self,
        host: str,
        port: int,
        fields: dict[str, Any],
        check: Callable[[str], None] | None = None,
    ) -> str:
        """Decide ``host:port`` and return the address to connect to, pinned by our own
        lookup. ``check``, given the canonical name once the policy allows it, may raise
        :class:`Deny` (interception's resolver binding)."""
        local = decide_local(self.policy, host, port)
        if local is not None:
            fields["host"] = local.host
            if not local.allowed:
                raise Deny(local.reason)
            if check is not None:
                check(local.host)
            # Explicitly configured on the host: the only way an agent reaches loopback.
            fields["rule"] = "local_service"
            fields["address"] = LOOPBACK
            return LOOPBACK
        decision = decide(self.policy, host, port)
        fields["host"] = decision.host
        if decision.rule:
            fields["rule"] = decision.rule
        if not decision.allowed:
            raise Deny(decision.reason)
        if check is not None:
            check(decision.host)
        try:
            _rcode, answers = await self.upstream.resolve_a(decision.host)
        except UpstreamError as exc:
            raise Deny("resolve_failed", 502) from exc
        address, reason = pick_address((a for a, _ in answers), self.policy.permitted_networks)
        if address is None:
            raise Deny(reason or "no_address", 403 if reason != "no_address" else 502)
        fields["address"] = str(address)
        return str(address)

    async def connect(
        self, address: str, port: int, fields: dict[str, Any]
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            return await asyncio.wait_for(
                asyncio.open_connection(address, port), self.connect_timeout
            )
        except (TimeoutError, OSError) as exc:
            raise Deny("connect_failed", 502) from exc

    async def _first_bytes(
        self, reader: asyncio.StreamReader, host: str, port: int, fields: dict[str, Any]
    ) -> bytes:
        """The client's opening bytes, checked for a ClientHello naming ``host``."""
        must_be_tls = port in self.policy.tls_ports
        data = b""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (HELLO_TIMEOUT if must_be_tls else self.limits.tunnel_idle_s)
        while True:
            remaining = deadline - loop.time()
            try:
                chunk = await asyncio.wait_for(reader.read(MAX_HELLO), max(remaining, 0.01))
            except TimeoutError as exc:
                raise Deny("tls_hello_timeout") from exc
            if not chunk:
                raise Deny("client_closed")
            data += chunk
            result = parse_client_hello(data)
            if result.status is SniStatus.NOT_TLS and not must_be_tls:
                return data
            if result.status is SniStatus.NEED_MORE and len(data) <= MAX_HELLO + 64:
                continue
            if result.status is SniStatus.FOUND and result.server_name is not None:
                fields["sni"] = result.server_name[:255]
                if sni_matches(host, result.server_name):
                    return data
                raise Deny("sni_mismatch")
            raise Deny(f"tls_{result.status.value}")


async def start_listener(listener: CappedListener, what: str) -> None:
    try:
        await listener.start()
    except OSError as exc:
        raise SandboxError(f"{what} could not listen: {exc}", code=PROXY_FAILED) from exc


def _target(method: str, target: str) -> tuple[str, int, str]:
    if method == "CONNECT":
        host, sep, port_text = target.rpartition(":")
        if not sep or not port_text.isdigit():
            raise ValueError(target)
        port = int(port_text)
        path = ""
    else:
        url = urlsplit(target)
        # userinfo ("http://allowed@other/") only serves to confuse whoever reads the URL
        if url.scheme != "http" or not url.hostname or "@" in url.netloc:
            raise ValueError(target)
        host = url.hostname
        port = url.port or 80
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    if not host or not 0 < port < 65536 or any(c in host for c in " \t/@"):
        raise ValueError(target)
    return host, port, path


def origin_request(method: str, path: str, host: str, port: int, headers: list[str]) -> bytes:
    out = [f"{method} {path} HTTP/1.1", f"Host: {host}" + (f":{port}" if port != 80 else "")]
    for line in headers:
        if not line:
            continue
        name = line.split(":", 1)[0].strip().lower()
        if name in _HOP_HEADERS or name == "host" or name.startswith("proxy-"):
            continue
        out.append(line)
    out.append("Connection: close")
    return ("\r\n".join(out) + "\r\n\r\n").encode("latin-1")


async def reply(writer: asyncio.StreamWriter, status: int, message: str) -> None:
    """A complete HTTP/1.1 response with ``message`` as its text body, then close."""
    text = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway", 503: "Busy"}.get(status, "")
    if not message.startswith("symphonyd egress:"):
        message = f"symphonyd egress: {message}"
    body = f"{message}\n".encode()
    with contextlib.suppress(OSError):
        writer.write(
            f"HTTP/1.1 {status} {text}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
    writer.close()


class Pipe:
    """Both directions of one connection, closed when it is idle or too old.

    Idle means no byte in *either* direction: a model streaming its answer while the client
    sends nothing is busy, and a half-closed request side must not end the download."""

    def __init__(self, limits: EgressLimits) -> None:
        self._loop = asyncio.get_running_loop()
        self.started = self.last = self._loop.time()
        self.idle_s = limits.tunnel_idle_s
        self.lifetime_s = limits.tunnel_lifetime_s

    async def copy(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while True:
                chunk = await src.read(CHUNK)
                if not chunk:
                    break
                self.last = self._loop.time()
                dst.write(chunk)
                await dst.drain()
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                if dst.can_write_eof():
                    dst.write_eof()

    async def run(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
        down: asyncio.Task[None] | None = None,
    ) -> str:
        """Copy until both sides are done (``"closed"``), or ``"idle"`` / ``"lifetime"``."""
        tasks = {self._loop.create_task(self.copy(reader, up_writer))}
        tasks.add(down or self._loop.create_task(self.copy(up_reader, writer)))
        try:
            while True:
                end_of_life = self.started + self.lifetime_s
                deadline = min(self.last + self.idle_s, end_of_life)
                now = self._loop.time()
                if now >= deadline:
                    return "lifetime" if now >= end_of_life else "idle"
                await asyncio.wait(tasks, timeout=deadline - now)
                if all(t.done() for t in tasks):
                    return "closed"
        finally:
            for task in tasks:
                task.cancel()
