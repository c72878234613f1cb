"""Transparent interception: proxy-unaware clients in a real sandbox (docs/design/0867).

Two real clients that ignore the proxy variables (``curl --noproxy '*'`` and Python's
``http.client``) reach an allowed name and fail for a denied one; the proxy decides by the TLS
server name or HTTP Host with the CONNECT rules, pins its own lookup's address, and requires
that the agent's resolver gave that name the address the client aimed at.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from symphonyd.core.hostconfig import parse_host_config
from symphonyd.launcher.sandbox.egress_policy import EgressPolicy
from symphonyd.launcher.sandbox.manager import SandboxHandle
from tests.sandbox.agent_sandboxes import agent_sandboxes, memory_workflow
from tests.sandbox.conftest import (
    Internet,
    Launcher,
    World,
    agent_policy,
    run_probe,
)

pytestmark = pytest.mark.root
AGENT = "agent-icpt"


@pytest.fixture(scope="module")
def agent(launcher: Launcher) -> Generator[SandboxHandle, None, None]:
    handle = launcher.setup(AGENT, agent_policy())
    yield handle
    launcher.teardown(handle)


def curl(launcher: Launcher, handle: SandboxHandle, world: World, *args: str) -> tuple[int, str]:
    """Real curl in the sandbox, told to ignore the proxy; (exit status, stdout+stderr)."""

    async def go() -> tuple[int, str]:
        proc = await launcher.spawn(
            handle,
            world.view(),
            ["/usr/bin/curl", "--noproxy", "*", "-sS", "--max-time", "10", *args],
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        return proc.returncode or 0, out.decode(errors="replace")

    return launcher.loop.run(go())


def records(launcher: Launcher, kind: str, **match: Any) -> list[dict[str, Any]]:
    return [
        a
        for a in launcher.audit
        if a["type"] == kind
        and a.get("agent_id") == AGENT
        and a.get("via") == "intercept"
        and all(a.get(k) == v for k, v in match.items())
    ]


def test_curl_without_proxy_reaches_an_allowed_name(
    launcher: Launcher, agent: SandboxHandle, world: World, internet: Internet
):
    rc, out = curl(launcher, agent, world, "--cacert", world.ca, "https://allowed.test/")
    assert rc == 0 and "hello from allowed.test" in out, out
    rc, out = curl(launcher, agent, world, "http://allowed.test/x")
    assert rc == 0 and "hello from allowed.test host=allowed.test" in out, out
    allows = records(launcher, "egress_allow", host="allowed.test")
    assert {a["port"] for a in allows} >= {80, 443}
    assert all(a["address"] == "198.18.1.10" and a["dst"] == "198.18.1.10" for a in allows)
    assert any(a.get("sni") == "allowed.test" for a in allows)


def test_curl_without_proxy_fails_for_a_denied_name(
    launcher: Launcher, agent: SandboxHandle, world: World, internet: Internet
):
    # The resolver does not answer it ...
    rc, out = curl(launcher, agent, world, "--cacert", world.ca, "https://denied.test/")
    assert rc != 0 and "hello" not in out, out
    # ... and a client that brings its own address is refused by name: a TLS alert on 443,
    # a 403 that says what to add on 80.
    pin = ("--resolve", "denied.test:443:198.18.1.20", "--resolve", "denied.test:80:198.18.1.20")
    rc, out = curl(launcher, agent, world, *pin, "--cacert", world.ca, "https://denied.test/")
    assert rc != 0 and "alert access denied" in out, out
    rc, out = curl(launcher, agent, world, *pin, "-i", "http://denied.test/")
    assert " 403 " in out and "allowed_domains: [denied.test]" in out, out
    assert "hello" not in out
    denies = records(launcher, "egress_deny", host="denied.test", reason="not_allowlisted")
    assert {d["port"] for d in denies} == {80, 443}, denies


def test_http_client_without_proxy_passes_and_fails(
    launcher: Launcher, agent: SandboxHandle, world: World, internet: Internet
):
    ok = run_probe(launcher, agent, world, "direct", "https://allowed.test/", world.ca)
    assert ok["ok"] and "hello from allowed.test" in ok["body"], ok
    ok = run_probe(launcher, agent, world, "direct", "http://allowed.test/", world.ca)
    assert ok["ok"] and "host=allowed.test" in ok["body"], ok
    bad = run_probe(
        launcher, agent, world, "direct_at", "198.18.1.20", "443", "denied.test", world.ca
    )
    assert (bad["ok"], bad.get("stage")) == (False, "talk"), bad
    assert "ACCESS_DENIED" in bad["error"].upper(), bad
    bad = run_probe(launcher, agent, world, "direct_at", "198.18.1.20", "80", "denied.test")
    assert not bad["ok"] and bad["body"].startswith("HTTP/1.1 403"), bad
    assert "not_allowlisted" in bad["body"] and "allowed_domains: [denied.test]" in bad["body"]


def test_name_must_be_one_the_resolver_gave_that_address(
    launcher: Launcher, agent: SandboxHandle, world: World, internet: Internet
):
    # Before any lookup of allowed.test by this agent in this test's fresh sandbox, and at an
    # address that was never its answer: refused, though the name is allowed.
    fresh = launcher.setup("agent-icpt-bind", agent_policy())
    try:
        r = run_probe(
            launcher, fresh, world, "direct_at", "198.18.1.10", "443", "allowed.test", world.ca
        )
        assert not r["ok"], r
        r = run_probe(launcher, fresh, world, "resolve", "allowed.test")
        assert r == {"ok": True, "ips": ["198.18.1.10"]}
        r = run_probe(
            launcher, fresh, world, "direct_at", "198.18.1.10", "443", "allowed.test", world.ca
        )
        assert r["ok"], r
        # another server's address with the allowed name: never reaches it
        r = run_probe(launcher, fresh, world, "direct_at", "198.18.1.20", "80", "allowed.test")
        assert not r["ok"] and "not_resolved_for_address" in r["body"], r
    finally:
        launcher.teardown(fresh)
    reasons = [
        a["reason"]
        for a in launcher.audit
        if a["type"] == "egress_deny" and a.get("agent_id") == "agent-icpt-bind"
    ]
    assert reasons.count("not_resolved_for_address") == 2, reasons


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("198.18.1.10", "443", "-", "CA"), "tls_no_sni"),  # TLS without a server name
        (("198.18.1.10", "443", "allowed.test"), "tls_not_tls"),  # plain text on a TLS port
        (("198.18.1.10", "80", "198.18.1.10"), "ip_literal"),
        (("198.18.1.10", "80", "rebind.test"), "not_resolved_for_address"),
    ],
)
def test_refusals_without_a_checkable_name(
    launcher: Launcher, agent: SandboxHandle, world: World, internet: Internet, args, reason
):
    args = tuple(world.ca if a == "CA" else a for a in args)
    r = run_probe(launcher, agent, world, "direct_at", *args)
    assert not r["ok"], r
    assert records(launcher, "egress_deny", reason=reason), launcher.audit[-3:]


def test_interception_off_leaves_no_route(launcher: Launcher, world: World, internet: Internet):
    """The control: the same client without interception meets the drop rule (a timeout)."""
    handle = launcher.setup("agent-icpt-off", agent_policy(intercept=False))
    try:
        assert handle.interceptor is None
        assert run_probe(launcher, handle, world, "resolve", "allowed.test")["ok"]
        r = run_probe(launcher, handle, world, "connect", "198.18.1.10", "443")
        assert (r["ok"], r["error"]) == (False, "timeout"), r
        assert not [
            k for k, _ in launcher.manager.firewall.redirects() if k[0] == handle.lease.host_ifname
        ]
    finally:
        launcher.teardown(handle)


def test_block_mode_intercepts_nothing(launcher: Launcher, world: World):
    handle = launcher.setup("agent-icpt-block", agent_policy(mode="block"))
    try:
        assert handle.interceptor is None
        r = run_probe(launcher, handle, world, "connect", "198.18.1.10", "443")
        assert (r["ok"], r["error"]) == (False, "timeout"), r
    finally:
        launcher.teardown(handle)


def test_teardown_logs_the_runs_denials_with_a_suggestion(
    launcher: Launcher, world: World, internet: Internet, caplog: pytest.LogCaptureFixture
):
    handle = launcher.setup("agent-icpt-sum", agent_policy())
    caplog.set_level(logging.INFO, logger="symphonyd.launcher")
    try:
        for _ in range(2):
            run_probe(launcher, handle, world, "direct_at", "198.18.1.20", "80", "denied.test")
        run_probe(launcher, handle, world, "dns", str(handle.lease.host_ip), "nope.denied.test")
    finally:
        launcher.teardown(handle)
        redirects = launcher.manager.firewall.redirects()
    assert not [k for k, _ in redirects if k[0] == handle.lease.host_ifname]
    lines = [r.getMessage() for r in caplog.records if "agent-icpt-sum" in r.getMessage()]
    hints = [m for m in lines if "event=egress_denied" in m]
    assert any("allowed_domains: [denied.test]" in m for m in hints), lines
    summary = [m for m in lines if "event=egress_denials" in m]
    assert len(summary) == 1, lines
    assert "denied.test x2 (not_allowlisted)" in summary[0], summary
    assert "nope.denied.test x1 (not_allowlisted)" in summary[0], summary
    assert "allowed_domains: [denied.test, nope.denied.test]" in summary[0], summary


@pytest.mark.parametrize(("line", "on"), [("", True), ("intercept = false\n", False)])
def test_host_config_switches_interception_for_agents_and_hooks(
    launcher: Launcher, world: World, template: Path, line: str, on: bool
):
    """Through the launcher's AgentSandboxes, as the daemon builds them from the host config."""
    host, _ = parse_host_config(f"[sandbox]\nrequire_resource_limits = false\n{line}")
    sandboxes = agent_sandboxes(launcher, host.sandbox, template)
    config = memory_workflow(world)

    async def build(policy: EgressPolicy | None) -> tuple[bool, list[Any]]:
        sandbox = await sandboxes.open("agent-icpt-host", world.workspace, config, policy=policy)
        try:
            ifname = sandbox.handle.lease.host_ifname
            mine = [k for k, _ in launcher.manager.firewall.redirects() if k[0] == ifname]
            return sandbox.handle.interceptor is not None, sorted(p for _, p in mine)
        finally:
            await sandbox.close()

    assert launcher.loop.run(build(None)) == (on, [80, 443] if on else [])
    hooks = sandboxes.hook_policy(config)
    assert launcher.loop.run(build(hooks)) == (on, [80, 443] if on else [])
