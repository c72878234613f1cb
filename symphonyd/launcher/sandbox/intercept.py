"""Transparent interception: connections that skipped the proxy, decided as if they had not.

nftables redirects an agent's TCP connection to an allowed port anywhere to this listener on
the agent's own host-side address (nft.py, docs/design/0867). The kernel keeps the address and
port the agent aimed at (``SO_ORIGINAL_DST``). The name comes from the client's first bytes:
the TLS ClientHello's server name, or on a non-TLS port the ``Host`` header of a plain HTTP
request. Then the proxy's own checks run, exactly as for ``CONNECT name:port``: IP literals,
denied names, allowlist, port, forbidden address classes, and the address pinned by the
proxy's lookup; the address the agent chose is only used for one more check, that the agent's
resolver answered this name with it (answer_book.py). One decision record per connection, as
in the proxy. A TLS port without a server name, or any port without a name, is refused.

A denial on TLS is answered with a TLS ``access_denied`` alert (the client shows an alert, not
a timeout) and the hint goes to the journal (denials.py); on plain HTTP it is the proxy's 403
with the hint in the body.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import struct
from typing import Any

from symphonyd.launcher.sandbox.answer_book import AnswerBook
from symphonyd.launcher.sandbox.denials import explain
from symphonyd.launcher.sandbox.egress_policy import parse_ip_literal
from symphonyd.launcher.sandbox.proxy import (
    HELLO_TIMEOUT,
    MAX_HEAD,
    Deny,
    EgressProxy,
    origin_request,
    reply,
    start_listener,
)
from symphonyd.launcher.sandbox.tls_sni import (
    MAX_HELLO,
    SniStatus,
    looks_like_tls,
    parse_client_hello,
)

SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h
_REQUEST_LINE = re.compile(rb"[A-Z]{1,16} /[^ \r\n]* HTTP/1\.[01]\r\n")
INTERCEPT_PORT = 3129
# TLS record: alert, TLS 1.2, length 2, fatal (2), access_denied (49).
TLS_ACCESS_DENIED = bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 49])


def original_destination(writer: asyncio.StreamWriter) -> tuple[str, int] | None:
    """The (address, port) the client connected to before the redirect, or None."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    except OSError:
        return None  # not redirected: someone connected to the listener itself
    port = struct.unpack_from("!H", raw, 2)[0]
    return socket.inet_ntoa(raw[4:8]), int(port)


class Interceptor:
    """One agent's interception listener, deciding through that agent's proxy."""

    def __init__(self, proxy: EgressProxy, answers: AnswerBook, port: int = INTERCEPT_PORT):
        self.proxy = proxy
        self.answers = answers
        self.port = port
        self.refused = 0  # over the connection cap
        self._listener = proxy.listener(port, self._serve, self._refuse)

    async def start(self) -> None:
        await start_listener(self._listener, "interception listener")

    async def stop(self) -> None:
        await self._listener.stop()

    @property
    def bound_port(self) -> int:
        return self._listener.bound_port

    def open_connections(self) -> int:
        return self._listener.open

    async def _refuse(self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.refused += 1
        self.proxy.record("egress_deny", via="intercept", reason="proxy_connection_limit")
        writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        dest = original_destination(writer)
        if dest is None or dest[1] == self.port:
            writer.transport.abort()
            return
        chosen, port = dest
        fields: dict[str, Any] = {"via": "intercept", "port": port, "dst": chosen}
        tls = port in self.proxy.policy.tls_ports

        def bound(name: str) -> None:
            if not self.answers.answered(name, chosen):
                raise Deny("not_resolved_for_address")

        try:
            first, host, is_tls = await read_name(reader, tls, fields)
            fields["host"] = host
            address = await self.proxy.admit(host, port, fields, check=bound)
            upstream = await self.proxy.connect(address, port, fields)
            if not is_tls:
                first = _rewrite_http(first, fields["host"], port)
        except Deny as deny:
            self.proxy.record("egress_deny", **fields, reason=deny.reason)
            await self._deny(writer, deny, fields, port, http=not tls and "sni" not in fields)
            return
        await self.proxy.relay(reader, writer, upstream, first, fields)

    async def _deny(
        self,
        writer: asyncio.StreamWriter,
        deny: Deny,
        fields: dict[str, Any],
        port: int,
        *,
        http: bool,
    ) -> None:
        if http and deny.reason not in ("client_closed", "hello_timeout"):
            await reply(writer, deny.status, explain(deny.reason, fields.get("host"), port))
            return
        with contextlib.suppress(OSError):
            writer.write(TLS_ACCESS_DENIED)
            await writer.drain()
        writer.close()


async def read_name(
    reader: asyncio.StreamReader, tls_port: bool, fields: dict[str, Any]
) -> tuple[bytes, str, bool]:
    """(client bytes so far, the name they claim, whether they are TLS)."""
    data = b""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HELLO_TIMEOUT
    while True:
        try:
            chunk = await asyncio.wait_for(reader.read(MAX_HELLO), deadline - loop.time())
        except (TimeoutError, ValueError) as exc:
            raise Deny("hello_timeout") from exc
        except OSError as exc:
            raise Deny("client_closed") from exc
        if not chunk:
            raise Deny("client_closed")
        data += chunk
        if looks_like_tls(data):
            result = parse_client_hello(data)
            if result.status is SniStatus.NEED_MORE and len(data) <= MAX_HELLO + 64:
                continue
            if result.status is SniStatus.FOUND and result.server_name is not None:
                fields["sni"] = result.server_name[:255]
                return data, result.server_name, True
            if result.status is SniStatus.NO_SNI:
                raise Deny("tls_no_sni")
            raise Deny(f"tls_{result.status.value}")
        if tls_port:
            raise Deny("tls_not_tls")
        line = data.find(b"\n")
        if line >= 0 and not _REQUEST_LINE.fullmatch(data[: line + 1]):
            # Not HTTP (an ssh banner, say): refused now, not after the head timeout.
            raise Deny("no_server_name", 400)
        end = data.find(b"\r\n\r\n")
        if end < 0:
            if len(data) > MAX_HEAD:
                raise Deny("no_server_name", 400)
            continue
        return data, _host_header(data[: end + 4]), False


def _host_header(head: bytes) -> str:
    """The one ``Host`` of an origin-form HTTP/1.x request head, or :class:`Deny`."""
    text = head.decode("latin-1")
    bare = text.count("\n") != text.count("\r\n") or text.count("\r") != text.count("\r\n")
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if bare or len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[1][:1] == "/":
        raise Deny("no_server_name", 400)
    hosts = [line.split(":", 1)[1].strip() for line in lines[1:] if _is_host(line)]
    if len(hosts) != 1 or not hosts[0]:
        raise Deny("no_server_name", 400)
    value = hosts[0]
    if value.startswith("["):  # an IPv6 literal, with or without a port
        return value.split("]", 1)[0] + "]"
    name, sep, port = value.rpartition(":")
    if sep and port.isdigit():
        value = name
    if parse_ip_literal(value) is None and any(c in value for c in " \t/@"):
        raise Deny("no_server_name", 400)
    return value


def _is_host(line: str) -> bool:
    return line.split(":", 1)[0].strip().lower() == "host" and ":" in line


def _rewrite_http(data: bytes, host: str, port: int) -> bytes:
    """The request head in the proxy's form (``Host`` set, ``Connection: close``), body after."""
    end = data.index(b"\r\n\r\n")
    lines = data[:end].decode("latin-1").split("\r\n")
    method, path, _version = lines[0].split(" ")
    return origin_request(method, path, host, port, lines[1:]) + data[end + 4 :]
