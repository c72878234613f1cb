"""Worker hosts end to end (docs/design/1100): a control host and two workers, one .deb.

Three systemd containers on a bridge of this test's own (devtools/nspawn.py ``Bridge``):
the control host runs ``symphony.target`` with ``[worker] local = false`` (the generator
pulls in and opens ``symphony-link.service`` for the two addresses); each worker runs
``symphony-worker.target`` and sshd, with the control host's key enrolled and its host key
pinned exactly as docs/install.md says. No worker runs a tracker: a worker launcher's
tracker calls travel back over the link (``ssh -R``) to the control host's tracker, admitted
only for issues the dispatcher bound to that worker.

Proven, in one boot to keep CI time modest (each step depends on the one before):

0. a real Codex agent (the demo endpoint on the worker) runs on a worker, in that worker's
   sandbox, writes its workspace there and hands its issue off through the tracker tool,
   whose call reaches the control host's tracker through the link;

Every other run sits in a slow ``before_run`` hook, so it is live on its worker until
something stopped it:

1. issues spread over both workers within ``max_concurrent_agents_per_host`` (1); with
   both full, the third issue waits and nothing runs on the control host;
2. a worker powered off mid-run (its PID 1 SIGKILLed: no goodbye on any connection) loses
   its capacity, and its issue comes back, after the lease fence, as exactly one new
   attempt on the other worker;
3. a partition (an nftables drop rule between the control host and that worker, in a table
   this test creates inside the control container) is seen as ``host_lost``; once it heals
   the dispatcher finds the stale run on the worker and stops it (``orphan``, not the
   worker's own lease);
4. ``symphonyctl audit verify`` passes over the local chain and both workers' replicas.

Bookworm only: the topology and the link are the same on trixie, and three containers per
release would double the slowest test in CI for nothing the package tests do not cover.
"""

from __future__ import annotations

import functools
import json
import re
import secrets
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from devtools.demo_setup import CODEX_VENDOR, configure_demo, install_package
from devtools.nspawn import Bridge, BridgePort, Container
from tests.e2e.test_suite import issue_state, journal_dump, unit_state, wait_until

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.agents]

CONTROL, W1, W2 = "198.18.0.10", "198.18.0.11", "198.18.0.12"
LEASE_S = 20
BRIDGE = "/usr/lib/symphonyd/link-bridge"
CONTROL_CONFIG = f"""
[worker]
local = false
max_concurrent_agents_per_host = 1
lease_seconds = {LEASE_S}
[[worker.hosts]]
name = "w1"
address = "{W1}"
[[worker.hosts]]
name = "w2"
address = "{W2}"
"""
# A run waits in before_run until it is stopped (the hook outlasts the test); AGENT-* issues
# go straight to the agent.
HOOKS = """\
  before_run: |
    case "$ISSUE_IDENTIFIER" in AGENT-*) exit 0 ;; esac
    exec sleep 3600
  timeout_ms: 7200000
"""


def _workflow(shipped: str) -> str:
    assert "\nhooks:\n" in shipped
    return shipped.replace("\nhooks:\n", f"\nhooks:\n{HOOKS}", 1)


def setup_worker(w: Container, deb: Path, public_key: str) -> str:
    """Install, enrol the control host's key, start the worker role; its pinned host key."""
    install_package(w, deb)
    # Containers from one root filesystem share its host keys: give each its own.
    w.run(["sh", "-c", "rm -f /etc/ssh/ssh_host_* && ssh-keygen -A -q"])
    w.run(["systemctl", "restart", "ssh.service"])
    w.run(
        ["tee", "/etc/symphony/workers/authorized_keys"],
        input=f'restrict,port-forwarding,command="{BRIDGE}" {public_key}\n',
    )
    w.run(
        ["tee", "-a", "/etc/symphony/symphonyd.toml"],
        input=f"\n[worker]\nlease_seconds = {LEASE_S}\n",
    )
    # Codex and the demo endpoint on the worker, as the quick start sets them up, but with
    # the worker's target: no tracker, dispatcher or dashboard here.
    configure_demo(w, CODEX_VENDOR / "bin", role="symphony-worker.target")
    wait_until(
        "the worker's launcher",
        lambda: unit_state(w, "symphony-launcher.service") == "running",
        timeout=90,
    )
    key_type, key = w.run(["cat", "/etc/ssh/ssh_host_ed25519_key.pub"]).stdout.split()[:2]
    return f"{w.address} {key_type} {key}\n"


