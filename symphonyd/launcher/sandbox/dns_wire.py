"""Just enough of the DNS wire format (RFC 1035) for an allowlisting resolver.

Everything is bounded: messages over 4096 bytes are refused, names are at most 255 bytes,
compression pointers may only point backwards and at most 32 of them are followed, and a
query must hold exactly one question. Malformed input raises :class:`DnsFormatError`, never
anything else.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence
from dataclasses import dataclass

MAX_MESSAGE = 4096
TYPE_A = 1
TYPE_AAAA = 28
CLASS_IN = 1
RCODE_OK = 0
RCODE_FORMERR = 1
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3
RCODE_NOTIMP = 4
RCODE_REFUSED = 5
_HEADER = struct.Struct("!HHHHHH")


class DnsFormatError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Query:
    ident: int
    flags: int
    name: str
    qtype: int
    qclass: int
    question: bytes  # the raw question section, echoed in the reply


def _read_name(data: bytes, pos: int) -> tuple[str, int]:
    labels: list[str] = []
    end: int | None = None
    jumps = 0
    total = 0
    while True:
        if pos >= len(data):
            raise DnsFormatError("name runs past the message")
        length = data[pos]
        if length & 0xC0 == 0xC0:
            if pos + 1 >= len(data):
                raise DnsFormatError("truncated pointer")
            target = ((length & 0x3F) << 8) | data[pos + 1]
            if target >= pos or jumps >= 32:
                raise DnsFormatError("bad compression pointer")
            if end is None:
                end = pos + 2
            pos = target
            jumps += 1
            continue
        if length & 0xC0:
            raise DnsFormatError("unknown label type")
        pos += 1
        if length == 0:
            break
        label = data[pos : pos + length]
        if len(label) != length:
            raise DnsFormatError("label runs past the message")
        total += length + 1
        if total > 255:
            raise DnsFormatError("name too long")
        try:
            labels.append(label.decode("ascii"))
        except UnicodeDecodeError as exc:
            raise DnsFormatError("non-ASCII label") from exc
        pos += length
    return ".".join(labels), (end if end is not None else pos)


def parse_query(data: bytes) -> Query:
    if len(data) < _HEADER.size or len(data) > MAX_MESSAGE:
        raise DnsFormatError("bad message size")
    ident, flags, qd, an, ns, _ar = _HEADER.unpack_from(data)
    if flags & 0x8000 or qd != 1 or an or ns:
        raise DnsFormatError("not a single-question query")
    # Compression is legal but pointless in a lone question; refusing it keeps echoing simple.
    name, pos = _read_name(data, _HEADER.size)
    if pos + 4 > len(data):
        raise DnsFormatError("truncated question")
    if encode_name(name) != data[_HEADER.size : pos]:
        raise DnsFormatError("compressed or empty question name")
    qtype, qclass = struct.unpack_from("!HH", data, pos)
    return Query(ident, flags, name, qtype, qclass, data[_HEADER.size : pos + 4])


def build_response(
    query: Query, rcode: int, answers: Sequence[tuple[ipaddress.IPv4Address, int]] = ()
) -> bytes:
    # QR=1, opcode and RD copied from the query, RA=1.
    flags = 0x8000 | (query.flags & 0x7900) | 0x0080 | (rcode & 0xF)
    out = bytearray(_HEADER.pack(query.ident, flags, 1, len(answers), 0, 0))
    out += query.question
    for address, ttl in answers:
        out += struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, ttl, 4) + address.packed
    return bytes(out)


def build_error(data: bytes, rcode: int) -> bytes | None:
    """A header-only reply for a message we could not parse, if it has an id at all."""
    if len(data) < 2:
        return None
    return _HEADER.pack(int.from_bytes(data[:2], "big"), 0x8080 | rcode, 0, 0, 0, 0)


def encode_name(name: str) -> bytes:
    out = bytearray()
    for label in name.split("."):
        raw = label.encode("ascii")
        if not 0 < len(raw) < 64:
            raise DnsFormatError("bad label")
        out += bytes([len(raw)]) + raw
    return bytes(out) + b"\x00"


def build_query(ident: int, name: str, qtype: int = TYPE_A) -> bytes:
    return (
        _HEADER.pack(ident, 0x0100, 1, 0, 0, 0)
        + encode_name(name)
        + struct.pack("!HH", qtype, CLASS_IN)
    )


@dataclass(frozen=True, slots=True)
class Answer:
    rcode: int
    addresses: tuple[tuple[ipaddress.IPv4Address, int], ...]


def parse_a_answer(data: bytes, ident: int, name: str) -> Answer:
    """A records of an upstream reply to our query ``ident`` for ``name``."""
    if len(data) < _HEADER.size or len(data) > 65535:
        raise DnsFormatError("bad reply size")
    rid, flags, qd, an, _ns, _ar = _HEADER.unpack_from(data)
    if rid != ident or not flags & 0x8000 or qd != 1:
        raise DnsFormatError("reply does not match the query")
    qname, pos = _read_name(data, _HEADER.size)
    if qname.lower() != name.lower():
        raise DnsFormatError("reply is for another name")
    pos += 4
    found: list[tuple[ipaddress.IPv4Address, int]] = []
    for _ in range(min(an, 64)):
        _owner, pos = _read_name(data, pos)
        if pos + 10 > len(data):
            raise DnsFormatError("truncated record")
        rtype, rclass, ttl, rdlen = struct.unpack_from("!HHIH", data, pos)
        pos += 10
        rdata = data[pos : pos + rdlen]
        if len(rdata) != rdlen:
            raise DnsFormatError("truncated rdata")
        pos += rdlen
        if rtype == TYPE_A and rclass == CLASS_IN and rdlen == 4:
            found.append((ipaddress.IPv4Address(rdata), ttl))
    return Answer(flags & 0xF, tuple(found))
