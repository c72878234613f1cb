"""The systemd units verify cleanly and stay within their exposure budgets (issue: packaging)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from symphonyd.core.sockets import (
    LINK_SOCKETS,
    SOCKET_MODE,
    SOCKETS,
    SYSTEM_USERS,
    WORKER_SOCKETS,
    service_unit,
)
from symphonyd.runtime.daemon import EXIT_CONFIG, EXIT_TEMPFAIL

UNITS = Path(__file__).resolve().parents[2] / "units"

# Budget from the packaging issue; stock Debian hostnamed scores 1.5, journald 4.3.
EXPOSURE_BUDGET = {
    "symphony-audit.service": 1.5,
    "symphony-dispatcher.service": 1.5,
    "symphony-dashboard.service": 2.0,
    "symphony-tracker.service": 2.0,
    "symphony-launcher.service": 5.0,
    "symphony-demo-model.service": 2.0,
    "symphony-webhook.service": 2.0,
    # The one control-host daemon with network (to its workers only) and CAP_CHOWN for its
    # host sockets.
    "symphony-link.service": 2.0,
}


def exposure_score(name: str, output: str) -> float:
    """The overall score in ``systemd-analyze security`` output (252 and 257 print it alike)."""
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", output)
    assert match, f"no exposure score for {name}: {output}"
    return float(match.group(1))


def _exposure(unit: Path) -> float:
    out = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    return exposure_score(unit.name, out.stdout + out.stderr)


def test_every_daemon_has_a_budget() -> None:
    assert {p.name for p in UNITS.glob("*.service")} == set(EXPOSURE_BUDGET)


@pytest.mark.parametrize("name", sorted(EXPOSURE_BUDGET))
def test_exposure_within_budget(name: str) -> None:
    score = _exposure(UNITS / name)
    assert score <= EXPOSURE_BUDGET[name], f"{name} exposure {score} > {EXPOSURE_BUDGET[name]}"


def test_units_verify_clean() -> None:
    files = sorted(
        str(p) for p in UNITS.iterdir() if p.suffix in {".service", ".socket", ".target"}
    )
    out = subprocess.run(
        ["systemd-analyze", "verify", *files], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr


def _unit_value(text: str, key: str) -> str | None:
    match = re.search(rf"^{key}=(\S+)$", text, re.M)
    return match.group(1) if match else None


def test_every_ipc_socket_is_0600_with_one_owner() -> None:
    # The units must agree with core/sockets.py, the table symphonyctl doctor checks against.
    seen = set()
    for sock in UNITS.glob("*.socket"):
        text = sock.read_text()
        listen = _unit_value(text, "ListenStream") or ""
        if not listen.startswith("/run/"):
            continue
        every = (*SOCKETS, *WORKER_SOCKETS, *LINK_SOCKETS)
        spec = next((s for s in every if s.unit == sock.name), None)
        assert spec is not None, f"{sock.name} is missing from symphonyd/core/sockets.py"
        seen.add(spec.name)
        assert listen == f"/run/symphony/{spec.name}", sock.name
        assert _unit_value(text, "SocketMode") == f"{SOCKET_MODE:04o}", sock.name
        assert _unit_value(text, "SocketUser") == spec.owner, sock.name
        assert _unit_value(text, "FileDescriptorName") == spec.fdname, sock.name
        assert _unit_value(text, "Service") == service_unit(spec.server), sock.name
    assert seen == {s.name for s in (*SOCKETS, *WORKER_SOCKETS, *LINK_SOCKETS)}


def test_score_parser_sees_an_unhardened_unit(tmp_path: Path) -> None:
    # The budget test must be able to fail: a bare unit scores far above every budget.
    bare = tmp_path / "bare.service"
    bare.write_text("[Service]\nExecStart=/bin/true\n")
    assert _exposure(bare) > 9.0


def test_config_errors_stop_the_unit_and_lock_conflicts_retry() -> None:
    # The exit codes of runtime/daemon.py (design note 0255) and what systemd does with them:
    # 78 is never restarted; 75 (another instance holds the state) and 1 are.
    daemons = sorted(p for p in UNITS.glob("symphony-*.service") if "demo" not in p.name)
    assert len(daemons) == 7
    for unit in daemons:
        text = unit.read_text()
        assert _unit_value(text, "Restart") == "on-failure", unit.name
        assert re.findall(r"^RestartPreventExitStatus=(.*)$", text, re.M) == [str(EXIT_CONFIG)]
    assert EXIT_TEMPFAIL != EXIT_CONFIG  # so a held lock is retried, not left failed


def _deps(text: str, key: str) -> set[str]:
    return {u for line in re.findall(rf"^{key}=(.*)$", text, re.M) for u in line.split()}


def test_stopping_the_dashboard_service_leaves_its_socket_listening() -> None:
    # Issue 22: `systemctl stop symphony-dashboard.service` used to take port 4000 down too
    # (the socket was PartOf= the service), so the dashboard stayed off until the target was
    # restarted. Only these dependencies carry a stop from the service to the socket
    # (systemd.unit(5)); the e2e suite checks the behaviour in a booted container
    # (tests/e2e/test_suite.py, the dashboard part of the first-issue test).
    socket = (UNITS / "symphony-dashboard.socket").read_text()
    service = (UNITS / "symphony-dashboard.service").read_text()
    for key in ("PartOf", "BindsTo", "Requisite", "StopPropagatedFrom"):
        assert "symphony-dashboard.service" not in _deps(socket, key), key
    for key in ("PropagatesStopTo", "ConsistsOf"):
        assert "symphony-dashboard.socket" not in _deps(service, key), key
    # ... while stopping the suite still stops the listener.
    assert "symphony.target" in _deps(socket, "PartOf")


def test_the_dashboard_reads_the_journal_through_its_group_and_nothing_more() -> None:
    # The issue page's journal lines (docs/design/0956): read access the systemd way, one
    # supplementary group, without loosening the rest of the unit's hardening.
    service = (UNITS / "symphony-dashboard.service").read_text()
    groups = [line for line in service.splitlines() if line.startswith("SupplementaryGroups=")]
    assert groups == ["SupplementaryGroups=systemd-journal"]
    for setting in ("ProtectSystem=strict", "NoNewPrivileges=yes", "CapabilityBoundingSet="):
        assert f"\n{setting}\n" in service, setting


def test_the_worker_target_starts_the_launcher_its_audit_writer_and_their_link_sockets() -> None:
    # docs/design/1100: a worker runs no tracker, dispatcher or dashboard, and each of its
    # daemons is ordered after its link socket so the activated fd is there when it starts.
    target = (UNITS / "symphony-worker.target").read_text()
    assert _deps(target, "Wants") == {
        "symphony-audit.service",
        "symphony-launcher.service",
        "symphony-launcher-link.socket",
        "symphony-audit-link.socket",
        "network-online.target",
    }
    for spec in WORKER_SOCKETS:
        service = (UNITS / service_unit(spec.server)).read_text()
        assert spec.unit in _deps(service, "After"), spec.unit
        assert "symphony-worker.target" in _deps(service, "PartOf"), spec.unit


def test_the_link_is_closed_to_the_network_unless_the_generator_allows_workers() -> None:
    link = (UNITS / "symphony-link.service").read_text()
    assert _unit_value(link, "IPAddressDeny") == "any"
    # Only symphony-link-generator's drop-in adds it.
    assert _unit_value(link, "IPAddressAllow") is None
    assert "symphony-link.service" not in _deps((UNITS / "symphony.target").read_text(), "Wants")


def test_the_link_brings_the_tracker_and_dispatcher_sockets_it_needs_before_them() -> None:
    # design 1100: a worker's tracker calls (tracker-link.sock) and the dispatcher's bindings
    # (dispatcher-link.sock) exist only where the link runs; each daemon is ordered after
    # its socket so the activated fd is there when it starts in the same transaction.
    link = (UNITS / "symphony-link.service").read_text()
    for spec in LINK_SOCKETS:
        assert spec.unit in _deps(link, "Wants") and spec.unit in _deps(link, "After"), spec
        service = (UNITS / service_unit(spec.server)).read_text()
        assert spec.unit in _deps(service, "After"), spec.unit
        assert spec.unit not in _deps(service, "Requires"), spec.unit  # no workers: no socket


def test_sysusers_postrm_and_the_users_table_agree() -> None:
    # doctor checks SYSTEM_USERS, the package makes debian/symphonyd.sysusers and purge
    # deletes the postrm's list: a user added to one must be in all three.
    debian = UNITS.parent / "debian"
    made = {line.split()[1] for line in (debian / "symphonyd.sysusers").read_text().splitlines()
            if line.startswith("u ")}  # fmt: skip
    loop = re.search(r"for name in ([a-z -]+); do", (debian / "symphonyd.postrm").read_text())
    assert loop is not None
    assert made == set(SYSTEM_USERS) == set(loop.group(1).split())