def doctor(w: Container) -> dict[str, dict[str, Any]]:
    out = w.run(["symphonyctl", "doctor", "--json"], check=False).stdout
    return {r["name"]: r for r in json.loads(out)}


def link_connected(w: Container) -> bool:
    return bool(doctor(w)["link"]["status"] == "ok")


def snapshot(c: Container) -> dict[str, Any]:
    out = c.run(["symphonyctl", "status", "--json"]).stdout
    state: dict[str, Any] = json.loads(out)
    return state


def running(c: Container) -> dict[str, dict[str, Any]]:
    return {r["issue_identifier"]: r for r in snapshot(c)["running"]}


def hosts(c: Container) -> dict[str, dict[str, Any]]:
    listing = json.loads(c.run(["symphonyctl", "hosts", "--json"]).stdout)
    return {h["name"]: h for h in listing["hosts"]}


def sandbox_units(c: Container) -> str:
    argv = ["systemctl", "list-units", "--no-legend", "--plain", "symphony-hook-*",
            "symphony-agent-*"]  # fmt: skip
    return c.run(argv).stdout.strip()


def dispatches(c: Container, identifier: str) -> list[str]:
    """The dispatcher's ``dispatch outcome=started`` journal lines for one issue."""
    lines = c.run(
        ["journalctl", "--no-pager", "-o", "cat", "-u", "symphony-dispatcher.service",
         f"ISSUE_IDENTIFIER={identifier}"],
    ).stdout.splitlines()  # fmt: skip
    return [line for line in lines if "dispatch" in line and "outcome=started" in line]


def launcher_lines(w: Container, run_id: str) -> list[str]:
    lines = w.run(
        ["journalctl", "--no-pager", "-o", "cat", "-u", "symphony-launcher.service"], check=False
    ).stdout.splitlines()
    return [line for line in lines if run_id in line]


def test_runs_spread_fail_over_and_fence_across_two_workers(tmp_path: Path, deb_file: Path) -> None:
    with ExitStack() as stack:
        bridge = stack.enter_context(Bridge())
        boxes = [
            stack.enter_context(
                Container(tmp_path / name, network=BridgePort(bridge, f"{address}/24"))
            )
            for name, address in (("control", CONTROL), ("w1", W1), ("w2", W2))
        ]
        c, w1, w2 = boxes
        try:
            scenario(c, w1, w2, deb_file)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- control journal ---\n{journal_dump(c)}") from None


