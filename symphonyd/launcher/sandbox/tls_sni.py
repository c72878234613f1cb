"""Bounded parser for the server name in a TLS ClientHello (RFC 8446 4.1.2, RFC 6066 3).

The egress proxy peeks at the first bytes a client sends through a CONNECT tunnel and
requires the SNI to name the CONNECT host. The parser never trusts a length field: every read
is checked against the bytes present, the whole hello is capped at :data:`MAX_HELLO`, and the
result says whether more bytes are needed, so the caller can read again with a limit.
A hello split over several TLS records is reassembled; anything else unexpected is
``malformed`` rather than an exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

MAX_HELLO = 16 * 1024
_RECORD_HANDSHAKE = 0x16
_HANDSHAKE_CLIENT_HELLO = 0x01
_EXT_SERVER_NAME = 0x0000
_NAME_TYPE_HOST = 0x00


class SniStatus(Enum):
    NEED_MORE = "need_more"
    NOT_TLS = "not_tls"
    MALFORMED = "malformed"
    NO_SNI = "no_sni"
    FOUND = "found"


@dataclass(frozen=True, slots=True)
class SniResult:
    status: SniStatus
    server_name: str | None = None


class _Malformed(Exception):
    pass


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise _Malformed
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u24(self) -> int:
        return int.from_bytes(self.take(3), "big")

    def vec(self, length_bytes: int) -> bytes:
        n = int.from_bytes(self.take(length_bytes), "big")
        return self.take(n)


def looks_like_tls(data: bytes) -> bool:
    """A TLS handshake record starts 0x16 0x03; anything else is some other protocol."""
    return len(data) >= 1 and data[0] == _RECORD_HANDSHAKE and (len(data) < 2 or data[1] == 3)


def parse_client_hello(data: bytes) -> SniResult:
    """Server name from the start of a client's byte stream."""
    if not data:
        return SniResult(SniStatus.NEED_MORE)
    if not looks_like_tls(data):
        return SniResult(SniStatus.NOT_TLS)
    try:
        handshake = _reassemble(data)
    except _Malformed:
        return SniResult(SniStatus.MALFORMED)
    if handshake is None:
        return SniResult(SniStatus.NEED_MORE)
    try:
        return _parse_hello_body(handshake)
    except _Malformed:
        return SniResult(SniStatus.MALFORMED)


def _reassemble(data: bytes) -> bytes | None:
    """Concatenated handshake payload holding the whole ClientHello, or None if incomplete."""
    payload = b""
    pos = 0
    while True:
        if len(data) - pos < 5:
            return None
        if data[pos] != _RECORD_HANDSHAKE or data[pos + 1] != 3:
            raise _Malformed
        length = int.from_bytes(data[pos + 3 : pos + 5], "big")
        if length == 0 or length > MAX_HELLO + 2048:
            raise _Malformed
        if len(data) - pos - 5 < length:
            return None
        payload += data[pos + 5 : pos + 5 + length]
        pos += 5 + length
        if len(payload) >= 4:
            if payload[0] != _HANDSHAKE_CLIENT_HELLO:
                raise _Malformed
            needed = 4 + int.from_bytes(payload[1:4], "big")
            if needed > MAX_HELLO:
                raise _Malformed
            if len(payload) >= needed:
                return payload[4:needed]
        if len(payload) > MAX_HELLO:
            raise _Malformed


def _parse_hello_body(body: bytes) -> SniResult:
    r = _Reader(body)
    r.take(2)  # legacy_version
    r.take(32)  # random
    r.vec(1)  # legacy_session_id
    suites = r.vec(2)
    if not suites or len(suites) % 2:
        raise _Malformed
    if not r.vec(1):  # compression methods
        raise _Malformed
    if r.pos == len(body):
        return SniResult(SniStatus.NO_SNI)
    extensions = _Reader(r.vec(2))
    if r.pos != len(body):
        raise _Malformed
    seen: set[int] = set()
    name: str | None = None
    while extensions.pos < len(extensions.data):
        ext_type = extensions.u16()
        ext_data = extensions.vec(2)
        if ext_type in seen:
            raise _Malformed  # RFC 8446 4.2: at most one extension of each type
        seen.add(ext_type)
        if ext_type == _EXT_SERVER_NAME:
            name = _server_name(ext_data)
    if name is None:
        return SniResult(SniStatus.NO_SNI)
    return SniResult(SniStatus.FOUND, name)


def _server_name(ext_data: bytes) -> str:
    r = _Reader(ext_data)
    names = _Reader(r.vec(2))
    if r.pos != len(ext_data):
        raise _Malformed
    found: str | None = None
    while names.pos < len(names.data):
        name_type = names.u8()
        value = names.vec(2)
        if name_type == _NAME_TYPE_HOST:
            if found is not None or not value or len(value) > 255:
                raise _Malformed  # RFC 6066: one host_name only
            try:
                found = value.decode("ascii")
            except UnicodeDecodeError as exc:
                raise _Malformed from exc
    if found is None:
        raise _Malformed
    return found
