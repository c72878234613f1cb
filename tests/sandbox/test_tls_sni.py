"""The ClientHello SNI parser against real hellos from Python's ssl module, and fuzzed input."""

from __future__ import annotations

import contextlib
import ssl

from hypothesis import given, settings
from hypothesis import strategies as st

from symphonyd.launcher.sandbox.tls_sni import MAX_HELLO, SniStatus, parse_client_hello


def real_hello(server_name: str | None) -> bytes:
    ctx = ssl.create_default_context()
    if server_name is None:
        ctx.check_hostname = False
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with contextlib.suppress(ssl.SSLWantReadError):
        conn.do_handshake()
    return outgoing.read()


def test_real_hello_names_the_server() -> None:
    result = parse_client_hello(real_hello("allowed.test"))
    assert result.status is SniStatus.FOUND
    assert result.server_name == "allowed.test"


def test_hello_without_sni() -> None:
    assert parse_client_hello(real_hello(None)).status is SniStatus.NO_SNI


def test_every_truncation_needs_more_and_never_finds_a_name() -> None:
    hello = real_hello("allowed.test")
    for cut in range(len(hello)):
        assert parse_client_hello(hello[:cut]).status is SniStatus.NEED_MORE, cut


def test_hello_split_over_two_records_is_reassembled() -> None:
    hello = real_hello("split.example.org")
    body = hello[5:]
    first, second = body[:40], body[40:]
    rec = bytes([0x16, 3, 1])
    split = (
        rec + len(first).to_bytes(2, "big") + first + rec + len(second).to_bytes(2, "big") + second
    )
    result = parse_client_hello(split)
    assert (result.status, result.server_name) == (SniStatus.FOUND, "split.example.org")


def test_other_protocols_are_not_tls() -> None:
    assert parse_client_hello(b"SSH-2.0-OpenSSH_9.2\r\n").status is SniStatus.NOT_TLS
    assert parse_client_hello(b"GET / HTTP/1.1\r\n").status is SniStatus.NOT_TLS


def test_lying_lengths_are_malformed() -> None:
    hello = bytearray(real_hello("allowed.test"))
    # handshake length far beyond the cap
    hello[6:9] = (MAX_HELLO + 1).to_bytes(3, "big")
    assert parse_client_hello(bytes(hello)).status is SniStatus.MALFORMED
    # a server hello (type 2) in place of a client hello
    other = bytearray(real_hello("allowed.test"))
    other[5] = 2
    assert parse_client_hello(bytes(other)).status is SniStatus.MALFORMED
    # zero-length record
    assert parse_client_hello(b"\x16\x03\x01\x00\x00").status is SniStatus.MALFORMED


def test_duplicate_sni_extension_is_malformed() -> None:
    hello = real_hello("a.test")
    body = hello[9:]
    # rebuild: find the extensions block and duplicate the server_name extension
    idx = body.find(b"\x00\x00" + (len("a.test") + 5).to_bytes(2, "big"))
    assert idx > 0
    ext = body[idx : idx + 4 + len("a.test") + 5]
    ext_len_pos = idx - 2
    # walk back to the extensions length: it is the 2 bytes before the first extension
    start = _extensions_start(body)
    total = int.from_bytes(body[start - 2 : start], "big") + len(ext)
    new_body = body[: start - 2] + total.to_bytes(2, "big") + ext + body[start:]
    assert ext_len_pos >= start - 2
    hs = b"\x01" + len(new_body).to_bytes(3, "big") + new_body
    record = b"\x16\x03\x01" + len(hs).to_bytes(2, "big") + hs
    assert parse_client_hello(record).status is SniStatus.MALFORMED


def _extensions_start(body: bytes) -> int:
    pos = 2 + 32
    pos += 1 + body[pos]
    pos += 2 + int.from_bytes(body[pos : pos + 2], "big")
    pos += 1 + body[pos]
    return pos + 2


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_random_bytes_never_raise(data: bytes) -> None:
    result = parse_client_hello(data)
    assert result.status in SniStatus
    if result.status is SniStatus.FOUND:
        assert result.server_name is not None


_HELLO = real_hello("allowed.test")


@settings(max_examples=1000, deadline=None)
@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=0, max_value=255))
def test_fuzz_single_byte_mutations_of_a_real_hello(pos: int, value: int) -> None:
    hello = bytearray(_HELLO)
    hello[pos % len(hello)] = value
    result = parse_client_hello(bytes(hello))
    # A mutation may keep the hello valid, but a name is only reported when it parsed cleanly.
    if result.status is SniStatus.FOUND:
        assert result.server_name is not None
        assert len(result.server_name) <= 255