def scenario(c: Container, w1: Container, w2: Container, deb: Path) -> None:
    install_package(c, deb)
    c.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "symphony-link",
           "-f", "/etc/symphony/credentials/worker-key"])  # fmt: skip
    public_key = c.run(["cat", "/etc/symphony/credentials/worker-key.pub"]).stdout.strip()
    pinned = "".join(setup_worker(w, deb, public_key) for w in (w1, w2))
    c.run(["tee", "/etc/symphony/workers/known_hosts"], input=pinned)
    c.run(["tee", "-a", "/etc/symphony/symphonyd.toml"], input=CONTROL_CONFIG)
    workflow = c.run(["cat", "/etc/symphony/WORKFLOW.md"]).stdout
    c.run(["tee", "/etc/symphony/WORKFLOW.md"], input=_workflow(workflow))
    c.run(["systemctl", "daemon-reload"])  # the generator reads [worker.hosts]
    c.run(["systemctl", "enable", "--now", "symphony.target"])
    wait_until(
        "the link and the dispatcher",
        lambda: all(
            unit_state(c, f"symphony-{d}.service") == "running" for d in ("link", "dispatcher")
        ),
        timeout=90,
    )
    wait_until("both workers healthy", lambda: all(h["ok"] for h in hosts(c).values()))
    assert set(hosts(c)) == {"w1", "w2"}  # local = false: the control host is no host
    for w in (w1, w2):  # each worker's doctor checks it as a worker, link connected
        wait_until(f"{w.address}'s doctor", functools.partial(link_connected, w))
        rows = doctor(w)
        assert rows["role"]["detail"].startswith("worker"), rows
        assert not [r for r in rows.values() if r["status"] == "fail"], rows
        assert rows["link-key"]["status"] == "ok", rows["link-key"]

    # 0. A real agent on a worker hands its issue off through the control host's tracker.
    c.run(["symphonyctl", "issue", "new", "AGENT-1", "--title", "Say hello",
           "--description", "Write a greeting file."])  # fmt: skip
    wait_until("AGENT-1 handed off", lambda: issue_state(c, "AGENT-1") == "Human Review", 180)
    greeting = "/var/lib/symphony/workspaces/AGENT-1/symphony-demo.md"
    made = [w for w in (w1, w2) if w.run(["test", "-s", greeting], check=False).returncode == 0]
    assert len(made) == 1, "the agent's workspace is on exactly one worker"
    assert c.run(["test", "-e", greeting], check=False).returncode != 0  # not on the control
    agent_units = made[0].run(["journalctl", "--no-pager", "-o", "cat", "-u", "symphony-agent-*"])
    assert agent_units.stdout.strip(), "the agent ran in a sandbox unit on the worker"
    wait_until("AGENT-1's run over", lambda: "AGENT-1" not in running(c))

    # 1. Spread within the per-host cap; both full, the third issue waits.
    for n in (1, 2, 3):
        c.run(["symphonyctl", "issue", "new", f"DEMO-{n}", "--title", f"Work {n}"])
    wait_until("two runs", lambda: len(running(c)) == 2, timeout=120)
    rows = running(c)
    assert sorted(r["host"] for r in rows.values()) == ["w1", "w2"], rows
    (waiting,) = {"DEMO-1", "DEMO-2", "DEMO-3"} - set(rows)
    on = {r["host"]: ident for ident, r in rows.items()}
    # Each run's hook is a live sandbox unit on its worker; the control host has none.
    for w in (w1, w2):
        assert "symphony-hook-" in sandbox_units(w), w.address
    assert sandbox_units(c) == ""
    assert waiting not in running(c) and len(running(c)) == 2
    c.run(["symphonyctl", "issue", "move", waiting, "Done"])

    # 2. Power off w1 with its run live; w2 made free for it first.
    moving, other = on["w1"], on["w2"]
    first = rows[moving]
    c.run(["symphonyctl", "stop", other])
    wait_until("w2 free", lambda: set(running(c)) == {moving})
    w1.power_off()
    wait_until("w1 seen down", lambda: not hosts(c)["w1"]["ok"], timeout=90)
    wait_until(
        f"{moving} retried on w2",
        lambda: running(c).get(moving, {}).get("host") == "w2",
        timeout=LEASE_S * 2 + 90,
    )
    retried = running(c)[moving]
    assert retried["run_id"] != first["run_id"]
    assert retried["attempt"] == (first["attempt"] or 0) + 1, (first, retried)
    assert len(dispatches(c, moving)) == 2, dispatches(c, moving)

    # 3. Partition the control host from w2, heal once the dispatcher gave the run up.
    table = f"e2e_{secrets.token_hex(4)}"
    c.run(["nft", "-f", "-"], input=(
        f"table inet {table} {{\n"
        f"  chain out {{ type filter hook output priority 0; ip daddr {W2} drop; }}\n"
        f"  chain in {{ type filter hook input priority 0; ip saddr {W2} drop; }}\n"
        "}\n"))  # fmt: skip
    stale = retried["run_id"]
    try:
        wait_until("host_lost on w2", lambda: moving not in running(c), timeout=90)
    finally:
        c.run(["nft", "delete", "table", "inet", table])
    wait_until(
        "the stale run stopped on w2",
        lambda: any("outcome=cancelled" in line for line in launcher_lines(w2, stale)),
        timeout=LEASE_S * 2 + 60,
    )
    stopped = [line for line in launcher_lines(w2, stale) if "outcome=cancelled" in line]
    assert re.search(r"stopped: orphan", stopped[0]), stopped  # resync, not the lease
    wait_until("w2 healthy again", lambda: hosts(c)["w2"]["ok"], timeout=90)

    # 4. The local chain and both replicas verify.
    for name in ("w1", "w2"):
        replica = f"/var/lib/symphony/link/hosts/{name}/audit"
        listed = c.run(["ls", replica], check=False).stdout
        assert listed.strip(), f"no {name} replica"
    verify = c.run(["symphonyctl", "audit", "verify"], check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "host w1:" in verify.stdout and "host w2:" in verify.stdout, verify.stdout
