"""The .deb installs into a real systemd machine, starts nothing by itself, and purges clean."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from devtools.demo_setup import install_package
from devtools.nspawn import Container
from symphonyd.core.sockets import SYSTEM_USERS, WORKER_SOCKETS
from tests.units.test_units import EXPOSURE_BUDGET, exposure_score

pytestmark = [pytest.mark.root, pytest.mark.slow]

# Every system user the package makes (debian/symphonyd.sysusers), all gone after purge.
USERS = SYSTEM_USERS
# socket path -> owner (docs/design/0003-units-and-sockets.md)
SOCKETS = {
    "audit-dispatcher.sock": "symphony-dispatch",
    "audit-tracker.sock": "symphony-tracker",
    "audit-launcher.sock": "root",
    "audit-dashboard.sock": "symphony-dashboard",
    "tracker-dispatcher.sock": "symphony-dispatch",
    "tracker-launcher.sock": "root",
    "launcher-dispatcher.sock": "symphony-dispatch",
    "dispatcher-ctl.sock": "root",
    "dispatcher-dashboard.sock": "symphony-dashboard",
}


def test_install_starts_nothing_and_sockets_are_0600_with_their_owner(
    container: Container, deb_file: Path
) -> None:
    install_package(container, deb_file)
    for user in USERS:
        container.run(["getent", "passwd", user])
    units = container.run(
        ["systemctl", "list-units", "--all", "--no-legend", "--plain", "symphony*"]
    ).stdout
    assert " active " not in units, f"installing started units:\n{units}"

    sockets = [f"symphony-{name.removesuffix('.sock')}.socket" for name in SOCKETS]
    container.run(["systemctl", "start", *sockets])
    for name, owner in SOCKETS.items():
        stat = container.run(["stat", "-c", "%a %U %F", f"/run/symphony/{name}"]).stdout.split()
        assert stat[:2] == ["600", owner], (name, stat)
        assert stat[2] == "socket", (name, stat)


def test_installed_units_verify_and_meet_their_exposure_budgets(
    container: Container, deb_file: Path
) -> None:
    # The host's systemd-analyze is Debian 12's; each release's own systemd (252, 257) must
    # accept the units and score them within the same budgets.
    install_package(container, deb_file)
    units = sorted(f"/lib/systemd/system/{name}" for name in EXPOSURE_BUDGET)
    verify = container.run(["systemd-analyze", "verify", *units], check=False)
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    for unit in units:
        out = container.run(["systemd-analyze", "security", "--offline=true", unit], check=False)
        name = Path(unit).name
        score = exposure_score(name, out.stdout + out.stderr)
        assert score <= EXPOSURE_BUDGET[name], f"{name} exposure {score} > {EXPOSURE_BUDGET[name]}"


WORKERS_CONFIG = """
[worker]
local = false
[[worker.hosts]]
name = "w1"
address = "198.18.10.11"
[[worker.hosts]]
name = "w2"
address = "198.18.10.12"
"""


def test_worker_role_sockets_sshd_and_the_links_generated_allowlist(
    container: Container, deb_file: Path
) -> None:
    # docs/design/1100: the worker target's link sockets belong to symphony-link; sshd
    # accepts the package's drop-in; the generator turns [worker.hosts] into the link
    # unit's IPAddressAllow= on daemon-reload, and a config that does not parse refuses it.
    install_package(container, deb_file)
    container.run(["systemctl", "start", *(s.unit for s in WORKER_SOCKETS)])
    for spec in WORKER_SOCKETS:
        stat = container.run(["stat", "-c", "%a %U %F", f"/run/symphony/{spec.name}"]).stdout
        assert stat.split() == ["600", "symphony-link", "socket"], (spec.name, stat)
    container.run(["sshd", "-t"])
    conf = container.run(["sshd", "-T", "-C", "user=symphony-link,host=c,addr=198.18.10.1"])
    assert "forcecommand /usr/lib/symphonyd/link-bridge" in conf.stdout
    assert "authorizedkeysfile /etc/symphony/workers/authorized_keys" in conf.stdout
    other = container.run(["sshd", "-T", "-C", "user=root,host=c,addr=198.18.10.1"]).stdout
    assert "forcecommand none" in other  # the Match block ends with its file
    # No workers: the link is neither wanted nor allowed anywhere.
    show = ["systemctl", "show", "-p", "IPAddressAllow", "symphony-link.service"]
    assert container.run(show).stdout.strip() == "IPAddressAllow="
    container.run(["tee", "-a", "/etc/symphony/symphonyd.toml"], input=WORKERS_CONFIG)
    container.run(["systemctl", "daemon-reload"])
    allow = container.run(show).stdout
    assert "198.18.10.11" in allow and "198.18.10.12" in allow, allow
    wants = container.run(["systemctl", "show", "-p", "Wants", "symphony.target"]).stdout
    assert "symphony-link.service" in wants
    container.run(["tee", "-a", "/etc/symphony/symphonyd.toml"], input="[worker]\nlocal = 1\n")
    container.run(["systemctl", "daemon-reload"])
    assert container.run(show).stdout.strip() == "IPAddressAllow="
    start = container.run(["systemctl", "start", "symphony-link.service"], check=False)
    assert start.returncode != 0
    cat = container.run(["systemctl", "cat", "symphony-link.service"]).stdout
    assert "The host config does not parse" in cat, cat


def purge_leftovers(c: Container) -> list[str]:
    """``apt purge symphonyd``, then everything of the package still on the machine."""
    c.run(["apt-get", "purge", "-y", "symphonyd"], timeout=300)
    found = [f"user {u}" for u in USERS if c.run(["getent", "passwd", u], check=False).stdout]
    found += [f"group {u}" for u in USERS if c.run(["getent", "group", u], check=False).stdout]
    paths = c.run(
        ["sh", "-c", "ls -d /var/lib/symphony /etc/symphony /run/symphony* 2>/dev/null; "
         "find /etc/systemd /run/systemd /lib/systemd /usr/lib/systemd -name 'symphony*'"],
        check=False,
    ).stdout.split()  # fmt: skip
    found += [f"path {p}" for p in paths]
    units = c.run(["systemctl", "list-units", "--all", "--no-legend", "--plain", "symphony*"])
    found += [f"unit {line.strip()}" for line in units.stdout.splitlines() if line.strip()]
    if any(f.startswith("unit ") for f in found):  # what still holds it loaded
        for line in units.stdout.splitlines():
            name = line.split()[0]
            deps = c.run(["systemctl", "show", "-p", "RequiredBy,WantedBy,TriggeredBy,Following",
                          "-p", "FragmentPath,NeedDaemonReload", name], check=False)  # fmt: skip
            found.append(f"  {name}: {' '.join(deps.stdout.split())}")
    if c.run(["nft", "list", "table", "inet", "symphonyd"], check=False).returncode == 0:
        found.append("nft table inet symphonyd")
    links = c.run(["ip", "-o", "link", "show"]).stdout.splitlines()
    found += [f"interface {line.split(':')[1].strip()}" for line in links if ": symv" in line]
    procs = c.run(["ps", "-eo", "user:32=,args="]).stdout.splitlines()
    found += [
        f"process {line.strip()}"
        for line in procs
        if line.split()[0] in USERS or "symphonyd" in line or "codex" in line
    ]
    return found


def test_purge_leaves_nothing_behind(container: Container, deb_file: Path) -> None:
    install_package(container, deb_file)
    container.run(["systemctl", "start", "symphony-audit-dispatcher.socket"])
    container.run(["mkdir", "-p", "/var/lib/symphony/workspaces/ABC-1", "/etc/symphony"])
    assert purge_leftovers(container) == []


def test_lintian_is_clean(deb_file: Path) -> None:
    # Every remaining tag is overridden with its reason in debian/symphonyd.lintian-overrides.
    out = subprocess.run(["lintian", str(deb_file)], capture_output=True, text=True, check=False)
    tags = [line for line in out.stdout.splitlines() if line[:2] in ("E:", "W:")]
    assert tags == [], out.stdout
