"""Network escape suite: every probe runs INSIDE a real sandbox as the unprivileged agent user.

The world is real: a network namespace per agent, host-side nftables, the launcher's resolver
and proxy, and a fake internet in its own namespace (conftest.py). Nothing here is mocked.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import Any

import pytest

from symphonyd.launcher.sandbox.manager import SandboxHandle
from tests.sandbox.conftest import (
    AGENT_UID,
    UPSTREAM,
    Internet,
    Launcher,
    World,
    agent_policy,
    run_probe,
    sh,
)

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def agent(launcher: Launcher) -> Generator[SandboxHandle, None, None]:
    handle = launcher.setup("agent-a", agent_policy())
    yield handle
    launcher.teardown(handle)


@pytest.fixture(scope="module")
def other_agent(launcher: Launcher) -> Generator[SandboxHandle, None, None]:
    handle = launcher.setup("agent-b", agent_policy())
    yield handle
    launcher.teardown(handle)


def probe(launcher: Launcher, agent: SandboxHandle, world: World, *args: str) -> dict[str, Any]:
    return run_probe(launcher, agent, world, *args)


def test_agent_identity_is_unprivileged(
    launcher: Launcher, agent: SandboxHandle, world: World, monkeypatch: pytest.MonkeyPatch
):
    # A canary credential in the launcher's own environment must not reach the agent.
    monkeypatch.setenv("LINEAR_API_KEY", "canary-lin-0123456789")
    r = probe(launcher, agent, world, "identity")
    assert "canary-lin-0123456789" not in json.dumps(r)
    assert (r["uid"], r["gid"]) == (AGENT_UID, AGENT_UID)
    # no supplementary group but (on the systemd path, from initgroups) the agent's own
    assert set(r["groups"]) <= {AGENT_UID}, r["groups"]
    assert r["caps"]["CapEff"] == r["caps"]["CapBnd"] == r["caps"]["CapPrm"] == "0000000000000000"
    assert r["no_new_privs"] == "1"
    assert r["ipv6_disabled"] == "1"
    assert r["env"]["HTTPS_PROXY"] == agent.proxy_url
    assert not any("LINEAR" in k or "TOKEN" in k for k in r["env"])


def test_allowed_name_works_over_https_and_http(
    launcher: Launcher, agent: SandboxHandle, world: World, internet: Internet
):
    r = probe(launcher, agent, world, "fetch", "https://allowed.test/", world.ca)
    assert r["ok"], r
    assert "hello from allowed.test" in r["body"]
    r = probe(launcher, agent, world, "fetch", "http://allowed.test/x", world.ca)
    assert r["ok"], r
    assert "host=allowed.test" in r["body"]
    allows = [a for a in launcher.audit if a["type"] == "egress_allow" and a.get("via") != "dns"]
    assert any(a["host"] == "allowed.test" and a["address"] == "198.18.1.10" for a in allows)


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("denied.test:443", "not_allowlisted"),
        ("198.18.1.10:443", "ip_literal"),
        ("127.0.0.1:443", "ip_literal"),
        ("10.1.2.3:443", "ip_literal"),
        ("169.254.169.254:80", "ip_literal"),
        ("[::1]:443", "ip_literal"),
        ("rebind.test:443", "forbidden_address:loopback"),
        ("meta.test:80", "forbidden_address:metadata"),
        ("private.test:443", "forbidden_address:private"),
        ("allowed.test:8443", "port_not_allowed"),
    ],
)
def test_proxy_denies(
    launcher: Launcher, agent: SandboxHandle, world: World, internet: Internet, target, reason
):
    proxy = f"{agent.lease.host_ip}:{agent.proxy.port}"
    r = probe(launcher, agent, world, "tunnel", proxy, target, "allowed.test", world.ca)
    assert not r["ok"]
    assert (r["stage"], r["status"]) == ("connect", "403"), r
    denies = [
        a for a in launcher.audit if a["type"] == "egress_deny" and a["agent_id"] == "agent-a"
    ]
    assert any(a["reason"] == reason for a in denies), denies[-3:]


def test_denied_name_over_https_fails(
    launcher: Launcher, agent: SandboxHandle, world: World, internet: Internet
):
    r = probe(launcher, agent, world, "fetch", "https://denied.test/", world.ca)
    assert not r["ok"]
    r = probe(launcher, agent, world, "fetch", "http://denied.test/", world.ca)
    assert (r["ok"], r.get("status")) == (False, 403)


def test_sni_must_equal_connect_host(
    launcher: Launcher, agent: SandboxHandle, world: World, internet: Internet
):
    proxy = f"{agent.lease.host_ip}:{agent.proxy.port}"
    good = probe(
        launcher, agent, world, "tunnel", proxy, "allowed.test:443", "allowed.test", world.ca
    )
    assert good["ok"], good
    bad = probe(
        launcher, agent, world, "tunnel", proxy, "allowed.test:443", "denied.test", world.ca
    )
    assert (bad["ok"], bad["stage"]) == (False, "tls"), bad
    assert any(
        a["type"] == "egress_deny"
        and a["reason"] == "sni_mismatch"
        and a.get("sni") == "denied.test"
        for a in launcher.audit
    )


@pytest.mark.parametrize(
    "target",
    [
        ("198.18.1.10", "2222"),  # the allowed host itself, on a port that is not allowed
        ("198.18.1.20", "8443"),
        ("198.18.1.53", "53"),  # upstream DNS over TCP
        ("198.18.0.1", "22"),  # the host's other address
    ],
)
def test_direct_connections_have_no_route(
    launcher: Launcher, agent: SandboxHandle, world: World, target
):
    before = launcher.manager.firewall.counter(
        "agent_forward_drop"
    ) + launcher.manager.firewall.counter("agent_input_drop")
    r = probe(launcher, agent, world, "connect", *target)
    assert (r["ok"], r["error"]) == (False, "timeout"), r
    after = launcher.manager.firewall.counter(
        "agent_forward_drop"
    ) + launcher.manager.firewall.counter("agent_input_drop")
    assert after > before


@pytest.mark.parametrize(
    ("target", "name", "tls"),
    [
        (("198.18.1.10", "443"), "allowed.test", False),  # the allowed host, skipping the proxy
        (("198.18.1.20", "80"), "denied.test", False),
        (("198.18.1.20", "443"), "allowed.test", True),  # an allowed name at another's address
    ],
)
def test_direct_connections_on_allowed_ports_reach_only_the_proxy(
    launcher: Launcher, agent: SandboxHandle, world: World, target, name, tls
):
    """Interception: the connection lands at this agent's proxy, which refuses it (plain
    text on a TLS port, a denied name, an address the resolver never gave that name)."""
    before = len(launcher.audit)
    r = probe(launcher, agent, world, "direct_at", *target, name, *([world.ca] if tls else []))
    assert not r["ok"], r
    assert "hello from" not in r.get("body", ""), r
    mine = [a for a in launcher.audit[before:] if a.get("agent_id") == "agent-a"]
    assert [a["type"] for a in mine if a.get("via") == "intercept"] == ["egress_deny"], mine
    assert not [a for a in mine if a["type"] == "egress_allow" and a.get("via") != "dns"]


def test_control_direct_connection_works_without_the_firewall(
    launcher: Launcher, agent: SandboxHandle, world: World
):
    """Shows the test above can fail: with the table gone, the same probe gets through."""
    fw = launcher.manager.firewall
    fw.remove_table()
    try:
        r = probe(launcher, agent, world, "connect", "198.18.1.10", "2222")
        assert r["ok"] and r["banner"].startswith("SSH-2.0"), r
    finally:
        fw.reconcile()
        for h in launcher.manager.live.values():
            fw.add_agent(h.lease, h.proxy.port, launcher.manager.intercept_of(h))
    r = probe(launcher, agent, world, "connect", "198.18.1.10", "2222")
    assert not r["ok"]


def test_direct_dns_to_upstream_is_dropped(
    launcher: Launcher, agent: SandboxHandle, world: World, internet: Internet
):
    r = probe(launcher, agent, world, "dns", UPSTREAM[0], "denied.test")
    assert (r["ok"], r["error"]) == (False, "timeout")
    assert not any(line.startswith("denied.test") for line in internet.dns_log)


def test_dns_answers_only_allowlisted_names(
    launcher: Launcher, agent: SandboxHandle, world: World, internet: Internet
):
    resolver = str(agent.lease.host_ip)
    ok = probe(launcher, agent, world, "dns", resolver, "allowed.test")
    assert (ok["rcode"], ok["ips"]) == (0, ["198.18.1.10"]), ok
    via_libc = probe(launcher, agent, world, "resolve", "allowed.test")
    assert via_libc == {"ok": True, "ips": ["198.18.1.10"]}
    for name in ("denied.test", "c2VjcmV0.exfil.denied.test", "other.allowed.test"):
        r = probe(launcher, agent, world, "dns", resolver, name)
        assert r["rcode"] == 3, (name, r)
    tcp = probe(launcher, agent, world, "dns", resolver, "c2VjcmV0.tcp.denied.test", "1", "tcp")
    assert tcp["rcode"] == 3
    aaaa = probe(launcher, agent, world, "dns", resolver, "allowed.test", "28")
    assert (aaaa["rcode"], aaaa["answers"]) == (0, 0)
    log = internet.dns_log
    assert "allowed.test 1" in log
    assert not [line for line in log if "denied.test" in line or line.startswith("other.")], log
    assert not [line for line in log if line.endswith(" 28")], log


def test_ipv6_is_unusable(launcher: Launcher, agent: SandboxHandle, world: World):
    r = probe(launcher, agent, world, "connect", "2001:db8::1", "80")
    assert not r["ok"]
    assert "timeout" not in r["error"]  # fails at once: no IPv6 stack at all


def test_other_agents_proxy_and_resolver_are_unreachable(
    launcher: Launcher,
    agent: SandboxHandle,
    other_agent: SandboxHandle,
    world: World,
    internet: Internet,
):
    theirs = f"{other_agent.lease.host_ip}:{other_agent.proxy.port}"
    r = probe(
        launcher, agent, world, "tunnel", theirs, "allowed.test:443", "allowed.test", world.ca
    )
    assert (r["ok"], r["stage"], r["error"]) == (False, "proxy", "timeout"), r
    r = probe(launcher, agent, world, "dns", str(other_agent.lease.host_ip), "allowed.test")
    assert (r["ok"], r["error"]) == (False, "timeout")
    r = probe(launcher, agent, world, "connect", str(other_agent.lease.agent_ip), "22")
    assert not r["ok"]
    # and agent B still works through its own proxy
    r = probe(launcher, other_agent, world, "fetch", "https://allowed.test/", world.ca)
    assert r["ok"], r


def test_host_services_are_unreachable(launcher: Launcher, agent: SandboxHandle, world: World):
    import socket

    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", 18181))
    server.listen()
    try:
        for host in (str(agent.lease.host_ip), "198.18.0.1"):
            r = probe(launcher, agent, world, "connect", host, "18181")
            assert (r["ok"], r["error"]) == (False, "timeout"), (host, r)
        r = probe(launcher, agent, world, "connect", "127.0.0.1", "18181")
        assert not r["ok"]
    finally:
        server.close()


def test_blocked_mode_denies_everything(launcher: Launcher, world: World, internet: Internet):
    handle = launcher.setup("agent-block", agent_policy(mode="block"))
    try:
        r = run_probe(launcher, handle, world, "fetch", "https://allowed.test/", world.ca)
        assert not r["ok"]
        r = run_probe(launcher, handle, world, "dns", str(handle.lease.host_ip), "allowed.test")
        assert r["rcode"] == 3
    finally:
        launcher.teardown(handle)
    assert "symv" + str(handle.lease.index) not in sh("ip", "-o", "link").stdout
