"""The pure egress decision: names, wildcards, ports, literals, modes and address classes."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from symphonyd.launcher.sandbox.egress_policy import (
    EgressPolicyError,
    build_policy,
    classify_address,
    decide,
    decide_name,
    normalize_host,
    parse_ip_literal,
    parse_rule,
    pick_address,
    sni_matches,
)

POLICY = build_policy(
    allowed_domains=["allowed.test", "*.cdn.test", "Bücher.example"],
    denied_domains=["blocked.cdn.test"],
    builtin_domains=["api.openai.com"],
)


@pytest.mark.parametrize(
    ("host", "port", "allowed", "reason"),
    [
        ("allowed.test", 443, True, "allowlisted"),
        ("ALLOWED.test.", 80, True, "allowlisted"),
        ("api.openai.com", 443, True, "allowlisted"),
        ("a.cdn.test", 443, True, "allowlisted"),
        ("a.b.cdn.test", 443, True, "allowlisted"),
        ("cdn.test", 443, False, "not_allowlisted"),  # wildcard is subdomains only
        ("xcdn.test", 443, False, "not_allowlisted"),
        ("blocked.cdn.test", 443, False, "denied_domain"),
        ("BLOCKED.cdn.test.", 443, False, "denied_domain"),
        ("sub.allowed.test", 443, False, "not_allowlisted"),  # exact is exact
        ("allowed.test.evil", 443, False, "not_allowlisted"),
        ("allowed.test", 22, False, "port_not_allowed"),
        ("xn--bcher-kva.example", 443, True, "allowlisted"),
        ("bücher.example", 443, True, "allowlisted"),
        ("denied.test", 443, False, "not_allowlisted"),
        ("198.18.1.10", 443, False, "ip_literal"),
        ("127.0.0.1", 80, False, "ip_literal"),
        ("[::1]", 443, False, "ip_literal"),
        ("::ffff:127.0.0.1", 443, False, "ip_literal"),
        ("2130706433", 80, False, "ip_literal"),
        ("0x7f.1", 80, False, "ip_literal"),
        ("0177.0.0.1", 80, False, "ip_literal"),
        ("169.254.169.254", 80, False, "ip_literal"),
        ("", 443, False, "invalid_host"),
        ("bad host", 443, False, "invalid_host"),
        ("a..b", 443, False, "invalid_host"),
        ("-x.test", 443, False, "invalid_host"),
        ("x" * 300 + ".test", 443, False, "invalid_host"),
    ],
)
def test_allowlist_decisions(host: str, port: int, allowed: bool, reason: str) -> None:
    d = decide(POLICY, host, port)
    assert (d.allowed, d.reason) == (allowed, reason)


def test_denied_wins_over_allowed_exact() -> None:
    p = build_policy(allowed_domains=["x.test"], denied_domains=["x.test"])
    assert decide(p, "x.test", 443).reason == "denied_domain"
    p2 = build_policy(allowed_domains=["a.x.test"], denied_domains=["*.x.test"])
    assert decide(p2, "a.x.test", 443).reason == "denied_domain"


def test_modes() -> None:
    block = build_policy(mode="block", allowed_domains=["allowed.test"])
    assert decide(block, "allowed.test", 443).reason == "mode_block"
    open_ = build_policy(mode="open", denied_domains=["denied.test"])
    assert decide(open_, "anything.example", 443).allowed
    assert decide(open_, "denied.test", 443).reason == "denied_domain"
    assert decide(open_, "10.0.0.1", 443).reason == "ip_literal"
    assert decide(open_, "anything.example", 25).reason == "port_not_allowed"
    empty = build_policy()
    assert decide(empty, "allowed.test", 443).reason == "not_allowlisted"
    with pytest.raises(EgressPolicyError):
        build_policy(mode="permissive")


def test_ports_config() -> None:
    p = build_policy(allowed_domains=["git.test"], ports=[22, 443])
    assert decide(p, "git.test", 22).allowed
    assert not decide(p, "git.test", 80).allowed
    with pytest.raises(EgressPolicyError):
        build_policy(ports=[0])


def test_ssh_ports_are_for_connect_only() -> None:
    p = build_policy(allowed_domains=["git.test"])
    assert p.ssh_ports == {22} and 22 not in p.ports
    assert decide(p, "git.test", 22, tunnel=True).allowed
    assert decide(p, "git.test", 22).reason == "port_not_allowed"  # plain HTTP, interception
    assert decide(p, "other.test", 22, tunnel=True).reason == "not_allowlisted"
    off = build_policy(allowed_domains=["git.test"], ssh_ports=[])
    assert decide(off, "git.test", 22, tunnel=True).reason == "port_not_allowed"
    with pytest.raises(EgressPolicyError):
        build_policy(ssh_ports=[70000])


def test_dns_decision_ignores_ports() -> None:
    assert decide_name(POLICY, "a.cdn.test").allowed
    assert not decide_name(POLICY, "cdn.test").allowed


def test_rules_refuse_ip_literals_and_garbage() -> None:
    with pytest.raises(EgressPolicyError):
        parse_rule("10.0.0.1")
    with pytest.raises(EgressPolicyError):
        parse_rule("*.")
    with pytest.raises(EgressPolicyError):
        parse_rule("a b")
    assert str(parse_rule("*.Example.COM.")) == "*.example.com"


def test_normalize() -> None:
    assert normalize_host("Example.COM.") == "example.com"
    assert normalize_host("bücher.de") == "xn--bcher-kva.de"
    with pytest.raises(EgressPolicyError):
        normalize_host("a" * 64 + ".test")


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "shared"),
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("169.254.1.1", "link_local"),
        ("fe80::1", "link_local"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("255.255.255.255", "broadcast"),
        ("240.0.0.1", "reserved"),
        ("198.18.0.1", "private"),
        ("fc00::1", "private"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("8.8.8.8", None),
        ("2606:4700::1111", None),
    ],
)
def test_classify_address(address: str, reason: str | None) -> None:
    assert classify_address(ipaddress.ip_address(address)) == reason


def test_permitted_networks_open_only_soft_classes() -> None:
    nets = [ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("127.0.0.0/8")]
    assert classify_address(ipaddress.ip_address("198.18.1.10"), nets) is None
    # loopback stays forbidden even when the operator lists it
    assert classify_address(ipaddress.ip_address("127.0.0.1"), nets) == "loopback"


def test_pick_address_poisoned_by_any_forbidden_answer() -> None:
    public = ipaddress.ip_address("8.8.8.8")
    inner = ipaddress.ip_address("10.0.0.1")
    assert pick_address([public]) == (public, None)
    assert pick_address([public, inner]) == (None, "forbidden_address:private")
    assert pick_address([]) == (None, "no_address")


def test_sni_matches() -> None:
    assert sni_matches("allowed.test", "ALLOWED.test.")
    assert not sni_matches("allowed.test", "denied.test")
    assert not sni_matches("allowed.test", "")


def test_ip_literal_spellings() -> None:
    assert parse_ip_literal("fe80::1%eth0") is not None
    assert parse_ip_literal("example.com") is None


@given(st.text(max_size=300))
def test_hostile_strings_never_raise(raw: str) -> None:
    d = decide(POLICY, raw, 443)
    if d.allowed:
        assert normalize_host(raw) == d.host
