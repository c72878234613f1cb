"""The optional non-HTTP path: nftables elements filled from the resolver's answers."""

from __future__ import annotations

import pytest

from tests.sandbox.conftest import Launcher, World, agent_policy, run_probe

pytestmark = pytest.mark.root


def test_direct_port_opens_only_after_resolving_an_allowed_name(launcher: Launcher, world: World):
    handle = launcher.setup(
        "agent-direct", agent_policy(allowed_domains=["git.test"], direct_ports=[2222])
    )
    try:
        before = run_probe(launcher, handle, world, "connect", "198.18.1.10", "2222")
        assert (before["ok"], before["error"]) == (False, "timeout")
        resolved = run_probe(launcher, handle, world, "resolve", "git.test")
        assert resolved == {"ok": True, "ips": ["198.18.1.10"]}
        after = run_probe(launcher, handle, world, "connect", "198.18.1.10", "2222")
        assert after["ok"] and after["banner"].startswith("SSH-2.0"), after
        # only that port, only that address; port 80 leads to the proxy (interception), which
        # decides by name, never to the server directly
        r = run_probe(launcher, handle, world, "direct_at", "198.18.1.10", "80", "denied.test")
        assert not r["ok"] and "symphonyd egress: not_allowlisted" in r["body"], r
        assert not run_probe(launcher, handle, world, "connect", "198.18.1.20", "2222")["ok"]
        elements = launcher.manager.firewall.elements("direct_v4")
        # nft names the protocol from /etc/protocols; a minimal system (the nspawn
        # container) has none and nft prints the number
        assert [e[:4] for e in elements] in (
            [[handle.lease.host_ifname, "198.18.1.10", "tcp", 2222]],
            [[handle.lease.host_ifname, "198.18.1.10", 6, 2222]],
        )
    finally:
        launcher.teardown(handle)
    assert launcher.manager.firewall.elements("direct_v4") == []


def test_direct_ports_are_off_by_default(launcher: Launcher, world: World):
    handle = launcher.setup("agent-nodirect", agent_policy(allowed_domains=["git.test"]))
    try:
        assert run_probe(launcher, handle, world, "resolve", "git.test")["ok"]
        r = run_probe(launcher, handle, world, "connect", "198.18.1.10", "2222")
        assert (r["ok"], r["error"]) == (False, "timeout")
        assert launcher.manager.firewall.elements("direct_v4") == []
    finally:
        launcher.teardown(handle)


def test_server_first_protocol_through_connect(launcher: Launcher, world: World):
    """ssh-style: the server speaks first through a CONNECT tunnel on a non-TLS port."""
    handle = launcher.setup(
        "agent-sshproxy", agent_policy(allowed_domains=["git.test"], ports=[2222])
    )
    try:
        proxy = f"{handle.lease.host_ip}:{handle.proxy.port}"
        r = run_probe(
            launcher, handle, world, "tunnel_raw", proxy, "git.test:2222", "SSH-2.0-client\r\n"
        )
        assert r["ok"] and r["banner"].startswith("SSH-2.0-fake"), r
        denied = run_probe(launcher, handle, world, "tunnel_raw", proxy, "git.test:2223", "x")
        assert (denied["ok"], denied.get("status")) == (False, "403")
    finally:
        launcher.teardown(handle)
