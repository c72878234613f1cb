"""Pure parts of interception: resolver bindings, the Host parser, denial hints and tallies."""

from __future__ import annotations

import asyncio
import ipaddress
import logging

import pytest

from symphonyd.launcher.sandbox.answer_book import AnswerBook
from symphonyd.launcher.sandbox.denials import DenialTally, explain, hint
from symphonyd.launcher.sandbox.egress_policy import build_policy
from symphonyd.launcher.sandbox.intercept import _host_header, _rewrite_http, read_name
from symphonyd.launcher.sandbox.proxy import Deny

A = ipaddress.IPv4Address


def test_answer_book_binds_name_to_address_until_ttl_and_grace() -> None:
    now = [1000.0]
    book = AnswerBook(grace_s=300, clock=lambda: now[0])
    book.record("a.test", [(A("192.0.2.1"), 30)])
    assert book.answered("a.test", "192.0.2.1")
    assert not book.answered("a.test", "192.0.2.2")
    assert not book.answered("b.test", "192.0.2.1")
    now[0] += 60 + 299  # TTL raised to 60 s, plus the grace
    assert book.answered("a.test", "192.0.2.1")
    now[0] += 2
    assert not book.answered("a.test", "192.0.2.1")


def test_answer_book_is_bounded_oldest_out() -> None:
    book = AnswerBook(max_bindings=2)
    for i in range(3):
        book.record(f"n{i}.test", [(A(f"192.0.2.{i}"), 60)])
    assert len(book) == 2
    assert not book.answered("n0.test", "192.0.2.0")
    assert book.answered("n2.test", "192.0.2.2")


@pytest.mark.parametrize(
    ("head", "host"),
    [
        (b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", "a.test"),
        (b"GET /x?y HTTP/1.0\r\nhost:  a.test:8080 \r\n\r\n", "a.test"),
        (b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", "[::1]"),
        (b"GET / HTTP/1.1\r\nHost: 198.51.100.1\r\n\r\n", "198.51.100.1"),
    ],
)
def test_host_header_is_read(head: bytes, host: str) -> None:
    assert _host_header(head) == host


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.1\r\n\r\n",  # no Host
        b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",  # two
        b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n",  # absolute form
        b"GET / HTTP/1.1\nHost: a.test\r\n\r\n",  # bare LF
        b"SSH-2.0-client\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a.test/evil\r\n\r\n",
    ],
)
def test_no_single_clean_host_is_refused(head: bytes) -> None:
    with pytest.raises(Deny) as caught:
        _host_header(head)
    assert caught.value.reason == "no_server_name"


def test_intercepted_http_is_rewritten_like_the_proxy_does() -> None:
    data = b"POST /p HTTP/1.1\r\nHost: A.test\r\nConnection: keep-alive\r\nX: 1\r\n\r\nbody"
    out = _rewrite_http(data, "a.test", 80)
    assert out == (b"POST /p HTTP/1.1\r\nHost: a.test\r\nX: 1\r\nConnection: close\r\n\r\nbody")


def test_hints_name_the_line_to_add() -> None:
    assert hint("not_allowlisted", "r.example", 443) == (
        "to allow it, add to sandbox.egress: allowed_domains: [r.example]"
    )
    assert "allowed_ports" in (hint("port_not_allowed", "r.example", 8443) or "")
    assert hint("connect_failed", "r.example") is None
    assert explain("not_allowlisted", "r.example").splitlines() == [
        "symphonyd egress: not_allowlisted (r.example)",
        "to allow it, add to sandbox.egress: allowed_domains: [r.example]",
    ]


def test_tally_counts_hints_once_and_suggests_one_line(caplog: pytest.LogCaptureFixture) -> None:
    passed: list[dict[str, object]] = []
    tally = DenialTally("agent-x", passed.append)
    caplog.set_level(logging.INFO, logger="symphonyd.launcher")
    for host in ("b.test", "a.test", "b.test"):
        tally({"type": "egress_deny", "via": "dns", "host": host, "reason": "not_allowlisted"})
    tally({"type": "egress_deny", "via": "proxy", "reason": "proxy_connection_limit"})
    tally({"type": "egress_deny", "via": "intercept", "host": "c.test", "reason": "denied_domain"})
    tally({"type": "egress_allow", "via": "dns", "host": "ok.test"})
    assert len(passed) == 6  # every record still reaches the audit sink
    hints = [r.getMessage() for r in caplog.records if "event=egress_denied" in r.getMessage()]
    assert len(hints) == 3, hints
    assert tally.suggestion() == "allowed_domains: [a.test, b.test]"
    assert tally.summary().startswith("b.test x2 (not_allowlisted)")
    tally.log_summary()
    assert "suggest=" in caplog.records[-1].getMessage()


def test_interception_follows_mode_and_switch() -> None:
    assert build_policy().intercepts
    assert build_policy(mode="open").intercepts
    assert not build_policy(mode="block").intercepts
    assert not build_policy(intercept=False).intercepts


def _read(data: bytes, tls_port: bool) -> tuple[bytes, str, bool] | str:
    async def go() -> tuple[bytes, str, bool] | str:
        reader = asyncio.StreamReader()
        reader.feed_data(data)  # no EOF: a refusal must not wait for the client to close
        try:
            return await read_name(reader, tls_port, {})
        except Deny as deny:
            return deny.reason

    return asyncio.run(asyncio.wait_for(go(), 5))


def test_read_name_takes_the_host_of_a_plain_request() -> None:
    head = b"GET /x HTTP/1.1\r\nHost: a.test\r\n\r\nrest"
    assert _read(head, tls_port=False) == (head, "a.test", False)


@pytest.mark.parametrize(
    ("data", "tls_port", "reason"),
    [
        (b"SSH-2.0-OpenSSH_9.2\r\n", False, "no_server_name"),  # at once, not at the timeout
        (b"GET http://a.test/ HTTP/1.1\r\n", False, "no_server_name"),
        (b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", True, "tls_not_tls"),
    ],
)
def test_read_name_refuses_what_names_no_host_at_once(
    data: bytes, tls_port: bool, reason: str
) -> None:
    assert _read(data, tls_port) == reason
